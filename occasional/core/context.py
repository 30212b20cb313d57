"""Which runtime the calling process belongs to: one Context per process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import no_runtime

if TYPE_CHECKING:
    from .mailbox import Context

_current: Context | None = None


def set_current(ctx: Context | None) -> None:
    global _current
    _current = ctx


def current(call: str) -> Context:
    """The calling process's context, or the contract's error outside a runtime."""
    ctx = _current
    if ctx is None or ctx.closed:
        raise no_runtime(call)
    return ctx


def peek() -> Context | None:
    return _current
