"""A timeout for each phase of a test (occasional.testing.plugin, "Timeout").

Generic: it knows nothing of occasional. When a phase outlives its time,
SIGALRM raises :class:`TimeoutExceeded` in the main thread, wherever the test
is; if that cannot interrupt it, faulthandler dumps every thread's stack and
ends pytest ``grace`` seconds later.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.outcomes import Failed  # pytest.fail.Exception, spelled so that it can be a base class

if TYPE_CHECKING:
    from collections.abc import Iterator


class TimeoutExceeded(Failed):
    """Raised in the main thread when a test phase outlives its timeout.

    A ``pytest.fail.Exception``, not an ``Exception``: ``except Exception`` in a test
    does not swallow it, and pytest still runs the other finalizers after it.
    """

    # Its public home: a failed test shows occasional.testing.plugin.TimeoutExceeded.
    __module__ = "occasional.testing.plugin"


@dataclass
class _Armed:
    timeout: float
    soft_deadline: float
    hard_deadline: float
    stderr_fd: int
    previous_handler: Any = None


# Module level, not per session: SIGALRM, the interval timer and faulthandler's
# dump-later slot belong to the process, which an in-process pytester run shares
# with the session around it. The innermost armed phase owns them; disarming it
# re-arms the one around it with what is left of its time.
_armed: list[_Armed] = []
_debugging = False


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_alarm(signum: int, frame: object) -> None:
    __tracebackhide__ = True
    if not _armed or _debugging:
        return
    timeout = _armed[-1].timeout
    raise TimeoutExceeded(f"test exceeded its {timeout} s timeout; raise it with @pytest.mark.timeout(N)")


def _start_timers(entry: _Armed) -> None:
    now = time.monotonic()
    if _on_main_thread():
        signal.setitimer(signal.ITIMER_REAL, max(entry.soft_deadline - now, 0.001))
    faulthandler.dump_traceback_later(max(entry.hard_deadline - now, 0.001), exit=True, file=entry.stderr_fd)


def _stop_timers() -> None:
    if _on_main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)
    faulthandler.cancel_dump_traceback_later()


def _arm(timeout: float, grace: float, stderr_fd: int) -> bool:
    if timeout <= 0 or _debugging:
        return False
    now = time.monotonic()
    entry = _Armed(timeout, now + timeout, now + timeout + grace, stderr_fd)
    if _on_main_thread():
        entry.previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    _armed.append(entry)
    _start_timers(entry)
    return True


@contextlib.contextmanager
def time_limit(timeout: float, grace: float, stderr_fd: int) -> Iterator[None]:
    """The timeout of one phase of a test (setup, call or teardown): ``timeout``
    seconds, then ``grace`` more before the hard stop dumps stacks to ``stderr_fd``.
    0 (or a debugger entered) means no timeout."""
    armed = _arm(timeout, grace, stderr_fd)
    try:
        yield
    finally:
        if armed:
            _disarm()


def _disarm() -> None:
    entry = _armed.pop()
    _stop_timers()
    if _on_main_thread():
        previous = entry.previous_handler
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
    if _armed and not _debugging:
        _start_timers(_armed[-1])


def enter_debugger() -> None:
    """A debugger was entered: timeouts stay off for the rest of the run."""
    global _debugging
    _debugging = True
    if _armed:
        _stop_timers()


# ---------------------------------------------------------------- configuration


def seconds_ini(config: pytest.Config, name: str) -> float:
    """The ini option ``name``, a number of seconds >= 0; a usage error naming it otherwise."""
    raw = config.getini(name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise pytest.UsageError(f"{name} = {raw!r} is not a number of seconds; use a number >= 0, e.g. {name} = 60")
    return value


def marker_timeout(item: pytest.Item, default: float) -> tuple[float, str | None]:
    """The test's timeout, and what is wrong with its marker, if anything."""
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return default, None
    args = list(marker.args)
    kwargs = dict(marker.kwargs)
    if "seconds" in kwargs:
        args.append(kwargs.pop("seconds"))
    value = args[0] if len(args) == 1 and not kwargs else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        given = [*map(repr, marker.args), *(f"{k}={v!r}" for k, v in marker.kwargs.items())]
        shown = ", ".join(given)
        return default, (
            f"@pytest.mark.timeout({shown}) on {item.nodeid}: give one positive number of "
            f"seconds, e.g. @pytest.mark.timeout(10)"
        )
    return float(value), None
