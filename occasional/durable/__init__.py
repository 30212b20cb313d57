"""Durable processes: a journaled mailbox, steps, timers and replay (API.md section 7).

A durable process has a stable string id. Every message sent to it is
committed to its journal before ``send`` returns; it journals what each
receive took, every step outcome, clock and random values, sleeps and its own
sends. When it crashes or is SIGKILLed, the runtime starts it again and it
replays its journal (no step runs twice, no send is made twice), then goes
live. ``occ.run(main, journal=PATH)`` resumes every unfinished one.

Modules: ``api`` (the verbs), ``context`` (a durable process's context),
``pid`` (``DurablePid``), ``replay`` (the body every durable process runs),
``protocol`` (its frames to central, claimed from core), ``writer`` (central's
journal writer and restarts), ``state`` (one durable process as the writer
knows it), ``supervised`` (a durable process as a Supervisor child: what the
supervisor asks central), ``following`` (central's side of that: D_FOLLOW,
D_STOP), ``child_kind`` (that child's kind, registered with the Supervisor on
import), ``store`` (one interface, two stores: SQLite and PostgreSQL), ``cli``
(``occasional journal``).
"""

from __future__ import annotations

import os
from typing import Any

from ..core import runtime as _runtime
from ..core.checks import is_number, is_seconds
from . import child_kind as child_kind  # a partial of durable.spawn is a Supervisor child (issue 11)
from .api import (
    DurablePid as DurablePid,
    Retry as Retry,
    attempt as attempt,
    now as now,
    random as random,
    result as result,
    sleep as sleep,
    spawn as spawn,
    step as step,
    step_key as step_key,
    uuid4 as uuid4,
    whereis as whereis,
)
from .errors import NonDeterminism as NonDeterminism
from .store import DEFAULT_SYNC as _DEFAULT_SYNC, SYNC_MODES as _SYNC_MODES, is_postgres


def _check_options(call: str, options: dict[str, Any]) -> None:
    journal = options.get("journal")
    if journal is not None and not isinstance(journal, (str, os.PathLike)):
        raise TypeError(f"{call}: journal={journal!r} is not a path; pass a file path or a store URL as a string")
    sync = options.get("journal_sync")
    if sync is not None and sync not in _SYNC_MODES:
        raise ValueError(
            f"{call}: journal_sync={sync!r} is not a sync mode; use 'machine' (a commit survives power loss) "
            f"or 'process' (a commit survives the SIGKILL of any process); the default is {_DEFAULT_SYNC!r}"
        )
    if sync is not None and options.get("journal") is None:
        raise ValueError(
            f"{call}: journal_sync={sync!r} needs journal=PATH or a postgresql:// URL, the journal it applies to"
        )
    lease = options.get("lease")
    if lease is not None:
        if not is_number(lease):
            raise TypeError(f"{call}: lease={lease!r} is not a number; give the node's lease in seconds, e.g. 10")
        if not is_seconds(lease, positive=True):
            raise ValueError(f"{call}: lease={lease!r} is not a lease; give a finite number of seconds > 0, e.g. 10")
        if journal is None or not is_postgres(journal):
            raise ValueError(
                f"{call}: lease={lease!r} is the lease of a node on a journal shared by nodes; it needs "
                f"journal='postgresql://...' (the journal is {journal!r}); leave lease out otherwise"
            )


# Central opens the journal through this hook: core never imports durable (STYLE.md).
_runtime.add_central_hook("occasional.durable.writer:install", ("journal", "journal_sync", "lease"), _check_options)

__all__ = [
    "spawn", "result", "whereis", "DurablePid",
    "step", "Retry", "step_key", "attempt",
    "sleep", "now", "random", "uuid4",
    "NonDeterminism",
]  # fmt: skip
