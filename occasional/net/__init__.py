"""Sockets owned by processes, as Erlang's gen_tcp has them (API.md section 12, issue 14).

A socket belongs to one process, its owner: its fd lives in that process
only (close-on-exec, and processes are forked from the forkserver, never from
one another), so it closes when the owner ends, however it ends.
``controlling_process`` hands the fd itself to another process through
central (SCM_RIGHTS). Framing is the ports' (``raw``, ``line``, ``packet``:
occasional/sck/framing.py). In active mode what arrives is a message,
``(sock, ("tcp", data))``, read by the owner's own loop along with its
mailbox (``Context.watch_fd``); ``active="once"`` delivers one and waits for
``setopts``; ``active=False`` leaves reading to ``recv``.
"""

from __future__ import annotations

import itertools
import select
import socket
import time
from collections import deque
from typing import Any

from ..core import runtime as _runtime
from ..core.api import check_pid
from ..core.checks import check_timeout
from ..core.context import EXTENSION_FRAMES, Context, current
from ..core.pid import Pid
from ..sck.framing import FRAMINGS, Framer, frame_out
from . import protocol as N

__all__ = [
    "Listener", "Socket", "listen", "accept", "connect", "send", "recv", "close", "setopts", "controlling_process",
]  # fmt: skip

_RECV = 1 << 18
_MAX_FRAME = 64 << 20
_ids = itertools.count(1)


class Socket:
    """A connection, owned by one process. Pickles as its id: sent in a
    message, it names the same socket (``controlling_process`` moves the fd)."""

    __slots__ = ("id",)
    __module__ = "occasional.net"

    def __init__(self, sock_id: tuple[int, int]) -> None:
        self.id = sock_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.id,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Socket) and type(other) is type(self) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("occ-socket", self.id))

    def __repr__(self) -> str:
        return f"<occ {type(self).__name__.lower()} {self.id[0]}.{self.id[1]}>"


class Listener(Socket):
    """A listening socket; ``listener.port`` (TCP) or ``listener.path`` (Unix),
    known to whoever holds it, owner or not."""

    __slots__ = ("address",)

    def __init__(self, sock_id: tuple[int, int], address: Any = None) -> None:
        super().__init__(sock_id)
        self.address = address

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.id, self.address))

    @property
    def port(self) -> int | None:
        return self.address[1] if isinstance(self.address, (tuple, list)) else None

    @property
    def path(self) -> str | None:
        return self.address if isinstance(self.address, str) else None


class _State:
    """What the owner process holds of one of its sockets."""

    __slots__ = ("handle", "sock", "framing", "active", "framer", "pending", "watched", "ended")

    def __init__(self, handle: Socket, sock: socket.socket, framing: str, active: Any) -> None:
        self.handle = handle
        self.sock = sock
        self.framing = framing
        self.active = active
        self.framer = Framer(framing, _MAX_FRAME)
        self.pending: deque[tuple[str, Any]] = deque()  # read, not delivered yet
        self.watched = False
        self.ended = False  # EOF or an error was read


# The sockets this process owns, by id; a new context (a new process or runtime) starts empty.
_owned: dict[tuple[int, int], _State] = {}
_owner: list[Context | None] = [None]


def _table(ctx: Context) -> dict[tuple[int, int], _State]:
    if _owner[0] is not ctx:
        _owned.clear()
        _owner[0] = ctx
    return _owned


def _state(handle: Any, call: str) -> _State:
    if not isinstance(handle, Socket):
        raise TypeError(
            f"net.{call}(): {handle!r} is not a socket; pass one from net.listen, net.accept or net.connect"
        )
    ctx = current(f"net.{call}()")
    owned = _table(ctx)
    found = owned.get(handle.id)
    deadline = time.monotonic() + 2.0
    while found is None and time.monotonic() < deadline:
        # Handed over by controlling_process: its fd comes through central,
        # the message naming it may come first from the old owner.
        ctx.pump(0.05)
        found = owned.get(handle.id)
    if found is None:
        raise ValueError(
            f"net.{call}(): {handle!r} is not owned by this process (it was closed, or another process owns it); "
            "its owner gives it with net.controlling_process(sock, pid)"
        )
    return found


def _check_options(call: str, framing: Any, active: Any) -> None:
    if framing not in FRAMINGS:
        raise ValueError(f"{call}: framing={framing!r} is not a framing; use one of {', '.join(FRAMINGS)}")
    if active not in (True, False, "once"):
        raise ValueError(f"{call}: active={active!r}; use True, False or 'once'")


