"""Helpers of the PostgreSQL durable benchmarks (issue 12): the server, databases, raw psycopg baselines.

One private server per benchmark run, started with the project's own
``occasional.testing.postgres.postgres_server()`` (a temporary socket-only
data directory, run as the ``postgres`` user when root, ``fsync=on``,
``synchronous_commit=on``) and stopped at the end. Every side of every round
gets a fresh database of its own on it, dropped after the round.

The raw baselines are what occasional's PostgreSQL store does at its least
(issue 12, "Group commit ... one transaction per loop turn, sent as one
psycopg 3 pipeline"): one psycopg 3 connection in autocommit mode, and per
commit one pipeline ``BEGIN; INSERT ...; COMMIT`` with a single sync, into a
table shaped like the journal's ``mailbox`` (same primary key, same unique
constraint, a 40-byte ``bytea`` body), with ``synchronous_commit=on`` (what
``"machine"`` maps to): the server's WAL flush and one round trip per commit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from occasional.testing.postgres import PostgresServer

# psycopg and occasional.testing.postgres (which imports pytest) are imported
# where they are used: a durable process of a benchmark imports the benchmark's
# module to find its function, and ten of them importing pytest at once on two
# cores took 3.5 s, which the takeover benchmark measured as takeover time.

BODY = b"x" * 40  # about a msgpack-encoded ("m", k, i) with its framing, as bench/durable_send.py's FRAME
RAW_TABLE = """CREATE TABLE mailbox (
    process text NOT NULL, seq bigint NOT NULL, sender text, send_seq bigint, body bytea NOT NULL,
    PRIMARY KEY (process, seq), UNIQUE (process, sender, send_seq))"""
RAW_INSERT = "INSERT INTO mailbox (process, seq, sender, send_seq, body) VALUES (%s,%s,%s,%s,%s)"


@contextlib.contextmanager
def server() -> Iterator[PostgresServer]:
    from occasional.testing.postgres import postgres_server

    with postgres_server() as pg:
        yield pg


@contextlib.contextmanager
def database(pg: PostgresServer) -> Iterator[str]:
    """A fresh empty database for one side of one round (occasional's URL form), dropped after."""
    url = pg.create_database()
    try:
        yield url
    finally:
        pg.drop_database(url)


def dbos_url(pg: PostgresServer, occ_url: str) -> str:
    """The same database as DBOS takes it: ``postgresql://postgres@/NAME?host=SOCKETDIR``.

    DBOS hands the URL to SQLAlchemy's ``make_url``, which wants the user in
    the authority part; libpq takes ``host`` as the socket's directory."""
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(occ_url)["dbname"]
    return f"postgresql://postgres@/{name}?host={quote(str(pg.directory), safe='/')}"


def server_settings(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        got = {
            n: conn.execute(f"SHOW {n}").fetchone()[0]  # type: ignore[index]  # SHOW returns one row
            for n in ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers")
        }
    return ", ".join(f"{k}={v}" for k, v in got.items())


def _raw_connection(url: str) -> Any:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET synchronous_commit = on")
    conn.execute("DROP TABLE IF EXISTS mailbox")
    conn.execute(RAW_TABLE)
    return conn


def _commit(cur: Any, conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """One transaction, one pipeline, one sync: as PostgresStore.write does."""
    with conn.pipeline():
        cur.execute("BEGIN")
        cur.executemany(RAW_INSERT, rows)
        cur.execute("COMMIT")


def raw_commits(url: str, n: int) -> tuple[list[float], list[float]]:
    """n one-row commits, each timed; then n//10 blocks of 10 such commits, each block timed."""
    conn = _raw_connection(url)
    perf = time.perf_counter
    try:
        cur = conn.cursor()
        seq = 0
        one = []
        for _ in range(n):
            seq += 1
            t0 = perf()
            _commit(cur, conn, [("p", seq, None, None, BODY)])
            one.append(perf() - t0)
        ten = []
        for _ in range(n // 10):
            t0 = perf()
            for _ in range(10):
                seq += 1
                _commit(cur, conn, [("p", seq, None, None, BODY)])
            ten.append(perf() - t0)
        return one, ten
    finally:
        conn.close()


def raw_send_rate(url: str, n: int, batch: int) -> float:
    """msg/s of a loop that commits every ``batch`` mailbox rows as one pipelined transaction."""
    conn = _raw_connection(url)
    perf = time.perf_counter
    try:
        cur = conn.cursor()
        seq = 0
        t0 = perf()
        for _ in range(n // batch):
            rows = []
            for k in range(batch):
                seq += 1
                rows.append(("sink", seq, f"sender-{k}", seq, BODY))
            _commit(cur, conn, rows)
        return (n // batch) * batch / (perf() - t0)
    finally:
        conn.close()
