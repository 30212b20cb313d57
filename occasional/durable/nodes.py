"""The writer's side of a journal shared by nodes (API.md section 11, issue 12).

A node renews its lease, takes over the processes of nodes that lost theirs,
hears of messages other nodes committed for its processes, and answers
``durable.result`` for processes other nodes run. All of it happens in one
*tick* of the store (:meth:`.store.postgres.PostgresStore.tick`: one
transaction, one round trip) every quarter lease, at most every half second;
a ``pg_notify`` from another node's commit brings the next tick forward. A
node that lost its lease ends its runtime (:func:`fenced`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, NoReturn

import msgpack

from . import forwarding
from .store import Fenced, shown

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..core.table import Proc
    from .state import State
    from .store import ProcessRow
    from .writer import Writer

log = logging.getLogger("occasional.durable")
_unpackb = msgpack.unpackb
_WAKE_S = 0.002  # a burst of wake-ups is one read


def fenced(journal: str, e: Fenced) -> NoReturn:
    """End the runtime: another node runs this node's durable processes now.

    Crash-only (issue 12): nothing this node does may reach the journal, and
    its incarnations must not go on; ending central ends all of them."""
    log.critical(
        "this node lost its lease on the journal %s (%s): another node runs its durable processes now; "
        "ending the runtime",
        shown(journal),
        e,
    )
    os._exit(1)


class Nodes:
    """Ticks, wake-ups and waiters of a writer on a shared journal."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.loop = writer.loop
        self.store: Any = writer.store  # a shared store (store/postgres.py)
        self.ticker: Any = None
        self.stopped = False
        # Callers of durable.result for processes other nodes run: answered by a tick.
        self.waiters: dict[str, list[tuple[Proc, int]]] = {}

    def start(self) -> None:
        self._listen()
        self._tick_later(self._interval())

    def stop(self) -> None:
        self.stopped = True
        if self.ticker is not None:
            self.ticker.cancel()
        if self.store.listener is not None:
            self.loop.remove_reader(self.store.listener.fileno())

    def cancel(self, p: Proc, req: int) -> None:
        for waiters in self.waiters.values():
            if (p, req) in waiters:
                waiters.remove((p, req))

    def hello(self, p: Proc, req: int, st: State) -> None:
        """Answer a replaying incarnation's D_HELLO with its events and mailbox,
        read by the store's few pooled connections, off central's loop."""
        future = self.store.read(st.row.id, st.hello_seq)
        future.add_done_callback(lambda f: self.loop.call_soon_threadsafe(self._loaded, p, req, st, f))

    def _loaded(self, p: Proc, req: int, st: State, future: Future[tuple[list[Any], list[Any]]]) -> None:
        error = future.exception()
        if error is not None:
            self.w.error(p, req, "RuntimeError", f"cannot read the journal {shown(self.store.path)}: {error}")
        else:
            events, mailbox = future.result()
            self.w.reply(p, req, [st.row.id, self.store.path, st.hello_seq, events, mailbox])

    def adopt(self, id: str) -> tuple[State | None, str | None]:
        """Durable process ``id`` if it finished under an earlier node (this
        runtime's previous run, or another): this node takes it, as a Supervisor
        may start it again. Else None, and the node that runs it, if any."""
        row, owner = self.store.adopt(id)
        if row is None:
            return None, owner
        return self.w.add_states([row], self.store.last_seqs([id]))[0], None

    def _interval(self) -> float:
        # Often enough that a dead node's processes move within lease + 1 s
        # (API.md section 11), and that a lease is renewed four times over.
        return float(min(self.store.lease / 4, 0.5))

    def _tick_later(self, delay: float) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        self.ticker = self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self.ticker = None
        if self.stopped:
            return
        store = self.store
        try:
            tick = store.tick(list(self.waiters))
        except Fenced as e:
            fenced(store.path, e)
        except Exception as e:
            # Not a lost lease: the server is unreachable or restarting. Keep
            # the processes and try again; the fence decides when it answers.
            log.warning(
                "the journal %s could not be reached to renew this node's lease (%s); trying again",
                shown(store.path),
                e,
            )
            self._tick_later(self._interval())
            return
        if tick.claimed:
            self._take_over(tick.claimed)
        w = self.w
        for id, n in tick.counters.items():
            st = w.states.get(id)
            if st is not None and n > st.mailbox_seq:
                st.mailbox_seq = n  # other nodes' messages: read from the journal
                forwarding.refill(w, st)
        for id, reason in tick.finished.items():
            for p, req in self.waiters.pop(id, []):
                w.reply(p, req, _unpackb(reason))
        if store.listener is None:
            self._listen()
        # Orphans may be left (each node claims a share, so they spread over
        # the live nodes, which the dead node's end woke): look again sooner.
        self._tick_later(self._interval() / (2 if tick.claimed else 1))

    def _take_over(self, rows: list[ProcessRow]) -> None:
        w = self.w
        added = w.add_states(rows, self.store.last_seqs([r.id for r in rows]))
        log.info(
            "node %s took over %d durable processes: %s", self.store.node, len(added), ", ".join(r.id for r in rows)
        )
        for st in added:
            if st.row.status == "asleep":
                w.wake_later(st)
            else:
                w.start(st)

    def _listen(self) -> None:
        try:
            fd = self.store.listen()
        except Exception as e:
            log.warning("cannot listen for wake-ups on the journal %s (%s); polling only", shown(self.store.path), e)
            return
        self.loop.add_reader(fd, self._woken, fd)

    def _woken(self, fd: int) -> None:
        try:
            woken = self.store.woken()
        except Exception:
            # Its connection is gone: polling goes on, the next tick listens again.
            self.loop.remove_reader(fd)
            self.store.unlisten()
            return
        if woken and self.ticker is not None and self.ticker.when() - self.loop.time() > _WAKE_S:
            self._tick_later(_WAKE_S)
