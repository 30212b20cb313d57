"""Remote assertions: ``occasional.run`` for tests.

An assertion that fails in a process of the runtime fails the test with that
process's traceback. The one part of ``occasional.testing`` that runs
occasional; it needs no plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ..core import runtime
from ..core.errors import ProcessExit
from ..core.reasons import format_reason

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


def run(main: Callable[..., T], *args: Any, **options: Any) -> T:
    """``occasional.run(main, *args, **options)``, failing like an assert when a process asserts.

    When the runtime ends with ``ProcessExit`` whose reason is ``("error", exc)``
    for an ``AssertionError``, this raises an ``AssertionError`` whose message is
    the remote traceback (``occasional.format_reason``), chained from the
    ``ProcessExit``; any other outcome is ``occasional.run``'s own.
    """
    __tracebackhide__ = True
    try:
        value: T = runtime.run(main, *args, **options)
        return value
    except ProcessExit as exit_:
        reason = exit_.reason
        remote_assert = (
            isinstance(reason, tuple)
            and len(reason) == 2
            and reason[0] == "error"
            and isinstance(reason[1], AssertionError)
        )
        if not (remote_assert or isinstance(exit_.__cause__, AssertionError)):
            raise
        text = format_reason(reason).rstrip("\n")
        raise AssertionError(f"an assertion failed in a process of the runtime:\n{text}") from exit_
