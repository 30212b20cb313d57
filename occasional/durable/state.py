"""One durable process as central's journal writer knows it: its journal row,
its running incarnation, and the counts the writer keeps for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.table import Proc
    from .store import ProcessRow


class State:
    """One durable process, as central knows it."""

    __slots__ = (
        "row",
        "proc",
        "hello",
        "hello_seq",
        "mailbox_seq",
        "event_seq",
        "last_send",
        "crash_pos",
        "crashes",
        "idle_pos",
        "waiters",
        "done",
        "committed_done",
        "spawn_waiters",
        "timer",
        "fwd_seq",
        "held",
    )

    def __init__(self, row: ProcessRow) -> None:
        self.row = row
        self.proc: Proc | None = None
        self.hello = False
        self.hello_seq = 0
        self.mailbox_seq = 0
        self.event_seq = 0
        self.last_send: dict[str, int] = {}
        self.crash_pos = -1
        self.crashes = 0
        self.idle_pos = -1
        self.waiters: list[tuple[Proc, int]] = []
        self.done = row.status == "done"
        self.committed_done = self.done
        self.spawn_waiters: list[Callable[[], None]] = []
        self.timer: Any = None
        # The last mailbox seq forwarded to the running incarnation, and
        # whether forwarding stopped at the window (see forwarding.catch_up).
        self.fwd_seq = 0
        self.held = False
