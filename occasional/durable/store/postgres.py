"""The PostgreSQL store: a journal in a database, shared by nodes (API.md section 11, issue 12).

The three tables of the SQLite store (:mod:`.sqlite`), with ``bytea``
bodies, plus what nodes sharing the database need, so adding leases, fencing
and takeover needs no new layout:

- ``nodes``: one row per runtime that has written the journal: its name, an
  incarnation, a lease deadline taken from the database's clock (never a
  node's own), and a status (``alive``, ``dead``, ``left``);
- ``processes.owner`` and ``processes.epoch``: the node a durable process
  runs on, and how often it changed hands; ``processes.mailbox_seq``: the
  per-process counter row a node locks to number its messages;
- ``occasional_journal``: what the database is (application, layout), as
  SQLite's ``application_id``/``user_version`` say for a file: a database
  that is not a journal, or that a newer occasional wrote, is refused by name.

Every commit is one transaction sent as one psycopg 3 pipeline, and starts
with ``occasional_fence``: the node's row must still be ``alive`` with this
incarnation, or the transaction fails and the writer ends the runtime
(crash-only, as for any write failure). It also moves the lease forward.

For now one runtime at a time writes a journal, as with SQLite: the writer's
connection holds a session advisory lock on it. The next step of issue 12
replaces that lock with leases and takeover.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from .base import Batch, ProcessRow, Reader, Store, shown

# What each journal_sync mode (API.md section 7) is in PostgreSQL: "machine"
# waits for the WAL flush on the server, "process" does not (the server's
# crash may lose the last commits, a SIGKILL of any of our processes not).
SYNCHRONOUS_COMMIT = {"machine": "on", "process": "off"}
APPLICATION = "occasional journal"
# The layout of the tables below, in occasional_journal.layout; raise it with
# any change a previous occasional could not read, and teach _check to migrate.
LAYOUT = 1
LEASE_S = 10.0  # API.md section 11: lease= seconds, default 10
# Raised by occasional_fence: this node lost its lease (a custom SQLSTATE, class "OC").
FENCED = "OCFEN"
# psycopg.pq.TransactionStatus.IDLE, without importing psycopg with this module.
_IDLE = 0
_COLUMNS = "id, function, blob, sys_path, title, status, reason, wake_at, created, finished"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS occasional_journal (
        application text NOT NULL, layout integer NOT NULL, created timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS nodes (
        node text PRIMARY KEY, incarnation bigint NOT NULL, lease_until timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('alive', 'dead', 'left')),
        started timestamptz NOT NULL DEFAULT now(), host text NOT NULL, pid integer NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS processes (
        id text PRIMARY KEY, function text NOT NULL, blob bytea NOT NULL, sys_path bytea NOT NULL,
        title text NOT NULL, status text NOT NULL, reason bytea, wake_at double precision,
        created double precision NOT NULL, finished double precision,
        owner text REFERENCES nodes (node), epoch bigint NOT NULL DEFAULT 0,
        mailbox_seq bigint NOT NULL DEFAULT 0)""",
    # Takeover claims the unfinished processes of a dead node: this index finds them.
    "CREATE INDEX IF NOT EXISTS processes_unfinished ON processes (owner) WHERE status <> 'done'",
    """CREATE TABLE IF NOT EXISTS mailbox (
        process text NOT NULL, seq bigint NOT NULL, sender text, send_seq bigint, body bytea NOT NULL,
        PRIMARY KEY (process, seq), UNIQUE (process, sender, send_seq))""",
    """CREATE TABLE IF NOT EXISTS events (
        process text NOT NULL, seq bigint NOT NULL, kind text NOT NULL, name text NOT NULL,
        body bytea NOT NULL, PRIMARY KEY (process, seq))""",
    f"""CREATE OR REPLACE FUNCTION occasional_fence(n text, inc bigint, lease double precision)
        RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE nodes SET lease_until = now() + make_interval(secs => lease)
                WHERE node = n AND incarnation = inc AND status = 'alive';
            IF NOT FOUND THEN
                RAISE EXCEPTION 'node % (incarnation %) lost its lease on the journal', n, inc
                    USING ERRCODE = '{FENCED}';
            END IF;
        END $$""",
)

