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
from .reasons import keep_traceback


def _flush_stdio() -> None:
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
        code = e.code
        if code is None or code == 0:
            reason = ("ok", None)
        elif isinstance(code, int):
            exit_status = code & 0xFF
            reason = ("exitcode", exit_status)
        else:
            # sys.exit("message"): Python prints the message and exits with 1.
            print(code, file=sys.stderr)
            exit_status = 1
            reason = ("exitcode", 1)
    except BaseException as e:
        _remember_traceback(e)
        reason = ("error", e)
    try:
        ctx.flush_all()
        _flush_stdio()
        if exit_status is None:
            ctx.exit(reason)
    except BaseException:
        pass
    finally:
        _flush_stdio()
        os._exit(exit_status or 0)
