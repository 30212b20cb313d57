"""Erlang's external term format (ETF): messages to and from Erlang processes
(API.md section 11, "Talking to Erlang"; issue 13).

Terms map as the contract's table says: ``None`` <-> ``undefined``, ``bool``
<-> ``true``/``false``, ``int``, ``float``, ``str`` -> UTF-8 binary, ``bytes``
<-> binary, :class:`Atom` <-> atom, ``tuple``, ``list``, ``dict`` <-> map,
``Pid`` <-> pid. An occasional Pid goes as ``{'$occ_pid', Node, Id, OsPid}``,
which this node's VM swaps for the pid of the process's proxy. A term with no
Python value (reference, fun, port, improper list, bitstring) decodes to an
:class:`Opaque` that encodes back to exactly its bytes.

Decoded bytes come from the network: anything malformed raises ``ValueError``,
no length field allocates more than the input holds, and nesting stops at
``MAX_DEPTH``. Both directions walk terms with a stack of their own, not
recursion, so depth costs no Python stack and a list containing itself is
refused rather than followed. (erlang_py, the maintained codec on PyPI,
decodes to wrapper types and encodes ``str`` as a list: the mapping would take
a second pass over every value.)
"""

from __future__ import annotations

import math
import reprlib
import struct
import zlib
from typing import Any

from ..core.pid import Pid, Port, RemotePid, _make_remote_address, this_node
from .terms import MAX_ATOM, Atom as Atom, Opaque as Opaque

MAX_DEPTH = 1000  # real terms are far shallower; hostile ones are refused
_MAX_INFLATE = 1032  # zlib's best ratio: a compressed term declaring more is lying

_unpack_H = struct.Struct(">H").unpack_from
_unpack_I = struct.Struct(">I").unpack_from
_unpack_i = struct.Struct(">i").unpack_from
_unpack_d = struct.Struct(">d").unpack_from
_pack_tag_H = struct.Struct(">BH").pack
_pack_tag_I = struct.Struct(">BI").pack
_pack_tag_i = struct.Struct(">Bi").pack
_pack_tag_d = struct.Struct(">Bd").pack
_isfinite = math.isfinite


# --- encoding ----------------------------------------------------------------

_SMALL_INTS = [bytes((97, i)) for i in range(256)]
_UNDEFINED, _TRUE, _FALSE = b"\x77\x09undefined", b"\x77\x04true", b"\x77\x05false"
_EMPTY: dict[type, bytes] = {tuple: b"h\x00", list: b"j", dict: b"t\x00\x00\x00\x00"}
_OCC_PID = Atom("$occ_pid")
_END = object()  # on the encoder's stack: a tuple or map is done
_END_LIST = object()  # a list is done: write its tail, NIL


def encode(value: Any) -> bytes:
    """``value`` in Erlang's external term format, version byte included.

    Raises:
        TypeError: ``value`` holds something with no Erlang term (API.md section 11), named in the message.
        ValueError: ``value`` is nested deeper than MAX_DEPTH, or contains itself.
    """
    out = bytearray(b"\x83")
    _encode_into(value, out)
    return bytes(out)


def _encode_into(value: Any, out: bytearray) -> None:
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    depth = 0
    while stack:
        v = pop()
        t = type(v)
        if t is int:
            if 0 <= v <= 255:
                out += _SMALL_INTS[v]
            elif -0x80000000 <= v <= 0x7FFFFFFF:
                out += _pack_tag_i(98, v)
            else:
                _encode_big(v, out)
        elif t is str:
            try:
                b = v.encode()
            except UnicodeEncodeError as e:
                raise TypeError(f"{v!r} (str) is not UTF-8 text ({e.reason}), so it has no Erlang binary") from None
            out += _pack_tag_I(109, len(b))
            out += b
        elif t is Atom:
            out += _atom_bytes(v)
        elif t is tuple or t is list or t is dict:
            if not v:
                out += _EMPTY[t]
                continue
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(
                    f"{reprlib.repr(value)} is nested more than {MAX_DEPTH} levels deep, or contains itself; "
                    "it cannot be sent to Erlang (API.md section 11): flatten it"
                )
            n = len(v)
            out += bytes((104, n)) if t is tuple and n < 256 else _pack_tag_I(_BIG_TAGS[t], n)
            push(_END_LIST if t is list else _END)
            extend(reversed(v) if t is not dict else _map_items(v))
        elif v is _END:
            depth -= 1
        elif v is _END_LIST:
            out.append(106)
            depth -= 1
        elif t is bytes:
            out += _pack_tag_I(109, len(v))
            out += v
        elif v is None:
            out += _UNDEFINED
        elif t is bool:
            out += _TRUE if v else _FALSE
        elif t is float:
            if not _isfinite(v):
                raise TypeError(f"{v!r} (float) has no Erlang term: Erlang floats are finite; send None or an Atom")
            out += _pack_tag_d(70, v)
        elif t is Opaque:
            out += v.etf
        else:
            push(_convert(v))


