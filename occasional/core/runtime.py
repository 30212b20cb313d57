"""Starting and stopping a runtime from an ordinary interpreter (API.md section 1)."""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
from typing import Any, Callable, Iterator

import msgpack

from ..sck.frame import HEADER, Decoder
from . import context
from . import protocol as P
from .errors import ProcessExit
from .mailbox import Context, raise_for_reason
from .pid import Pid

OPTIONS = ("journal",)
# Hooks into central (STYLE.md: core never imports durable; durable fills this
# on import). Each maps option names to "module:function"; when a runtime
# starts, central imports the module and calls function(central, options) before
# its loop runs, with the values of those options (None when not given).
CENTRAL_HOOKS: dict[str, tuple[tuple[str, ...], Callable[[str, dict[str, Any]], None]]] = {}
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Runtime:
    def __init__(self, central: subprocess.Popen[bytes], ctx: Context, options: dict[str, Any]) -> None:
        self.central = central
        self.ctx = ctx
        self.options = options


_runtime: _Runtime | None = None


def add_central_hook(entry: str, options: tuple[str, ...], check: Callable[[str, dict[str, Any]], None]) -> None:
    """Let ``entry`` ("module:function") extend central; ``check(call, options)``
    validates its options in the caller, before anything starts."""
    CENTRAL_HOOKS[entry] = (options, check)


def _all_options() -> tuple[str, ...]:
    extra = [o for opts, _check in CENTRAL_HOOKS.values() for o in opts if o not in OPTIONS]
    return OPTIONS + tuple(extra)


def check_options(call: str, options: dict[str, Any]) -> None:
    known = _all_options()
    for key in options:
        if key not in known:
            raise TypeError(
                f"{call} got an unknown option {key!r}; the options are {', '.join(known)}. "
                "Keyword arguments are options of the runtime or the call: use functools.partial "
                "to pass keyword arguments to the function"
            )
    journal = options.get("journal")
    if journal is not None and not isinstance(journal, (str, os.PathLike)):
        raise TypeError(f"{call}: journal={journal!r} is not a path; pass a file path or a store URL as a string")
    for _opts, check in CENTRAL_HOOKS.values():
        check(call, options)


def _start(hidden: bool, options: dict[str, Any]) -> Pid:
    global _runtime
    if context.peek() is not None and not context.peek().closed:  # type: ignore[union-attr]
        raise RuntimeError(
            "this interpreter is already a process of a running occasional runtime; "
            "use spawn() to start more processes, or occ.stop() first"
        )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    try:
        central = subprocess.Popen(
            [sys.executable, "-m", "occasional.core.boot", str(theirs.fileno()), str(os.getpid()), "1" if hidden else "0",
             _hooks_argument(options)],
            pass_fds=[theirs.fileno()],
            env=env,
        )
    finally:
        theirs.close()
    dec = Decoder()
    ready: list[Any] | None = None
    while ready is None:
        data = ours.recv(1 << 16)
        if not data:
            central.wait()
            raise RuntimeError(f"the runtime's central services failed to start (exit status {central.returncode})")
        for frame in dec.feed(data):
            msg = msgpack.unpackb(frame, raw=False)
            if msg[0] == P.READY:
                ready = msg
            elif msg[0] == P.START_FAILED:
                ours.close()
                central.wait()
                raise _start_error(msg[1], msg[2])
    ctx = Context(ours, Pid._make(ready[1], ready[2]))
    context.set_current(ctx)
    _runtime = _Runtime(central, ctx, options)
    return ctx.pid


# The errors a hook may raise that arrive as themselves; any other type
# arrives as a RuntimeError that names it.
_START_ERRORS: dict[str, type[Exception]] = {
    e.__name__: e
    for e in (ValueError, TypeError, RuntimeError, OSError, FileNotFoundError, PermissionError, FileExistsError,
              IsADirectoryError, BlockingIOError)
}  # fmt: skip


def _start_error(kind: str, message: str) -> Exception:
    cls = _START_ERRORS.get(kind)
    if cls is None:
        return RuntimeError(f"the runtime could not start: {kind}: {message}")
    return cls(message)


def _hooks_argument(options: dict[str, Any]) -> str:
    import json

    # Every hook also learns the starting program's sys.path: code central
    # starts on its own (a durable process resumed from a journal) is the
    # code of the program running now, not of the one that first spawned it.
    return json.dumps({
        entry: {
            **{o: (os.fspath(options[o]) if isinstance(options.get(o), os.PathLike) else options.get(o)) for o in opts},
            "sys_path": [p or os.getcwd() for p in sys.path],
        }
        for entry, (opts, _check) in CENTRAL_HOOKS.items()
    })  # fmt: skip


def start(**options: Any) -> Pid:
    """Make the calling interpreter a process of a new runtime; returns its Pid.

    For scripts, REPLs and notebooks. ``stop()`` (also run at interpreter exit)
    kills and reaps every process of the runtime.
    """
    check_options("start()", options)
    pid = _start(False, options)
    atexit.register(stop)
    return pid


def stop() -> None:
    """Kill and reap every process of the runtime this interpreter started."""
    global _runtime
    rt = _runtime
    if rt is None:
        return
    _runtime = None
    atexit.unregister(stop)
    try:
        rt.ctx.call(P.STOP)
    except (RuntimeError, OSError):
        pass  # central is already gone; what is left dies with it
    finally:
        context.set_current(None)
        rt.ctx.closed = True
        rt.ctx.close()
        try:
            rt.central.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rt.central.kill()
            rt.central.wait()


@contextlib.contextmanager
def runtime(**options: Any) -> Iterator[Pid]:
    """``with occ.runtime(): ...``: start() on entry, stop() on exit."""
    check_options("runtime()", options)
    pid = _start(False, options)
    try:
        yield pid
    finally:
        stop()


def run(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Start a runtime, run ``main(*args)`` as its first process, return its value.

    Blocks until main ends; then every other process of the runtime is killed
    and reaped. Raises ProcessExit when main ends abnormally, with the original
    exception as ``__cause__`` and its traceback text in the message.
    """
    if not callable(main):
        raise TypeError(f"run({main!r}): {type(main).__name__} is not callable; pass the function to run as the main process")
    check_options("run()", options)
    from .api import spawn_monitor

    _start(True, options)
    central = _runtime.central  # type: ignore[union-attr]
    try:
        ctx = context.current("run()")
        pid, ref = spawn_monitor(main, *args)
        down = ctx.receive(lambda m: type(m) is tuple and len(m) == 4 and m[0] == "DOWN" and m[1] == ref, None)
        reason = down[3]
    except RuntimeError as e:
        if not ctx.closed:
            raise
        stop()
        raise RuntimeError(f"the runtime's central services ended ({_describe_exit(central.returncode)}); "
                           "every process of the runtime was killed with it") from e
    finally:
        stop()
    raise_for_reason(pid, reason)
    return reason[1]


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "status unknown"
    if returncode < 0:
        from .reasons import signal_name

        return f"killed by {signal_name(-returncode)}"
    return f"exit status {returncode}"


__all__ = ["run", "start", "stop", "runtime", "ProcessExit"]
