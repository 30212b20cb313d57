"""Central's side of a durable process supervised as a child: the requests
``durable.supervised`` sends (D_FOLLOW, D_STOP), answered by the journal writer.

A supervisor *follows* a durable id: every incarnation of it starts linked
to the supervisor, so the supervisor hears of each end, and asks where the
process is now (docs/architecture.md, "Durable processes"; the process side
and the rules are in :mod:`.supervised`). Everything here goes through
central's public surface (issue 11): ``lookup``, ``link``, ``kill``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from . import protocol as D

if TYPE_CHECKING:
    from ..core.central import Handler
    from ..core.table import Proc
    from .state import State
    from .writer import Writer

_unpackb = msgpack.unpackb


class Following:
    """The processes that follow each durable id, and the ops that start or end following."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.central = writer.central
        self.followers: dict[str, set[int]] = {}  # id -> processes linked to every incarnation

    def handlers(self) -> dict[int, Handler]:
        return {D.D_FOLLOW: self.op_follow, D.D_STOP: self.op_stop}

    def link_new(self, st: State, child: Proc) -> None:
        """A new incarnation starts linked to every live process that follows its id."""
        followers = self.followers.get(st.row.id)
        if not followers:
            return
        for fid in list(followers):
            q = self.central.lookup(fid)
            if q is None:
                followers.discard(fid)
                continue
            self.central.link(child, q)

    def op_follow(self, p: Proc, msg: list[Any]) -> None:
        _, req, id, resume = msg
        w = self.w
        st = w.known(p, req, id)
        if st is None:
            return
        if st.done and resume and st.row.reason is not None and _unpackb(st.row.reason)[0] != "ok":
            self._reopen(st)
        if not st.done:
            self.followers.setdefault(id, set()).add(p.id)
            proc = st.proc
            if proc is not None and not proc.finalized:
                self.central.link(proc, p)
        w.on_commit(lambda: self._answer(p, req, st))

    def _answer(self, p: Proc, req: int, st: State) -> None:
        w = self.w
        if st.done:
            if not st.committed_done:
                w.on_commit(lambda: self._answer(p, req, st))
                return
            w.reply(p, req, ["done", _unpackb(st.row.reason)])
            return
        proc = st.proc
        if proc is None:
            w.reply(p, req, ["idle"])
        elif proc.os_pid is None:
            self.central.when_forked(proc, lambda ok: self._answer(p, req, st))
        else:
            w.reply(p, req, ["running", proc.id, proc.os_pid])

    def _reopen(self, st: State) -> None:
        """Make a finished id unfinished again and start it: it replays its journal."""
        w = self.w
        st.done = st.committed_done = False
        st.crashes, st.crash_pos = 0, -1
        row = st.row
        row.status, row.reason, row.finished = "running", None, None
        w.batch.status.append((row.id, "running", None, None, None))
        w.on_commit(lambda: w.start(st))

    def op_stop(self, p: Proc, msg: list[Any]) -> None:
        _, req, id, why = msg
        w = self.w
        st = w.known(p, req, id)
        if st is None:
            return
        followers = self.followers.get(id)
        if followers is not None:
            followers.discard(p.id)
        if not st.done:
            reason = ["killed", why]
            proc = st.proc
            if proc is not None and not proc.finalized:
                self.central.kill(proc, reason)  # its exit hook makes the kill its final reason
            else:
                if st.timer is not None:
                    st.timer.cancel()
                    st.timer = None
                w.finish(st, reason)
        w.on_commit(lambda: w.reply(p, req, None))
