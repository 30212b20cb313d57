"""Starting and stopping a runtime from an ordinary interpreter (API.md section 1)."""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from ..sck.frame import Decoder
from . import context, protocol as P
from .context import Context
from .errors import ProcessExit, exit_error
from .pid import Pid, set_this_node
from .reasons import describe_exit, reason_from_returncode

# Hooks into central (STYLE.md: core never imports durable; durable fills this
# on import). Each maps option names to "module:function"; when a runtime
# starts, central imports the module and calls function(central, options) before
# its loop runs, with the values of those options (None when not given).
CENTRAL_HOOKS: dict[str, tuple[tuple[str, ...], Callable[[str, dict[str, Any]], None]]] = {}
BEFORE_FORK: dict[str, str] = {}
# What central's hooks told the interpreter that started the runtime with
# READY (Central.facts): its processes inherit the same from central instead.
FACTS: dict[str, Any] = {}
# Where the occasional package the starter imported lives; central loads that one.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Runtime:
    def __init__(self, central: subprocess.Popen[bytes], ctx: Context, options: dict[str, Any]) -> None:
        self.central = central
        self.ctx = ctx
        self.options = options


_runtime: _Runtime | None = None


def add_central_hook(
    entry: str,
    options: tuple[str, ...],
    check: Callable[[str, dict[str, Any]], None],
    before_fork: str | None = None,
) -> None:
    """Let ``entry`` ("module:function") extend central; ``check(call, options)``
    validates its options in the caller, before anything starts.
    ``before_fork`` ("module:function"), if given, runs in central with the
    same options before the forkserver is forked, so every process inherits
    what it sets (a node's name: occasional.dist)."""
    CENTRAL_HOOKS[entry] = (options, check)
    if before_fork is not None:
        BEFORE_FORK[entry] = before_fork


def _all_options() -> tuple[str, ...]:
    """The runtime's options: those its extensions take (core has none of its own)."""
    return tuple(dict.fromkeys(o for opts, _check in CENTRAL_HOOKS.values() for o in opts))


def check_options(call: str, options: dict[str, Any]) -> None:
    known = _all_options()
    for key in options:
        if key not in known:
            raise TypeError(
                f"{call} got an unknown option {key!r}; the options are {', '.join(known)}. "
                "Keyword arguments are options of the runtime or the call: use functools.partial "
                "to pass keyword arguments to the function"
            )
    for _opts, check in CENTRAL_HOOKS.values():
        check(call, options)


def _start(hidden: bool, options: dict[str, Any]) -> _Runtime:
    global _runtime
    running = context.peek()
    if running is not None and not running.closed:
        raise RuntimeError(
            "this interpreter is already a process of a running occasional runtime; "
            "use spawn() to start more processes, or occ.stop() first"
        )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    central: subprocess.Popen[bytes] | None = None
    try:
        central = _popen_central(_central_argv(theirs.fileno(), hidden, options), theirs)
        ready = _wait_until_ready(ours, central)
    except BaseException:
        # Whatever failed (central's own error, a bad frame, a KeyboardInterrupt
        # while waiting), a failed start leaves no socket and no process (issue
        # 10): a central still running is killed, and its forkserver (and any
        # process a hook spawned) dies with it through the parent-death signal.
        ours.close()
        theirs.close()  # a no-op if it was closed once central started
        if central is not None:
            central.kill()
            central.wait()
        raise
    ctx = Context(ours, Pid._make(ready[1], ready[2]))
    # What central's hooks tell every process of the runtime (Central.facts):
    # the node's name (API.md section 11), inherited by the rest through the
    # forkserver.
    facts = ready[3] if len(ready) > 3 else {}
    FACTS.clear()
    FACTS.update(facts)
    set_this_node(facts.get("node") or "nonode@nohost")
    context.set_current(ctx)
    _runtime = _Runtime(central, ctx, options)
    return _runtime


# Central is started as `python -P -c _BOOT PACKAGE_DIR ...`, never `-m`: `-m`
# and `-c` put the current directory first on sys.path, so a uvloop.py in the
# directory a user runs from would run in central (API.md section 10, issue
# 10). -P leaves the interpreter's own sys.path (PYTHONPATH, site, user site)
# as it is and adds nothing; the occasional package the starter imported is
# loaded from its directory by name, without putting that directory (a
# checkout, with whatever lies beside the package) on sys.path. The
# environment is the caller's, unchanged: a port given no env gets it.
_BOOT = (
    "import sys\n"
    "from importlib.machinery import PathFinder\n"
    "from importlib.util import module_from_spec\n"
    "spec = PathFinder.find_spec('occasional', [sys.argv[1]])\n"
    "package = sys.modules['occasional'] = module_from_spec(spec)\n"
    "spec.loader.exec_module(package)\n"
    "from occasional.core.boot import main\n"
    "main(sys.argv[2:])\n"
)


def _central_argv(fd: int, hidden: bool, options: dict[str, Any]) -> list[str]:
    return [
        sys.executable,
        "-P",
        "-c",
        _BOOT,
        _PACKAGE_ROOT,
        str(fd),
        str(os.getpid()),
        "1" if hidden else "0",
        _hooks_argument(options),
    ]


