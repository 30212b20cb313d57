"""The sockets between one process and the others it talks to.

Each pair of processes that exchange messages has a socketpair, handed out
by central (``CONNECT``/``PEER``). Sends never block: each peer has a
user-space output buffer that is flushed whenever the process sends or
receives, so two processes flooding each other cannot deadlock (API.md
section 3). Reads decode frames into the mailbox. A mixin of
:class:`occasional.core.context.Context`, which owns epoll and central.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..sck.frame import HEADER, Decoder, FrameError
from . import codec, protocol as P
from .mailbox import Mailbox

if TYPE_CHECKING:
    from .pid import Pid

log = logging.getLogger("occasional.core")

_RECV = 1 << 18
_RETRY_BYTES = 1 << 16
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_NOWAIT = socket.MSG_DONTWAIT
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
_pack_frame = HEADER.pack
_now = time.monotonic
_MAX_MESSAGE = codec.MAX_MESSAGE


class Peer:
    """A socket to another process; messages to it are queued in ``out``."""

    __slots__ = ("pid_id", "sock", "fd", "dec", "out", "out_bytes", "watching_out", "retry_at", "on_frames")

    def __init__(self, pid_id: int, sock: socket.socket) -> None:
        self.pid_id = pid_id
        self.sock = sock
        self.fd = sock.fileno()
        self.dec = Decoder()
        self.out: deque[bytes | memoryview] = deque()
        self.out_bytes = 0
        self.watching_out = False
        self.retry_at = 0
        # A channel's own reader (add_channel): its frames are not messages.
        self.on_frames: Callable[[list[bytes] | None], None] | None = None


class PeerSockets(Mailbox):
    """Sending to and reading from the other processes; what is read goes to the mailbox."""

    pid: Pid
    _ep: select.epoll
    _peers_by_fd: dict[int, Peer]
    # pid id -> the peer socket used for sending; internal, though tests/test_wire.py
    # and test_frame_limits.py reach a raw socket through it to write a torn frame.
    out: dict[int, Peer]
    _connecting: int | None  # pid id a CONNECT waits on (see _connect)
    _refused: bool  # central answered that process has ended

    if TYPE_CHECKING:

        def tell(self, frame: list[Any]) -> None: ...
        def _read_central(self, blocking: bool = False) -> None: ...

    def _init_peers(self) -> None:
        self._peers_by_fd = {}
        self.out = {}
        self._connecting = None
        self._refused = False

    # -- sending -------------------------------------------------------------------

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
            self._deliver(codec.loads(payload))
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

    def queued_bytes(self, pid_id: int) -> int:
        """How many bytes of messages to ``pid_id`` wait in this process,
        sent but not yet taken by the kernel: a sender's flow control (a
        port stops reading its executable while a slow owner lags)."""
        peer = self.out.get(pid_id)
        return 0 if peer is None else peer.out_bytes

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

    def _connect(self, pid_id: int) -> Peer | None:
        """Ask central for a socket to ``pid_id``; None if that process has ended.

        Waits for central's answer: central answers a CONNECT at once and
        never waits on another process, so this is bounded, and a process
        that only sends gets its messages out now, not at its next receive.
        """
        self.tell([P.CONNECT, pid_id])
        self._connecting, self._refused = pid_id, False
        try:
            while pid_id not in self.out and not self._refused:
                self._read_central(blocking=True)
        finally:
            self._connecting = None
        return self.out.get(pid_id)

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
            self._ep.modify(peer.fd, _EPOLLIN | _EPOLLOUT if want else _EPOLLIN)

    # -- the sockets -------------------------------------------------------------------

    def _add_peer(self, pid_id: int, fd: int) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
        peer = Peer(pid_id, sock)
        self._peers_by_fd[peer.fd] = peer
        self._ep.register(peer.fd, _EPOLLIN)
        # The first socket to a process is the one we send on, at both ends:
        # central hands out both ends of a pair in one step, so two processes
        # that connect to each other at once agree on which pair carries data.
        if pid_id not in self.out:
            self.out[pid_id] = peer

    def add_channel(self, key: int, sock: socket.socket, on_frames: Callable[[list[bytes] | None], None]) -> None:
        """Frame ``sock`` like a peer socket, under ``key`` (a negative number,
        never a pid id), with its own reader: ``on_frames(frames)`` for what
        arrives, ``on_frames(None)`` once it closed. ``send_bytes(key, ...)``
        queues to it and ``flush_all`` pushes it out at exit, as for a peer
        (occasional.dist: a process's connection to its node's Erlang VM)."""
        sock.setblocking(False)
        peer = Peer(key, sock)
        peer.on_frames = on_frames
        self._peers_by_fd[peer.fd] = peer
        self._ep.register(peer.fd, _EPOLLIN)
        self.out[key] = peer

    def read_channel(self, key: int) -> None:
        """Read what a channel holds now, without waiting."""
        peer = self.out.get(key)
        while peer is not None and self._read_peer(peer):
            try:
                more = peer.sock.recv(1, _NOWAIT | socket.MSG_PEEK)
            except BlockingIOError:
                return
            except OSError:
                more = b""
            if not more:
                self._read_peer(peer)
                return

    def _close_peer(self, peer: Peer) -> None:
        if self._peers_by_fd.get(peer.fd) is not peer:
            return  # closed already (its fd may be another peer's now)
        del self._peers_by_fd[peer.fd]
        if self.out.get(peer.pid_id) is peer:
            del self.out[peer.pid_id]
        try:
            self._ep.unregister(peer.fd)
        except (OSError, ValueError):
            pass
        peer.sock.close()
        if peer.on_frames is not None:
            peer.on_frames(None)  # a channel's reader learns it is gone, whoever found out

    def _close_peers(self) -> None:
        for peer in list(self._peers_by_fd.values()):
            peer.sock.close()
        self._peers_by_fd.clear()
        self.out.clear()

    # -- reading -------------------------------------------------------------------

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
        if peer.on_frames is not None:
            peer.on_frames(frames)
            return True
        # Only while some late reply is to be dropped does each message pass
        # a check (Mailbox.drop_on_arrival): the message path stays one append.
        append = self._deliver if self._drops else self.mailbox.append
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

    def _drain_from(self, pid_id: int) -> None:
        """Read every socket from a dead process to its end."""
        for peer in [p for p in self._peers_by_fd.values() if p.pid_id == pid_id]:
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
