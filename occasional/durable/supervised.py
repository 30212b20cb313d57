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

This module is the supervisor's side, run in the supervisor's process;
central's side, which the journal writer answers, is :mod:`.following`.
"""

from __future__ import annotations

from typing import Any

from ..core import codec, context
from ..core.api import unwrap_partial
from ..core.context import reason_from_wire
from . import protocol as D


def is_spawn(f: Any) -> bool:
    """``durable.spawn`` or a partial of it (a supervisor's child function)."""
    from .api import spawn

    return unwrap_partial(f)[0] is spawn


def start(f: Any, args: tuple[Any, ...]) -> tuple[str, Any]:
    """Start the durable child ``f(*args)`` (a partial of durable.spawn) and follow it.

    Spawns the id if the journal does not have it, resumes it if it ended
    abnormally, and returns what ``follow`` returns."""
    from .api import spawn

    _spawn, args, keywords = unwrap_partial(f, args)
    if keywords:
        raise TypeError(f"{f!r}: durable.spawn takes no keyword arguments; pass id, f and its arguments positionally")
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
    answer = ctx.wait_reply(ctx.request(D.D_RESULT, id), None)
    assert answer is not None  # with no deadline it waits for the answer
    ok, value = answer
    return reason_from_wire(value) if ok else ("noproc", None)
