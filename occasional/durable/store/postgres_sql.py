"""The tables and statements of the PostgreSQL store, and connecting to it (issue 12).

What they are for is told in :mod:`.postgres`, which runs them.
"""

from __future__ import annotations

import os
from typing import Any

from .base import shown

# What each journal_sync mode (API.md section 7) is in PostgreSQL: "machine"
# waits for the WAL flush on the server, "process" does not (the server's
# crash may lose the last commits, a SIGKILL of any of our processes not).
SYNCHRONOUS_COMMIT = {"machine": "on", "process": "off"}
APPLICATION = "occasional journal"
# The layout of the tables below, in occasional_journal.layout; raise it with
# any change a previous occasional could not read, and teach check to migrate.
LAYOUT = 1
LEASE_S = 10.0  # API.md section 11: lease= seconds, default 10
# Raised by occasional_fence: this node lost its lease (a custom SQLSTATE, class "OC").
FENCED = "OCFEN"
# Connections reading replays (PostgresStore.read): a few, whatever the number of processes.
READERS = 4
# A batch is tried again this often after a deadlock or a serialization failure with
# another node's; after a lost connection, for up to a lease (PostgresStore.write).
ATTEMPTS = 3
RETRY_STATES = ("40P01", "40001")
# psycopg.pq.TransactionStatus.IDLE, without importing psycopg with this module.
IDLE = 0
COLUMNS = "id, function, blob, sys_path, title, status, reason, wake_at, created, finished"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS occasional_journal (
        application text NOT NULL, layout integer NOT NULL, created timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS nodes (
        node text PRIMARY KEY, incarnation bigint NOT NULL, lease_until timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('alive', 'dead', 'left')),
        started timestamptz NOT NULL DEFAULT now(), host text NOT NULL, pid integer NOT NULL,
        birth text NOT NULL)""",
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
    # The fence of every commit: a share lock on this node's row, alive with this
    # incarnation, held to the commit (Temporal's "SELECT ... FOR SHARE" of its
    # shard's range_id). A takeover's UPDATE of the row waits for it, so a commit
    # is either before the takeover or fails. Reading, not writing: no WAL of its own.
    f"""CREATE OR REPLACE FUNCTION occasional_fence(n text, inc bigint)
        RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM FROM nodes WHERE node = n AND incarnation = inc AND status = 'alive' FOR SHARE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'node % (incarnation %) lost its lease on the journal', n, inc
                    USING ERRCODE = '{FENCED}';
            END IF;
        END $$""",
    # The renewal, once a tick: the fence that also moves the lease forward.
    f"""CREATE OR REPLACE FUNCTION occasional_renew(n text, inc bigint, lease double precision)
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

# A spawn writes its row only if the id is new: a node that spawns an id
# another node already has gets that one (Written.refused), as durable.spawn promises.
INSERT_PROCESS = (
    f"INSERT INTO processes ({COLUMNS}, owner, epoch) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,1) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
# One message: its seq from the process's counter row, locked until this
# transaction commits, so seqs commit in order whichever node sends (issue 12).
# A finished or unknown process takes nothing (the message is dropped, as to a
# dead Pid). The unique (process, sender, send_seq) backs up the writer's
# in-memory dedupe of a restarted sender's repeats: such a row is not written
# (its counter value stays unused, a gap readers skip).
APPEND = (
    "WITH counter AS (UPDATE processes SET mailbox_seq = mailbox_seq + 1 WHERE id = %s AND status <> 'done' "
    "RETURNING id, mailbox_seq) "
    "INSERT INTO mailbox (process, seq, sender, send_seq, body) SELECT id, mailbox_seq, %s, %s, %s FROM counter "
    "ON CONFLICT (process, sender, send_seq) DO NOTHING RETURNING seq"
)
# One notification per batch per node that runs a process this batch wrote to.
WAKE = (
    "SELECT pg_notify('occasional_' || md5(owner), '') FROM "
    "(SELECT DISTINCT owner FROM processes WHERE id = ANY(%s) AND owner IS DISTINCT FROM %s) AS o"
)
FENCE = "SELECT occasional_fence(%s, %s)"
RENEW = "SELECT occasional_renew(%s, %s, %s)"
# Nodes whose lease ran out, or (given as (node, incarnation) arrays) whose
# central is gone from this machine, are dead; if any, every live node is woken
# to take its share of their processes now, not at its next tick.
MARK_DEAD = (
    "WITH dead AS (UPDATE nodes SET status = 'dead' WHERE status = 'alive' AND node <> %(me)s AND "
    "(lease_until < now() OR (node, incarnation) IN (SELECT * FROM unnest(%(gone)s::text[], %(incarnations)s::bigint[]))) "
    "RETURNING node) "
    "SELECT pg_notify('occasional_' || md5(node), '') FROM nodes "
    "WHERE status = 'alive' AND node <> %(me)s AND EXISTS (SELECT FROM dead)"
)
ORPHANS = "status <> 'done' AND (owner IS NULL OR owner IN (SELECT node FROM nodes WHERE status <> 'alive'))"
# This node's share of the orphans: as many as there are orphans per live node,
# rounded up, so a dead node's processes spread over the survivors.
CLAIM = (
    "UPDATE processes AS p SET owner = %s, epoch = p.epoch + 1 FROM ("
    f"SELECT id FROM processes WHERE {ORPHANS} ORDER BY id "
    f"LIMIT (SELECT ceil(count(*)::numeric / greatest((SELECT count(*) FROM nodes WHERE status = 'alive'), 1)) "
    f"FROM processes WHERE {ORPHANS}) "
    "FOR UPDATE SKIP LOCKED) AS mine WHERE p.id = mine.id "
    f"RETURNING {', '.join('p.' + c for c in COLUMNS.split(', '))}"
)
UPSERT_EVENT = (
    "INSERT INTO events (process, seq, kind, name, body) VALUES (%s,%s,%s,%s,%s) "
    "ON CONFLICT (process, seq) DO UPDATE SET kind=EXCLUDED.kind, name=EXCLUDED.name, body=EXCLUDED.body"
)
SET_STATUS = "UPDATE processes SET status=%s, reason=%s, wake_at=%s, finished=%s WHERE id=%s"


def psycopg_module(journal: str) -> Any:
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
    psycopg = psycopg_module(journal)
    name = shown(journal)
    try:
        params = psycopg.conninfo.conninfo_to_dict(journal)
    except psycopg.Error as e:
        raise ValueError(f"journal={name!r} is not a PostgreSQL URL libpq reads ({one_line(e)}); correct it") from None
    kwargs: dict[str, Any] = {"application_name": f"occasional {role} {os.getpid()}"}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = 10  # libpq waits forever by default (an unreachable host)
    try:
        return psycopg.connect(journal, autocommit=True, **kwargs)
    except psycopg.Error as e:
        raise OSError(
            f"cannot connect to the journal {name!r}: {one_line(e)}; start that PostgreSQL server, "
            "or correct the URL (host, port, database, user)"
        ) from None


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def check(db: Any, journal: str, writing: bool) -> bool:
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
