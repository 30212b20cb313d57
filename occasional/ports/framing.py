"""Frames of a port's stdio: bytes from a pipe -> frames, frames -> bytes for
stdin, and the wire encoding of the messages a port sends its owner."""

from __future__ import annotations

from collections.abc import Callable

from ..core import codec
from ..core.pid import Port
from ..sck.frame import HEADER, Decoder, FrameError


class Framer:
    """Bytes from a pipe -> frames, per the port's framing.

    ``feed`` returns every complete frame, in order. Output that breaks the
    framing (a packet header over ``max_frame``, a line longer than
    ``max_frame``) does not cost the frames before it: ``feed`` returns them
    and sets ``error``; the port delivers them, then ends with that error
    (issue 10, "Nothing lost"). No frame longer than ``max_frame`` is ever
    returned, and no more than ``max_frame`` bytes of an unfinished one are
    held.
    """

    def __init__(self, framing: str, max_frame: int) -> None:
        self.framing = framing
        self.max_frame = max_frame
        self.error: FrameError | None = None
        self.line = bytearray()  # the unfinished line (line framing)
        self.packets = Decoder(max_frame) if framing == "packet" else None

    def feed(self, data: bytes) -> list[bytes]:
        """Add what one read returned; every frame now complete, in order.

        Raises:
            FrameError: ``error`` was already set by an earlier feed.
        """
        if self.error is not None:
            raise self.error
        if self.framing == "raw":
            return self._raw(data)
        if self.packets is not None:
            frames = self.packets.feed(data)
            if self.packets.error is not None:
                self.error = FrameError(
                    f"a packet of {self.packets.announced()} bytes, over the limit of {self.max_frame} bytes "
                    "(max_frame); raise max_frame if its packets can be that large"
                )
            return frames
        return self._lines(data)

    def _raw(self, data: bytes) -> list[bytes]:
        n = self.max_frame
        if len(data) <= n:
            return [data]
        return [data[i : i + n] for i in range(0, len(data), n)]

    def _lines(self, data: bytes) -> list[bytes]:
        # Linear in the output: only the new bytes are searched for a newline
        # and the unfinished line grows in place; joining each read to it, as
        # before, took 8 s and unbounded memory for 32 MiB without a newline.
        line = self.line
        max_frame = self.max_frame
        first = data.find(b"\n")
        if first < 0:
            if len(line) + len(data) > max_frame:
                self._line_too_long(len(line) + len(data), ended=False)
                return []
            line += data
            return []
        if line:
            line += memoryview(data)[:first]
            lines = data[first + 1 :].split(b"\n")
            lines.insert(0, bytes(line))
            line.clear()
            longest = len(lines[0]) + len(data)  # no line can be longer
        else:
            lines = data.split(b"\n")
            longest = len(data)
        rest = lines.pop()
        if longest > max_frame:
            for i, one in enumerate(lines):
                if len(one) > max_frame:
                    self._line_too_long(len(one), ended=True)
                    return lines[:i]
            if len(rest) > max_frame:
                self._line_too_long(len(rest), ended=False)
                return lines
        line += rest
        return lines

    def _line_too_long(self, size: int, ended: bool) -> None:
        what = f"a line of {size} bytes" if ended else f"{size} bytes of a line and no newline"
        self.error = FrameError(
            f"{what}, over the limit of {self.max_frame} bytes (max_frame); "
            "raise max_frame, or use framing='raw' for output that is not lines"
        )

    def left(self) -> int:
        """Bytes of an unfinished frame at the end of the output."""
        if self.packets is not None:
            return self.packets.pending()
        return len(self.line)


def frame_out(framing: str, data: bytes) -> bytes:
    if framing == "line":
        return data + b"\n"
    if framing == "packet":
        return len(data).to_bytes(4, "big") + data
    return data


def _ext_header(code: int, n: int) -> bytes:
    if n < 256:
        return b"\xc7" + bytes((n, code))
    if n < 65536:
        return b"\xc8" + n.to_bytes(2, "big") + bytes((code,))
    return b"\xc9" + n.to_bytes(4, "big") + bytes((code,))


def _bin_header(n: int) -> bytes:
    if n < 256:
        return b"\xc4" + bytes((n,))
    if n < 65536:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def encoder(port: Port, tag: str) -> Callable[[bytes], bytes]:
    """frame -> the wire frame of the message ``(port, (tag, frame))``.

    The same bytes codec.dumps makes (msgpack, tuples as extension type 1),
    built by hand around the parts that never change: a port sends one
    message per line, and a general encoding of each was most of its time.
    """
    port_part = codec.dumps(port)
    tag_part = codec.dumps(tag)
    pack_len = HEADER.pack

    def encode(frame: bytes) -> bytes:
        inner = b"\x92" + tag_part + _bin_header(len(frame)) + frame
        outer = b"\x92" + port_part + _ext_header(codec.EXT_TUPLE, len(inner)) + inner
        whole = _ext_header(codec.EXT_TUPLE, len(outer)) + outer
        return pack_len(len(whole)) + whole

    return encode
