"""Control frames between processes, central services and the forkserver.

Every control frame is a plain msgpack array whose first element is one of
the op codes below. User values inside control frames (function blobs, exit
details, kill reasons) are opaque bytes encoded by :mod:`codec`: central never
unpickles user data, so it needs no user module and cannot be crashed by one.

A reason on the wire is ``[kind, detail_bytes]``, except ``linked`` whose
detail is ``[pid_id, os_pid, inner_reason]``, so central can nest reasons
without decoding them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack

from . import codec
from .reasons import format_reason

# process -> central
SPAWN = 1  # [SPAWN, req, blob, name, link, mon_owner, mon_n, function, sys_path, title, meta]
# meta: None or a map of facts for `occasional ps`: argv (a port), restarts
CONNECT = 2  # [CONNECT, target]
MONITOR = 3  # [MONITOR, owner, n, target]
DEMONITOR = 4  # [DEMONITOR, owner, n]
LINK = 5  # [LINK, req, target]
UNLINK = 6  # [UNLINK, req, target]
TRAP = 7  # [TRAP, req, flag]
KILL = 8  # [KILL, req, target, why_bytes]
REGISTER = 9  # [REGISTER, req, name, target]
UNREGISTER = 10  # [UNREGISTER, req, name]
WHEREIS = 11  # [WHEREIS, req, name]
REGISTERED = 12  # [REGISTERED, req]
PROCESSES = 13  # [PROCESSES, req]
INFO = 14  # [INFO, req, target]
EXIT = 15  # [EXIT, kind, detail_bytes]
STOP = 16  # [STOP, req]
SIGNAL = 17  # [SIGNAL, req, target, reason]: an exit signal, as Erlang's exit/2

# central -> process
REPLY = 30  # [REPLY, req, ok, value]   (error value: [error_name, *args])
PEER = 31  # [PEER, pid_id, os_pid] with the socket attached
PEER_DEAD = 32  # [PEER_DEAD, pid_id]
DOWN = 33  # [DOWN, owner, n, pid_id, os_pid, reason]
EXIT_SIGNAL = 34  # [EXIT_SIGNAL, pid_id, os_pid, reason, sender_ended]
READY = 35  # [READY, pid_id, os_pid, facts]: facts from central's hooks (Central.facts)
START_FAILED = 36  # [START_FAILED, error_type_name, message]: a hook failed; central exits

# central <-> forkserver
FORK = 50  # [FORK, pid_id, blob, sys_path, title] with the child's central socket attached
FORKED = 51  # [FORKED, pid_id, os_pid]
REAPED = 52  # [REAPED, os_pid, status]
FORK_FAILED = 53  # [FORK_FAILED, pid_id, error_text]

# -- building frames -------------------------------------------------------------------
#
# Each layout above that central (or an extension inside it) builds in more
# than one place is built here, so it is written once (issue 11).


def reply(req: int, value: Any) -> list[Any]:
    """The answer ``value`` to request ``req``."""
    return [REPLY, req, True, value]


def error(req: int, name: str, *args: Any) -> list[Any]:
    """An error answer to ``req``: the caller raises exception ``name(*args)``."""
    return [REPLY, req, False, [name, *args]]


def down(owner: int, n: int, pid: list[int], reason: list[Any]) -> list[Any]:
    """Monitor ``(owner, n)``'s process ``pid`` (``[pid_id, os_pid]``) ended with ``reason``."""
    return [DOWN, owner, n, pid[0], pid[1], reason]


def exit_signal(pid: list[int], reason: list[Any], sender_ended: bool) -> list[Any]:
    """An exit signal from ``pid`` (``[pid_id, os_pid]``) to a process that traps exits."""
    return [EXIT_SIGNAL, pid[0], pid[1], reason, sender_ended]


def monitor(owner: int, n: int, target: int) -> list[Any]:
    """Ask central for a DOWN under ref ``(owner, n)`` when process ``target`` ends."""
    return [MONITOR, owner, n, target]


# -- reading reasons -------------------------------------------------------------------


def os_reason(reason: list[Any]) -> tuple[str, Any] | None:
    """A wire reason of the OS's kinds (``"exitcode"``, ``"signal"``) as a
    ``(kind, detail)`` tuple, read without unpickling anything; None for any
    other kind, or a detail that is no plain value."""
    kind, detail = reason
    if kind not in ("exitcode", "signal"):
        return None
    try:
        value = msgpack.unpackb(detail)
    except Exception:
        return None
    return (kind, value) if isinstance(value, (int, str)) else None


def describe_reason(reason: list[Any]) -> str:
    """A wire reason in words for central's log (it loads no user data): the
    OS's kinds as format_reason says them (``"exited with status 3"``,
    ``"killed by signal SIGKILL"``), any other kind by its name."""
    local = os_reason(reason)
    return str(reason[0]) if local is None else format_reason(local)


