"""Boot of a runtime's central services: the first code that runs in central's
process. It forks the forkserver before anything else (so that one is a clean
interpreter), builds :class:`Central`, installs the extensions' hooks and only
then tells the starter the runtime is ready.

Run by :mod:`occasional.core.runtime` as ``python -P -c BOOT PACKAGE_DIR FD
OWNER_PID HIDDEN HOOKS``, which loads the starter's occasional package and
calls :func:`main` with the last four, and never as ``python -m``: that puts
the current directory first on sys.path (issue 10, see runtime._BOOT).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

import msgpack

from ..sck.frame import HEADER
from . import control, logs, protocol as P
from .central import Central
from .checks import without_password
from .reaping import kill_children
from .titles import set_title

if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("occasional.core")


def main(argv: list[str]) -> None:
    owner_fd, owner_pid, hidden = int(argv[0]), int(argv[1]), argv[2] == "1"
    import prctl

    # Nothing outlives the interpreter that started the runtime: central dies
    # with it, the forkserver with central, and every process with the forkserver.
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != owner_pid:
        os._exit(0)
    prctl.set_child_subreaper(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    owner_sock = socket.socket(fileno=owner_fd)
    hooks = argv[3] if len(argv) > 3 else "{}"
    _before_fork(hooks)
    fs_sock, fs_pid = _fork_forkserver(owner_sock)
    set_title("occasional: central")
    logs.to_stderr()
    _raise_fd_limit()
    _return_big_blocks()
    _run(owner_sock, owner_pid, hidden, fs_sock, fs_pid, hooks)
    os._exit(0)


def _fork_forkserver(owner_sock: socket.socket) -> tuple[socket.socket, int]:
    """Fork the forkserver, first of all (it must be a clean interpreter); central's socket to it and its pid."""
    fs_sock, fs_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    me = os.getpid()
    fs_pid = os.fork()
    if fs_pid == 0:
        try:
            owner_sock.close()
            fs_sock.close()
            from .forkserver import serve

            serve(fs_theirs, me)
        finally:
            os._exit(70)
    fs_theirs.close()
    return fs_sock, fs_pid


def _run(
    owner_sock: socket.socket, owner_pid: int, hidden: bool, fs_sock: socket.socket, fs_pid: int, hooks: str
) -> None:
    """Central's event loop, from the hooks to the end of shutdown."""
    # Imported after the fork: the forkserver needs neither.
    import asyncio

    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    central = Central(loop, owner_sock, owner_pid, hidden, fs_sock, fs_pid)
    central.reap_periodically()  # a slow timer reaps orphans central adopted (uvloop keeps SIGCHLD)
    _install_hooks(central, owner_sock, hooks)
    # Ready only once the hooks ran: a journal that cannot be opened fails the
    # start, not the first durable call.
    owner = central.table.owner
    if owner is not None and owner.conn is not None:  # None once the owner is gone: nobody waits for READY
        owner.conn.send([P.READY, owner.id, owner_pid, central.facts])
    lsock = control.listen(os.getpid())
    if lsock is not None:
        central.control = control.Server(loop, lsock, lambda: control.snapshot(central.table, central.started_at))
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(central.shutdown(None)))
    loop.run_until_complete(central.stopped)
    # Let the last replies reach their sockets before the process exits.
    if owner is not None and owner.conn is not None and owner.conn.out:
        owner.conn.sock.setblocking(True)
        for data, _fds in owner.conn.out:
            try:
                owner.conn.sock.sendall(data)
            except OSError:
                break


def _before_fork(spec: str) -> None:
    """Let extensions set what every process inherits, before the forkserver is
    forked (runtime.add_central_hook's ``before_fork``: a node's name, the path
    and token of its Erlang VM's socket in occasional.dist)."""
    import importlib
    import json

    for options in json.loads(spec).values():
        before = options.get("before_fork")
        if before:
            module, _, function = before.partition(":")
            getattr(importlib.import_module(module), function)(options)


def _install_hooks(central: Central, owner_sock: socket.socket, spec: str) -> None:
    """Let extensions named by the starter (runtime.CENTRAL_HOOKS) add their ops
    and exit hooks. A hook that fails ends the start: its error goes to the
    starter, which raises it in the caller (a journal in use names the journal),
    and central leaves nothing behind (issue 10)."""
    import importlib
    import json

    for entry, options in json.loads(spec).items():
        module, _, function = entry.partition(":")
        try:
            getattr(importlib.import_module(module), function)(central, options)
        except Exception as e:
            log.debug("the runtime's central services could not start %s", entry, exc_info=True)
            _fail_start(owner_sock, type(e).__name__, _naming_options(str(e), options))


def _naming_options(message: str, options: dict[str, Any]) -> str:
    """``message``, led by the options the user gave the hook unless it names one
    already: "unable to open database file" says nothing of which journal
    (API.md section 10: name the offending value)."""
    given = {k: without_password(str(v)) for k, v in options.items() if k != "sys_path" and v is not None}
    if not given or any(v in message for v in given.values()):
        return message
    return f"{', '.join(f'{k}={v!r}' for k, v in given.items())}: {message}"


def _fail_start(owner_sock: socket.socket, kind: str, message: str) -> None:
    """Tell the starter why, kill what was started (the forkserver, anything
    a hook spawned), and exit before READY."""
    payload = msgpack.packb([P.START_FAILED, kind, message])
    try:
        owner_sock.setblocking(True)
        owner_sock.sendall(HEADER.pack(len(payload)) + payload)
    except OSError:
        pass
    kill_children(timeout=2.0)
    os._exit(1)


# Blocks from this size up are mapped on their own and unmapped when freed.
_MMAP_THRESHOLD = 256 << 10
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def _return_big_blocks() -> None:
    """Give a freed large block back to the system at once.

    Central copies every message it carries (a frame read, its body, a
    journal driver's buffers), up to 1 GiB each. glibc raises its mmap
    threshold after the first such block is freed, up to 32 MiB, so later
    ones come from the heap, where fragments of them stay: with 1 MiB
    messages to a process that does not read, a PostgreSQL journal's writer
    grew by 53 MB where the bound is 40 (tests/test_hostile_frames.py). A
    fixed threshold keeps central's memory what it holds."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator has its own policy


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
