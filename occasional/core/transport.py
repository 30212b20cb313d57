"""Central's end of the socket each process, port and the forkserver holds
to it: framed msgpack control frames in, buffered non-blocking writes out,
with fds passed both ways (SCM_RIGHTS). Central's table and dispatch sit
above it (ARCHITECTURE.md, "Central services"); nothing here knows what a
frame means.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from ..sck.fdpass import recv_with_fds, send_with_fds
from ..sck.frame import HEADER, Decoder, FrameError
from . import protocol as P

if TYPE_CHECKING:
    import asyncio

_packb = msgpack.packb
_unpackb = msgpack.unpackb
_RECV = 1 << 18


def _frame(msg: list[Any]) -> bytes:
    payload = _packb(msg)
    return HEADER.pack(len(payload)) + payload


class Conn:
    """Central's end of one socket: framed reads, buffered non-blocking writes.

    What a process can make central hold is bounded (issue 10): a frame from
    it up to ``P.MAX_CONTROL_FRAME`` bytes, and output it does not read up to
    ``P.MAX_UNREAD`` bytes (then ``on_overflow`` runs, see ``check_unread``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_frame: Callable[[list[Any]], None],
        on_eof: Callable[[str | None], None],
        on_bad: Callable[[str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        sock.setblocking(False)
        self.fd = sock.fileno()
        self.dec = Decoder(P.MAX_CONTROL_FRAME)
        self.fds: deque[int] = deque()
        self.out: deque[tuple[bytes | memoryview, list[int]]] = deque()
        self.out_bytes = 0
        self.progress_at = time.monotonic()  # when the peer last took bytes from us
        self.on_frame = on_frame
        self.on_eof = on_eof
        # A frame that is no request (not msgpack, not a list): the connection
        # goes on when there is on_bad (a process), ends when there is none.
        self.on_bad = on_bad
        self.on_overflow: Callable[[int], None] | None = None
        self.on_drained: Callable[[], None] | None = None  # once all output is out
        self.overflowed = False
        self.closed = False
        self.eof = False
        loop.add_reader(self.fd, self.read)

    def read(self) -> None:
        if self.eof:
            return
        try:
            data = recv_with_fds(self.sock, _RECV, self.fds)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._eof(None)
            return
        # Every complete frame before a bad header is handled, then the
        # connection ends (issue 10). A Decoder reports the bad header either
        # by raising from feed (losing the frames before it) or, since issue
        # 10, in its ``error`` after returning them: both are handled here.
        try:
            frames = self.dec.feed(data)
        except FrameError as e:
            self._eof(str(e))
            return
        for frame in frames:
            self._handle(frame)
            if self.eof or self.closed:
                return
        error = getattr(self.dec, "error", None)
        if error is not None:
            self._eof(str(error))
            return
        if self.fds and not self.dec.pending():
            # Every frame read is handled and none is half read: an fd still
            # here came with a frame whose handler did not take it (only a
            # socket handover does). Kept, a process could exhaust central's
            # fds by attaching them to any request.
            while self.fds:
                os.close(self.fds.popleft())

    def _handle(self, frame: bytes) -> None:
        try:
            msg = _unpackb(frame, raw=False, strict_map_key=False)
        except Exception as e:
            self._bad(f"a control frame that is not msgpack ({e})")
            return
        if type(msg) is not list or not msg:
            self._bad(f"a control frame that is not a list with an op code: {P.short_repr(msg)}")
            return
        self.on_frame(msg)

    def _bad(self, problem: str) -> None:
        if self.on_bad is None:
            self._eof(problem)
        else:
            self.on_bad(problem)

    def drain(self) -> None:
        """Read everything already in the socket (before acting on a wait status)."""
        while not self.eof and not self.closed:
            try:
                peek = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                peek = b""
            if not peek:
                self._eof(None)
                return
            self.read()

    def _eof(self, error: str | None) -> None:
        self.eof = True
        self.loop.remove_reader(self.fd)
        if error is None:
            try:
                self.dec.close()
            except FrameError as e:
                error = str(e)
        self.on_eof(error)

    def send(self, msg: list[Any], fds: list[int] | None = None) -> None:
        self._send_data(_frame(msg), fds)

    def send_frames(self, msgs: list[list[Any]]) -> None:
        """Send several frames with one write (what one journal commit forwards to a process)."""
        self._send_data(b"".join([_frame(msg) for msg in msgs]), None)

    def _send_data(self, data: bytes, fds: list[int] | None) -> None:
        if self.closed or self.overflowed:
            if fds:
                for fd in fds:
                    os.close(fd)
            return
        if self.out or fds:
            # Checked before this frame joins the queue: a single frame of any
            # size a process may receive is queued; only a backlog it does not
            # read is refused.
            if self.out_bytes > P.MAX_UNREAD and self.check_unread():
                if fds:
                    for fd in fds:
                        os.close(fd)
                return
            self.out.append((data, fds or []))
            self.out_bytes += len(data)
            self._flush()
            return
        try:
            sent = self.sock.send(data, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            sent = 0
        except OSError:
            return
        if sent:
            self.progress_at = time.monotonic()
        if sent < len(data):
            self.out.append((memoryview(data)[sent:], []))
            self.out_bytes += len(data) - sent
            self.loop.add_writer(self.fd, self._flush)

    def check_unread(self) -> bool:
        """Over P.MAX_UNREAD bytes queued: True (and on_overflow has run) when
        the peer also took nothing for P.OUT_STALL_S seconds, so it does not
        read; a peer that reads, however slowly, keeps its output."""
        if self.overflowed:
            return True
        if self.out_bytes <= P.MAX_UNREAD or time.monotonic() - self.progress_at < P.OUT_STALL_S:
            return False
        if self.on_overflow is None:
            return False
        held = self.out_bytes
        self.overflowed = True
        self._drop_output()  # what it did not read is freed now; it is ending
        self.on_overflow(held)
        return True

    def _flush(self) -> None:
        out = self.out
        before = self.out_bytes
        try:
            while out:
                data, fds = out[0]
                if fds:
                    sent = send_with_fds(self.sock, data, fds)
                    for fd in fds:
                        os.close(fd)
                    out[0] = (data, [])
                else:
                    sent = self.sock.send(data, socket.MSG_NOSIGNAL)
                self.out_bytes -= sent
                if sent < len(data):
                    out[0] = (memoryview(data)[sent:], [])
                    break
                out.popleft()
        except BlockingIOError:
            pass
        except OSError:
            self._drop_output()
            return
        if self.out_bytes != before:
            self.progress_at = time.monotonic()
        if out:
            self.loop.add_writer(self.fd, self._flush)
        else:
            self.loop.remove_writer(self.fd)
            if self.on_drained is not None:
                self.on_drained()

    def _drop_output(self) -> None:
        for _data, fds in self.out:
            for fd in fds:
                os.close(fd)
        self.out.clear()
        self.out_bytes = 0
        self.loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.eof:
            self.loop.remove_reader(self.fd)
        self._drop_output()
        self.sock.close()
        while self.fds:
            os.close(self.fds.popleft())
