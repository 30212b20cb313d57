"""The PostgreSQL store: a journal in a database, shared by nodes (API.md section 11, issue 12).

The three tables of the SQLite store (:mod:`.sqlite`), with ``bytea``
bodies, plus what nodes sharing the database need:

- ``nodes``: one row per runtime that has written the journal: its name, an
  incarnation, a lease deadline taken from the database's clock (never a
  node's own), a status (``alive``, ``dead``, ``left``), and where it runs
  (host, pid, and ``birth``: the boot and pid namespace, so a node on the
  same machine whose central is gone is known dead without waiting);
- ``processes.owner`` and ``processes.epoch``: the node a durable process
  runs on, and how often it changed hands; ``processes.mailbox_seq``: the
  per-process counter row every node locks, until its commit, to number a
  message (values commit in order, as a shared sequence's would not);
- ``occasional_journal``: what the database is (application, layout), as
  SQLite's ``application_id``/``user_version`` say for a file: a database
  that is not a journal, or that a newer occasional wrote, is refused by name.

Fencing, as Temporal fences a shard with its ``range_id``, with the node as
the shard: every commit is one transaction sent as one psycopg 3 pipeline
(one round trip) that starts with ``occasional_fence``: this node's row must
still be ``alive`` with this incarnation (a share lock, held to the commit),
or the transaction fails with SQLSTATE ``OCFEN`` (:class:`Fenced`) and
nothing of it is committed. Each tick renews the lease (``occasional_renew``). Takeover (:meth:`PostgresStore.tick`)
marks nodes whose lease ran out ``dead``, then claims a share of the
unfinished processes of dead and departed nodes with one ``UPDATE ... FOR
UPDATE SKIP LOCKED`` that bumps their epoch. The row lock orders the two: a
fence waiting on a takeover finds its row dead.

Wake-ups: a commit that adds messages for processes another node runs sends
that node one ``pg_notify`` (on a channel named after the node), and every
node polls its counters each tick anyway, as a notification is only a hint
(lost with its connection).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import postgres_sql as sql
from .base import Batch, Fenced, ProcessRow, Reader, Store, Written, shown


class PostgresStore(Store, kind="postgres"):
    """The writer's side of a PostgreSQL journal: central's connection, a
    listener for wake-ups, and a small pool of readers for replays.

    Opening it registers this runtime as a node (a new incarnation of its
    name) and claims its share of the processes no live node runs.

    Raises:
        OSError: the server cannot be reached, or refuses the connection.
        ValueError: the database is not a journal, or a newer occasional wrote it.
    """

    shared = True

    def __init__(self, journal: str, sync: str, lease: float = sql.LEASE_S) -> None:
        self.path = journal  # the CLI's replay connects with it
        self.name = shown(journal)
        self.sync = sync
        self.host = socket.gethostname()
        self.node = f"{os.getpid()}@{self.host}"
        self.birth = _birth()
        self.channel = "occasional_" + hashlib.md5(self.node.encode()).hexdigest()
        self.incarnation = 0
        self.lease = lease
        self.listener: Any = None
        self.pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self.conn = self._connect()
        try:
            self._open()
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> Any:
        conn = sql.connect(self.path, "central")
        conn.execute(f"SET synchronous_commit = {sql.SYNCHRONOUS_COMMIT[self.sync]}")
        return conn

    def _open(self) -> None:
        conn = self.conn
        with conn.transaction():
            # Two nodes creating a new journal at once: one makes the tables.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('occasional journal ' || current_schema(), 0))")
            if sql.check(conn, self.path, writing=True):
                for statement in sql.SCHEMA:
                    conn.execute(statement)
                conn.execute("DELETE FROM occasional_journal")
                conn.execute(
                    "INSERT INTO occasional_journal (application, layout) VALUES (%s, %s)",
                    (sql.APPLICATION, sql.LAYOUT),
                )
            self.incarnation = conn.execute(
                "INSERT INTO nodes (node, incarnation, lease_until, status, host, pid, birth) "
                "VALUES (%s, 1, now() + make_interval(secs => %s), 'alive', %s, %s, %s) "
                "ON CONFLICT (node) DO UPDATE SET incarnation = nodes.incarnation + 1, "
                "lease_until = EXCLUDED.lease_until, status = 'alive', started = now(), birth = EXCLUDED.birth "
                "RETURNING incarnation",
                (self.node, self.lease, self.host, os.getpid(), self.birth),
            ).fetchone()[0]
        self.tick([])  # this node's share of what nobody runs

    # -- what this node runs -------------------------------------------------------------

    def processes(self) -> list[ProcessRow]:
        rows = self.conn.execute(f"SELECT {sql.COLUMNS} FROM processes WHERE owner = %s", (self.node,)).fetchall()
        return [ProcessRow(*row) for row in rows]

    def last_seqs(
        self, ids: list[str] | None = None
    ) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]:
        conn = self.conn
        if ids is None:
            ids = [r[0] for r in conn.execute("SELECT id FROM processes WHERE owner = %s", (self.node,))]
        mailbox = dict(conn.execute("SELECT id, mailbox_seq FROM processes WHERE id = ANY(%s)", (ids,)).fetchall())
        events = dict(
            conn.execute(
                "SELECT process, MAX(seq) FROM events WHERE process = ANY(%s) GROUP BY process", (ids,)
            ).fetchall()
        )
        sends = {
            (p, s): n
            for p, s, n in conn.execute(
                "SELECT process, sender, MAX(send_seq) FROM mailbox WHERE process = ANY(%s) AND sender IS NOT NULL "
                "GROUP BY process, sender",
                (ids,),
            )
        }
        return mailbox, events, sends

    def adopt(self, id: str) -> tuple[ProcessRow | None, str | None]:
        """Take finished process ``id`` for this node (a Supervisor follows it
        here, and may start it again): its row, or None and the node that runs
        it (None as well when the journal has no ``id``)."""
        row = self.conn.execute(
            f"UPDATE processes SET owner = %s, epoch = epoch + 1 WHERE id = %s AND status = 'done' "
            f"RETURNING {sql.COLUMNS}",
            (self.node, id),
        ).fetchone()
        if row is not None:
            return ProcessRow(*row), None
        owner = self.conn.execute("SELECT owner FROM processes WHERE id = %s", (id,)).fetchone()
        return None, None if owner is None else owner[0]

    def lookup(self, id: str) -> ProcessRow | None:
        row = self.conn.execute(f"SELECT {sql.COLUMNS} FROM processes WHERE id = %s", (id,)).fetchone()
        return None if row is None else ProcessRow(*row)

    # -- commits ---------------------------------------------------------------------------

    def write(self, batch: Batch) -> Written:
        """One transaction, one round trip: the fence, then every row (issue 12, group commit).

        A deadlock with another node's batch (both lock counter rows) is tried
        again at once; a lost connection (the server restarting) again and
        again for up to a lease, in which no other node may take over. Only a
        failed fence is final: a transient error never gives up ownership."""
        psycopg = sql.psycopg_module(self.path)
        deadline = time.monotonic() + self.lease
        conflicts, wait = 0, _RECONNECT_S
        while True:
            try:
                return self._write(batch)
            except psycopg.Error as e:
                if e.sqlstate == sql.FENCED:
                    raise Fenced(sql.one_line(e)) from None
                if e.sqlstate in sql.RETRY_STATES and conflicts < sql.ATTEMPTS:
                    conflicts += 1
                    continue
                if not (self.conn.closed or self.conn.broken) or time.monotonic() + wait > deadline:
                    raise
            time.sleep(wait)
            wait = min(wait * 2, 1.0)
            try:
                self.conn = self._connect()
            except OSError:
                pass  # still down: the next attempt fails the same way, until the deadline

    def _write(self, batch: Batch) -> Written:
        conn = self.conn
        # Counter rows are locked in id order, so two nodes' batches rarely deadlock.
        order = sorted(range(len(batch.mailbox)), key=lambda i: batch.mailbox[i][0])
        spawned = conn.cursor()
        appended = conn.cursor()
        try:
            with conn.pipeline(), conn.cursor() as cur:
                # BEGIN and COMMIT as statements of the pipeline, not conn.transaction(),
                # which syncs after BEGIN and again before COMMIT: one sync is half the
                # time of a one-event commit (0.27 ms against 0.43 ms, "process" mode).
                cur.execute("BEGIN")
                cur.execute(sql.FENCE, (self.node, self.incarnation))
                if batch.processes:
                    spawned.executemany(
                        sql.INSERT_PROCESS,
                        [
                            (r.id, r.function, r.blob, r.sys_path, r.title, r.status, r.reason, r.wake_at, r.created,
                             r.finished, self.node)
                            for r in batch.processes
                        ],
                        returning=True,
                    )  # fmt: skip
                if batch.mailbox:
                    rows = [batch.mailbox[i] for i in order]
                    appended.executemany(sql.APPEND, [(p, s, n, b) for p, _seq, s, n, b in rows], returning=True)
                if batch.events:
                    cur.executemany(sql.UPSERT_EVENT, batch.events)
                if batch.status:
                    cur.executemany(sql.SET_STATUS, sorted((s, r, w, f, i) for i, s, r, w, f in batch.status))
                if batch.elsewhere:
                    cur.execute(sql.WAKE, (sorted(batch.elsewhere), self.node))
                cur.execute("COMMIT")
        except BaseException:
            # A failed statement leaves the transaction open and aborted: the server skipped the COMMIT.
            if not conn.closed and conn.info.transaction_status != sql.IDLE:
                conn.execute("ROLLBACK")
            raise
        seqs: list[int | None] = [None] * len(batch.mailbox)
        for i, got in zip(order, _each(appended, len(order)), strict=True):
            seqs[i] = None if got is None else got[0]
        refused = {
            r.id for r, got in zip(batch.processes, _each(spawned, len(batch.processes)), strict=True) if got is None
        }
        if refused:
            # A retried batch finds the rows its first attempt wrote (the commit
            # landed, its answer was lost with the connection): those are ours.
            ours = conn.execute(
                "SELECT id FROM processes WHERE id = ANY(%s) AND owner = %s", (list(refused), self.node)
            ).fetchall()
            refused -= {id for (id,) in ours}
        return Written(seqs, refused)

    def mailbox_after(self, id: str, seq: int, limit: int) -> list[tuple[int, bytes]]:
        # Binary results: a bytea in text format is hex, twice its size in the
        # driver's buffers, and these rows are what a slow reader left behind.
        with self.conn.cursor(binary=True) as cur:
            return cur.execute(
                "SELECT seq, body FROM mailbox WHERE process=%s AND seq>%s ORDER BY seq LIMIT %s", (id, seq, limit)
            ).fetchall()

    # -- leases and takeover -------------------------------------------------------------

    def tick(self, waited: list[str]) -> Tick:
        """Renew this node's lease, take over from nodes that lost theirs, and
        read what changed for this node: one transaction, one round trip.

        Raises:
            Fenced: this node lost its lease (another node may run its processes now).
        """
        gone = self._gone_here()
        conn = self.conn
        psycopg = sql.psycopg_module(self.path)
        claim, counters, finished = conn.cursor(), conn.cursor(), conn.cursor()
        try:
            with conn.pipeline(), conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(sql.RENEW, (self.node, self.incarnation, self.lease))
                cur.execute(
                    sql.MARK_DEAD,
                    {"me": self.node, "gone": [n for n, _ in gone], "incarnations": [i for _, i in gone]},
                )
                claim.execute(sql.CLAIM, (self.node,))
                counters.execute(
                    "SELECT id, mailbox_seq FROM processes WHERE owner = %s AND status <> 'done'", (self.node,)
                )
                finished.execute("SELECT id, reason FROM processes WHERE id = ANY(%s) AND status = 'done'", (waited,))
                cur.execute("COMMIT")
        except psycopg.Error as e:
            if not conn.closed and conn.info.transaction_status != sql.IDLE:
                conn.execute("ROLLBACK")
            if e.sqlstate == sql.FENCED:
                raise Fenced(sql.one_line(e)) from None
            if conn.closed or conn.broken:
                self.conn = self._connect()
            raise
        return Tick([ProcessRow(*r) for r in claim.fetchall()], dict(counters.fetchall()), dict(finished.fetchall()))

    def _gone_here(self) -> list[tuple[str, int]]:
        """Live nodes of this machine and pid namespace whose central is gone:
        dead now, without waiting out their lease (a runtime SIGKILLed and
        started again resumes its processes at once, as with SQLite)."""
        rows = self.conn.execute(
            "SELECT node, incarnation, pid FROM nodes WHERE status = 'alive' AND birth = %s AND node <> %s",
            (self.birth, self.node),
        ).fetchall()
        return [(node, incarnation) for node, incarnation, pid in rows if not _running(pid)]

    # -- wake-ups ------------------------------------------------------------------------

    def listen(self) -> int:
        """Start listening for this node's wake-ups; the fd to watch."""
        self.unlisten()
        self.listener = sql.connect(self.path, "listener")
        self.listener.execute(f'LISTEN "{self.channel}"')
        return int(self.listener.fileno())

    def woken(self) -> bool:
        """Read what the listener got; True if a wake-up came (raises once its connection is gone)."""
        pgconn = self.listener.pgconn
        pgconn.consume_input()
        got = False
        while pgconn.notifies() is not None:
            got = True
        return got

    def unlisten(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    # -- replays -------------------------------------------------------------------------

    def read(self, id: str, upto: int) -> Future[tuple[list[Any], list[Any]]]:
        """A replaying process's events and mailbox up to ``upto``, read by one of a few
        pooled connections: never one per process (2,000 replays against
        max_connections=100), and never on central's event loop."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(sql.READERS, thread_name_prefix="occasional journal reader")
        return self.pool.submit(self._read, id, upto)

    def _read(self, id: str, upto: int) -> tuple[list[Any], list[Any]]:
        # As a write does (write()): through a server restart, for up to a
        # lease, on a new connection; a replay that failed would count as a crash.
        psycopg = sql.psycopg_module(self.path)
        deadline = time.monotonic() + self.lease
        wait = _RECONNECT_S
        while True:
            try:
                return self._read_once(self._reader(), id, upto)
            except (OSError, psycopg.OperationalError):
                if time.monotonic() + wait > deadline:
                    raise
            self._local.conn = None
            time.sleep(wait)
            wait = min(wait * 2, 1.0)

    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = sql.connect(self.path, "reader")
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @staticmethod
    def _read_once(conn: Any, id: str, upto: int) -> tuple[list[Any], list[Any]]:
        with conn.cursor(binary=True) as cur:  # bodies as they are, not as hex (mailbox_after)
            events = cur.execute(
                "SELECT seq, kind, name, body FROM events WHERE process=%s ORDER BY seq", (id,)
            ).fetchall()
            mailbox = cur.execute(
                "SELECT seq, sender, send_seq, body FROM mailbox WHERE process=%s AND seq<=%s ORDER BY seq", (id, upto)
            ).fetchall()
        return events, mailbox

    def close(self) -> None:
        """Leave: this node's processes are the others' to take over at once."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        for conn in self._readers:
            conn.close()
        self.unlisten()
        try:
            self.conn.execute(
                "UPDATE nodes SET status = 'left' WHERE node = %s AND incarnation = %s AND status = 'alive'",
                (self.node, self.incarnation),
            )
        except Exception:
            pass  # the server is gone: the row stays alive until its lease runs out
        self.conn.close()


_RECONNECT_S = 0.05  # the first wait before connecting again, doubled up to 1 s


@dataclass
class Tick:
    """What one tick found: processes this node claimed, the mailbox counter
    of each process it runs, and the final reasons of waited-for processes."""

    claimed: list[ProcessRow]
    counters: dict[str, int]
    finished: dict[str, bytes]


def _each(cur: Any, n: int) -> list[Any]:
    """The first row of each of the ``n`` result sets of an executemany(returning=True)."""
    if n == 0:
        return []
    got = []
    while True:
        got.append(cur.fetchone())
        if not cur.nextset():
            break
    return got


def _running(pid: int) -> bool:
    """Whether ``pid`` runs on this machine: a zombie (killed, not reaped yet) does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def _birth() -> str:
    """This machine's boot and pid namespace: where a pid names the same process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return f"unknown/{socket.gethostname()}/{os.getpid()}"  # never matches another node's


class PostgresReader(Reader, kind="postgres"):
    """A read-only view of a PostgreSQL journal, on its own connection: for
    ``occasional journal`` (a replaying process gets its rows from central,
    read by :meth:`PostgresStore.read`'s pool, never one connection each)."""

    def __init__(self, journal: str) -> None:
        self.conn = sql.connect(journal, "reader")
        try:
            self.conn.execute("SET default_transaction_read_only = on")
            sql.check(self.conn, journal, writing=False)
        except BaseException:
            self.conn.close()
            raise

    def process(self, id: str) -> ProcessRow | None:
        row = self.conn.execute(f"SELECT {sql.COLUMNS} FROM processes WHERE id=%s", (id,)).fetchone()
        return None if row is None else ProcessRow(*row)

    def processes(self) -> list[ProcessRow]:
        rows = self.conn.execute(f"SELECT {sql.COLUMNS} FROM processes ORDER BY created, id").fetchall()
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