_BIG_TAGS: dict[type, int] = {tuple: 105, list: 108, dict: 116}  # LARGE_TUPLE_EXT, LIST_EXT, MAP_EXT


def _encode_big(v: int, out: bytearray) -> None:
    digits = abs(v)
    n = (digits.bit_length() + 7) // 8
    out += bytes((110, n)) if n < 256 else _pack_tag_I(111, n)
    out.append(v < 0)
    out += digits.to_bytes(n, "little")


def _atom_bytes(a: str) -> bytes:
    b = a.encode()
    n = len(b)
    return bytes((119, n)) + b if n < 256 else _pack_tag_H(118, n) + b


def _map_items(d: dict[Any, Any]) -> list[Any]:
    """The map's keys, encoded (as Opaque), and values, reversed for the stack.
    Keys are encoded apart to catch two that are one Erlang term (``"a"`` and
    ``b"a"``): Erlang refuses a map that repeats a key."""
    items: list[Any] = []
    seen: dict[bytes, Any] = {}
    for k, v in d.items():
        if type(k) is Atom:
            kb = _atom_bytes(k)
        else:
            buf = bytearray()
            _encode_into(k, buf)
            kb = bytes(buf)
        if kb in seen:
            raise TypeError(
                f"dict {reprlib.repr(d)} has the keys {seen[kb]!r} and {k!r}, which are the same Erlang term, "
                "and an Erlang map cannot repeat a key: keep one of them"
            )
        seen[kb] = k
        items += (Opaque(kb), v)
    items.reverse()
    return items


def _convert(v: Any) -> Any:
    """What the contract maps beyond the loop's exact types, as one of them; else TypeError."""
    t = type(v)
    if t is Pid or t is Port:
        return (_OCC_PID, Atom(this_node()), v.id, v.os_pid)
    if t is RemotePid:
        return Opaque(v.etf, "pid") if v.etf is not None else (_OCC_PID, Atom(v.node), v.id, v.os_pid)
    if t is bytearray or t is memoryview:
        return bytes(v)
    base: Any
    for base in (Atom, int, float, str, bytes, tuple, list, dict):  # IntEnum, namedtuple, OrderedDict...
        if isinstance(v, base):
            return Atom(str.__str__(v)) if base is Atom else str.__str__(v) if base is str else base(v)
    hint = " (send a set as a list)" if isinstance(v, (set, frozenset)) else ""
    raise TypeError(
        f"{v!r} ({t.__name__}) has no Erlang term{hint}; an Erlang process can be sent only None, bool, int, "
        "float, str, bytes, occasional.Atom, tuple, list, dict and Pid, nested (API.md section 11): "
        "convert the value to those first"
    )


# --- decoding ----------------------------------------------------------------

_TUPLE, _LIST, _MAP, _FUN = range(4)
_NO_KEY = object()  # a map's frame waits for a key, not a value
_ATOMS: dict[bytes, Any] = {}  # an atom's bytes (tag included) -> its value, up to _ATOMS_MAX
_ATOMS_MAX = 4096
_SPECIAL_ATOMS = {"true": True, "false": False, "undefined": None}