def _check_port(call: str, port: Any) -> int:
    if type(port) is not int:
        raise TypeError(f"{call}: port={port!r} is not a port number; pass an int from 0 to 65535")
    if not 0 <= port <= 65535:
        raise ValueError(f"{call}: port={port} is out of range; pass an int from 0 to 65535 (0 picks a free one)")
    return port


def _own(ctx: Context, sock: socket.socket, framing: str, active: Any, kind: type[Socket] = Socket) -> Socket:
    sock.setblocking(False)
    handle = kind((ctx.pid.id, next(_ids)))
    state = _State(handle, sock, framing, active)
    _table(ctx)[handle.id] = state
    if kind is Socket:
        _arm(ctx, state)
    return handle


# -- opening ----------------------------------------------------------------------------


def listen(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    path: str | None = None,
    framing: str = "raw",
    active: Any = True,
    backlog: int = 128,
) -> Listener:
    """A listening socket on ``host:port`` (``port=0`` picks one), or on the Unix
    socket ``path``; the connections it accepts take ``framing`` and ``active``."""
    ctx = current("net.listen()")
    _check_options("net.listen()", framing, active)
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = path
    else:
        address = (host, _check_port("net.listen()", port))
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    handle = _own(ctx, sock, framing, active, Listener)
    assert isinstance(handle, Listener)
    handle.address = sock.getsockname()
    return handle


def accept(listener: Listener, timeout: float | None = None) -> Socket:
    """The next connection, owned by the caller. TimeoutError after ``timeout`` s."""
    if not isinstance(listener, Listener):
        raise TypeError(f"net.accept({listener!r}): not a listener; pass one from net.listen")
    seconds = check_timeout("net.accept()", timeout)
    state = _state(listener, "accept")
    _wait(state.sock, select.POLLIN, seconds, "net.accept()")
    conn, _address = state.sock.accept()
    return _own(current("net.accept()"), conn, state.framing, state.active)


def connect(
    host: str | None = None,
    port: int | None = None,
    *,
    path: str | None = None,
    framing: str = "raw",
    active: Any = True,
    timeout: float | None = None,
) -> Socket:
    """A connection to ``host:port`` or the Unix socket ``path``; a refused one
    raises ConnectionRefusedError here."""
    ctx = current("net.connect()")
    _check_options("net.connect()", framing, active)
    seconds = check_timeout("net.connect()", timeout)
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(seconds)
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((host or "127.0.0.1", _check_port("net.connect()", port)), seconds)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _own(ctx, sock, framing, active)


# -- data -------------------------------------------------------------------------------


