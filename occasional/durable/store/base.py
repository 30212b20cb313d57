"""The store interface: what central's writer and a replaying process ask of a journal.

Two implementations sit behind it (issue 12, "One store interface, two
implementations"): :mod:`.sqlite` (a file, the embedded default) and
:mod:`.postgres` (a ``postgresql://`` URL, a database several nodes may
share). ``Store(journal, sync)`` and ``Reader(journal)`` pick the one the
journal string names, so callers never branch on the store. The stores
register themselves as subclasses (``class SQLiteStore(Store, kind="sqlite")``);
the package imports both, and :mod:`.postgres` imports psycopg only when a
PostgreSQL journal is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...core.checks import without_password

SYNC_MODES = ("machine", "process")
DEFAULT_SYNC = "machine"
# What libpq accepts as a URL (www.postgresql.org/docs/current/libpq-connect.html, "Connection URIs").
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass
class ProcessRow:
    id: str
    function: str
    blob: bytes
    sys_path: bytes
    title: str
    status: str  # "running", "asleep" or "done"
    reason: bytes | None  # msgpack [kind, detail_bytes] once done
    wake_at: float | None
    created: float
    finished: float | None


@dataclass
class Batch:
    """Everything one group commit writes, in one transaction."""

    processes: list[ProcessRow] = field(default_factory=list)
    mailbox: list[tuple[str, int, str | None, int | None, bytes]] = field(default_factory=list)
    events: list[tuple[str, int, str, str, bytes]] = field(default_factory=list)
    # (id, status, reason, wake_at, finished)
    status: list[tuple[str, str, bytes | None, float | None, float | None]] = field(default_factory=list)
    # Ids of batch.mailbox this node does not run (a shared journal): their nodes are woken.
    elsewhere: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.processes or self.mailbox or self.events or self.status)


@dataclass
class Written:
    """What a commit made of a batch, where the store decides it (a shared journal)."""

    # The mailbox seq each row of batch.mailbox got, in order; None for a send
    # the journal already had (a restarted sender's repeat), which was not written.
    seqs: list[int | None]
    # Ids of batch.processes the journal already had (spawned on another node):
    # not written, and not this node's to run.
    refused: set[str] = field(default_factory=set)


class Fenced(Exception):
    """This node lost its lease on a shared journal: another node took its
    durable processes over, and nothing this node writes may be committed."""


def is_postgres(journal: str | os.PathLike[str]) -> bool:
    """True when ``journal`` is a PostgreSQL URL rather than an SQLite path."""
    return os.fspath(journal).startswith(POSTGRES_SCHEMES)


def store_kind(journal: str | os.PathLike[str]) -> str:
    """Which store a journal string names: ``"postgres"`` or ``"sqlite"``."""
    return "postgres" if is_postgres(journal) else "sqlite"


def shown(journal: str) -> str:
    """``journal`` as errors and logs may show it: a URL without its password."""
    return without_password(journal) if is_postgres(journal) else journal


def sqlite_path(journal: str | os.PathLike[str]) -> str:
    """The file a journal option names (a path, or a ``sqlite:///path`` URL)."""
    text = os.fspath(journal)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite://") :]
    elif "://" in text:
        raise ValueError(
            f"journal={text!r} is not a store occasional knows: pass a file path (an SQLite journal) "
            "or a postgresql:// URL (a PostgreSQL journal)"
        )
    return os.path.abspath(text)


def journal_name(journal: str | os.PathLike[str]) -> str:
    """The string a journal is known by from here on: the URL, or the absolute SQLite path."""
    return os.fspath(journal) if is_postgres(journal) else sqlite_path(journal)


class Store:
    """The writer's side of a journal: central's one connection to it.

    ``Store(journal, sync)`` opens the store ``journal`` names, checks what
    it is, creates its tables if it is new, and takes the journal for this
    runtime: an SQLite file for it alone (a second runtime is refused with
    BlockingIOError), a shared one (PostgreSQL) as one node among others.
    """

    path: str  # what a replaying process passes to Reader (the URL or the absolute file path)
    # Nodes share the journal (a database): processes may live elsewhere, the
    # store numbers each mailbox row (Written.seqs) and the writer polls it.
    shared: bool = False

    _kinds: ClassVar[dict[str, type[Store]]] = {}

    def __init_subclass__(cls, kind: str, **kwargs: Any) -> None:
        # Each store registers itself by the kind of journal string it takes:
        # this module never imports them (the package does), so no cycle.
        super().__init_subclass__(**kwargs)
        Store._kinds[kind] = cls

    def __new__(cls, journal: str, sync: str, **options: Any) -> Store:
        return super().__new__(Store._kinds[store_kind(journal)] if cls is Store else cls)

    def processes(self) -> list[ProcessRow]:
        raise NotImplementedError

    def last_seqs(
        self, ids: list[str] | None = None
    ) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]:
        """Highest mailbox seq and event seq per process this node runs (or of
        ``ids``), and highest send seq per (receiver, sender)."""
        raise NotImplementedError

    def lookup(self, id: str) -> ProcessRow | None:
        """Durable process ``id`` as the journal has it, whichever node runs it
        (a shared journal); a journal of one node has every process in memory."""
        return None

    def write(self, batch: Batch) -> Written:
        """Commit ``batch`` in one transaction (group commit), or raise
        (:class:`Fenced` when this node may no longer write a shared journal)."""
        raise NotImplementedError

    def mailbox_after(self, id: str, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` committed messages to ``id`` after ``seq``: (seq, body)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Reader:
    """A read-only view of a journal: a replaying process, or the CLI."""

    _kinds: ClassVar[dict[str, type[Reader]]] = {}

    def __init_subclass__(cls, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Reader._kinds[kind] = cls

    def __new__(cls, journal: str) -> Reader:
        return super().__new__(Reader._kinds[store_kind(journal)] if cls is Reader else cls)

    def process(self, id: str) -> ProcessRow | None:
        raise NotImplementedError

    def processes(self) -> list[ProcessRow]:
        raise NotImplementedError

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per process: (events, messages)."""
        raise NotImplementedError

    def events(self, id: str) -> list[tuple[int, str, str, bytes]]:
        """Every event of ``id`` in order: (seq, kind, name, body), one range scan."""
        raise NotImplementedError

    def mailbox(self, id: str, upto: int | None = None) -> list[tuple[int, str | None, int | None, bytes]]:
        """Messages to ``id`` in order: (seq, sender, send_seq, body)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