def _popen_central(argv: list[str], theirs: socket.socket) -> subprocess.Popen[bytes]:
    """Start central (passing it ``theirs``, closed here) from a thread that lives as long as the interpreter.

    Linux sends the parent-death signal that ties central to its starter
    (boot.py) when the *thread* that forked it ends (prctl(2),
    PR_SET_PDEATHSIG), so a runtime started from a worker thread would die
    with that thread (issue 10). The main thread lives as long as the
    interpreter; for any other caller the keeper thread starts central.
    """
    if threading.current_thread() is threading.main_thread():
        try:
            return subprocess.Popen(argv, pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
    return _Keeper.get().popen(argv, theirs)


class _Keeper(threading.Thread):
    """A daemon thread that starts central for callers on other threads, then waits for the next.

    It never ends before the interpreter does, and a daemon thread does not
    delay the interpreter's exit (atexit's stop() ends the runtime first).
    """

    _instance: _Keeper | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__(name="occasional-starter", daemon=True)
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    @classmethod
    def get(cls) -> _Keeper:
        with cls._lock:
            # After os.fork() the parent's keeper is not alive in the child.
            if cls._instance is None or not cls._instance.is_alive():
                cls._instance = cls()
                cls._instance.start()
            return cls._instance

    def run(self) -> None:
        while True:
            self.jobs.get()()

    def popen(self, argv: list[str], theirs: socket.socket) -> subprocess.Popen[bytes]:
        done = threading.Event()
        outcome: list[subprocess.Popen[bytes] | BaseException] = []

        def job() -> None:
            try:
                outcome.append(subprocess.Popen(argv, pass_fds=[theirs.fileno()]))
            except BaseException as e:  # any, to raise it in the caller's thread
                outcome.append(e)
            finally:
                theirs.close()  # here, so the fd cannot be closed under the Popen
                done.set()

        self.jobs.put(job)
        done.wait()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]


def _wait_until_ready(ours: socket.socket, central: subprocess.Popen[bytes]) -> list[Any]:
    """Read central's first frame: READY, or START_FAILED raised as the hook's error."""
    dec = Decoder()
    while True:
        data = ours.recv(1 << 16)
        if not data:
            central.wait()
            raise RuntimeError(
                f"the runtime's central services ended before they were ready ({_describe_exit(central.returncode)}); "
                "see their error on stderr"
            )
        for frame in dec.feed(data):
            msg = msgpack.unpackb(frame, raw=False)
            if msg[0] == P.READY:
                return msg
            if msg[0] == P.START_FAILED:
                # Central kills what it started, then exits (boot._fail_start).
                try:
                    central.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass  # killed by _start
                raise _start_error(msg[1], msg[2])
        if dec.error is not None:
            raise dec.error


# The errors a hook may raise that arrive as themselves; any other type
# arrives as a RuntimeError that names it.
_START_ERRORS: dict[str, type[Exception]] = {
    e.__name__: e
    for e in (
        ValueError,
        TypeError,
        RuntimeError,
        OSError,
        FileNotFoundError,
        PermissionError,
        FileExistsError,
        IsADirectoryError,
        BlockingIOError,
    )
}


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
    return json.dumps(
        {
            entry: {
                **{
                    o: (os.fspath(options[o]) if isinstance(options.get(o), os.PathLike) else options.get(o))
                    for o in opts
                },
                "sys_path": [p or os.getcwd() for p in sys.path],
                **({"before_fork": BEFORE_FORK[entry]} if entry in BEFORE_FORK else {}),
            }
            for entry, (opts, _check) in CENTRAL_HOOKS.items()
        }
    )


def start(**options: Any) -> Pid:
    """Make the calling interpreter a process of a new runtime; returns its Pid.

    For scripts, REPLs and notebooks. ``stop()`` (also run at interpreter exit)
    kills and reaps every process of the runtime.
    """
    check_options("start()", options)
    pid = _start(False, options).ctx.pid
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
        set_this_node("nonode@nohost")
        FACTS.clear()
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
    pid = _start(False, options).ctx.pid
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
        raise TypeError(
            f"run({main!r}): {type(main).__name__} is not callable; pass the function to run as the main process"
        )
    check_options("run()", options)
    from .api import spawn_monitor

    central = _start(True, options).central
    try:
        ctx = context.current("run()")
        pid, ref = spawn_monitor(main, *args)
        down = ctx.receive(lambda m: type(m) is tuple and len(m) == 4 and m[0] == "DOWN" and m[1] == ref, None)
        reason = down[3]
    except RuntimeError as e:
        if not ctx.closed:
            raise
        stop()
        raise RuntimeError(
            f"the runtime's central services ended ({_describe_exit(central.returncode)}); "
            "every process of the runtime was killed with it"
        ) from e
    finally:
        stop()
    if reason[0] != "ok":
        raise exit_error(pid, reason)
    return reason[1]


def _describe_exit(returncode: int | None) -> str:
    return describe_exit(None if returncode is None else reason_from_returncode(returncode))


__all__ = ["run", "start", "stop", "runtime", "ProcessExit"]
