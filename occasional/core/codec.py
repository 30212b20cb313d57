"""The wire format of messages: msgpack with extension types.

msgpack carries None, bool, int, float, str, bytes, list and dict natively.
``strict_types`` sends every other type (tuple, subclasses such as IntEnum,
big ints) through ``_default``, which gives the types of API.md section 3
their own extension so that they round-trip exactly (a tuple stays a tuple),
and falls back to ``dill`` for any other object. Functions travel only with
dill (ARCHITECTURE.md, "Wire format").
"""

from __future__ import annotations

import builtins
import importlib
import io
import pickle
import reprlib
import struct
from types import ModuleType
from typing import Any

import msgpack

from ..sck.frame import DEFAULT_MAX_FRAME
from .pid import Pid, Port, Ref, RemotePid, _make_remote_address
from .reasons import TRACEBACK_ATTR, keep_traceback

EXT_TUPLE = 1
EXT_SET = 2
EXT_FROZENSET = 3
EXT_PID = 4
EXT_REF = 5
EXT_PORT = 6
EXT_EXCEPTION = 7
EXT_DILL = 8
EXT_BIGINT = 9
EXT_REMOTE_PID = 10  # a process on another node (API.md section 11)

_ExtType = msgpack.ExtType
_make_pid = Pid._make
_make_ref = Ref._make
_make_port = Port._make
_packb = msgpack.packb
_unpackb = msgpack.unpackb

# The largest message, encoded: what every process's Decoder accepts from a
# peer. A larger one is refused in the sender (API.md section 10); sent, it
# would make the receiver drop the connection and every message behind it.
MAX_MESSAGE = DEFAULT_MAX_FRAME
# msgpack's limit for one str, bytes, list or dict (2**32 - 1).
_ITEM_LIMIT = 0xFFFFFFFF


def message_too_large(size: str) -> ValueError:
    """The error for a message of ``size`` bytes (a number, or "more than N")."""
    return ValueError(
        f"a message of {size} bytes (encoded) is over the limit of {MAX_MESSAGE} bytes for one message; "
        "nothing was sent. Send large data in parts, or write it to a file and send the file's path"
    )


class _ShortRepr(reprlib.Repr):
    """reprlib, which slices a long str before it reprs it, doing the same
    for bytes: an error about a 4 GiB message must not build a 16 GiB repr."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        if len(x) <= self.maxstring:
            return builtins.repr(x)
        return f"{builtins.repr(x[: self.maxstring])}... ({len(x)} bytes)"

    repr_bytearray = repr_bytes


_short = _ShortRepr()
_short.maxstring = 60
_short.maxother = 200
short_repr = _short.repr


def _save_module(pickler: Any, module: ModuleType) -> None:
    """Pickle a module by reference: the receiver imports it by name.

    dill pickles the dict of any module outside site-packages by value (a
    package in a checkout, a test module), which drags its whole state along,
    sockets included. Only ``__main__`` travels by value, as dill does.
    """
    if module.__name__ == "__main__":
        _dill().Pickler.dispatch[ModuleType](pickler, module)
        return
    pickler.save_reduce(importlib.import_module, (module.__name__,), obj=module)


# dill is imported on first use: central never unpickles user data, and
# importing dill was 29 ms of its 65 ms of imports (bench/RESULTS.md, start-up).
_pickler_class: Any = None


def _dill() -> Any:
    import dill

    return dill


def _dill_dumps(obj: Any, recurse: bool = True) -> bytes:
    global _pickler_class
    if _pickler_class is None:
        import dill

        class _Pickler(dill.Pickler):
            dispatch = dill.Pickler.dispatch.copy()
            dispatch[ModuleType] = _save_module

        _pickler_class = _Pickler
    buf = io.BytesIO()
    _pickler_class(buf, pickle.HIGHEST_PROTOCOL, byref=False, recurse=recurse).dump(obj)
    return buf.getvalue()


def _dill_loads(data: bytes) -> Any:
    return _dill().loads(data)


# One reusable Packer per nesting depth: a tuple inside a message is packed by
# _default while the outer Packer is still packing, and a Packer is not
# reentrant. msgpack.packb would build a new Packer per call (about 7 us each,
# more than the whole encoding of a small message).
_packers: list[msgpack.Packer] = []
_depth = 0
# Pid, Ref and Port have a fixed shape: two 64-bit integers.
_pair = struct.Struct("<qq")
_pack_pair = _pair.pack
_unpack_pair = _pair.unpack
# msgpack's ExtType validates its arguments in Python (0.3 us a message in
# bench/RESULTS.md's profile); the packer only checks the exact type.
_new_tuple = tuple.__new__


def _ext(code: int, data: bytes) -> Any:
    return _new_tuple(_ExtType, (code, data))


# A Packer keeps its buffer at the largest size it ever packed: after a 1 GiB
# message (or a failed 4 GiB one) a process would hold that much for good.
# A Packer that packed more than this is replaced, which frees its buffer.
_KEEP_BUFFER = 1 << 20


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)


def _pack(obj: Any) -> bytes:
    global _depth
    depth = _depth
    if depth == len(_packers):
        _packers.append(_new_packer())
    _depth = depth + 1
    try:
        data: bytes = _packers[depth].pack(obj)
    except BaseException:
        _packers[depth] = _new_packer()
        raise
    finally:
        _depth = depth
    if len(data) > _KEEP_BUFFER:
        _packers[depth] = _new_packer()
    return data


def _default(obj: Any) -> Any:
    t = type(obj)
    if t is tuple:
        return _new_tuple(_ExtType, (EXT_TUPLE, _pack(list(obj))))
    if t is Pid:
        return _new_tuple(_ExtType, (EXT_PID, _pack_pair(obj.id, obj.os_pid)))
    if t is Ref:
        return _ext(EXT_REF, _pack_pair(obj.owner, obj.n))
    if t is Port:
        return _ext(EXT_PORT, _pack_pair(obj.id, obj.os_pid))
    if t is RemotePid:
        return _ext(EXT_REMOTE_PID, _pack([obj.node, obj.id, obj.os_pid, obj.etf]))
    if t is set:
        return _ext(EXT_SET, _pack(list(obj)))
    if t is frozenset:
        return _ext(EXT_FROZENSET, _pack(list(obj)))
    if t is int:
        return _ext(EXT_BIGINT, str(obj).encode())
    if isinstance(obj, BaseException):
        return _ext(EXT_EXCEPTION, _dump_exception(obj))
    try:
        return _ext(EXT_DILL, _dill_dumps(obj))
    except Exception as e:
        raise TypeError(f"cannot serialize {short_repr(obj)} ({t.__qualname__}): {e}") from e


def _dump_exception(exc: BaseException) -> bytes:
    """An exception with its traceback text; a stand-in if it cannot be pickled."""
    keep_traceback(exc)
    try:
        return _dill_dumps(exc)
    except Exception as e:
        stand_in = RuntimeError(f"{type(exc).__qualname__}: {exc} (the exception itself could not be serialized: {e})")
        setattr(stand_in, TRACEBACK_ATTR, getattr(exc, TRACEBACK_ATTR, ""))
        return _dill_dumps(stand_in)


# Pids and ports decoded, by their encoding: a process hears from the same few
# again and again, and they are immutable (issue 15: making one was a tenth of
# a port owner's time per message). Emptied when full.
_ADDRESSES: dict[tuple[int, bytes], Pid] = {}
_ADDRESSES_MAX = 4096


def _address(code: int, data: bytes) -> Pid:
    key = (code, data)
    address = _ADDRESSES.get(key)
    if address is None:
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        address = _ADDRESSES[key] = (_make_pid if code == EXT_PID else _make_port)(*_unpack_pair(data))
    return address


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_TUPLE:
        return tuple(_unpack(data))
    if code == EXT_PID:
        if _origin is not None:  # a pid of the node the message came from
            pid_id, os_pid = _unpack_pair(data)
            return _make_remote_address(_origin, pid_id, os_pid, None)
        return _address(code, data)
    if code == EXT_REF:
        return _make_ref(*_unpack_pair(data))
    if code == EXT_REMOTE_PID:
        return _make_remote_address(*_unpack(data))
    if code == EXT_PORT:
        return _address(code, data)
    if code == EXT_SET:
        return set(_unpack(data))
    if code == EXT_FROZENSET:
        return frozenset(_unpack(data))
    if code == EXT_BIGINT:
        return int(data)
    if code in (EXT_EXCEPTION, EXT_DILL):
        return _dill_loads(data)
    return _ExtType(code, data)


def _unpack(data: bytes) -> Any:
    return _unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


class Pickled:
    """A value that travelled as a dill pickle, left undecoded by :func:`loads_inert`."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"<dill, {self.n} bytes>"