class _Frame(list[Any]):
    """A term being decoded: [kind, items left, items, start byte, extra (a map's pending key, a fun's end)]."""

    __slots__ = ()


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The Python value of an ETF term (version byte 131 first), as API.md section 11 maps it.

    Raises:
        ValueError: ``data`` is not exactly one well-formed term (truncated,
            trailing bytes, unknown tag, nested deeper than MAX_DEPTH...).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode({data!r}): ETF comes as bytes")
    if type(data) is not bytes:
        data = bytes(data)
    if not data or data[0] != 131:
        raise ValueError(f"not an Erlang term: {reprlib.repr(data)} does not start with the version byte 131")
    pos = 1
    if len(data) > 1 and data[1] == 80:
        data = _inflate(data)
        pos = 0
    try:
        value, pos = _decode_term(data, pos)
    except (IndexError, struct.error):  # a fixed-size field cut short
        raise ValueError(f"truncated Erlang term: {len(data)} bytes end in the middle of a term") from None
    if pos != len(data):
        raise ValueError(f"malformed Erlang term: {len(data) - pos} bytes left after the term, at byte {pos}")
    return value


def _inflate(data: bytes) -> bytes:
    if len(data) < 6:
        raise ValueError(f"truncated Erlang term: a compressed term of {len(data)} bytes")
    (size,) = _unpack_I(data, 2)
    packed = data[6:]
    if size > _MAX_INFLATE * len(packed):
        raise ValueError(f"malformed Erlang term: {len(packed)} compressed bytes cannot hold the {size} declared")
    z = zlib.decompressobj()
    try:
        out = z.decompress(packed, size)  # never more than declared
        more = b"" if z.eof else z.decompress(z.unconsumed_tail, 1)
    except zlib.error as e:
        raise ValueError(f"malformed Erlang term: compressed data is not zlib ({e})") from None
    if len(out) != size or more or not z.eof or z.unused_data:
        raise ValueError(f"malformed Erlang term: compressed data does not inflate to the {size} bytes declared")
    return out


def _decode_term(data: bytes, pos: int) -> tuple[Any, int]:
    size = len(data)
    stack: list[_Frame] = []
    value: Any
    while True:
        start = pos
        tag = data[pos]
        pos += 1
        if tag == 97:  # SMALL_INTEGER_EXT
            value = data[pos]
            pos += 1
        elif tag == 119 or tag == 100:  # SMALL_ATOM_UTF8_EXT, ATOM_EXT
            value, pos = _atom_term(data, start)
        elif tag == 109:  # BINARY_EXT
            (n,) = _unpack_I(data, pos)
            pos += 4
            value = data[pos : _check(pos, n, size)]
            pos += n
        elif tag == 98:  # INTEGER_EXT
            (value,) = _unpack_i(data, pos)
            pos += 4
        elif tag == 106:  # NIL_EXT
            value = []
        elif tag == 107:  # STRING_EXT: a list of bytes, packed
            (n,) = _unpack_H(data, pos)
            pos += 2
            value = list(data[pos : _check(pos, n, size)])
            pos += n
        elif tag == 70:  # NEW_FLOAT_EXT
            (value,) = _unpack_d(data, pos)
            if not _isfinite(value):
                raise ValueError(f"malformed Erlang term: float {value} at byte {start}")
            pos += 8
        else:  # containers, and what Erlang sends less often
            value, pos = (_container if tag in _CONTAINERS else _rare)(data, pos, start, tag)
            if type(value) is _Frame:
                stack.append(value)
                if len(stack) > MAX_DEPTH:
                    raise ValueError(
                        f"malformed Erlang term: nested more than {MAX_DEPTH} levels deep, at byte {start}"
                    )
                continue
        while stack:  # hand the value to the terms it completes
            f = stack[-1]
            if f[0] != _MAP:
                f[2].append(value)
            elif f[4] is _NO_KEY:
                f[4] = _map_key(f[2], value, data, start, pos)
            else:
                f[2][f[4]] = value
                f[4] = _NO_KEY
            f[1] -= 1
            if f[1]:
                break
            stack.pop()
            value = _finish(f, data, pos)
            start = f[3]
        else:
            return value, pos


