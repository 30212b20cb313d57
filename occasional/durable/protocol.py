"""Frames between a durable process and central's journal writer.

Core knows nothing of durable processes (docs/architecture.md): these op codes
and their shapes are claimed from core's protocol when this module is
imported, which fails if another layer holds one of them (issue 11). Central
checks each request against its shape here before the writer's handler runs
(occasional/durable/writer.py installs the handlers).
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..core import protocol as P

D_SPAWN = 60  # [D_SPAWN, req, id, blob, function, sys_path, title] -> [pid_id, os_pid]
D_SEND = 61  # [D_SEND, req, dest_id, body, sender_id, send_seq, events]; req 0: no ack
D_EVENTS = 62  # [D_EVENTS, req, events]; req 0: no ack
D_HELLO = 63  # [D_HELLO, req] -> [id, path, committed_mailbox_seq] (+ [events, mailbox] from a shared journal)
D_RESULT = 64  # [D_RESULT, req, id] -> wire reason, once the process has finished
D_CANCEL = 65  # [D_CANCEL, req]: the caller gave up waiting on D_RESULT req
D_FINISH = 66  # [D_FINISH, req, events, reason]
D_SLEEP = 67  # [D_SLEEP, req, events, wake_at]: the process ends; start it again at wake_at
D_IDLE = 68  # [D_IDLE]: waiting for a message (a kill now is no crash of its code)
D_WHEREIS = 69  # [D_WHEREIS, req, id] -> [pid_id, os_pid] | None
D_MSG = 70  # central -> process: [D_MSG, seq, body]
D_FOLLOW = 71  # [D_FOLLOW, req, id, resume] -> ["running", pid_id, os_pid] | ["idle"] | ["done", reason]
D_STOP = 72  # [D_STOP, req, id, why] -> the final wire reason, once committed


def message(seq: int, body: bytes) -> list[Any]:
    """A committed message, forwarded to the running incarnation (D_MSG)."""
    return [D_MSG, seq, body]


# Durable messages forwarded to a process and not yet read: beyond this,
# central stops forwarding and sends the rest from the journal once the
# process has read what it has (nothing is lost: they are committed).
FORWARD_WINDOW = 8 << 20


def _events(v: Any) -> bool:
    """[[seq, kind, name, body], ...] as a durable process records them."""
    if type(v) is not list:
        return False
    for ev in v:
        if not (
            type(ev) is list
            and len(ev) == 4
            and P.journal_int(ev[0])
            and type(ev[1]) is str
            and type(ev[2]) is str
            and type(ev[3]) is bytes
        ):
            return False
    return True


def _packed_str_list(v: Any) -> bool:
    if type(v) is not bytes:
        return False
    try:
        got = msgpack.unpackb(v, raw=False)
    except Exception:
        return False
    return type(got) is list and all(type(x) is str for x in got)


# The sender of a send that carries an idempotency key instead of a durable
# sender's number: "\x1f" + the key, with send_seq 1, so the mailbox's dedupe
# of (sender, send_seq) delivers it once (the HTTP gateway's Idempotency-Key,
# issue 16). A durable id holds no control character, so no sender id is one.
KEY_SENDER = "\x1f"


def is_durable_id(v: object) -> bool:
    """A non-empty str without control characters (they would make a journal's
    listing unreadable, and "\x1f" starts a key's sender, see KEY_SENDER)."""
    return type(v) is str and v != "" and not any(ord(c) < 32 or ord(c) == 127 for c in v)


_f, _is, _REQ, _DETAIL, decodable = P.field, P.is_, P.REQ, P.DETAIL, P.decodable
_ID = _f("id", "a durable id (str)", _is(str))
_EVENTS = _f("events", "a list of [seq, kind, name, body] (int >= 0, str, str, bytes)", _events)

REQUESTS: dict[int, tuple[str, tuple[P.Field, ...]]] = {
    D_SPAWN: ("D_SPAWN", (_REQ, _f("id", "a non-empty str without control characters", is_durable_id),
                          _f("blob", "bytes", _is(bytes)), _f("function", "a str", _is(str)),
                          _f("sys_path", "msgpack bytes of a list of str", _packed_str_list),
                          _f("title", "a str", _is(str)))),
    D_SEND: ("D_SEND", (_REQ, _f("dest", "a durable id (str)", _is(str)), _f("body", _DETAIL, decodable),
                        _f("sender", "a durable id (str) or None", _is(str, type(None))),
                        _f("send_seq", "an int >= 0", P.journal_int), _EVENTS)),
    D_EVENTS: ("D_EVENTS", (_REQ, _EVENTS)),
    D_HELLO: ("D_HELLO", (_REQ,)),
    D_RESULT: ("D_RESULT", (_REQ, _ID)),
    D_CANCEL: ("D_CANCEL", (_REQ,)),
    D_FINISH: ("D_FINISH", (_REQ, _EVENTS, _f("reason", "a reason [kind, detail bytes]",
                                               lambda v: P.wire_reason(v) and v[0] != "linked"))),
    D_SLEEP: ("D_SLEEP", (_REQ, _EVENTS, _f("wake_at", "a finite time (float or int)", P.wall_time))),
    D_IDLE: ("D_IDLE", ()),
    D_WHEREIS: ("D_WHEREIS", (_REQ, _ID)),
    D_FOLLOW: ("D_FOLLOW", (_REQ, _ID, _f("resume", "a bool", _is(bool)))),
    D_STOP: ("D_STOP", (_REQ, _ID, _f("why", _DETAIL, decodable))),
}  # fmt: skip

P.add_ops("durable", REQUESTS, others=(D_MSG,))
