"""Exit reasons: ``(kind, detail)`` tuples (API.md section 4)."""

from __future__ import annotations

import signal
import traceback
from types import TracebackType
from typing import Any

Reason = tuple[str, Any]

KINDS = ("ok", "error", "exitcode", "signal", "killed", "linked", "noproc")

# Attribute under which an exception carries its traceback text from the
# process that raised it (the traceback object itself cannot travel).
TRACEBACK_ATTR = "_occ_traceback"


def is_normal(reason: Reason) -> bool:
    """A reason is normal iff its kind is ``"ok"``."""
    return reason[0] == "ok"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def reason_from_status(status: int) -> Reason:
    """The reason of a process that ended without reporting one."""
    if os_wifsignaled(status):
        return ("signal", signal_name(os_wtermsig(status)))
    return ("exitcode", os_wexitstatus(status))


def os_wifsignaled(status: int) -> bool:
    return (status & 0x7F) not in (0, 0x7F)


def os_wtermsig(status: int) -> int:
    return status & 0x7F


def os_wexitstatus(status: int) -> int:
    return (status >> 8) & 0xFF


def keep_traceback(exc: BaseException, tb: TracebackType | None = None) -> None:
    """Attach the traceback text to ``exc``, once: the frames cannot travel to
    another process, the text can. ``tb`` defaults to the exception's own."""
    if isinstance(getattr(exc, TRACEBACK_ATTR, None), str):
        return
    text = "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))
    try:
        setattr(exc, TRACEBACK_ATTR, text)
    except Exception:
        pass  # an exception with __slots__ keeps no text; format_reason falls back


def traceback_text(exc: BaseException) -> str:
    """The traceback text an exception carries, from this or another process."""
    text = getattr(exc, TRACEBACK_ATTR, None)
    if isinstance(text, str):
        return text
    return "".join(traceback.format_exception(exc))


def format_reason(reason: Reason) -> str:  # noqa: C901 (one branch per kind)
    """Render an exit reason for people; an error shows its traceback text."""
    if not (isinstance(reason, tuple) and len(reason) == 2 and isinstance(reason[0], str)):
        raise TypeError(f"format_reason({reason!r}): a reason is a (kind, detail) tuple, as in a DOWN message")
    kind, detail = reason
    if kind == "ok":
        return f"returned {detail!r}"
    if kind == "error":
        if isinstance(detail, BaseException):
            return traceback_text(detail).rstrip("\n")
        return f"error: {detail!r}"
    if kind == "exitcode":
        return f"exited with status {detail}"
    if kind == "signal":
        return f"killed by signal {detail}"
    if kind == "killed":
        return f"killed by the runtime: {detail}"
    if kind == "linked":
        pid, inner = detail
        return f"linked process {pid!r} ended: {format_reason(inner)}"
    if kind == "noproc":
        return "no such process"
    return f"{kind}: {detail!r}"
