"""DBOS Transact on PostgreSQL, the peer of the PostgreSQL durable benchmarks, in an interpreter of its own.

As ``bench/_dbos_peer.py`` (SQLite), but DBOS's system database is a
database of the benchmark's own PostgreSQL server: each command takes the
database's URL as libpq writes it for a Unix socket,
``postgresql://postgres@/DBNAME?host=/socket/dir``; SQLAlchemy's
``postgresql+psycopg`` dialect (what DBOS makes of any ``postgresql://`` URL)
passes ``host`` to libpq, which takes a directory for a socket.

How DBOS uses PostgreSQL (dbos 3.4.0, ``dbos/_sys_db_postgres.py`` and
``_sys_db.py``): a SQLAlchemy engine with a pool of 20 psycopg 3 connections
(``pool_pre_ping``), its tables in the schema ``dbos``, and a LISTEN
connection for ``recv``/``send``. It sets no ``synchronous_commit``, so the
server's is used: ``on`` here (occasional.testing.postgres.SETTINGS), what
occasional's ``"machine"`` maps to. Every step records its output in a
transaction of its own (an ``INSERT`` into ``operation_outputs``); a workflow
writes its status row when it starts and when it ends.

Commands (one JSON line, or "live ..." lines, on stdout):
  steps URL N       one workflow: N trivial steps, each timed inside the workflow,
                    then N//10 blocks of 10 steps, each block timed; then N//10
                    whole 10-step workflows, each timed from the call
  resume URL N      start (or, on a database that has it, recover) the workflow
                    "resume": N trivial steps, then print "live <pid> <t_start> <t_live>"
                    (time.monotonic(), one clock for the machine), then wait for a
                    message that never comes
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import _dbos_peer


def configure(url: str) -> Any:
    from dbos import DBOS

    # dbos 3.4.0 has no admin server, so nothing listens on a port.
    DBOS(config={"name": "occbench", "system_database_url": url, "log_level": "ERROR"})
    return DBOS


def settings(url: str) -> dict[str, Any]:
    """What the server says about commits, on a connection of DBOS's own kind (default settings)."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]  # SHOW returns one row
            for name in ("synchronous_commit", "fsync", "wal_sync_method", "server_version")
        }


def steps(url: str, n: int) -> None:
    DBOS = configure(url)
    out = {**_dbos_peer.measure_steps(DBOS, n), "settings": settings(url)}
    DBOS.destroy()
    print(json.dumps(out), flush=True)


def resume(url: str, n: int) -> None:
    DBOS = configure(url)
    from dbos import SetWorkflowID

    @DBOS.step()
    def trivial(i: int) -> int:
        return i

    @DBOS.workflow()
    def resumable(n: int) -> None:
        t_start = time.monotonic()
        for i in range(n):
            trivial(i)
        print(f"live {os.getpid()} {t_start} {time.monotonic()}", flush=True)
        DBOS.recv("never", timeout_seconds=3600)

    DBOS.launch()  # recovers "resume" if the database has it unfinished
    if DBOS.get_workflow_status("resume") is None:
        with SetWorkflowID("resume"):
            DBOS.start_workflow(resumable, n)
    while True:
        time.sleep(3600)  # until the benchmark SIGKILLs this interpreter


if __name__ == "__main__":
    command, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"steps": steps, "resume": resume}[command](url, n)