# -- limits ----------------------------------------------------------------------------

# The largest control frame central reads from a process (its Decoder's
# max_frame). Frames that carry user data (a SPAWN's function and arguments, a
# D_SEND's message, an EXIT's return value) are as large as that data, and
# messages of tens of MB are routine: 256 MiB leaves ten times that. It is a
# quarter of the 1 GiB a process accepts from a peer because central holds
# the whole frame while it reads it, for any process at once, and because
# every D_SEND body and D_SPAWN blob becomes a journal record: SQLite refuses
# a blob over SQLITE_MAX_LENGTH (1e9 bytes by default), which would fail the
# whole group commit; under 256 MiB no record can (issue 10).
MAX_CONTROL_FRAME = 256 << 20

# The most central queues for a process that does not read its central
# socket (beyond what the kernel's socket buffer took): DOWNs of many
# monitors, EXIT signals, forwarded durable messages. A process over it that
# has read nothing for OUT_STALL_S seconds is killed (issue 10); one that
# reads, however slowly, is not.
MAX_UNREAD = 64 << 20
OUT_STALL_S = 1.0


# -- the shape of every request a process sends ----------------------------------------
#
# Central checks a request against its shape before any handler runs, so a
# handler can trust its fields, and a bad value is refused at the request,
# never later in another process that decodes it or in a journal commit
# (issue 10: a malformed frame gets an error reply or ends its sender).

_INT64 = 1 << 63


class Field:
    """One field of a request: its name, what it must be, and the check."""

    __slots__ = ("name", "rule", "ok")

    def __init__(self, name: str, rule: str, ok: Callable[[Any], bool]) -> None:
        self.name = name
        self.rule = rule
        self.ok = ok


def _is(*types: type) -> Callable[[Any], bool]:
    return lambda v: type(v) in types


def _journal_int(v: Any) -> bool:
    # SQLite's INTEGER is 64-bit signed; msgpack carries up to 2**64 - 1.
    return type(v) is int and 0 <= v < _INT64


def _wall_time(v: Any) -> bool:
    return (type(v) is float and math.isfinite(v)) or (type(v) is int and -_INT64 <= v < _INT64)


def _str_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _meta(v: Any) -> bool:
    return v is None or type(v) is dict


def decodable(v: Any) -> bool:
    """Bytes that ``codec.loads`` decodes, up to the pickles inside (a user
    value: an exit detail, a kill's why, a durable message)."""
    if type(v) is not bytes:
        return False
    try:
        codec.loads_inert(v)
    except Exception:  # ValueError, TypeError (unhashable keys), RecursionError, ...
        return False
    return True


def wire_reason(v: Any, depth: int = 0) -> bool:
    """``[kind, detail_bytes]``, or ``["linked", [pid_id, os_pid, reason]]``
    (``[pid_id, os_pid, reason, node, etf]`` for a process on another node:
    occasional.dist, API.md section 11)."""
    if type(v) is not list or len(v) != 2 or type(v[0]) is not str or depth > 100:
        return False
    kind, detail = v
    if kind == "linked":
        return (
            type(detail) is list
            and (
                len(detail) == 3
                or (len(detail) == 5 and type(detail[3]) is str and (detail[4] is None or type(detail[4]) is bytes))
            )
            and type(detail[0]) is int
            and type(detail[1]) is int
            and wire_reason(detail[2], depth + 1)
        )
    return decodable(detail)


def _kind(v: Any) -> bool:
    # "linked" carries a nested reason, not bytes; only central makes one.
    return type(v) is str and v != "linked"


def _f(name: str, rule: str, ok: Callable[[Any], bool]) -> Field:
    return Field(name, rule, ok)


# What an extension's protocol module builds its shapes from.
field = _f
is_ = _is
journal_int = _journal_int
wall_time = _wall_time
REQ = _REQ = _f("req", "a request number (int >= 0)", lambda v: type(v) is int and 0 <= v < _INT64)
_TARGET = _f("target", "a pid id (int)", _is(int))
DETAIL = _DETAIL = "bytes of an encoded value"
_REASON = "a reason [kind, detail bytes] or ['linked', [pid_id, os_pid, reason]]"