def send(sock: Socket, data: bytes) -> None:
    """Write one frame (a line gets its newline, a packet its length); blocks
    while the kernel's buffer is full, as gen_tcp:send does."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"net.send(): {type(data).__name__} is not bytes; encode it, e.g. text.encode()")
    state = _state(sock, "send")
    out = memoryview(frame_out(state.framing, bytes(data)))
    while out:
        try:
            out = out[state.sock.send(out) :]
        except BlockingIOError:
            _wait(state.sock, select.POLLOUT, None, "net.send()")


def recv(sock: Socket, timeout: float | None = None) -> bytes:
    """The next frame of a passive socket (``active=False``). EOFError once
    the peer closed it; TimeoutError after ``timeout`` seconds."""
    seconds = check_timeout("net.recv()", timeout)
    state = _state(sock, "recv")
    if state.active is not False:
        raise ValueError(f"net.recv({sock!r}): the socket is active; its data arrives as messages")
    deadline = None if seconds is None else time.monotonic() + seconds
    while not state.pending:
        if state.ended:
            raise EOFError(f"net.recv({sock!r}): the connection is closed")
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        _wait(state.sock, select.POLLIN, left, "net.recv()")
        _read(state)
    kind, value = state.pending.popleft()
    if kind == "tcp":
        return value
    raise EOFError(f"net.recv({sock!r}): {value or 'the peer closed the connection'}")


def setopts(sock: Socket, *, active: Any) -> None:
    """Change how data arrives; ``active="once"`` again after each message is flow control."""
    _check_options("net.setopts()", "raw", active)
    state = _state(sock, "setopts")
    state.active = active
    _arm(current("net.setopts()"), state)


def close(sock: Socket) -> None:
    """Close the socket (nothing if it is closed already)."""
    ctx = current("net.close()")
    state = _table(ctx).pop(sock.id, None) if isinstance(sock, Socket) else None
    if state is not None:
        if state.watched:
            ctx.unwatch_fd(state.sock.fileno())
        state.sock.close()


def controlling_process(sock: Socket, pid: Pid) -> None:
    """Hand the socket (its fd) to the process ``pid``, which becomes its owner;
    what was read and not delivered goes with it. Raises NoProcess if ``pid`` has ended."""
    check_pid(f"net.controlling_process({sock!r}, {pid!r})", pid)
    if pid._remote is not None:
        raise ValueError(f"net.controlling_process(): {pid!r} is on another node; a socket moves within a node")
    state = _state(sock, "controlling_process")
    ctx = current("net.controlling_process()")
    if pid == ctx.pid:
        return
    if state.watched:
        ctx.unwatch_fd(state.sock.fileno())
        state.watched = False
    # What it delivered here and nobody received goes too, first and in order:
    # an acceptor's socket may have read its client before the handover.
    delivered: list[tuple[str, Any]] = []
    while True:
        try:
            delivered.append(ctx.receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] == sock, 0)[1])
        except TimeoutError:
            break
    state.pending.extendleft(reversed(delivered))
    meta = {
        "framing": state.framing,
        "active": state.active,
        "listener": isinstance(sock, Listener),
        "pending": [list(item) for item in state.pending],
        "ended": state.ended,
    }
    req = ctx.request_with_fd(state.sock.fileno(), N.N_HANDOVER, pid.id, list(sock.id), meta)
    answer = ctx.wait_reply(req, None)
    assert answer is not None
    ok, value = answer
    if not ok:
        _arm(ctx, state)
        from ..core.errors import NoProcess

        raise NoProcess(pid) if value[0] == "NoProcess" else RuntimeError(str(value))
    del _table(ctx)[sock.id]
    state.sock.close()


def _on_socket(ctx: Context, msg: list[Any]) -> None:
    """N_SOCKET: a socket handed to this process."""
    _, sock_id, meta = msg
    fd = ctx.take_fd()
    sock = socket.socket(fileno=fd)
    handle = (
        Listener((sock_id[0], sock_id[1]), sock.getsockname()) if meta["listener"] else Socket((sock_id[0], sock_id[1]))
    )
    kind = type(handle)
    sock.setblocking(False)
    state = _State(handle, sock, meta["framing"], meta["active"])
    state.pending.extend((k, v) for k, v in meta["pending"])
    state.ended = meta["ended"]
    _table(ctx)[handle.id] = state
    if kind is Socket:
        _arm(ctx, state)


EXTENSION_FRAMES[N.N_SOCKET] = _on_socket
_runtime.add_central_hook("occasional.net.central:install", (), lambda call, options: None)


# -- reading ------------------------------------------------------------------------------


def _wait(sock: socket.socket, events: int, seconds: float | None, call: str) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), events)
    if not poller.poll(None if seconds is None else seconds * 1000):
        raise TimeoutError(f"{call}: nothing within {seconds:g} s")


def _read(state: _State) -> None:
    """One read into ``pending``: frames, then the end (EOF or a framing error)."""
    try:
        data = state.sock.recv(_RECV)
    except BlockingIOError:
        return
    except OSError as e:
        state.pending.append(("tcp_error", str(e)))
        state.ended = True
        return
    if not data:
        state.pending.append(("tcp_closed", None))
        state.ended = True
        return
    try:
        frames = state.framer.feed(data)
    except Exception as e:
        frames = []
        state.framer.error = state.framer.error or e  # type: ignore[assignment]
    state.pending.extend(("tcp", f) for f in frames)
    if state.framer.error is not None:
        # Every complete frame first, then the end of this socket, never of the runtime.
        state.pending.append(("tcp_error", str(state.framer.error)))
        state.ended = True


def _arm(ctx: Context, state: _State) -> None:
    """Deliver what is pending as the active mode says, and watch the fd while it wants more."""
    _deliver(ctx, state)
    want = state.active is True or (state.active == "once" and not state.pending)
    want = want and not state.ended
    fd = state.sock.fileno()
    if want and not state.watched:
        ctx.watch_fd(fd, select.EPOLLIN, lambda events: _readable(ctx, state))
        state.watched = True
    elif not want and state.watched:
        ctx.unwatch_fd(fd)
        state.watched = False


def _deliver(ctx: Context, state: _State) -> None:
    handle = state.handle
    if state.active is True:
        while state.pending:
            ctx.post((handle, state.pending.popleft()))
    elif state.active == "once" and state.pending:
        ctx.post((handle, state.pending.popleft()))
        state.active = False


def _readable(ctx: Context, state: _State) -> None:
    if state.handle.id not in _owned:
        return
    _read(state)
    _arm(ctx, state)