_UPSERT_PROCESS = (
    f"INSERT INTO processes ({_COLUMNS}, owner, epoch) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,1) "
    "ON CONFLICT (id) DO UPDATE SET function=EXCLUDED.function, blob=EXCLUDED.blob, sys_path=EXCLUDED.sys_path, "
    "title=EXCLUDED.title, status=EXCLUDED.status, reason=EXCLUDED.reason, wake_at=EXCLUDED.wake_at, "
    "created=EXCLUDED.created, finished=EXCLUDED.finished"
)
# The unique (process, sender, send_seq) backs up the writer's in-memory dedupe
# of a restarted sender's repeated sends (issue 12); a clash of (process, seq)
# is a bug and still fails the commit.
_INSERT_MESSAGE = (
    "INSERT INTO mailbox (process, seq, sender, send_seq, body) VALUES (%s,%s,%s,%s,%s) "
    "ON CONFLICT (process, sender, send_seq) DO NOTHING"
)
_COUNT_MESSAGES = "UPDATE processes SET mailbox_seq = GREATEST(mailbox_seq, %s) WHERE id = %s"
_UPSERT_EVENT = (
    "INSERT INTO events (process, seq, kind, name, body) VALUES (%s,%s,%s,%s,%s) "
    "ON CONFLICT (process, seq) DO UPDATE SET kind=EXCLUDED.kind, name=EXCLUDED.name, body=EXCLUDED.body"
)
_SET_STATUS = "UPDATE processes SET status=%s, reason=%s, wake_at=%s, finished=%s WHERE id=%s"


