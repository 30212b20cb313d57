"""Length-prefixed frames over stream sockets.

A frame is a 4-byte big-endian length followed by that many bytes. The
decoder is incremental: feed it whatever a ``recv`` returned, take the
complete frames out. A peer that closes in the middle of a frame, or announces
a frame larger than the limit, is a :class:`FrameError`: it ends that
connection, never the process reading it, and only after every frame that
came before the bad one was handed out.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME = 1 << 30  # 1 GiB: 10 MB messages are routine, 4 GiB lengths are garbage


class FrameError(Exception):
    """A connection carried bytes that are not a well-formed frame."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.message,))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)


def frame(payload: bytes) -> bytes:
    """The bytes of one frame carrying ``payload``."""
    return HEADER.pack(len(payload)) + payload


class Decoder:
    """Splits a byte stream into frames.

    A bad header (a frame over ``max_frame``) does not cost the frames before
    it: ``feed`` returns every complete frame that precedes it and sets
    ``error``; the next ``feed`` (or ``close``) raises that error. A caller
    handles the frames it got, then checks ``error`` (issue 10, "Nothing lost").
    """

    __slots__ = ("_buf", "error", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self.error: FrameError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every frame now complete, in order.

        Raises:
            FrameError: ``error`` was already set by an earlier feed.
        """
        buf = self._buf
        if not buf:
            # Fast path: a recv that holds exactly one small frame (ping-pong).
            n = len(data)
            if n >= HEADER_SIZE:
                (size,) = HEADER.unpack_from(data)
                if size + HEADER_SIZE == n and size <= self.max_frame:
                    return [data[HEADER_SIZE:]]
        # (After an error the buffer still holds the bad header, so the fast
        # path above never runs past it.)
        if self.error is not None:
            raise self.error
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        max_frame = self.max_frame
        while end - pos >= HEADER_SIZE:
            (size,) = HEADER.unpack_from(buf, pos)
            if size > max_frame:
                self.error = FrameError(f"peer announced a frame of {size} bytes, over the limit of {max_frame} bytes")
                break
            if end - pos - HEADER_SIZE < size:
                break
            start = pos + HEADER_SIZE
            frames.append(bytes(buf[start : start + size]))
            pos = start + size
        if pos:
            del buf[:pos]
        return frames

    def announced(self) -> int | None:
        """The size the next frame's header announces, once its header is in."""
        if len(self._buf) < HEADER_SIZE:
            return None
        return int(HEADER.unpack_from(self._buf)[0])

    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def close(self) -> None:
        """The peer closed the stream: a torn frame is an error, and so is
        the bad header ``feed`` found."""
        if self.error is not None:
            raise self.error
        left = len(self._buf)
        if left == 0:
            return
        if left < HEADER_SIZE:
            raise FrameError(f"peer closed the connection after {left} of {HEADER_SIZE} bytes of a frame header")
        (size,) = HEADER.unpack_from(self._buf)
        raise FrameError(f"peer closed the connection after {left - HEADER_SIZE} of {size} bytes of a frame")
