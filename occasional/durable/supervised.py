"""A durable process as a Supervisor child (API.md section 6: "a child may be
a process, a port, a durable process or a supervisor").

The child is the durable process, not one of its Linux processes. A child
spec names it with a partial of ``durable.spawn``::

    {"id": "job", "function": functools.partial(durable.spawn, "job-1", f, x), "restart": "transient"}

What the supervisor sees (docs/architecture.md, "Durable processes"):

- It *follows* the durable process: central links every new incarnation of it
  to the supervisor, so the supervisor gets an EXIT whenever an incarnation
  ends, and then asks where the process is now (``follow``). An incarnation
  the runtime restarts itself (a SIGKILL, ``os._exit``) or one that ended for
  a long durable sleep is no end of the child: the supervisor links to the new
  incarnation, counts no restart and logs nothing (the runtime logs its
  restart).
- Only the durable process's final reason (``durable.result``) is an exit of
  the child, and the restart type applies to it as in OTP, with one
  exception: a durable process that returned is finished for good (its id
  keeps its result and never runs again, API.md section 7), so it is not
  restarted even when ``permanent``; it stays in the supervisor with no pid,
  as a transient child that returned.
- Restarting a durable child after an abnormal final end (an exception, a
  kill, a crash loop) *resumes* its id: the journal is replayed (no step runs
  twice, no send is made twice) and the code after the last journaled event
  runs again. Starting the supervisor on a journal where the id ended
  abnormally resumes it the same way; where it returned, nothing runs.
- Stopping the child (supervisor shutdown, ``terminate_child``, a sibling's
  restart) ends the durable process for good with ``("killed", "shutdown")``,
  whatever its incarnation and also while it is asleep; the ``shutdown`` time
  of the spec does not apply, as a durable process loses nothing to a kill.

This module holds both sides: the ops central's journal writer takes
(``install``) and the calls the supervisor makes.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import msgpack

from ..core import codec, context
from ..core.context import reason_from_wire
from . import protocol as D

if TYPE_CHECKING:
    from ..core.central import Proc
    from .writer import State, Writer

_unpackb = msgpack.unpackb


# -- the supervisor's side ------------------------------------------------------------


def is_spawn(f: Any) -> bool:
    """``durable.spawn`` or a partial of it (a supervisor's child function)."""
    from .api import spawn

    while isinstance(f, functools.partial):
        f = f.func
    return f is spawn


def start(f: Any, args: tuple[Any, ...]) -> tuple[str, Any]:
    """Start the durable child ``f(*args)`` (a partial of durable.spawn) and follow it.

    Spawns the id if the journal does not have it, resumes it if it ended
    abnormally, and returns what ``follow`` returns."""
    from .api import spawn

    while isinstance(f, functools.partial):
        if f.keywords:
            raise TypeError(
                f"{f!r}: durable.spawn takes no keyword arguments; pass id, f and its arguments positionally"
            )
        args = f.args + args
        f = f.func
    if not args:
        raise TypeError("a durable child needs an id: use functools.partial(durable.spawn, id, f, *args)")
    spawn(*args)
    return follow(args[0], resume=True)


def follow(id: str, resume: bool = False) -> tuple[str, Any]:
    """Link the caller to durable process ``id`` across its incarnations.

    Returns ``("running", DurablePid)`` for the incarnation running now,
    ``("idle", DurablePid)`` (``os_pid`` 0) while it is asleep, or ``("done",
    reason)`` once it finished (committed). With ``resume``, an id that ended
    abnormally is started again first."""
    from .api import DurablePid

    ctx = context.current("a supervisor")
    answer = ctx.call(D.D_FOLLOW, id, resume)
    if answer[0] == "done":
        return "done", reason_from_wire(answer[1])
    if answer[0] == "running":
        return "running", DurablePid._make_durable(id, answer[1], answer[2])
    return "idle", DurablePid._make_durable(id, 0, 0)


def stop(id: str, why: Any = "shutdown") -> tuple[str, Any]:
    """End durable process ``id`` for good with ``("killed", why)``; return its final reason."""
    ctx = context.current("a supervisor")
    ctx.call(D.D_STOP, id, codec.dumps(why))
    ctx._next_req += 1
    req = ctx._next_req
    ctx.tell([D.D_RESULT, req, id])
    while req not in ctx.replies:
        ctx._read_central(blocking=True)
    ok, value = ctx.replies.pop(req)
    return reason_from_wire(value) if ok else ("noproc", None)


# -- central's side (installed by writer.install) ----------------------------------------


def install(w: Writer) -> None:
    w.central.ops[D.D_FOLLOW] = functools.partial(op_follow, w)
    w.central.ops[D.D_STOP] = functools.partial(op_stop, w)


def link_followers(w: Writer, st: State, child: Proc) -> None:
    """A new incarnation starts linked to every live process that follows its id."""
    followers = w.followers.get(st.row.id)
    if not followers:
        return
    for fid in list(followers):
        q = w.central._live(fid)
        if q is None:
            followers.discard(fid)
            continue
        child.links.add(fid)
        q.links.add(child.id)


def op_follow(w: Writer, p: Proc, msg: list[Any]) -> None:
    _, req, id, resume = msg
    st = w.states.get(id)
    if st is None:
        w._error(p, req, "NoProcess", id)
        return
    if st.done and resume and st.row.reason is not None and _unpackb(st.row.reason)[0] != "ok":
        _reopen(w, st)
    if not st.done:
        w.followers.setdefault(id, set()).add(p.id)
        proc = st.proc
        if proc is not None and not proc.finalized:
            proc.links.add(p.id)
            p.links.add(proc.id)
    w.on_commit(lambda: _answer(w, p, req, st))


def _answer(w: Writer, p: Proc, req: int, st: State) -> None:
    if st.done:
        if not st.committed_done:
            w.on_commit(lambda: _answer(w, p, req, st))
            return
        w._reply(p, req, ["done", _unpackb(st.row.reason)])
        return
    proc = st.proc
    if proc is None:
        w._reply(p, req, ["idle"])
    elif proc.os_pid is None:
        proc.forked_waiters.append(lambda ok: _answer(w, p, req, st))
    else:
        w._reply(p, req, ["running", proc.id, proc.os_pid])


def _reopen(w: Writer, st: State) -> None:
    """Make a finished id unfinished again and start it: it replays its journal."""
    st.done = st.committed_done = False
    st.crashes, st.crash_pos = 0, -1
    row = st.row
    row.status, row.reason, row.finished = "running", None, None
    w.batch.status.append((row.id, "running", None, None, None))
    w.on_commit(lambda: w._start(st))


def op_stop(w: Writer, p: Proc, msg: list[Any]) -> None:
    _, req, id, why = msg
    st = w.states.get(id)
    if st is None:
        w._error(p, req, "NoProcess", id)
        return
    followers = w.followers.get(id)
    if followers is not None:
        followers.discard(p.id)
    if not st.done:
        reason = ["killed", why]
        proc = st.proc
        if proc is not None and not proc.finalized:
            w.central._kill(proc, reason)  # its exit hook makes the kill its final reason
        else:
            if st.timer is not None:
                st.timer.cancel()
                st.timer = None
            w._finish(st, reason)
    w.on_commit(lambda: w._reply(p, req, None))
