"""Central's journal writer and the supervisor of durable processes.

Installed into central by its hook (``runtime.add_central_hook``), so core
never imports durable. Central is the only writer: one connection, and group
commit: every write that arrived in one turn of the event loop goes into one
transaction, then every ack of that turn goes out (ARCHITECTURE.md, "Durable
processes"). Messages committed to a running process's mailbox are forwarded
to it over its central socket after the commit.

It also restarts durable processes: an incarnation that ended without a final
reason in the journal is started again at once, unless it crashed
``CRASH_LIMIT`` times in a row at the same journal position, which ends it
with the reason ``("crashloop", ...)``. A kill while the process waits for a
message is no crash of its code and does not count.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from ..core import protocol as P
from . import forwarding, protocol as D
from .following import Following
from .nodes import Nodes, fenced
from .state import State
from .store import Fenced, shown

if TYPE_CHECKING:
    from ..core.central import Central
    from ..core.table import Proc
    from .store import Batch, ProcessRow, Store

    Seqs = tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]

log = logging.getLogger("occasional.durable")
_packb = msgpack.packb
_unpackb = msgpack.unpackb
CRASH_LIMIT = 5
LAZY_S = 0.02
# Group commit: while fewer sends wait than the last commit carried, the commit
# waits up to this long for the others, whose senders were just acked and are
# sending again (issue 15: 8 senders got 4-6 messages a commit, not 8). As
# PostgreSQL's commit_delay, but only after a commit that carried more.
GATHER_S = 0.0002
_MAX_TIMER_S = 86400.0
_NO_JOURNAL = (
    "durable processes need a journal; start the runtime with occ.run(main, journal=PATH) (or occ.start(journal=PATH))"
)


class Writer:
    def __init__(self, central: Central, store: Store) -> None:
        from .store import Batch

        self.central = central
        self.loop = central.loop
        self.store = store
        self.sys_path: list[str] = []  # the running program's (see restart)
        self._batch_class = Batch
        self.batch: Batch = Batch()
        self.after: list[Callable[[], None]] = []
        self.forwards: list[tuple[State, int, bytes]] = []
        self.acks: list[tuple[Proc, int]] = []  # sends waiting for this commit
        self.scheduled = False
        self.lazy: Any = None  # the timer of a commit nobody waits for
        self.last_acks = 0  # sends the last commit acked
        self.gather_until: float | None = None  # see GATHER_S
        self.states: dict[str, State] = {}
        self.following = Following(self)  # supervisors linked to every incarnation of an id
        self.nodes = Nodes(self) if store.shared else None  # a journal shared by nodes (issue 12)
        self.by_proc: dict[int, State] = {}
        self.add_states(store.processes(), store.last_seqs())

    def add_states(self, rows: list[ProcessRow], seqs: Seqs) -> list[State]:
        mailbox, events, sends = seqs
        added = []
        for row in rows:
            st = State(row)
            st.mailbox_seq = mailbox.get(row.id, 0)
            st.event_seq = events.get(row.id, 0)
            self.states[row.id] = st
            added.append(st)
        for (process, sender), n in sends.items():
            if process in self.states:
                self.states[process].last_send[sender] = n
        return added

    # -- group commit --------------------------------------------------------------

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._gather)

    def _schedule_lazy(self) -> None:
        # Records nobody waits for (a step's attempt record, receives flushed
        # before a wait) ride along with the next commit someone waits for,
        # or go at most LAZY_S later: a trivial step then costs one fsync,
        # not two (bench/durable_step.py).
        if not self.scheduled and self.lazy is None:
            self.lazy = self.loop.call_later(LAZY_S, self._schedule)

    def on_commit(self, fn: Callable[[], None]) -> None:
        self.after.append(fn)
        self._schedule()

    def _gather(self) -> None:
        """The scheduled commit: first, while fewer sends wait than the last
        commit acked, look at the sockets again (call_soon lets the loop poll)
        until as many wait, or GATHER_S has passed."""
        if self.acks and len(self.acks) < self.last_acks:
            now = time.perf_counter()
            if self.gather_until is None:
                self.gather_until = now + GATHER_S
            if now < self.gather_until:
                self.loop.call_soon(self._gather)
                return
        self.commit()

    def commit(self) -> None:
        self.gather_until = None
        self.last_acks = len(self.acks)
        self.scheduled = False
        if self.lazy is not None:
            self.lazy.cancel()
            self.lazy = None
        batch, self.batch = self.batch, self._batch_class()
        forwards, self.forwards = self.forwards, []
        if batch:
            try:
                written = self.store.write(batch)
            except Fenced as e:
                fenced(self.store.path, e)
            except Exception:
                # Crash-only: acks promised a commit that did not happen, so the
                # runtime ends rather than go on with a journal it cannot trust.
                # Every record was checked when it arrived (protocol.REQUESTS:
                # types, 64-bit ints, finite times, sizes under SQLite's blob
                # limit), so what fails here is the store itself (disk I/O, a
                # full disk, a damaged file), never a process's input (issue 10).
                log.exception("the journal %s could not be written; ending the runtime", shown(self.store.path))
                os._exit(1)
            if self.nodes is not None:
                forwards = forwarding.numbered(self, forwards, written.seqs)
                for id in written.refused:
                    self._elsewhere(id)
        acks, self.acks = self.acks, []
        forwarding.deliver(self, forwards, acks)
        after, self.after = self.after, []
        for fn in after:
            try:
                fn()
            except Exception:  # one failed answer must not cost the others theirs
                log.exception("the journal writer failed to finish a request after a commit")

    # -- appends -------------------------------------------------------------------

    def _events(self, st: State, events: list[list[Any]], urgent: bool = True) -> None:
        if not events:
            return
        pid = st.row.id
        self.batch.events.extend((pid, seq, kind, name, body) for seq, kind, name, body in events)
        st.event_seq = max(st.event_seq, events[-1][0])
        if urgent:
            self._schedule()
        else:
            self._schedule_lazy()

    def _append(self, dest: State, body: bytes, sender: str | None, send_seq: int | None) -> None:
        # Both are set, or neither: op_send passes them for a durable sender only.
        if sender is not None and send_seq is not None:
            if dest.last_send.get(sender, 0) >= send_seq:
                return  # a send repeated by a restarted sender (issue 6)
            dest.last_send[sender] = send_seq
        if self.nodes is not None:
            # The store numbers it at commit (other nodes append too): until
            # then a forward names its row of the batch (see _numbered).
            self.forwards.append((dest, len(self.batch.mailbox), body))
            self.batch.mailbox.append((dest.row.id, 0, sender, send_seq, body))
        else:
            dest.mailbox_seq += 1
            self.batch.mailbox.append((dest.row.id, dest.mailbox_seq, sender, send_seq, body))
            self.forwards.append((dest, dest.mailbox_seq, body))
        self._schedule()

    # -- a journal shared by nodes (issue 12) ---------------------------------------------

    def _elsewhere(self, id: str) -> None:
        """``id``, spawned here, was in the journal already: another node's. It
        does not start here (start() starts only states the writer holds); the
        spawn answers with its address."""
        self.states.pop(id, None)

    def _append_elsewhere(self, id: str, body: bytes, sender: str | None, send_seq: int | None) -> None:
        """A message to a durable process this node does not run: the store
        numbers it, drops it if the journal has no unfinished ``id``, and wakes its node."""
        self.batch.mailbox.append((id, 0, sender, send_seq, body))
        self.batch.elsewhere.add(id)
        self._schedule()

    def stop(self) -> None:
        """Central's stop hook: commit what is left, and leave the journal."""
        if self.nodes is not None:
            self.nodes.stop()
        if self.batch:
            self.commit()
        self.store.close()

    def reply(self, p: Proc, req: int, value: Any) -> None:
        if req:  # 0: the process asked for no answer
            self.central.reply(p, req, value)

    def error(self, p: Proc, req: int, name: str, *args: Any) -> None:
        if req:
            self.central.error(p, req, name, *args)

    # -- ops -----------------------------------------------------------------------

    def op_spawn(self, p: Proc, msg: list[Any]) -> None:
        from .store import ProcessRow

        _, req, id, blob, function, sys_path, title = msg
        known = self.states.get(id)
        if known is not None:
            self.on_commit(lambda: self._answer_spawn(p, req, known))
            return
        row = ProcessRow(id, function, blob, sys_path, title, "running", None, None, time.time(), None)
        st = self.states[id] = State(row)
        self.batch.processes.append(row)
        self.on_commit(lambda: self.start(st))
        self.on_commit(lambda: self._answer_spawn(p, req, st))

    def _answer_spawn(self, p: Proc, req: int, st: State) -> None:
        proc = st.proc
        if proc is None:
            self.reply(p, req, [0, 0])
        else:
            self.central.when_forked(proc, lambda ok: self.reply(p, req, proc.wire_pid()))

    def op_whereis(self, p: Proc, msg: list[Any]) -> None:
        _, req, id = msg
        st = self.states.get(id)
        if st is not None:
            self._answer_spawn(p, req, st)
        elif self.nodes is not None and self.store.lookup(id) is not None:
            self.reply(p, req, [0, 0])  # another node runs it
        else:
            self.reply(p, req, None)

    def op_send(self, p: Proc, msg: list[Any]) -> None:
        _, req, dest_id, body, sender, send_seq, events = msg
        me = self.by_proc.get(p.id)
        if events and me is not None:
            self._events(me, events)
        dest = self.states.get(dest_id)
        if me is None and not (type(sender) is str and sender.startswith(D.KEY_SENDER) and send_seq == 1):
            sender = send_seq = None  # numbered sends are a durable sender's; a key is anyone's
        if dest is not None and not dest.done:
            self._append(dest, body, sender, send_seq)
        elif dest is None and self.nodes is not None:
            self._append_elsewhere(dest_id, body, sender, send_seq)
        # A message to an unknown or finished durable process is dropped, as
        # one to a dead Pid is (API.md section 3).
        if req:
            self.acks.append((p, req))
            self._schedule()

    def op_events(self, p: Proc, msg: list[Any]) -> None:
        _, req, events = msg
        st = self.by_proc.get(p.id)
        if st is not None:
            self._events(st, events, urgent=bool(req))
        if req:
            self.on_commit(lambda: self.reply(p, req, None))

    def op_hello(self, p: Proc, msg: list[Any]) -> None:
        req = msg[1]
        st = self.caller(p, req)
        if st is None:
            return

        def answer() -> None:
            # Everything the previous incarnation wrote is committed now; what
            # is committed from here on is forwarded, the rest is read.
            st.hello = True
            st.hello_seq = st.fwd_seq = st.mailbox_seq
            st.held = False
            if self.nodes is not None:
                self.nodes.hello(p, req, st)
            else:
                self.reply(p, req, [st.row.id, self.store.path, st.hello_seq])

        self.on_commit(answer)

    def caller(self, p: Proc, req: int) -> State | None:
        """The durable process ``p`` is, or None once ``req`` is answered that it is none."""
        st = self.by_proc.get(p.id)
        if st is None:
            self.error(p, req, "RuntimeError", "this process is not a durable process")
        return st

    def known(self, p: Proc, req: int, id: str) -> State | None:
        """Durable process ``id``, or None once ``req`` is answered with NoProcess
        (or, on a shared journal, with where it runs instead)."""
        st = self.states.get(id)
        if st is None and self.nodes is not None:
            # Finished under an earlier node (this runtime's previous run, or
            # another): this node takes it, as a Supervisor may start it again.
            st, owner = self.nodes.adopt(id)
            if owner is not None:
                self.error(
                    p, req, "RuntimeError",
                    f"durable process {id!r} runs on the node {owner}; a Supervisor follows a durable process "
                    "from the node that runs it",
                )  # fmt: skip
                return None
        if st is None:
            self.error(p, req, "NoProcess", id)
        return st

    def op_idle(self, p: Proc, msg: list[Any]) -> None:
        st = self.by_proc.get(p.id)
        if st is not None:
            st.idle_pos = st.event_seq

    def op_finish(self, p: Proc, msg: list[Any]) -> None:
        _, req, events, reason = msg
        st = self.caller(p, req)
        if st is None:
            return
        self._events(st, events)
        self.finish(st, reason)
        self.on_commit(lambda: self.reply(p, req, None))

    def op_sleep(self, p: Proc, msg: list[Any]) -> None:
        _, req, events, wake_at = msg
        st = self.caller(p, req)
        if st is None:
            return
        self._events(st, events)
        st.row.status, st.row.wake_at = "asleep", wake_at
        self.batch.status.append((st.row.id, "asleep", None, wake_at, None))
        self.on_commit(lambda: self.reply(p, req, None))

    def op_result(self, p: Proc, msg: list[Any]) -> None:
        _, req, id = msg
        if id not in self.states and self.nodes is not None:
            row = self.store.lookup(id)
            if row is None:
                self.error(p, req, "NoProcess", id)
            elif row.status == "done":
                self.reply(p, req, _unpackb(row.reason))
            else:
                self.nodes.waiters.setdefault(id, []).append((p, req))  # answered by a tick
            return
        st = self.known(p, req, id)
        if st is None:
            return
        if st.committed_done:
            self.reply(p, req, _unpackb(st.row.reason))
        else:
            st.waiters.append((p, req))

    def op_cancel(self, p: Proc, msg: list[Any]) -> None:
        req = msg[1]
        for st in self.states.values():
            if (p, req) in st.waiters:
                st.waiters.remove((p, req))
        if self.nodes is not None:
            self.nodes.cancel(p, req)

    # -- the end of a process ----------------------------------------------------------

    def finish(self, st: State, wire_reason: list[Any]) -> None:
        if st.done:
            return
        st.done = True
        now = time.time()
        reason = _packb(wire_reason)
        st.row.status, st.row.reason, st.row.finished = "done", reason, now
        self.batch.status.append((st.row.id, "done", reason, None, now))

        def notify() -> None:
            st.committed_done = True
            waiters, st.waiters = st.waiters, []
            for p, req in waiters:
                self.reply(p, req, wire_reason)

        self.on_commit(notify)

    def on_exit(self, p: Proc, reason: list[Any]) -> bool:
        """Central's exit hook; True when this end is taken care of here (the
        process starts again, or its end was logged), so central does not
        report it as an end nobody watches."""
        st = self.by_proc.pop(p.id, None)
        if st is None:
            return False
        for q, req in list(st.waiters):
            if q is p:
                st.waiters.remove((q, req))
        st.proc, st.hello = None, False
        if self.batch:
            self._schedule()  # what it left unacknowledged is committed before anything else happens to it
        if self.central.refusal() is not None or st.done:
            return False
        if st.row.status == "asleep":
            self.wake_later(st)
            return True
        kind = reason[0]
        if kind in ("killed", "linked"):
            # Ended by the runtime on request (kill, a linked partner's end):
            # that is its end, as for any process (API.md section 4).
            self.finish(st, reason)
            return False
        pos = st.event_seq
        if st.idle_pos == pos:
            st.crashes = 0  # killed while waiting for a message: no fault of its code
        elif pos == st.crash_pos:
            st.crashes += 1
        else:
            st.crash_pos, st.crashes = pos, 1
        if st.crashes >= CRASH_LIMIT:
            from ..core import codec

            detail = {"position": pos, "crashes": st.crashes, "last": _last(reason)}
            log.error(
                "durable process %r crashed %d times at journal position %d (last: %s); not restarting it",
                st.row.id,
                st.crashes,
                pos,
                detail["last"],
            )
            self.finish(st, ["crashloop", codec.dumps(detail)])
            return True
        log.info("durable process %r ended without finishing (%s); restarting it", st.row.id, P.describe_reason(reason))
        self.loop.call_soon(self.start, st)
        return True

    def wake_later(self, st: State) -> None:
        delay = max(0.0, (st.row.wake_at or 0.0) - time.time())
        # The event loop's timers overflow far below a float's range (a
        # deadline in the year 10**300): a long sleep is checked again daily.
        st.timer = self.loop.call_later(min(delay, _MAX_TIMER_S), self._wake, st)

    def _wake(self, st: State) -> None:
        st.timer = None
        if st.done or st.proc is not None:
            return
        if (st.row.wake_at or 0.0) - time.time() > _MAX_TIMER_S:
            self.wake_later(st)
            return
        st.row.status, st.row.wake_at = "running", None
        self.batch.status.append((st.row.id, "running", None, None, None))
        self.on_commit(lambda: self.start(st))

    # -- starting incarnations -------------------------------------------------------------

    def start(self, st: State) -> None:
        """Start st's next incarnation (unless it finished, runs, or no process can start now)."""
        if st.done or st.proc is not None or self.states.get(st.row.id) is not st or self.central.refusal() is not None:
            return
        row = st.row
        # The running program's sys.path first (a resume runs the code of now,
        # as `occasional journal replay` checks it), then the spawner's own.
        stored = _unpackb(row.sys_path)
        sys_path = self.sys_path + [p for p in stored if p not in self.sys_path]
        child = self.central.start_process(row.function, row.blob, sys_path, row.title)
        st.proc, st.hello, st.idle_pos = child, False, -1
        self.by_proc[child.id] = st
        self.following.link_new(st, child)

    def resume(self) -> None:
        """Start every unfinished durable process of the journal (API.md section 7, resume)."""
        for st in self.states.values():
            if st.done:
                continue
            if st.row.status == "asleep":
                self.wake_later(st)
            else:
                self.loop.call_soon(self.start, st)


