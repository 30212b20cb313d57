"""DBOS Transact, the peer of the durable benchmarks, run in an interpreter of its own.

DBOS is a singleton per interpreter and keeps its system database open, so
each measurement runs as ``python bench/_dbos_peer.py COMMAND ...`` and prints
one JSON line; bench/durable_step.py and bench/durable_restart.py start it
between their own rounds.

How DBOS uses SQLite (dbos 3.4.0, ``dbos/_sys_db_sqlite.py``): a SQLAlchemy
engine on ``sqlite:///PATH`` whose connections begin IMMEDIATE transactions
with ``busy_timeout=30000`` and ``foreign_keys=ON``; it sets no
``journal_mode`` and no ``synchronous``, so its default is SQLite's own:
rollback journal (``journal_mode=delete``) and ``synchronous=FULL``. Every
step records its output in its own transaction (``operation_outputs``), and
a workflow writes its status row when it starts and when it ends.

``--mode wal`` switches the file to WAL before DBOS opens it (the journal
mode is stored in the file, so DBOS's connections inherit it) and leaves
``synchronous`` at FULL, which is what "machine" promises; ``--mode default``
leaves the file as DBOS makes it.

Commands:
  steps PATH MODE N       one workflow: N trivial steps, each timed inside the workflow,
                          then N//10 blocks of 10 steps, each block timed; then
                          N//10 whole workflows of 10 steps, each timed from the call
  resume PATH MODE N      start (or, on a journal that has it, recover) the workflow
                          "resume": N trivial steps, then print "live <pid> <t_start>
                          <t_live>" (time.monotonic(), one clock for the machine), then
                          wait for a message that never comes
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from typing import Any


def configure(path: str, mode: str) -> Any:
    if mode == "wal":
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    from dbos import DBOS

    # dbos 3.4.0 has no admin server, so nothing listens on a port.
    DBOS(config={"name": "occbench", "system_database_url": f"sqlite:///{path}", "log_level": "ERROR"})
    return DBOS


def pragmas(path: str) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        return {
            "journal_mode": db.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous (default of a new connection)": db.execute("PRAGMA synchronous").fetchone()[0],
        }


def measure_steps(DBOS: Any, n: int) -> dict[str, Any]:
    """Launch ``DBOS`` and time ``n`` trivial steps in one workflow, blocks of 10,
    and n // 10 whole workflows of 10 steps (also for _dbos_pg_peer.py)."""
    perf = time.perf_counter

    @DBOS.step()
    def trivial(i: int) -> int:
        return i

    @DBOS.workflow()
    def timed(n: int) -> tuple[list[float], list[float]]:
        one = []
        for i in range(n):
            t0 = perf()
            trivial(i)
            one.append(perf() - t0)
        ten = []
        for _ in range(n // 10):
            t0 = perf()
            for i in range(10):
                trivial(i)
            ten.append(perf() - t0)
        return one, ten

    @DBOS.workflow()
    def ten_steps() -> None:
        for i in range(10):
            trivial(i)

    DBOS.launch()
    one, ten = timed(n)
    whole = []
    for _ in range(n // 10):
        t0 = perf()
        ten_steps()
        whole.append(perf() - t0)
    return {"step": one, "ten": ten, "workflow10": whole}


def steps(path: str, mode: str, n: int) -> None:
    DBOS = configure(path, mode)
    out = {**measure_steps(DBOS, n), "pragmas": pragmas(path)}
    DBOS.destroy()
    print(json.dumps(out), flush=True)


def resume(path: str, mode: str, n: int) -> None:
    DBOS = configure(path, mode)
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

    DBOS.launch()  # recovers "resume" if the journal has it unfinished
    with sqlite3.connect(path) as db:
        known = db.execute("SELECT count(*) FROM workflow_status WHERE workflow_uuid = 'resume'").fetchone()[0]
    if not known:
        with SetWorkflowID("resume"):
            DBOS.start_workflow(resumable, n)
    while True:
        time.sleep(3600)  # until the benchmark SIGKILLs this interpreter


if __name__ == "__main__":
    command, path, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    {"steps": steps, "resume": resume}[command](path, mode, n)
