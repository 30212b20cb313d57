"""The SQLite store: a journal in one file, the embedded default.

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
(:class:`SQLiteStore`); a durable process reads its own rows over a read-only
connection (:class:`SQLiteReader`). :mod:`.postgres` implements the same
interface (:mod:`.base`).

The file says what it is: ``PRAGMA application_id`` is :data:`APPLICATION_ID`
and ``PRAGMA user_version`` the layout of the tables (:data:`LAYOUT`), so a
file that is not a journal, or one a newer occasional wrote, is refused by
name before anything is written to it (issue 10). A runtime holds an
``flock`` on ``PATH.lock`` for as long as it writes the journal: a second
runtime on the same journal would run the same durable steps again.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import urllib.parse

from .base import Batch, ProcessRow, Reader, Store, Written, sqlite_path

# What each journal_sync mode (API.md section 7) is in SQLite.
SYNCHRONOUS = {"machine": "FULL", "process": "NORMAL"}
# "OCCJ": what `PRAGMA application_id` of every journal says (sqlite.org/fileformat.html, offset 68).
APPLICATION_ID = 0x4F43434A
# The layout of the tables below, in `PRAGMA user_version`; raise it with any
# change a previous occasional could not read, and teach _check to migrate.
LAYOUT = 1
_TABLES = frozenset({"processes", "mailbox", "events"})

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


class SQLiteStore(Store, kind="sqlite"):
    """The writer's side of an SQLite journal: central's one connection.

    Opening it checks what the file is, takes the journal's lock for the life
    of this process, and creates the file 0600 if it is new.

    Raises:
        ValueError: the file is not a journal, or a newer occasional wrote it.
        BlockingIOError: another runtime has the journal open.
        FileNotFoundError: the directory of the journal does not exist.
    """

    def __init__(self, journal: str, sync: str) -> None:
        self.path = path = sqlite_path(journal)
        if os.path.exists(path):
            # Refuse a foreign file before anything (the lock file) is made beside it.
            db = _connect_ro(path)
            try:
                _check(db, path, writing=True)
            finally:
                db.close()
        self._lock = _lock(path)
        try:
            _create_private(path)
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except BaseException:
            os.close(self._lock)
            raise
        try:
            self._open(sync)
        except BaseException:
            self.close()
            raise

    def _open(self, sync: str) -> None:
        # WAL: readers (replaying processes) never block the writer; the sync
        # mode decides whether a commit waits for the disk (API.md section 7).
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={SYNCHRONOUS[sync]}")
        # Checkpoint every 100 WAL pages, not SQLite's 1,000: after a
        # checkpoint the WAL starts again at its beginning, and a commit that
        # overwrites blocks the file already has is made durable by an
        # fdatasync without a metadata journal commit (0.15 ms against 0.26 ms
        # when appending, bench/results/2026-11-22-durable-send-profile.txt);
        # a small WAL reaches that state after 100 commits instead of 1,000.
        self.db.execute("PRAGMA wal_autocheckpoint=100")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if _check(self.db, self.path, writing=True):
                for statement in _SCHEMA:
                    self.db.execute(statement)
                # A journal of before issue 10 (application_id 0 and our three
                # tables) is adopted here: its layout is layout 1.
                self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version={LAYOUT}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def processes(self) -> list[ProcessRow]:
        rows = self.db.execute(
            "SELECT id, function, blob, sys_path, title, status, reason, wake_at, created, finished FROM processes"
        ).fetchall()
        return [ProcessRow(*row) for row in rows]

    def last_seqs(
        self, ids: list[str] | None = None
    ) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]:
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

    def write(self, batch: Batch) -> Written:
        db = self.db
        db.execute("BEGIN")
        try:
            if batch.processes:
                db.executemany(
                    "INSERT OR REPLACE INTO processes VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            r.id,
                            r.function,
                            r.blob,
                            r.sys_path,
                            r.title,
                            r.status,
                            r.reason,
                            r.wake_at,
                            r.created,
                            r.finished,
                        )
                        for r in batch.processes
                    ],
                )
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
        # One writer per file: the writer's own numbers are the journal's.
        return Written([row[1] for row in batch.mailbox])

    def mailbox_after(self, id: str, seq: int, limit: int) -> list[tuple[int, bytes]]:
        return self.db.execute(
            "SELECT seq, body FROM mailbox WHERE process=? AND seq>? ORDER BY seq LIMIT ?", (id, seq, limit)
        ).fetchall()

    def close(self) -> None:
        self.db.close()
        os.close(self._lock)


class SQLiteReader(Reader, kind="sqlite"):
    """A read-only view of an SQLite journal."""

    def __init__(self, journal: str) -> None:
        path = sqlite_path(journal)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no journal at {path!r}")
        # No lock: WAL lets it read while a runtime writes (`occasional journal ls` of a journal in use).
        self.db = _connect_ro(path)
        try:
            _check(self.db, path, writing=False)
        except BaseException:
            self.db.close()
            raise

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


def _connect_ro(path: str) -> sqlite3.Connection:
    # Quoted: in a URI, '#', '?' and '%' in the path would end or escape it (issue 10).
    try:
        return sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.DatabaseError as e:
        raise ValueError(f"cannot open the file {path!r} as a journal: {e}") from None


def _check(db: sqlite3.Connection, path: str, writing: bool) -> bool:
    """Refuse a file that is not a journal or has a newer layout; True when
    it still needs its tables and stamp (a new file, or a journal written
    before journals had an application_id, which is adopted)."""
    not_a_journal = f"the file {path!r} is not a journal of occasional"
    fix = "give the path of a journal" + (", or of a file that does not exist yet" if writing else "")
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        layout = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{not_a_journal}: SQLite cannot read it as a database ({e}); {fix}") from None
    if app_id == APPLICATION_ID:
        if layout > LAYOUT:
            raise ValueError(
                f"the journal {path!r} has layout {layout}, newer than this occasional reads (up to {LAYOUT}): "
                "a newer occasional wrote it; open it with that version"
            )
        return layout < LAYOUT
    if app_id != 0:
        raise ValueError(
            f"{not_a_journal}: it is a SQLite database of another application "
            f"(application_id {app_id:#x}, a journal's is {APPLICATION_ID:#x}); {fix}"
        )
    if tables >= _TABLES:
        return True
    if tables:
        raise ValueError(
            f"{not_a_journal}: it is a SQLite database with the tables {', '.join(sorted(tables))} "
            f"and no journal's application_id; {fix}"
        )
    if not writing:
        raise ValueError(f"{not_a_journal}: it is empty, no runtime ever wrote a journal in it; {fix}")
    return True


def _lock(path: str) -> int:
    """Take the journal's lock, held by central until it exits: two runtimes
    writing one journal would each run its durable processes, and so the same
    steps twice (issue 10)."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"cannot open the journal {path!r}: its directory {os.path.dirname(path)!r} does not exist; create it first"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 16, 0).decode(errors="replace").strip()
        os.close(fd)
        raise BlockingIOError(
            f"the journal {path!r} is in use by another runtime (its central services, pid "
            f"{holder if holder.isdigit() else '?'}, hold {lock_path!r}); a journal serves one runtime at a time, "
            "or its durable steps would run twice: stop that runtime first, or give this one another journal="
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # Who holds it, for the error above; the pid of central, which holds it.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _create_private(path: str) -> None:
    """Create a new journal file 0600 before SQLite opens it: SQLite gives its
    -wal and -shm files the mode of the database file (issue 10)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