def _last(reason: list[Any]) -> str:
    """A crash loop's last end as its journaled record says it: ``"signal SIGKILL"``."""
    local = P.os_reason(reason)
    return str(reason[0]) if local is None else f"{local[0]} {local[1]}"


def _no_journal(central: Central) -> None:
    def refuse(p: Proc, msg: list[Any]) -> None:
        if len(msg) > 1 and type(msg[1]) is int and msg[1]:
            central.error(p, msg[1], "RuntimeError", _NO_JOURNAL)

    def ignore(p: Proc, msg: list[Any]) -> None:
        pass

    handlers = dict.fromkeys(D.REQUESTS, refuse)
    handlers[D.D_CANCEL] = handlers[D.D_IDLE] = ignore
    central.add_ops("durable", handlers)


def install(central: Central, options: dict[str, Any]) -> None:
    """Central's hook: open the journal, take the durable ops, resume what is unfinished."""
    journal = options.get("journal")
    if journal is None:
        _no_journal(central)
        return
    from .store import DEFAULT_SYNC, Store

    # The journal string picks the store: a postgresql:// URL or an SQLite path (issue 12).
    lease = options.get("lease")
    store = Store(journal, options.get("journal_sync") or DEFAULT_SYNC, **({} if lease is None else {"lease": lease}))
    w = Writer(central, store)
    w.sys_path = [p for p in options.get("sys_path") or [] if isinstance(p, str)]
    central.add_ops("durable", {
        D.D_SPAWN: w.op_spawn, D.D_SEND: w.op_send, D.D_EVENTS: w.op_events, D.D_HELLO: w.op_hello,
        D.D_RESULT: w.op_result, D.D_CANCEL: w.op_cancel, D.D_FINISH: w.op_finish, D.D_SLEEP: w.op_sleep,
        D.D_IDLE: w.op_idle, D.D_WHEREIS: w.op_whereis, **w.following.handlers(),
    })  # fmt: skip
    central.add_exit_hook(w.on_exit)
    central.add_stop_hook(w.stop)
    w.resume()
    if w.nodes is not None:
        w.nodes.start()
