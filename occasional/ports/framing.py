"""Frames of a port's stdio: bytes from a pipe -> frames, frames -> bytes for
stdin, and the wire encoding of the messages a port sends its owner."""

from __future__ import annotations

from collections.abc import Callable

import msgpack

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


def encoder(port: Port, tag: str) -> Callable[[list[bytes]], bytes]:
    """frames -> the wire frames of the messages ``(port, (tag, frame))``,
    one per frame, joined.

    The same bytes codec.dumps makes (msgpack, tuples as extension type 1),
    built by hand around the parts that never change: a port sends one
    message per line, and a general encoding of each was most of its time.
    All that comes before a frame's bytes depends only on its length, so it
    is built once per length and kept (issue 15: the port's CPU is shared
    with its owner and the executable).
    """
    port_part = codec.dumps(port)
    tag_part = codec.dumps(tag)
    pack_len = HEADER.pack
    prefixes: dict[int, bytes] = {}

    def prefix(n: int) -> bytes:
        inner = b"\x92" + tag_part + _bin_header(n)
        outer = b"\x92" + port_part + _ext_header(codec.EXT_TUPLE, len(inner) + n) + inner
        head = _ext_header(codec.EXT_TUPLE, len(outer) + n) + outer
        whole = pack_len(len(head) + n) + head
        if n < _KEEP_PREFIXES:
            prefixes[n] = whole
        return whole

    get = prefixes.get

    def encode(frames: list[bytes]) -> bytes:
        parts: list[bytes] = []
        add = parts.append
        for f in frames:
            n = len(f)
            add(get(n) or prefix(n))
            add(f)
        return b"".join(parts)

    return encode


# Lengths of line whose message prefix is kept: lines are mostly short.
_KEEP_PREFIXES = 4096
# A list header and each item's bytes header, at most (msgpack array32, bin32).
_LIST_HEADER = 5
_ITEM_HEADER = 5
# What a batch message holds besides its list: the frame header, two tuple
# headers, the port and the tag (about 40 bytes; generously more).
_BATCH_OVERHEAD = 256


def batch_encoder(port: Port, tag: str) -> Callable[[list[bytes]], bytes]:
    """frames -> the wire frame of the one message ``(port, (tag, [frame, ...]))``,
    or of several, in order, where one would be over codec.MAX_MESSAGE (a
    frame is at most max_frame, which fits in one message by itself).

    ``framing="lines"`` (API.md section 8, issue 15): the owner pays its
    per-message cost once per read, not once per line.
    """
    port_part = codec.dumps(port)
    tag_part = codec.dumps(tag)
    pack_len = HEADER.pack
    limit = codec.MAX_MESSAGE - _BATCH_OVERHEAD

    def one(frames: list[bytes]) -> bytes:
        body = msgpack.packb(frames, use_bin_type=True)  # a list of bytes: no extension types; once per read
        inner = 1 + len(tag_part) + len(body)
        inner_head = _ext_header(codec.EXT_TUPLE, inner)
        outer = 1 + len(port_part) + len(inner_head) + inner
        outer_head = _ext_header(codec.EXT_TUPLE, outer)
        return b"".join(
            (pack_len(len(outer_head) + outer), outer_head, b"\x92", port_part, inner_head, b"\x92", tag_part, body)
        )

    def encode(frames: list[bytes]) -> bytes:
        size = _LIST_HEADER + sum(map(len, frames)) + _ITEM_HEADER * len(frames)
        if size <= limit:
            return one(frames)
        out: list[bytes] = []
        group: list[bytes] = []
        size = _LIST_HEADER
        for f in frames:
            n = len(f) + _ITEM_HEADER
            if group and size + n > limit:
                out.append(one(group))
                group, size = [], _LIST_HEADER
            group.append(f)
            size += n
        if group:
            out.append(one(group))
        return b"".join(out)

    return encode