def _inert_hook(code: int, data: bytes) -> Any:
    if code in (EXT_EXCEPTION, EXT_DILL):
        return Pickled(len(data))
    if code in (EXT_TUPLE, EXT_SET, EXT_FROZENSET):
        items = loads_inert(data)
        if type(items) is not list:
            raise ValueError(f"extension type {code} holds {type(items).__name__}, not a list")
        return tuple(items) if code == EXT_TUPLE else set(items) if code == EXT_SET else frozenset(items)
    return _ext_hook(code, data)  # pids, refs, ports and big ints are plain numbers


def loads_inert(data: bytes) -> Any:
    """Decode a message value as :func:`loads` does, but run no code: a
    pickled value (an object, an exception) stays a :class:`Pickled`.

    For whoever must look at a value without trusting it (issue 10):
    ``occasional journal ls|show``, and central checking that a value a
    process sent is one of ours. Raises on bytes that are not.
    """
    return _unpackb(data, ext_hook=_inert_hook, raw=False, strict_map_key=False)


def dumps(obj: Any) -> bytes:
    """Serialize a message value.

    Raises:
        TypeError: naming what cannot be sent.
        ValueError: a str, bytes, list or dict in it is over msgpack's limit
            of 2**32 - 1 (so the message would be over MAX_MESSAGE anyway).
    """
    try:
        return _pack(obj)
    except TypeError:
        raise
    except Exception as e:  # msgpack raises ValueError for over-deep nesting, etc.
        if isinstance(e, ValueError) and str(e).endswith("is too large"):
            raise message_too_large(f"more than {_ITEM_LIMIT}") from e
        raise TypeError(f"cannot serialize {short_repr(obj)}: {e}") from e


loads = _unpack

# The node a message being decoded came from, while loads_from decodes it: its
# plain pids are that node's processes (API.md section 11).
_origin: str | None = None


def loads_from(data: bytes, origin: str) -> Any:
    """Decode a message that came from the node ``origin``."""
    global _origin
    _origin = origin
    try:
        return _unpack(data)
    finally:
        _origin = None


def dump_function(f: Any, args: tuple[Any, ...]) -> bytes:
    """Serialize a function and its arguments for a new process (dill).

    Modules are pickled by reference: a function's globals keep only the
    names it uses (``recurse=True``), and dill refers to importable modules by
    name, so a closure that uses ``occ`` does not drag the package along.
    """
    return _dill_dumps((f, args))


def load_function(blob: bytes) -> tuple[Any, tuple[Any, ...]]:
    return _dill_loads(blob)