def _check(pos: int, n: int, size: int) -> int:
    """The end of ``n`` bytes at ``pos``, checked against the input's ``size`` before anything is allocated."""
    if n > size - pos:
        raise ValueError(f"truncated Erlang term: {n} bytes declared at byte {pos}, {size - pos} left")
    return pos + n


_CONTAINERS = {104: _TUPLE, 105: _TUPLE, 108: _LIST, 116: _MAP}


def _container(data: bytes, pos: int, start: int, tag: int) -> tuple[Any, int]:
    if tag == 104:
        n = data[pos]
        pos += 1
    else:
        (n,) = _unpack_I(data, pos)
        pos += 4
    kind = _CONTAINERS[tag]
    # Each element takes a byte at least (a list also has its tail, a map two per pair).
    count = n + 1 if kind == _LIST else 2 * n if kind == _MAP else n
    _check(pos, count, len(data))
    if count == 0:
        return ({} if kind == _MAP else ()), pos
    return _Frame([kind, count, {} if kind == _MAP else [], start, _NO_KEY]), pos


def _map_key(d: dict[Any, Any], key: Any, data: bytes, start: int, pos: int) -> Any:
    """``key`` as a key of ``d``: an Opaque of its bytes if Python cannot hash
    it (a list, a map) or takes it for another key (1 and 1.0)."""
    try:
        if key not in d:
            return key
    except TypeError:  # unhashable
        key = Opaque(data[start:pos])
        if key not in d:
            return key
    if type(next(k for k in d if k == key)) is type(key):
        raise ValueError(f"malformed Erlang term: the map repeats the key {key!r} at byte {start}")
    return Opaque(data[start:pos])


def _finish(f: _Frame, data: bytes, pos: int) -> Any:
    kind, _, items, start, extra = f
    if kind == _TUPLE:
        if len(items) == 4 and type(items[0]) is Atom and items[0] == "$occ_pid":
            _, node, id, os_pid = items
            if type(node) is Atom and type(id) is int and type(os_pid) is int:
                return _make_remote_address(str(node), id, os_pid, None)
        return tuple(items)
    if kind == _LIST:
        tail = items.pop()
        if type(tail) is list:
            items += tail
            return items
        return Opaque(data[start:pos], "improper list")
    if kind == _MAP:
        return items
    if pos != extra:
        raise ValueError(f"malformed Erlang term: the fun at byte {start} ends at byte {pos}, not {extra}")
    return Opaque(data[start:pos], "fun")


def _atom_term(data: bytes, start: int) -> tuple[Any, int]:
    """The atom at ``start`` as the contract maps it: True, False, None or an Atom."""
    tag = data[start]
    end = start + 2 + data[start + 1] if tag == 119 or tag == 115 else start + 3 + _unpack_H(data, start + 1)[0]
    raw = data[start:end]
    value = _ATOMS.get(raw, _NO_KEY)
    if value is _NO_KEY:
        text, end = _atom_text(data, start)
        value = _SPECIAL_ATOMS.get(text, _NO_KEY)
        if value is _NO_KEY:
            value = str.__new__(Atom, text)
        if len(_ATOMS) < _ATOMS_MAX:
            _ATOMS[raw] = value
    return value, end


