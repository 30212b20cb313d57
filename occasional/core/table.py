"""Central's process table: one row per process, the registered names, the
links and the monitors between rows.

:class:`Table` is the only code that adds or removes a row, a name, a link or
a monitor (issue 11: one owner for each piece of central's state); central's
request handlers and its extensions (the durable journal) go through its
methods, never through the dicts and sets themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transport import Conn

Ref = tuple[int, int]  # a monitor's reference: (the owner's pid id, its number)


class Proc:
    """One row of the process table."""

    __slots__ = (
        "id",
        "os_pid",
        "conn",
        "name",
        "function",
        "links",
        "monitored_by",
        "monitoring",
        "trapping",
        "started_at",
        "reported",
        "kill_reason",
        "status",
        "hidden",
        "own_group",
        "owner",
        "forked_waiters",
        "fork_error",
        "finalized",
        "summary",
        "argv",
        "restarts",
        "started_mono",
        "child_id",
        "pidfd",
    )

    def __init__(self, id: int, function: str) -> None:
        self.id = id
        self.os_pid: int | None = None
        self.conn: Conn | None = None
        self.name: str | None = None
        self.function = function
        self.links: set[int] = set()
        self.monitored_by: dict[Ref, int] = {}  # ref -> watcher id
        self.monitoring: dict[Ref, int] = {}  # ref -> watched id
        self.trapping = False
        self.started_at = time.time()
        self.reported: list[Any] | None = None
        self.kill_reason: list[Any] | None = None
        self.status: int | None = None
        self.hidden = False
        self.own_group = True
        self.owner = False
        # Run once the forkserver reports the fork (True) or its failure (False):
        # answers that need the Linux pid wait here (spawn, whereis, connect).
        self.forked_waiters: list[Callable[[bool], None]] = []
        self.fork_error: str | None = None  # the forkserver's words when the fork failed (its errno)
        self.finalized = False
        self.summary = ""
        self.argv: list[str] | None = None  # a port's executable and arguments
        self.restarts = 0  # as its supervisor counted them
        self.child_id: str | None = None  # its id in its supervisor's children
        self.started_mono = time.monotonic()
        # A pidfd for its Linux process while central knows it alive: every
        # signal goes through it, never through a pid that may have been
        # reused by then (issue 10; see reaping.open_pidfd).
        self.pidfd = -1

    def wire_pid(self) -> list[int]:
        """How a Pid crosses the wire: ``[pid_id, os_pid]`` (0 before the fork is known)."""
        return [self.id, self.os_pid or 0]


class Table:
    """Every process central knows, by id and by Linux pid, and the names."""

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.by_os_pid: dict[int, Proc] = {}
        self.names: dict[str, int] = {}
        self.next_id = 0
        self.owner: Proc | None = None  # the interpreter that started the runtime
        # Told of every name taken (the holder) or freed (None): a node's
        # Erlang VM mirrors the names, for {Name, Node} ! Msg (occasional.dist).
        self.name_hooks: list[Callable[[str, Proc | None], None]] = []

    # -- rows ----------------------------------------------------------------------

    def new(self, function: str, *, owner: bool = False) -> Proc:
        """A new row with the next id (ids are never reused within a runtime)."""
        self.next_id += 1
        p = Proc(self.next_id, function)
        self.procs[p.id] = p
        if owner:
            p.owner, p.own_group = True, False
            self.owner = p
        return p

    def attach(self, p: Proc, conn: Conn) -> None:
        """``conn`` is ``p``'s connection to central from now on."""
        p.conn = conn

    def forked(self, p: Proc, os_pid: int) -> None:
        """``p`` runs as Linux process ``os_pid`` (the forkserver's FORKED)."""
        p.os_pid = os_pid
        if os_pid:
            self.by_os_pid[os_pid] = p

    def lookup(self, pid_id: Any) -> Proc | None:
        """The live row of ``pid_id`` (any value a process sent), or None."""
        p = self.procs.get(pid_id) if type(pid_id) is int else None
        if p is None or p.finalized:
            return None
        return p

    def get(self, pid_id: int) -> Proc | None:
        """The row of ``pid_id`` while it is in the table (alive or ending)."""
        return self.procs.get(pid_id)

    def by_linux_pid(self, os_pid: int) -> Proc | None:
        return self.by_os_pid.get(os_pid)

    def rows(self) -> list[Proc]:
        """Every row, in a list the caller may change the table while walking."""
        return list(self.procs.values())

    def __iter__(self) -> Iterator[Proc]:
        return iter(self.procs.values())

    def users(self) -> int:
        """How many rows are processes of the runtime (not its owner)."""
        owner = self.owner
        return len(self.procs) - (1 if owner is not None and owner.id in self.procs else 0)

    def remove(self, p: Proc) -> tuple[list[tuple[Proc, Ref]], list[Proc]]:
        """Take ``p`` out of the table: its row, its name, its monitors and the
        other end of its links. Returns whom to tell: ``(watcher, ref)`` for
        each monitor of ``p``, and each linked process, by id.

        ``p``'s own sets stay as they were: whoever reports its end reads them.
        """
        p.finalized = True
        del self.procs[p.id]
        if p.os_pid is not None and self.by_os_pid.get(p.os_pid) is p:
            del self.by_os_pid[p.os_pid]
        # Free the name before any DOWN goes out: whoever sees the DOWN and
        # asks whereis() finds it free (issue 3).
        if p.name is not None and self.names.get(p.name) == p.id:
            del self.names[p.name]
            for hook in self.name_hooks:
                hook(p.name, None)
        watchers: list[tuple[Proc, Ref]] = []
        for ref, watcher_id in p.monitored_by.items():
            w = self.procs.get(watcher_id)
            if w is not None:
                w.monitoring.pop(ref, None)
                watchers.append((w, ref))
        for ref, watched_id in p.monitoring.items():
            q = self.procs.get(watched_id)
            if q is not None:
                q.monitored_by.pop(ref, None)
        linked: list[Proc] = []
        for lid in sorted(p.links):
            q = self.procs.get(lid)
            if q is not None:
                q.links.discard(p.id)
                linked.append(q)
        return watchers, linked

    # -- links and monitors ------------------------------------------------------------

    def link(self, a: Proc, b: Proc) -> None:
        """Link two processes both ways (a process is never linked to itself)."""
        if a is not b:
            a.links.add(b.id)
            b.links.add(a.id)

    def unlink(self, a: Proc, b_id: int) -> None:
        """Remove the link between ``a`` and process ``b_id``, if any."""
        a.links.discard(b_id)
        b = self.procs.get(b_id)
        if b is not None:
            b.links.discard(a.id)

    def add_monitor(self, watcher: Proc, ref: Ref, target: Proc) -> None:
        target.monitored_by[ref] = watcher.id
        watcher.monitoring[ref] = target.id

    def remove_monitor(self, watcher: Proc, ref: Ref) -> None:
        target_id = watcher.monitoring.pop(ref, None)
        if target_id is not None and target_id in self.procs:
            self.procs[target_id].monitored_by.pop(ref, None)

    # -- names ---------------------------------------------------------------------

    def holder(self, name: str) -> Proc | None:
        """The process registered as ``name``, or None."""
        pid_id = self.names.get(name)
        return None if pid_id is None else self.procs[pid_id]

    def register_name(self, name: str, p: Proc) -> None:
        """``p`` holds ``name`` (the caller checked that both are free)."""
        p.name = name
        self.names[name] = p.id
        for hook in self.name_hooks:
            hook(name, p)

    def unregister_name(self, name: str) -> Proc | None:
        """Free ``name``; the process that held it, or None when none did."""
        pid_id = self.names.pop(name, None)
        if pid_id is None:
            return None
        p = self.procs[pid_id]
        p.name = None
        for hook in self.name_hooks:
            hook(name, None)
        return p

    def registered(self) -> list[str]:
        return sorted(self.names)
