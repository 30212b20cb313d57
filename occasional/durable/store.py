"""Where journals live: the store interface and the SQLite store.

Three tables, one per concern, each clustered on ``(process, seq)``
(``WITHOUT ROWID``), so one process's rows are contiguous on disk and a
replay reads them with one range scan:

- ``processes``: one row per durable process: its function (a dill blob,
  the only place dill is needed), status and final reason;
- ``mailbox``: every message sent to a process, in the order it was
  committed, with ``(sender, send_seq)`` for sends made by durable processes
  (dedupe after a crash);
- ``events``: the process's own history in program order: what each receive
  took, step outcomes, clock/random values, sleeps and sends.

Bodies are msgpack (``occasional.core.codec``), which falls back to dill only
for values msgpack cannot carry. Central's journal writer is the only writer
(:class:`Store`); a durable process reads its own rows over a read-only
connection (:class:`Reader`). A PostgreSQL store would implement the same two
classes (STYLE.md layout: ``durable/`` holds the stores).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

SYNC_MODES = {"machine": "FULL", "process": "NORMAL"}
DEFAULT_SYNC = "machine"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS processes (
        id TEXT PRIMARY KEY, function TEXT NOT NULL, blob BLOB NOT NULL, sys_path BLOB NOT NULL,
        title TEXT NOT NULL, status TEXT NOT NULL, reason BLOB, wake_at REAL,
        created REAL NOT NULL, finished REAL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS mailbox (
        process TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT, send_seq INTEGER,
        body BLOB NOT NULL, PRIMARY KEY (process, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
        process TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        body BLOB NOT NULL, PRIMARY KEY (process, seq)) WITHOUT ROWID""",
)


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

    def __bool__(self) -> bool:
        return bool(self.processes or self.mailbox or self.events or self.status)


def sqlite_path(journal: str | os.PathLike[str]) -> str:
    """The file a journal option names (a path, or a ``sqlite:///path`` URL)."""
    text = os.fspath(journal)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite://"):]
    elif "://" in text:
        raise ValueError(f"journal={text!r}: only SQLite files are stores yet; pass a file path")
    return os.path.abspath(text)


class Store:
    """The writer's side of a journal: the SQLite store, central's one connection."""

    def __init__(self, path: str, sync: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL: readers (replaying processes) never block the writer; the sync
        # mode decides whether a commit waits for the disk (API.md section 7).
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={SYNC_MODES[sync]}")
        # Checkpoint every 100 WAL pages, not SQLite's 1,000: after a
        # checkpoint the WAL starts again at its beginning, and a commit that
        # overwrites blocks the file already has is made durable by an
        # fdatasync without a metadata journal commit (0.15 ms against 0.26 ms
        # when appending, bench/results/2026-11-22-durable-send-profile.txt);
        # a small WAL reaches that state after 100 commits instead of 1,000.
        self.db.execute("PRAGMA wal_autocheckpoint=100")
        for statement in _SCHEMA:
            self.db.execute(statement)

    def processes(self) -> list[ProcessRow]:
        rows = self.db.execute(
            "SELECT id, function, blob, sys_path, title, status, reason, wake_at, created, finished FROM processes"
        ).fetchall()
        return [ProcessRow(*row) for row in rows]

    def last_seqs(self) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]:
        """Highest mailbox seq and event seq per process, and highest send seq per (receiver, sender)."""
        mailbox = dict(self.db.execute("SELECT process, MAX(seq) FROM mailbox GROUP BY process").fetchall())
        events = dict(self.db.execute("SELECT process, MAX(seq) FROM events GROUP BY process").fetchall())
        sends = {
            (p, s): n
            for p, s, n in self.db.execute(
                "SELECT process, sender, MAX(send_seq) FROM mailbox WHERE sender IS NOT NULL GROUP BY process, sender"
            )
        }
        return mailbox, events, sends

    def write(self, batch: Batch) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            if batch.processes:
                db.executemany(
                    "INSERT OR REPLACE INTO processes VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(r.id, r.function, r.blob, r.sys_path, r.title, r.status, r.reason, r.wake_at, r.created,
                      r.finished) for r in batch.processes],
                )  # fmt: skip
            if batch.mailbox:
                db.executemany("INSERT INTO mailbox VALUES (?,?,?,?,?)", batch.mailbox)
            if batch.events:
                db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?)", batch.events)
            if batch.status:
                db.executemany(
                    "UPDATE processes SET status=?, reason=?, wake_at=?, finished=? WHERE id=?",
                    [(s, r, w, f, i) for i, s, r, w, f in batch.status],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


class Reader:
    """A read-only view of a journal: a replaying process, or the CLI."""

    def __init__(self, path: str) -> None:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no journal at {path!r}")
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def process(self, id: str) -> ProcessRow | None:
        row = self.db.execute(
            "SELECT id, function, blob, sys_path, title, status, reason, wake_at, created, finished "
            "FROM processes WHERE id=?",
            (id,),
        ).fetchone()
        return None if row is None else ProcessRow(*row)

    def processes(self) -> list[ProcessRow]:
        rows = self.db.execute(
            "SELECT id, function, blob, sys_path, title, status, reason, wake_at, created, finished "
            "FROM processes ORDER BY created, id"
        ).fetchall()
        return [ProcessRow(*row) for row in rows]

    def counts(self) -> dict[str, tuple[int, int]]:
        events = dict(self.db.execute("SELECT process, COUNT(*) FROM events GROUP BY process").fetchall())
        mailbox = dict(self.db.execute("SELECT process, COUNT(*) FROM mailbox GROUP BY process").fetchall())
        return {p: (events.get(p, 0), mailbox.get(p, 0)) for p in set(events) | set(mailbox)}

    def events(self, id: str) -> list[tuple[int, str, str, bytes]]:
        """Every event of ``id`` in order: (seq, kind, name, body), one range scan."""
        return self.db.execute(
            "SELECT seq, kind, name, body FROM events WHERE process=? ORDER BY seq", (id,)
        ).fetchall()

    def mailbox(self, id: str, upto: int | None = None) -> list[tuple[int, str | None, int | None, bytes]]:
        """Messages to ``id`` in order: (seq, sender, send_seq, body)."""
        if upto is None:
            return self.db.execute(
                "SELECT seq, sender, send_seq, body FROM mailbox WHERE process=? ORDER BY seq", (id,)
            ).fetchall()
        return self.db.execute(
            "SELECT seq, sender, send_seq, body FROM mailbox WHERE process=? AND seq<=? ORDER BY seq", (id, upto)
        ).fetchall()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
