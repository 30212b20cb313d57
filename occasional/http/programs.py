"""Durable programs the gateway may start (API.md section 14, issue 16).

``@occasional.http.program`` registers a function under a name (its own, or
``name=``) in the process that imports its module; ``POST /processes`` with
``{"id": ..., "program": NAME, "args": [...]}`` starts it as a durable
process. Only registered functions can be started over HTTP: a request names
a program, never code. ``occasional gateway --programs MODULE`` imports the
modules that register them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

PROGRAMS: dict[str, Callable[..., Any]] = {}


@overload
def program(f: F) -> F: ...
@overload
def program(*, name: str) -> Callable[[F], F]: ...


def program(f: Any = None, *, name: str | None = None) -> Any:
    """Register ``f`` as a program the gateway may start: ``@program`` or
    ``@program(name="...")``. Returns ``f`` unchanged.

    Raises:
        TypeError: ``f`` is not callable, or ``name`` is not a non-empty str.
        ValueError: another function holds the name.
    """

    def register(g: Any) -> Any:
        if not callable(g):
            raise TypeError(f"http.program: {g!r} is not callable; decorate a function")
        key = name if name is not None else getattr(g, "__name__", None)
        if not isinstance(key, str) or not key:
            raise TypeError(f"http.program: name={key!r}; give a non-empty str")
        held = PROGRAMS.get(key)
        if held is not None and held is not g:
            raise ValueError(f"http.program: the name {key!r} is taken by {held!r}; pass name= to register {g!r}")
        PROGRAMS[key] = g
        return g

    if f is not None:
        return register(f)
    return register