def _psycopg(journal: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise RuntimeError(
            f"the journal {shown(journal)!r} is a PostgreSQL URL, and PostgreSQL journals need psycopg 3, "
            "which is not installed here: pip install 'psycopg[binary]>=3.2'"
        ) from None
    return psycopg


def connect(journal: str, role: str) -> Any:
    """An autocommit connection to ``journal``, or an error naming it (without its password)."""
    psycopg = _psycopg(journal)
    name = shown(journal)
    try:
        params = psycopg.conninfo.conninfo_to_dict(journal)
    except psycopg.Error as e:
        raise ValueError(f"journal={name!r} is not a PostgreSQL URL libpq reads ({_one_line(e)}); correct it") from None
    kwargs: dict[str, Any] = {"application_name": f"occasional {role} {os.getpid()}"}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = 10  # libpq waits forever by default (an unreachable host)
    try:
        return psycopg.connect(journal, autocommit=True, **kwargs)
    except psycopg.Error as e:
        raise OSError(
            f"cannot connect to the journal {name!r}: {_one_line(e)}; start that PostgreSQL server, "
            "or correct the URL (host, port, database, user)"
        ) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _check(db: Any, journal: str, writing: bool) -> bool:
    """Refuse a database that is not a journal or has a newer layout; True when
    it still needs its tables (an empty database, or schema, for a new journal)."""
    name = shown(journal)
    schema, tables = db.execute(
        "SELECT current_schema(), array(SELECT table_name::text FROM information_schema.tables "
        "WHERE table_schema = current_schema() ORDER BY 1)"
    ).fetchone()
    not_a_journal = f"the database of {name!r} is not a journal of occasional"
    fix = "give the URL of a journal" + (", or of an empty database for a new one" if writing else "")
    if "occasional_journal" in tables:
        row = db.execute("SELECT application, layout FROM occasional_journal LIMIT 1").fetchone()
        if row is None or row[0] != APPLICATION:
            raise ValueError(f"{not_a_journal}: its table occasional_journal says {row!r}; {fix}")
        if row[1] > LAYOUT:
            raise ValueError(
                f"the journal {name!r} has layout {row[1]}, newer than this occasional reads (up to {LAYOUT}): "
                "a newer occasional wrote it; open it with that version"
            )
        return bool(row[1] < LAYOUT)
    if tables:
        raise ValueError(
            f"{not_a_journal}: its schema {schema!r} has the tables {', '.join(tables)} "
            f"and no occasional_journal table; {fix}"
        )
    if not writing:
        raise ValueError(f"{not_a_journal}: it is empty, no runtime ever wrote a journal in it; {fix}")
    return True


class PostgresStore(Store, kind="postgres"):
    """The writer's side of a PostgreSQL journal: central's one connection.

    Raises:
        OSError: the server cannot be reached, or refuses the connection.
        ValueError: the database is not a journal, or a newer occasional wrote it.
        BlockingIOError: another runtime writes the journal.
    """

    def __init__(self, journal: str, sync: str) -> None:
        self.path = journal  # the replaying process connects with it (D_HELLO)
        self.name = shown(journal)
        self.node = f"{os.getpid()}@{socket.gethostname()}"  # until nodes are named (API.md section 11)
        self.incarnation = 0
        self.lease = LEASE_S
        self.conn = connect(journal, "central")
        try:
            self._open(sync)
        except BaseException:
            self.conn.close()
            raise

    def _open(self, sync: str) -> None:
        conn = self.conn
        conn.execute(f"SET synchronous_commit = {SYNCHRONOUS_COMMIT[sync]}")
        _check(conn, self.path, writing=True)  # before the lock: a foreign database is refused as such
        self._lock()
        with conn.transaction():
            if _check(conn, self.path, writing=True):
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("DELETE FROM occasional_journal")
                conn.execute(
                    "INSERT INTO occasional_journal (application, layout) VALUES (%s, %s)", (APPLICATION, LAYOUT)
                )
            self.incarnation = conn.execute(
                "INSERT INTO nodes (node, incarnation, lease_until, status, host, pid) "
                "VALUES (%s, 1, now() + make_interval(secs => %s), 'alive', %s, %s) "
                "ON CONFLICT (node) DO UPDATE SET incarnation = nodes.incarnation + 1, "
                "lease_until = EXCLUDED.lease_until, status = 'alive', started = now() RETURNING incarnation",
                (self.node, self.lease, socket.gethostname(), os.getpid()),
            ).fetchone()[0]
            # One node writes the journal for now: it owns every unfinished
            # process. Takeover (the next step) claims only a dead node's.
            conn.execute("UPDATE processes SET owner = %s, epoch = epoch + 1 WHERE status <> 'done'", (self.node,))

    def _lock(self) -> None:
        """Hold the journal's advisory lock for the life of this connection:
        two runtimes writing one journal would each run its durable processes,
        and so the same steps twice (as SQLite's flock, issue 10)."""
        key = "SELECT hashtextextended('occasional journal ' || current_schema(), 0)"
        if self.conn.execute(f"SELECT pg_try_advisory_lock(({key}))").fetchone()[0]:
            return
        holder = self.conn.execute(
            "SELECT pid, host FROM nodes WHERE status = 'alive' ORDER BY started DESC LIMIT 1"
        ).fetchone()
        where = f"pid {holder[0]} on {holder[1]}" if holder else "pid ?"
        raise BlockingIOError(
            f"the journal {self.name!r} is in use by another runtime (its central services, {where}, hold its "
            "advisory lock); a journal serves one runtime at a time, or its durable steps would run twice: "
            "stop that runtime first, or give this one another journal="
        )

    def processes(self) -> list[ProcessRow]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM processes").fetchall()
        return [ProcessRow(*row) for row in rows]

    def last_seqs(self) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]:
        conn = self.conn
        mailbox = dict(conn.execute("SELECT process, MAX(seq) FROM mailbox GROUP BY process").fetchall())
        events = dict(conn.execute("SELECT process, MAX(seq) FROM events GROUP BY process").fetchall())
        sends = {
            (p, s): n
            for p, s, n in conn.execute(
                "SELECT process, sender, MAX(send_seq) FROM mailbox WHERE sender IS NOT NULL GROUP BY process, sender"
            )
        }
        return mailbox, events, sends

    def write(self, batch: Batch) -> None:
        """One transaction, one round trip: the fence, then every row (issue 12, group commit)."""
        conn = self.conn
        try:
            with conn.pipeline(), conn.cursor() as cur:
                # BEGIN and COMMIT as statements of the pipeline, not conn.transaction(),
                # which syncs after BEGIN and again before COMMIT: one sync is half the
                # time of a one-event commit (0.27 ms against 0.43 ms, "process" mode).
                cur.execute("BEGIN")
                cur.execute("SELECT occasional_fence(%s, %s, %s)", (self.node, self.incarnation, self.lease))
                self._rows(cur, batch)
                cur.execute("COMMIT")
        except BaseException:
            # A failed statement leaves the transaction open and aborted: the server skipped the COMMIT.
            if conn.info.transaction_status != _IDLE and not conn.closed:
                conn.execute("ROLLBACK")
            raise

    def _rows(self, cur: Any, batch: Batch) -> None:
        if batch.processes:
            cur.executemany(
                _UPSERT_PROCESS,
                [
                    (r.id, r.function, r.blob, r.sys_path, r.title, r.status, r.reason, r.wake_at, r.created,
                     r.finished, self.node)
                    for r in batch.processes
                ],
            )  # fmt: skip
        if batch.mailbox:
            cur.executemany(_INSERT_MESSAGE, batch.mailbox)
            last: dict[str, int] = {}
            for process, seq, *_rest in batch.mailbox:
                last[process] = max(seq, last.get(process, 0))
            cur.executemany(_COUNT_MESSAGES, [(seq, process) for process, seq in last.items()])
        if batch.events:
            cur.executemany(_UPSERT_EVENT, batch.events)
        if batch.status:
            cur.executemany(_SET_STATUS, [(s, r, w, f, i) for i, s, r, w, f in batch.status])

    def mailbox_after(self, id: str, seq: int, limit: int) -> list[tuple[int, bytes]]:
        return self.conn.execute(
            "SELECT seq, body FROM mailbox WHERE process=%s AND seq>%s ORDER BY seq LIMIT %s", (id, seq, limit)
        ).fetchall()

    def close(self) -> None:
        try:
            self.conn.execute(
                "UPDATE nodes SET status = 'left' WHERE node = %s AND incarnation = %s", (self.node, self.incarnation)
            )
        except Exception:
            pass  # the server is gone: the row stays alive until its lease runs out
        self.conn.close()


