"""The body of every durable process: replay its journal, then go live.

:func:`run` is what ``durable.spawn`` serialises, and what the journal
records for each durable process: it stays here, by this name, so journals
recorded by earlier versions still start (tests/durable/journals). The
context it runs the function with is :mod:`occasional.durable.context`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import context
from ..core.reasons import keep_traceback, reason_from_exit_code
from . import protocol as D
from .context import DurableContext
from .errors import JournalEnd
from .pid import DurablePid
from .store import Reader


def run(durable_id: str, f: Callable[..., Any], args: tuple[Any, ...], check_path: str | None = None) -> Any:
    """The body of every durable process: replay its journal, then go live.

    With ``check_path`` (``occasional journal replay``), only replay the
    journal at that path: no writes, no waits, and JournalEnd where a live
    run would go on."""
    check_only = check_path is not None
    plain = context.current("a durable process")
    pid = DurablePid._make_durable(durable_id, plain.pid.id, plain.pid.os_pid)
    # The durable context reads the central socket from now on.
    ctx = DurableContext(plain.handover(), pid, durable_id, check_only)
    context.set_current(ctx)
    if check_path is not None:
        with Reader(check_path) as reader:
            ctx.load(reader.events(durable_id), reader.mailbox(durable_id))
    else:
        answer = ctx.call(D.D_HELLO)
        _id, path, upto = answer[:3]
        if len(answer) == 5:
            # A shared journal: central read it for us with its pooled connections (issue 12).
            ctx.load([tuple(e) for e in answer[3]], [tuple(m) for m in answer[4]])
        else:
            with Reader(path) as reader:
                ctx.load(reader.events(durable_id), reader.mailbox(durable_id, upto))
    reason: tuple[str, Any]
    try:
        value = f(*args)
        if ctx.pos < len(ctx.events):
            raise ctx.mismatch("return", "")
        reason = ("ok", value)
    except SystemExit as e:
        # Journaled as the OS reports the end (sys.exit(300) is 44); core/child.py,
        # where this SystemExit goes on to, ends the process so and prints a message.
        reason = reason_from_exit_code(e.code)
        ctx.finish(reason)
        ctx.flush_all()
        raise
    except JournalEnd:
        raise
    except BaseException as e:
        keep_traceback(e, e.__traceback__)
        ctx.finish(("error", e))
        ctx.flush_all()
        raise
    ctx.finish(reason)
    ctx.flush_all()
    return value
