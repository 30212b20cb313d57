"""A durable process's context: its side of its journal, replayed, then live.

A durable process runs with a :class:`DurableContext` instead of the plain
one. At start it asks central for its committed mailbox position (``D_HELLO``,
answered after every write of the previous incarnation is committed), reads
its own events and mailbox over a read-only connection in two range scans,
and runs the function from the start. Each journaled call (receive, step,
now, random, uuid4, sleep, send) takes the next recorded event while there is
one and checks that it is the same kind and name (else NonDeterminism); once
the journal is used up the calls act and record.

Writes go to central's journal writer over the process's central socket.
Receives, clock and random values are recorded lazily: they are buffered here
and go out with the next frame that must reach the journal anyway (a send,
the start of a step, the exit, the wait for a message), so frames on one
socket keep their order and what a visible act depends on is committed in the
same transaction as, or before, that act (issue 6, "Exactly-once
consumption").
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

import msgpack

from ..core import codec, context
from ..core.child import flush_stdio
from ..core.context import Context
from ..core.pid import Pid, Ref
from . import protocol as D
from .errors import JournalEnd, NonDeterminism

_packb = msgpack.packb
_unpackb = msgpack.unpackb
_UNSET: Any = object()
# A sleep or retry wait longer than this ends the process and central starts it
# again at the deadline: a process asleep for a day is not alive (issue 6).
HIBERNATE_AFTER = 2.0


class DurableContext(Context):
    """The context of a durable process: every receive and send goes through its journal.

    It extends core's Context only at the points Context documents as
    extension points (issue 11): it overrides ``receive``, ``send_bytes``,
    ``new_ref`` and ``on_extension_frame``, journals what reaches ``mailbox``
    outside the journal, and reads ``calling`` / ``call_down`` to journal how
    a call ended. Everything else is the public surface.
    """

    journaled = True

    def __init__(self, sock: socket.socket, pid: Pid, durable_id: str, check_only: bool = False) -> None:
        super().__init__(sock, pid)
        self.did = durable_id
        self.check_only = check_only
        self.events: list[tuple[int, str, str, bytes]] = []
        self.pos = 0
        self.seq = 0  # the last event seq, recorded or replayed
        self.pending: list[list[Any]] = []  # events not yet sent to central
        self.inbox: dict[int, list[Any]] = {}  # mailbox seq -> [body, decoded]
        self.early: dict[int, list[Any]] = {}  # forwarded before the journal was read
        self.loaded = False
        self.sends = 0
        self.steps = 0
        self.step: tuple[str, int] | None = None  # (idempotency key, attempt) while a step runs
        self.idle_told = False
        # Refs the code makes are (a negative number of the id, n-th ref): the
        # same in every incarnation, so a reply or DOWN naming one replays
        # (issue 6); plain pids are positive, so no plain ref is equal.
        self.ref_owner = -1 - int.from_bytes(hashlib.blake2b(durable_id.encode(), digest_size=7).digest(), "big")
        self.refs = 0

    # -- start ------------------------------------------------------------------

    def load(self, events: list[Any], mailbox: list[Any]) -> None:
        """Start from the journal: every event of this process, and its mailbox
        up to the position central gave (rows as :class:`~.store.Reader` reads them)."""
        self.events = events
        self.seq = self.events[-1][0] if self.events else 0
        inbox = {seq: [body, _UNSET] for seq, _s, _n, body in mailbox}
        inbox.update(self.early)
        self.early = {}
        self.inbox = inbox
        self.loaded = True

    @property
    def replaying(self) -> bool:
        return self.pos < len(self.events)

    def on_extension_frame(self, msg: list[Any]) -> None:
        if msg[0] == D.D_MSG:
            (self.inbox if self.loaded else self.early)[msg[1]] = [msg[2], _UNSET]
        else:
            super().on_extension_frame(msg)

    # -- the journal --------------------------------------------------------------

    def next_event(self, kind: str, name: str) -> tuple[int, str, str, bytes] | None:
        """The next recorded event, checked against what the code attempts; None when live."""
        if self.pos < len(self.events):
            ev = self.events[self.pos]
            if ev[1] != kind or ev[2] != name:
                raise NonDeterminism(self.did, ev[0], (ev[1], ev[2]), (kind, name))
            self.pos += 1
            return ev
        if self.check_only:
            raise JournalEnd()
        return None

    def peek_event(self) -> tuple[int, str, str, bytes] | None:
        if self.pos < len(self.events):
            return self.events[self.pos]
        if self.check_only:
            raise JournalEnd()
        return None

    def mismatch(self, kind: str, name: str) -> NonDeterminism:
        ev = self.events[self.pos]
        return NonDeterminism(self.did, ev[0], (ev[1], ev[2]), (kind, name))

    def record(self, kind: str, name: str, body: bytes) -> int:
        self.seq += 1
        self.pending.append([self.seq, kind, name, body])
        self.idle_told = False
        return self.seq

    def flush(self, ack: bool) -> None:
        """Send the buffered events; with ``ack``, return once they are committed."""
        pending, self.pending = self.pending, []
        if self.check_only:
            return
        if ack:
            self.call(D.D_EVENTS, pending)
        elif pending:
            self.tell([D.D_EVENTS, 0, pending])

    def take_pending(self) -> list[list[Any]]:
        pending, self.pending = self.pending, []
        return pending

    # -- refs -------------------------------------------------------------------------

    def new_ref(self) -> Ref:
        self.refs += 1
        return Ref._make(self.ref_owner, self.refs)

    # -- receive --------------------------------------------------------------------

    def receive(self, pred: Callable[[Any], bool] | None, timeout: float | None) -> Any:
        if self.pos < len(self.events) or self.check_only:
            return self._replay_receive(pred, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        inbox = self.inbox
        # An entry ``pred`` rejected stays rejected, and while we wait entries
        # only arrive at the end (forwarded in seq order), so a wake-up looks
        # at the new ones alone, as Context.receive does: rescanning them all
        # took 150 us of CPU per message at a 3,000-message backlog
        # (bench/durable_send.py, bench/RESULTS.md).
        scanned = 0
        while True:
            if self.mailbox:
                self._journal_strays()
            fresh = len(inbox) - scanned
            if fresh > 0:
                entries: Iterable[tuple[int, list[Any]]] = inbox.items()
                if scanned:
                    entries = list(islice(reversed(inbox.items()), fresh))
                    entries.reverse()
                for seq, entry in entries:
                    msg = entry[1]
                    if msg is _UNSET:
                        msg = entry[1] = codec.loads(entry[0])
                    if pred is None or pred(msg):
                        del inbox[seq]
                        self.record("receive", "", _packb(seq))
                        return msg
                    scanned += 1
            if self.call_down is not None:
                # The server a call waits on has ended (Context.watch). That
                # DOWN is not in the mailbox, so it is journaled here: a replay
                # of the call ends the same way.
                self.record("call.down", "", codec.dumps(self.call_down))
                return None
            if deadline is None:
                left = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    # Look once more without waiting: timeout=0 still sees what arrived.
                    before = len(inbox)
                    self.pump(0)
                    if len(inbox) != before or self.mailbox:
                        deadline = time.monotonic()
                        if len(inbox) != before:
                            continue
                    self.record("receive", "", _packb(None))
                    raise TimeoutError("receive() timed out: no matching message arrived in time")
            if not self.idle_told:
                # About to wait: what is buffered goes to the journal now, and
                # central learns that a kill from here on is no crash of our code.
                self.flush(False)
                self.tell([D.D_IDLE])
                self.idle_told = True
            self.pump(left)

    def _replay_receive(self, pred: Callable[[Any], bool] | None, timeout: float | None) -> Any:
        ev = self.peek_event()
        if ev is not None and ev[1] == "call.down" and self.calling is not None:
            self.pos += 1
            self.call_down = codec.loads(ev[3])
            return None
        ev = self.next_event("receive", "")
        assert ev is not None
        seq = _unpackb(ev[3])
        if seq is None:
            if timeout is None:
                raise NonDeterminism(self.did, ev[0], ("receive", "timed out"), ("receive", "without a timeout"))
            raise TimeoutError("receive() timed out: no matching message arrived in time")
        entry = self.inbox.pop(seq, None)
        if entry is None:
            raise RuntimeError(
                f"the journal of durable process {self.did!r} is damaged: "
                f"event {ev[0]} took mailbox entry {seq}, which is not in the journal"
            )
        msg = entry[1] if entry[1] is not _UNSET else codec.loads(entry[0])
        if pred is not None and not pred(msg):
            raise NonDeterminism(self.did, ev[0], ("receive", repr(msg)), ("receive", "a match that rejects it"))
        return msg

    def _journal_strays(self) -> None:
        """Messages that reached this incarnation outside the journal (a plain
        send to its Linux process, a DOWN or EXIT) are journaled before they
        can be received: they come back as mailbox entries."""
        while self.mailbox:
            body = codec.dumps(self.mailbox.popleft())
            self.tell([D.D_SEND, 0, self.did, body, None, 0, []])

    # -- send -------------------------------------------------------------------------

    def send_bytes(self, pid_id: int, payload: bytes) -> None:
        """A send to a plain process: journaled (committed) first, so a replay
        does not send it again; a crash in between loses it (at most once)."""
        if self.pos < len(self.events) or self.check_only:
            self.next_event("send", "")
            return
        if len(payload) > codec.MAX_MESSAGE:
            # Refused before it is journaled: a recorded send that never went
            # out would be skipped on replay (API.md section 10).
            raise codec.message_too_large(str(len(payload)))
        self.record("send", "", payload)
        self.flush(True)
        super().send_bytes(pid_id, payload)

    def send_durable(self, dest: str, payload: bytes) -> None:
        """A send to a durable process: its mailbox entry and our send event in one commit."""
        self.sends += 1
        if self.pos < len(self.events) or self.check_only:
            self.next_event("send", dest)
            return
        self.record("send", dest, _packb(self.sends))
        self.call(D.D_SEND, dest, payload, self.did, self.sends, self.take_pending())

    # -- time -------------------------------------------------------------------------

    def wait_until(self, deadline: float) -> None:
        """Wait until the wall-clock ``deadline``; a long wait ends the process
        and central starts it again at the deadline."""
        if self.check_only:
            return
        left = deadline - time.time()
        if left <= 0:
            return
        if left > HIBERNATE_AFTER:
            self.hibernate(deadline)
        time.sleep(left)

    def hibernate(self, deadline: float) -> None:
        self.call(D.D_SLEEP, self.take_pending(), deadline)
        self.flush_all()
        flush_stdio()
        os._exit(0)

    # -- the end ----------------------------------------------------------------------

    def finish(self, reason: tuple[str, Any]) -> None:
        if self.check_only:
            return
        kind, detail = reason
        try:
            detail_bytes = codec.dumps(detail)
        except TypeError as e:
            detail_bytes = codec.dumps(TypeError(f"the process returned {detail!r}, which cannot be journaled: {e}"))
            kind = "error"
        self.call(D.D_FINISH, self.take_pending(), [kind, detail_bytes])


def current(call: str) -> DurableContext:
    ctx = context.peek()
    if not isinstance(ctx, DurableContext) or ctx.closed:
        raise RuntimeError(f"{call} works only inside a durable process; start one with durable.spawn(id, f, *args)")
    return ctx
