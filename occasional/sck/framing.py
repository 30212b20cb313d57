"""Framings of a byte stream, shared by ports (a pipe or a pty) and sockets
(occasional.net): ``raw``, ``line`` and ``packet`` (a 4-byte big-endian
length), one implementation for both (issue 14). Ports also take ``lines``,
framed as ``line``: only its delivery differs (all the lines of one read in
one message, issue 15; occasional/ports/driver.py)."""

from __future__ import annotations

from .frame import Decoder, FrameError

FRAMINGS = ("raw", "line", "packet")
LINE_FRAMINGS = ("line", "lines")  # split at newlines; send appends one


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
        self.line = bytearray()  # the unfinished line (line and lines framings)
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
    if framing in LINE_FRAMINGS:
        return data + b"\n"
    if framing == "packet":
        return len(data).to_bytes(4, "big") + data
    return data
