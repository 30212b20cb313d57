"""The forkserver: a small, clean interpreter that forks every user process.

Central forks it before its event loop starts, so it holds no threads and no
user state (ARCHITECTURE.md, "Forkserver"). It preloads what a user process
needs, then forks on request. It is the parent of every user process: it
reaps them and reports each wait status to central.
"""

from __future__ import annotations

import errno
import gc
import importlib
import os
import select
import signal
import socket
import sys
from collections import deque
from typing import Any, NoReturn

import msgpack

from ..sck.fdpass import recv_with_fds
from ..sck.frame import HEADER, Decoder
from . import protocol as P
from .reaping import reap_ended
from .titles import set_title


def _send(sock: socket.socket, frame: list[Any]) -> None:
    payload = msgpack.packb(frame)
    sock.sendall(HEADER.pack(len(payload)) + payload)


# Modules an upper layer wants every process to share: the forkserver imports
# them before its warm-up and first fork, so a process that needs one does not
# import it after its fork (issue 15: a port's driver took 25-35 ms to import
# in every port process, most of a port restart). The facade fills it.
PRELOAD: list[str] = []


def serve(sock: socket.socket, parent: int) -> NoReturn:
    """Serve fork requests from central until it closes the socket."""
    import prctl

    # Nothing survives its parent: if central dies, so does the forkserver,
    # and through their own death signal every user process.
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
    set_title("occasional: forkserver")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    # Preload what every user process needs, once, before any fork.
    from . import child, logs  # noqa: F401 (child: imported here for every child to share)

    for name in PRELOAD:
        importlib.import_module(name)

    logs.to_stderr()

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    _warm_up()
    # Freeze what is loaded now: children then share these pages instead of
    # copying them when the collector walks them (PSS per process, issue 3).
    gc.collect()
    gc.freeze()
    _loop(sock, (wake_r, wake_w))


def _loop(sock: socket.socket, wake: tuple[int, int]) -> NoReturn:
    """Reap on SIGCHLD (through the wakeup pipe), fork on FORK, exit at EOF."""
    dec = Decoder()
    fds: deque[int] = deque()
    while True:
        try:
            readable, _, _ = select.select([sock.fileno(), wake[0]], [], [])
        except InterruptedError:
            continue
        if wake[0] in readable:
            try:
                while os.read(wake[0], 512):
                    pass
            except BlockingIOError:
                pass
            _reap(sock)
        if sock.fileno() in readable:
            data = recv_with_fds(sock, 1 << 20, fds)
            if not data:
                os._exit(0)
            for raw in dec.feed(data):
                msg = msgpack.unpackb(raw, raw=False)
                if msg[0] == P.FORK:
                    _fork(sock, msg, fds, wake)


def _fork(sock: socket.socket, msg: list[Any], fds: deque[int], wake: tuple[int, int]) -> None:
    """Fork the process ``msg`` (a FORK frame) asks for and report FORKED, or
    FORK_FAILED with the errno (issue 11: a failed fork says why)."""
    _, pid_id, blob, sys_path, title = msg
    child_fd = fds.popleft()
    me = os.getpid()
    try:
        child_pid = os.fork()
    except OSError as e:
        os.close(child_fd)
        code = errno.errorcode.get(e.errno or 0)
        _send(sock, [P.FORK_FAILED, pid_id, f"{e} ({code})" if code else str(e)])
        return
    if child_pid == 0:
        try:
            _become_child(me, sock, fds, wake, title)
            from . import child

            child.main(socket.socket(fileno=child_fd), pid_id, blob, sys_path)
        finally:
            os._exit(70)
    # Both sides set the process group, so a kill right after the
    # fork already reaches the whole group (no race with the child).
    try:
        os.setpgid(child_pid, child_pid)
    except OSError:
        pass
    os.close(child_fd)
    _send(sock, [P.FORKED, pid_id, child_pid])


def _become_child(parent: int, sock: socket.socket, fds: deque[int], wake: tuple[int, int], title: str) -> None:
    """In a new child: its own process group, death with the forkserver, and
    nothing of the forkserver's left open but the child's own socket."""
    import prctl

    os.setpgid(0, 0)
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sock.close()
    os.close(wake[0])
    os.close(wake[1])
    for fd in fds:
        os.close(fd)
    set_title(title)


def _warm_up() -> None:
    """Run the paths every child runs, once, before any fork.

    Python 3.11 specialises bytecode in place as it runs and fills caches on
    first use; done in each child, that writes to shared pages and copies
    them (copy-on-write). Done here once, the children share the result:
    fewer private pages per process and less time spent in page faults.
    """
    from . import codec
    from .context import Context
    from .pid import Pid

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ctx = Context(a, Pid._make(0, os.getpid()))
        me = ctx.pid
        for _ in range(3):
            f, args = codec.load_function(codec.dump_function(lambda x: x, (me,)))
            f(*args)
            for msg in ((me, "hello"), ("msg", 1), [1, 2.5, b"x", None], {"k": {1}}, ValueError("x")):
                ctx.send_bytes(me.id, codec.dumps(msg))
                ctx.receive(None, 0)
            try:
                ctx.receive(lambda m: False, 0)
            except TimeoutError:
                pass
            ctx.flush_all()
            ctx.exit(("ok", None))
            b.recv(1 << 16)
        ctx.close()
    finally:
        a.close()
        b.close()


def _reap(sock: socket.socket) -> None:
    for pid, status in reap_ended():
        _send(sock, [P.REAPED, pid, status])


if __name__ == "__main__":  # pragma: no cover
    sys.exit("the forkserver is started by central services, not directly")
