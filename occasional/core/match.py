"""Selective-receive matching (API.md section 3).

``match`` is None (anything), a predicate ``msg -> bool``, or a template: a
tuple/list template matches a message of the same kind element-wise and by
length, ``ANY`` matches anything, a type matches by ``isinstance``, and any
other value by ``==``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]


class _Any:
    __slots__ = ()
    __module__ = "occasional"

    def __repr__(self) -> str:
        return "occ.ANY"

    def __reduce__(self) -> str:
        return "ANY"


ANY = _Any()


def matches(template: Any, msg: Any) -> bool:
    """Whether ``msg`` fits ``template``."""
    if template is ANY:
        return True
    t = type(template)
    if t is tuple or t is list:
        if type(msg) is not t or len(msg) != len(template):
            return False
        # A loop, not all() over a generator: this runs for every message that a selective
        # receive looks at, and a generator costs a frame per call.
        for sub, item in zip(template, msg, strict=True):  # noqa: SIM110
            if not matches(sub, item):
                return False
        return True
    if isinstance(template, type):
        return isinstance(msg, template)
    try:
        return bool(msg == template)
    except Exception:
        return False


def compile_match(match: Any) -> Predicate | None:
    """A predicate for ``match``; None means every message matches."""
    if match is None or match is ANY:
        return None
    if isinstance(match, type) or type(match) in (tuple, list):
        return lambda msg: matches(match, msg)
    if callable(match):
        return match
    return lambda msg: matches(match, msg)


def describe(match: Any) -> str:
    """``match`` as an error message shows it: a type or a predicate by its
    name, a template by its repr (cut short), so a timeout says what it
    waited for."""
    if isinstance(match, type) or callable(match):
        return getattr(match, "__qualname__", None) or getattr(match, "__name__", None) or type(match).__qualname__
    text = repr(match)
    return text if len(text) <= 200 else text[:197] + "..."