# op -> (its name, its fields after the op code). The first field "req", when
# present, is the number an error reply goes to.
REQUESTS: dict[int, tuple[str, tuple[Field, ...]]] = {
    SPAWN: ("SPAWN", (_REQ, _f("blob", "bytes", _is(bytes)), _f("name", "a str or None", _is(str, type(None))),
                      _f("link", "a bool", _is(bool)), _f("mon_owner", "an int or None", _is(int, type(None))),
                      _f("mon_n", "an int or None", _is(int, type(None))), _f("function", "a str", _is(str)),
                      _f("sys_path", "a list of str", _str_list), _f("title", "a str", _is(str)),
                      _f("meta", "a map or None", _meta))),
    CONNECT: ("CONNECT", (_TARGET,)),
    MONITOR: ("MONITOR", (_f("owner", "an int", _is(int)), _f("n", "an int", _is(int)), _TARGET)),
    DEMONITOR: ("DEMONITOR", (_f("owner", "an int", _is(int)), _f("n", "an int", _is(int)))),
    LINK: ("LINK", (_REQ, _TARGET)),
    UNLINK: ("UNLINK", (_REQ, _TARGET)),
    TRAP: ("TRAP", (_REQ, _f("flag", "a bool", _is(bool)))),
    KILL: ("KILL", (_REQ, _TARGET, _f("why", _DETAIL, decodable))),
    REGISTER: ("REGISTER", (_REQ, _f("name", "a str", _is(str)), _TARGET)),
    UNREGISTER: ("UNREGISTER", (_REQ, _f("name", "a str", _is(str)))),
    WHEREIS: ("WHEREIS", (_REQ, _f("name", "a str", _is(str)))),
    REGISTERED: ("REGISTERED", (_REQ,)),
    PROCESSES: ("PROCESSES", (_REQ,)),
    INFO: ("INFO", (_REQ, _TARGET)),
    EXIT: ("EXIT", (_f("kind", "a str other than 'linked'", _kind), _f("detail", _DETAIL, decodable),
                    _f("summary", "a str", _is(str)))),
    STOP: ("STOP", (_REQ,)),
    SIGNAL: ("SIGNAL", (_REQ, _TARGET, _f("reason", _REASON, wire_reason))),
}  # fmt: skip
# Which layer owns each op code: core's own, and those an extension adds.
OWNERS: dict[int, str] = dict.fromkeys(REQUESTS, "core")
OWNERS.update(dict.fromkeys((REPLY, PEER, PEER_DEAD, DOWN, EXIT_SIGNAL, READY, START_FAILED), "core"))
OWNERS.update(dict.fromkeys((FORK, FORKED, REAPED, FORK_FAILED), "core"))


def add_ops(owner: str, requests: dict[int, tuple[str, tuple[Field, ...]]], others: tuple[int, ...] = ()) -> None:
    """Claim op codes for an extension (``owner``, such as "durable"):
    ``requests`` are those a process sends, each with its shape, checked by
    central before a handler runs; ``others`` the ones central sends. A code
    another layer holds is refused, so two extensions never read each other's
    frames (issue 11). Claiming the same codes again (a module imported twice)
    is a no-op."""
    for op in (*requests, *others):
        held = OWNERS.get(op)
        if type(op) is not int or not 0 < op < 128:
            raise ValueError(f"{owner}: op code {op!r} is not an int from 1 to 127; pick an unused one")
        if held is not None and held != owner:
            raise ValueError(f"{owner}: op code {op} is {held}'s already; pick an unused one")
    for op in (*requests, *others):
        OWNERS[op] = owner
    REQUESTS.update(requests)


def check_owned(owner: str, codes: Any) -> None:
    """Refuse, naming the code and its holder, any of ``codes`` that ``owner``
    has not claimed with :func:`add_ops` (central's ``add_ops`` calls this
    before it takes a handler: a layer handles only frames of its own)."""
    for op in codes:
        held = OWNERS.get(op) if type(op) is int else None
        if held is None:
            raise ValueError(
                f"{owner}: op code {short_repr(op)} is claimed by no layer; "
                "claim it first with occasional.core.protocol.add_ops"
            )
        if held != owner:
            raise ValueError(
                f"{owner}: op code {op} is claimed by {held}; "
                f"handle only codes {owner} claimed with occasional.core.protocol.add_ops"
            )


# Values in error messages are shown cut short: an error about a 256 MiB
# field must not build a 1 GiB repr.
short_repr = codec.short_repr


def check(msg: list[Any]) -> str | None:
    """What is wrong with request ``msg`` (a list whose first item is a known
    op code), or None when it has its shape."""
    shape = REQUESTS.get(msg[0]) if type(msg[0]) is int else None
    if shape is None:
        return None  # an extension's op: its handler checks it
    name, fields = shape
    if len(msg) != len(fields) + 1:
        names = ", ".join(f.name for f in fields)
        return f"a {name} request has {len(msg) - 1} fields after the op code, not {len(fields)} ({names})"
    for field, value in zip(fields, msg[1:], strict=True):
        if not field.ok(value):
            return f"a {name} request has {field.name}={short_repr(value)}, which is not {field.rule}"
    return None


def request_number(msg: list[Any]) -> int:
    """The number to send an error reply to, or 0 when the request has none."""
    shape = REQUESTS.get(msg[0]) if type(msg[0]) is int else None
    if shape is None or not shape[1] or shape[1][0] is not _REQ or len(msg) < 2:
        return 0
    req = msg[1]
    return req if type(req) is int and 0 < req < _INT64 else 0