class PostgresReader(Reader, kind="postgres"):
    """A read-only view of a PostgreSQL journal: its own connection.

    A replaying durable process opens one for its replay and closes it. The
    issue asks for a small pool instead (2,000 processes against the
    server's max_connections); that comes with the next step.
    """

    def __init__(self, journal: str) -> None:
        self.conn = connect(journal, "reader")
        try:
            self.conn.execute("SET default_transaction_read_only = on")
            _check(self.conn, journal, writing=False)
        except BaseException:
            self.conn.close()
            raise

    def process(self, id: str) -> ProcessRow | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM processes WHERE id=%s", (id,)).fetchone()
        return None if row is None else ProcessRow(*row)

    def processes(self) -> list[ProcessRow]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM processes ORDER BY created, id").fetchall()
        return [ProcessRow(*row) for row in rows]

    def counts(self) -> dict[str, tuple[int, int]]:
        events = dict(self.conn.execute("SELECT process, COUNT(*) FROM events GROUP BY process").fetchall())
        mailbox = dict(self.conn.execute("SELECT process, COUNT(*) FROM mailbox GROUP BY process").fetchall())
        return {p: (events.get(p, 0), mailbox.get(p, 0)) for p in set(events) | set(mailbox)}

    def events(self, id: str) -> list[tuple[int, str, str, bytes]]:
        return self.conn.execute(
            "SELECT seq, kind, name, body FROM events WHERE process=%s ORDER BY seq", (id,)
        ).fetchall()

    def mailbox(self, id: str, upto: int | None = None) -> list[tuple[int, str | None, int | None, bytes]]:
        if upto is None:
            return self.conn.execute(
                "SELECT seq, sender, send_seq, body FROM mailbox WHERE process=%s ORDER BY seq", (id,)
            ).fetchall()
        return self.conn.execute(
            "SELECT seq, sender, send_seq, body FROM mailbox WHERE process=%s AND seq<=%s ORDER BY seq", (id, upto)
        ).fetchall()

    def close(self) -> None:
        self.conn.close()
