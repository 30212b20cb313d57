"""A process's view of the runtime: its mailbox, its peers and central.

One :class:`Context` per process, and which one is the calling process's
(:func:`current`). It multiplexes the socket to central and
every peer socket with epoll; ``receive`` drains whatever is readable into the
in-memory mailbox, then scans it with the match (ARCHITECTURE.md, "Mailbox").
Sends never block: each peer has a user-space output buffer that is flushed
whenever the process sends or receives, so two processes flooding each other
cannot deadlock (API.md section 3).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

from ..sck.fdpass import recv_with_fds
from ..sck.frame import HEADER, Decoder, FrameError
from . import codec, protocol as P
from .errors import NameTaken, NoProcess, ProcessExit, no_runtime
from .pid import Pid, Ref
from .reasons import format_reason

log = logging.getLogger("occasional.core")

_RECV = 1 << 18
_RETRY_BYTES = 1 << 16
REPLY_TAG = "$reply"  # ("$reply", ref, value): the answer to occ.call
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_NOWAIT = socket.MSG_DONTWAIT
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
_pack_frame = HEADER.pack
_packb = msgpack.packb
_unpackb = msgpack.unpackb
_now = time.monotonic
_MAX_MESSAGE = codec.MAX_MESSAGE

_ERRORS: dict[str, Callable[..., BaseException]] = {
    "NameTaken": NameTaken,
    "NoProcess": NoProcess,
    "TypeError": TypeError,
    "ValueError": ValueError,
    "RuntimeError": RuntimeError,
}


def reason_from_wire(wire: list[Any]) -> tuple[str, Any]:
    kind, detail = wire
    if kind == "linked":
        pid_id, os_pid, inner = detail
        return ("linked", (Pid._make(pid_id, os_pid), reason_from_wire(inner)))
    try:
        return (kind, codec.loads(detail))
    except Exception as e:
        # Central checks a reason's shape but cannot check the pickles in it
        # without running them: an exception class this process cannot
        # import must not break the watcher that receives the DOWN (issue 10).
        return (
            kind,
            RuntimeError(f"the detail of a {kind!r} reason ({len(detail)} bytes) could not be decoded here: {e}"),
        )


class Peer:
    """A socket to another process; messages to it are queued in ``out``."""

    __slots__ = ("pid_id", "sock", "fd", "dec", "out", "out_bytes", "watching_out", "retry_at")

    def __init__(self, pid_id: int, sock: socket.socket) -> None:
        self.pid_id = pid_id
        self.sock = sock
        self.fd = sock.fileno()
        self.dec = Decoder()
        self.out: deque[bytes | memoryview] = deque()
        self.out_bytes = 0
        self.watching_out = False
        self.retry_at = 0


class Context:
    """Everything the calling process knows of its runtime."""

    # A durable process's context (occasional.durable) sets this: every receive
    # goes through its journal, so api.receive takes no shortcut past it.
    journaled = False

    def __init__(self, sock: socket.socket, pid: Pid) -> None:
        self.pid = pid
        self.central = sock
        self.central_fd = sock.fileno()
        self.central_dec = Decoder()
        self.central_fds: deque[int] = deque()
        self.ep = select.epoll()
        self.ep.register(self.central_fd, _EPOLLIN)
        self.mailbox: deque[Any] = deque()
        self.peers_by_fd: dict[int, Peer] = {}
        self.out: dict[int, Peer] = {}  # pid id -> the peer socket used for sending
        self.connecting: int | None = None  # pid id a CONNECT waits on (see _connect)
        self.refused = False  # central answered that process has ended
        self.replies: dict[int, tuple[bool, Any]] = {}
        self.monitors: dict[Ref, Pid | None] = {}
        self.trapping = False
        # Refs of calls the caller gave up on: a late reply to one is dropped
        # on arrival, so it never appears in the mailbox (issue 4, OTP 24 aliases).
        self.dead_aliases: set[Ref] = set()
        self.watches: dict[int, Ref] = {}  # pid id -> the monitor calls use (see watch)
        self.calling: int | None = None  # pid id of the process a call waits on
        self.call_down: tuple[str, Any] | None = None  # its reason, if it ended
        self.closed = False
        # Other file descriptors waited on with the mailbox (a port's pipes):
        # fd -> handler(events), run inside pump.
        self.fd_handlers: dict[int, Callable[[int], None]] = {}
        # Extra facts sent with every spawn (a supervisor's restart count).
        self.spawn_meta: dict[str, Any] | None = None
        self._next_req = 0
        self._next_ref = 0

    # -- central ---------------------------------------------------------------

    def tell(self, frame: list[Any]) -> None:
        """Send a control frame to central (blocking: central always reads).

        Raises ValueError, sending nothing, for a frame central's Decoder
        would refuse (a spawn whose arguments are over the limit): sent, it
        would cost this process its connection to central.
        """
        payload = _packb(frame)
        if len(payload) > P.MAX_CONTROL_FRAME:
            raise ValueError(
                f"a request to the runtime's central services of {len(payload)} bytes (encoded) is over the limit "
                f"of {P.MAX_CONTROL_FRAME} bytes; nothing was sent. Pass large data to a process in parts, or write it "
                "to a file and pass the file's path"
            )
        try:
            self.central.sendall(_pack_frame(len(payload)) + payload)
        except OSError as e:
            raise RuntimeError(f"the runtime's central services are gone ({e}); the runtime has ended") from e

    def call(self, op: int, *args: Any) -> Any:
        """A synchronous request to central; raises the error it answers with."""
        self._next_req += 1
        req = self._next_req
        self.tell([op, req, *args])
        replies = self.replies
        while req not in replies:
            self._read_central(blocking=True)
        ok, value = replies.pop(req)
        if ok:
            return value
        name, *err_args = value
        raise _ERRORS.get(name, RuntimeError)(*err_args)

    def new_ref(self) -> Ref:
        self._next_ref += 1
        return Ref._make(self.pid.id, self._next_ref)

    def _read_central(self, blocking: bool = False) -> None:
        try:
            data = recv_with_fds(self.central, _RECV, self.central_fds, 0 if blocking else _NOWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            raise RuntimeError("the runtime's central services are gone; the runtime has ended")
        dec = self.central_dec
        for frame in dec.feed(data):
            self._on_central(_unpackb(frame, raw=False, strict_map_key=False))
        if dec.error is not None:
            raise dec.error

    def _on_central(self, msg: list[Any]) -> None:
        op = msg[0]
        if op == P.REPLY:
            self.replies[msg[1]] = (msg[2], msg[3])
        elif op == P.PEER:
            self._add_peer(msg[1], self.central_fds.popleft())
        elif op == P.PEER_DEAD:
            if msg[1] == self.connecting:
                self.refused = True
        elif op == P.DOWN:
            ref = Ref._make(msg[1], msg[2])
            if self.watches.get(msg[3]) == ref:
                del self.watches[msg[3]]
                if self.calling == msg[3]:
                    self._drain_from(msg[3])  # a reply sent before the end comes first
                    self.call_down = reason_from_wire(msg[5])
            elif ref in self.monitors:
                del self.monitors[ref]
                pid = Pid._make(msg[3], msg[4])
                # Drain B's sockets before queuing the DOWN, so every message B
                # sent arrives first (API.md section 4, "Ordering").
                self._drain_from(msg[3])
                self.mailbox.append(("DOWN", ref, pid, reason_from_wire(msg[5])))
        elif op == P.EXIT_SIGNAL:
            if msg[4]:  # the sender has ended: what it sent comes first
                self._drain_from(msg[1])
            self.mailbox.append(("EXIT", Pid._make(msg[1], msg[2]), reason_from_wire(msg[3])))
        else:
            self.on_extension_frame(msg)

    def on_extension_frame(self, msg: list[Any]) -> None:
        """A control frame of an extension (a durable process's journaled messages)."""

    # -- peers -----------------------------------------------------------------

    def _add_peer(self, pid_id: int, fd: int) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
        peer = Peer(pid_id, sock)
        self.peers_by_fd[peer.fd] = peer
        self.ep.register(peer.fd, _EPOLLIN)
        # The first socket to a process is the one we send on, at both ends:
        # central hands out both ends of a pair in one step, so two processes
        # that connect to each other at once agree on which pair carries data.
        if pid_id not in self.out:
            self.out[pid_id] = peer

    def _close_peer(self, peer: Peer) -> None:
        self.peers_by_fd.pop(peer.fd, None)
        if self.out.get(peer.pid_id) is peer:
            del self.out[peer.pid_id]
        try:
            self.ep.unregister(peer.fd)
        except (OSError, ValueError):
            pass
        peer.sock.close()

    def _read_peer(self, peer: Peer) -> bool:
        """Read what is there; False once the peer is closed."""
        try:
            data = peer.sock.recv(_RECV, _NOWAIT)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        try:
            if not data:
                peer.dec.close()
                self._close_peer(peer)
                return False
            frames = peer.dec.feed(data)
        except FrameError as e:
            log.warning("closed the connection from process %s: %s", peer.pid_id, e)
            self._close_peer(peer)
            return False
        append = self.mailbox.append if not self.dead_aliases else self._append_alive
        loads = codec.loads
        for frame in frames:
            try:
                append(loads(frame))
            except Exception as e:
                log.warning("closed the connection from process %s: a frame is not a message (%s)", peer.pid_id, e)
                self._close_peer(peer)
                return False
        if peer.dec.error is not None:
            # The messages before the bad header are in the mailbox (issue 10).
            log.warning("closed the connection from process %s: %s", peer.pid_id, peer.dec.error)
            self._close_peer(peer)
            return False
        return True

    def _append_alive(self, msg: Any) -> None:
        if type(msg) is tuple and len(msg) == 3 and msg[0] == REPLY_TAG and msg[1] in self.dead_aliases:
            self.dead_aliases.discard(msg[1])
            return
        self.mailbox.append(msg)

    def _drain_from(self, pid_id: int) -> None:
        """Read every socket from a dead process to its end."""
        for peer in [p for p in self.peers_by_fd.values() if p.pid_id == pid_id]:
            while self._read_peer(peer):
                try:
                    more = peer.sock.recv(1, _NOWAIT | socket.MSG_PEEK)
                except BlockingIOError:
                    # Nothing more yet and no EOF: the socket outlives the process
                    # (another process holds a copy). What it wrote is all read.
                    self._close_peer(peer)
                    break
                except OSError:
                    self._close_peer(peer)
                    break
                if not more:
                    self._close_peer(peer)
                    break

    def _flush(self, peer: Peer) -> None:
        out = peer.out
        sock = peer.sock
        try:
            while out:
                chunks = list(out) if len(out) <= 64 else [out[i] for i in range(64)]
                sent = sock.sendmsg(chunks, (), _SEND_FLAGS)
                peer.out_bytes -= sent
                while sent:
                    head = out[0]
                    if sent >= len(head):
                        sent -= len(head)
                        out.popleft()
                    else:
                        out[0] = memoryview(head)[sent:]
                        sent = 0
        except BlockingIOError:
            pass
        except OSError:
            # The receiver is gone: messages to a dead process are dropped (API.md section 3).
            out.clear()
            peer.out_bytes = 0
            self._close_peer(peer)
            return
        want = bool(out)
        if want:
            peer.retry_at = peer.out_bytes + _RETRY_BYTES
        if want != peer.watching_out:
            peer.watching_out = want
            self.ep.modify(peer.fd, _EPOLLIN | _EPOLLOUT if want else _EPOLLIN)

    # -- the public verbs --------------------------------------------------------

    def send_bytes(self, pid_id: int, payload: bytes) -> None:
        """Queue one encoded message for ``pid_id`` and push what can go now.

        Raises ValueError, sending nothing, for a message over codec.MAX_MESSAGE,
        whatever the destination (to itself, to a process that has ended),
        so that whether it raises does not depend on where it goes.
        """
        n = len(payload)
        if n > _MAX_MESSAGE:
            raise codec.message_too_large(str(n))
        if pid_id == self.pid.id:
            self._append_alive(codec.loads(payload))
            return
        peer = self.out.get(pid_id) or self._connect(pid_id)
        if peer is None:
            return  # the process has ended: the message is dropped, as in Erlang
        out = peer.out
        if n < 65536:
            data: bytes | memoryview = _pack_frame(n) + payload
            if not out:  # the common case: straight to the socket
                try:
                    sent = peer.sock.send(data, _SEND_FLAGS)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._close_peer(peer)
                    return
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
            out.append(data)
            peer.out_bytes += len(data)
        else:  # a large message is not copied to put the header in front
            out.append(_pack_frame(n))
            out.append(payload)
            peer.out_bytes += n + 4
        # Once the kernel has said the socket is full, try again when epoll
        # says it is writable (in receive) or when another 64 KiB have
        # queued, not on every send: a syscall that fails per message was
        # 10% of a flooding sender's time (bench/RESULTS.md, one-way).
        if not peer.watching_out or peer.out_bytes >= peer.retry_at:
            self._flush(peer)

    def send_framed(self, pid_id: int, data: bytes) -> None:
        """Queue bytes that hold whole frames already, in one go (a port
        sends a pipe read's worth of messages with one syscall)."""
        peer = self.out.get(pid_id) or self._connect(pid_id)
        if peer is None:
            return
        peer.out.append(data)
        peer.out_bytes += len(data)
        if not peer.watching_out or peer.out_bytes >= peer.retry_at:
            self._flush(peer)

    def _connect(self, pid_id: int) -> Peer | None:
        """Ask central for a socket to ``pid_id``; None if that process has ended.

        Waits for central's answer: central answers a CONNECT at once and
        never waits on another process, so this is bounded, and a process
        that only sends gets its messages out now, not at its next receive.
        """
        self.tell([P.CONNECT, pid_id])
        self.connecting, self.refused = pid_id, False
        try:
            while pid_id not in self.out and not self.refused:
                self._read_central(blocking=True)
        finally:
            self.connecting = None
        return self.out.get(pid_id)

    def pump(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for anything to happen, and handle it."""
        events = self.ep.poll(-1 if timeout is None else timeout)
        for fd, ev in events:
            if fd == self.central_fd:
                self._read_central()
                continue
            peer = self.peers_by_fd.get(fd)
            if peer is None:
                handler = self.fd_handlers.get(fd)
                if handler is not None:
                    handler(ev)
                continue
            if ev & _EPOLLOUT:
                self._flush(peer)
            if ev & ~_EPOLLOUT and peer.fd in self.peers_by_fd:
                self._read_peer(peer)

    def receive(self, pred: Callable[[Any], bool] | None, timeout: float | None) -> Any:
        mailbox = self.mailbox
        deadline = None if timeout is None else _now() + timeout
        if pred is None:
            while True:
                if mailbox:
                    return mailbox.popleft()
                self._wait(deadline)
        scanned = 0
        while True:
            n = len(mailbox)
            while scanned < n:
                msg = mailbox[scanned]
                if pred(msg):
                    del mailbox[scanned]
                    return msg
                scanned += 1
            if self.call_down is not None:
                return None  # the process a call waits on has ended (see watch)
            self._wait(deadline)

    def watch(self, pid: Pid) -> None:
        """Keep one monitor on ``pid`` for calls, for as long as it lives.

        occ.call used to monitor and demonitor per call: two requests to
        central and two wake-ups of it per call (bench/RESULTS.md, call).
        The watch's DOWN never reaches the mailbox; it ends the call in
        progress, if it is to that process (``self.calling``).
        """
        if pid.id not in self.watches:
            ref = self.new_ref()
            self.watches[pid.id] = ref
            self.tell([P.MONITOR, ref.owner, ref.n, pid.id])

    def _wait(self, deadline: float | None) -> None:
        if deadline is None:
            self.pump(None)
            return
        left = deadline - _now()
        if left <= 0:
            # Look once more without waiting: timeout=0 still sees what is readable.
            before = len(self.mailbox)
            self.pump(0)
            if len(self.mailbox) == before:
                raise TimeoutError("receive() timed out: no matching message arrived in time")
            return
        self.pump(left)

    def flush_all(self, patience: float = 5.0) -> None:
        """Push every queued message out, reading meanwhile (used at exit).

        Gives up after ``patience`` seconds without progress: a receiver that
        never reads must not keep a finished process alive.
        """
        last_progress = _now()
        last_left = -1
        while any(p.out for p in self.out.values()):
            left = sum(p.out_bytes for p in self.out.values())
            if left != last_left:
                last_left = left
                last_progress = _now()
            elif _now() - last_progress > patience:
                log.warning("process %r ended with %d bytes of messages its receivers did not read", self.pid, left)
                return
            self.pump(0.05)

    def exit(self, reason: tuple[str, Any]) -> None:
        """Report the final reason to central (the last thing a process says)."""
        kind, detail = reason
        try:
            self._tell_exit(kind, detail)
        except (TypeError, ValueError) as e:
            # Not serialisable, or over the limit (tell sent nothing then).
            err = type(e)(f"the process returned {codec.short_repr(detail)}, which cannot be sent as a value: {e}")
            self._tell_exit("error", err)

    def _tell_exit(self, kind: str, detail: Any) -> None:
        detail_bytes = codec.dumps(detail)
        # A text summary rides along, so central can report a crash that no
        # process watches without unpickling anything.
        summary = "" if kind == "ok" else format_reason((kind, detail))
        self.tell([P.EXIT, kind, detail_bytes, summary])

    def close(self) -> None:
        for peer in list(self.peers_by_fd.values()):
            peer.sock.close()
        self.peers_by_fd.clear()
        self.out.clear()
        self.ep.close()
        self.central.close()
        for fd in self.central_fds:
            os.close(fd)
        self.central_fds.clear()


def raise_for_reason(pid: Pid, reason: tuple[str, Any]) -> None:
    """Raise ProcessExit for an abnormal reason, chaining the original exception."""
    if reason[0] == "ok":
        return
    err = ProcessExit(reason, pid)
    if reason[0] == "error" and isinstance(reason[1], BaseException):
        raise err from reason[1]
    raise err


# -- the calling process's context -------------------------------------------------

_current: Context | None = None


def set_current(ctx: Context | None) -> None:
    global _current
    _current = ctx


def current(call: str) -> Context:
    """The calling process's context, or the contract's error outside a runtime."""
    ctx = _current
    if ctx is None or ctx.closed:
        raise no_runtime(call)
    return ctx


def peek() -> Context | None:
    return _current
