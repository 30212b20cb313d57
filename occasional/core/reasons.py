"""Exit reasons: ``(kind, detail)`` tuples (API.md section 4)."""

from __future__ import annotations

import os
import signal
import traceback
from types import TracebackType
from typing import Any

Reason = tuple[str, Any]

# Attribute under which an exception carries its traceback text from the
# process that raised it (the traceback object itself cannot travel).
TRACEBACK_ATTR = "_occ_traceback"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def reason_from_status(status: int) -> Reason:
    """The reason of a process that ended without reporting one, from its wait status."""
    if os.WIFSIGNALED(status):
        return ("signal", signal_name(os.WTERMSIG(status)))
    return ("exitcode", os.WEXITSTATUS(status))


def reason_from_returncode(returncode: int) -> Reason:
    """The reason of a child by its ``subprocess.Popen.returncode`` (-N: killed by signal N)."""
    if returncode < 0:
        return ("signal", signal_name(-returncode))
    return ("exitcode", returncode)


def reason_from_exit_code(code: object) -> Reason:
    """The reason of a process whose function raised ``SystemExit(code)``, as
    the OS reports its end: None or 0 is a normal end; an int is the exit
    status, masked to a byte as the kernel does (``sys.exit(300)`` ends with
    44); anything else (``sys.exit("message")``, which Python prints) is 1.

    One rule for a plain process (core/child.py) and a durable one
    (durable/replay.py), which journals this reason (issue 11)."""
    if code is None or code == 0:
        return ("ok", None)
    if isinstance(code, int):
        return ("exitcode", code & 0xFF)
    return ("exitcode", 1)


def describe_exit(reason: Reason | None) -> str:
    """How one of the runtime's own processes (central, the forkserver) ended,
    for an error about it: ``"killed by SIGKILL"``, ``"exit status 3"``, or
    ``"status unknown"`` for None. ``reason`` is of the OS's kinds, from
    reason_from_status or reason_from_returncode."""
    if reason is None:
        return "status unknown"
    kind, detail = reason
    return f"killed by {detail}" if kind == "signal" else f"exit status {detail}"


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