def _atom_text(data: bytes, pos: int) -> tuple[str, int]:
    tag = data[pos]
    if tag == 119 or tag == 115:  # SMALL_ATOM_UTF8_EXT, SMALL_ATOM_EXT
        n = data[pos + 1]
        pos += 2
    elif tag == 118 or tag == 100:  # ATOM_UTF8_EXT, ATOM_EXT
        (n,) = _unpack_H(data, pos + 1)
        pos += 3
    else:
        raise ValueError(f"malformed Erlang term: an atom expected at byte {pos}, found tag {tag}")
    end = _check(pos, n, len(data))
    try:
        text = data[pos:end].decode("latin-1" if tag == 100 or tag == 115 else "utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"malformed Erlang term: the atom at byte {pos} is not UTF-8") from None
    if len(text) > MAX_ATOM:
        raise ValueError(f"malformed Erlang term: the atom at byte {pos} has {len(text)} characters")
    return text, end


# Bytes after the node atom: NEW_PID_EXT, PID_EXT, NEW_PORT_EXT, PORT_EXT, V4_PORT_EXT, REFERENCE_EXT.
_NODE_AND_FIXED = {88: 12, 103: 9, 89: 8, 102: 5, 120: 12, 101: 5}


def _rare(data: bytes, pos: int, start: int, tag: int) -> tuple[Any, int]:
    size = len(data)
    if tag == 118 or tag == 115:  # ATOM_UTF8_EXT, SMALL_ATOM_EXT
        return _atom_term(data, start)
    if tag == 110 or tag == 111:  # SMALL_BIG_EXT, LARGE_BIG_EXT
        n, pos = (data[pos], pos + 1) if tag == 110 else (_unpack_I(data, pos)[0], pos + 4)
        end = _check(pos + 1, n, size)
        digits = int.from_bytes(data[pos + 1 : end], "little")
        return -digits if data[pos] else digits, end  # any sign but 0 is negative, as for Erlang
    if tag in _NODE_AND_FIXED:  # pids, ports, old references
        node, pos = _atom_text(data, pos)
        end = _check(pos, _NODE_AND_FIXED[tag], size)
        if tag == 88 or tag == 103:
            return RemotePid._make_remote(node, -1, 0, etf=data[start:end]), end
        return Opaque(data[start:end]), end
    if tag == 90 or tag == 114:  # NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT: Len, node, creation, Len ids
        (n,) = _unpack_H(data, pos)
        _, pos = _atom_text(data, pos + 2)
        end = _check(pos, (4 if tag == 90 else 1) + 4 * n, size)
        return Opaque(data[start:end]), end
    if tag == 77:  # BIT_BINARY_EXT
        (n,) = _unpack_I(data, pos)
        bits = data[pos + 4]
        end = _check(pos + 5, n, size)
        if (n == 0 and bits != 0) or (n > 0 and not 1 <= bits <= 8):
            raise ValueError(f"malformed Erlang term: a bitstring of {n} bytes with {bits} bits in the last")
        return (data[pos + 5 : end] if n == 0 or bits == 8 else Opaque(data[start:end])), end
    if tag == 113:  # EXPORT_EXT: fun M:F/A
        _, pos = _atom_text(data, pos)
        _, pos = _atom_text(data, pos)
        end = _check(pos, 2, size)
        if data[pos] != 97:
            raise ValueError(f"malformed Erlang term: the arity of the fun at byte {start}")
        return Opaque(data[start:end]), end
    if tag == 112:  # NEW_FUN_EXT
        return _fun(data, pos, start)
    if tag == 99:  # FLOAT_EXT: "%.20e" in 31 bytes
        text = data[pos : _check(pos, 31, size)].split(b"\x00", 1)[0]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not _isfinite(value) or b"_" in text:
            raise ValueError(f"malformed Erlang term: float {text!r} at byte {start}")
        return value, pos + 31
    raise ValueError(f"malformed Erlang term: unknown or unsupported tag {tag} at byte {start}")


def _fun(data: bytes, pos: int, start: int) -> tuple[Any, int]:
    """A fun's fixed fields, module and two integers; its pid and free
    variables are decoded as terms in a frame that checks the declared size."""
    (n,) = _unpack_I(data, pos)
    end = _check(pos, n, len(data))
    (free,) = _unpack_I(data, pos + 25)
    _, pos = _atom_text(data, pos + 29)
    for _ in range(2):  # OldIndex, OldUniq: SMALL_INTEGER_EXT or INTEGER_EXT
        if data[pos] != 97 and data[pos] != 98:
            raise ValueError(f"malformed Erlang term: the fun at byte {start}")
        pos += 2 if data[pos] == 97 else 5
    if n < 29 or free >= end - pos:
        raise ValueError(f"malformed Erlang term: the fun at byte {start} declares {n} bytes")
    return _Frame([_FUN, free + 1, [], start, end]), pos
