"""The life of a user process, from fork to exit.

Runs in the fork the forkserver made: rebuilds the function, runs it, and
reports how it ended to central before the process exits (ARCHITECTURE.md,
"Central services": the report refines the wait status into the reason).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from . import codec, context
from .context import Context
from .pid import Pid
from .reasons import keep_traceback, reason_from_exit_code


def flush_stdio() -> None:
    """Flush sys.stdout and sys.stderr, as the interpreter would at exit: a
    process that ends with os._exit (every process of the runtime) loses
    what their buffers hold otherwise. Never raises (a closed stream)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _remember_traceback(exc: BaseException) -> None:
    tb = exc.__traceback__
    # Leave out this module's own frame: the user's code starts below it.
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    keep_traceback(exc, tb)


def main(sock: socket.socket, pid_id: int, blob: bytes, sys_path: list[str]) -> None:
    """Run the process; never returns."""
    sys.path[:] = sys_path
    pid = Pid._make(pid_id, os.getpid())
    ctx = Context(sock, pid)
    context.set_current(ctx)
    exit_status: int | None = None
    reason: tuple[str, Any]
    try:
        f, args = codec.load_function(blob)
        del blob
        reason = ("ok", f(*args))
    except SystemExit as e:
        reason = reason_from_exit_code(e.code)
        if reason[0] == "exitcode":
            exit_status = reason[1]
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)  # sys.exit("message"): Python prints the message
    except BaseException as e:
        _remember_traceback(e)
        reason = ("error", e)
    try:
        ctx.flush_all()
        flush_stdio()
        if exit_status is None:
            ctx.exit(reason)
    except BaseException:
        pass
    finally:
        flush_stdio()
        os._exit(exit_status or 0)
