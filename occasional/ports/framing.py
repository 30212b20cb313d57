"""Frames of a port's stdio: bytes from a pipe -> frames, frames -> bytes for
stdin, and the wire encoding of the messages a port sends its owner."""

from __future__ import annotations

from collections.abc import Callable

from ..core import codec
from ..core.pid import Port
from ..sck.frame import HEADER
from ..sck.framing import Framer as Framer, frame_out as frame_out  # shared with sockets (occasional.net)


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
