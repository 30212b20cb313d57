"""Where the time of a durable send or step on a PostgreSQL journal goes (diagnostic, no target).

Runs ``bench/durable_send.py``'s program (1 and 8 senders) and
``bench/durable_pg_step.py``'s (single steps) on one private PostgreSQL
server (``bench/_pg.py``), and reads the server's own counters around each
run: transactions committed, rows written, WAL bytes, and how many WAL
flushes the server made and how long they took (``pg_stat_wal`` with
``track_wal_io_timing = on``, set on this private server only). Per message
(step) that gives: commits, WAL bytes, flushes, and the time spent in
``fdatasync`` of the WAL, beside the wall time per message (step).

With ``--py-spy DIR`` it also samples every process of the runtime with
py-spy (``.venv/bin/py-spy``, 200 Hz, idle included) for 4 s of each send
run and prints what central's main thread was doing: waiting for the
server, idle in its loop, reading or writing processes' sockets, psycopg's
client work, the writer's Python. The raw samples go to DIR.

Run: .venv/bin/python bench/durable_pg_where.py [--n 3000] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import _pg
import durable_pg_step
import durable_send
from durable_restart import descendants

import occasional as occ

import _bench

STATS = (
    "SELECT xact_commit, tup_inserted, tup_updated, pg_current_wal_lsn(), "
    "(SELECT wal_sync FROM pg_stat_wal), (SELECT wal_sync_time FROM pg_stat_wal), "
    "(SELECT wal_write FROM pg_stat_wal) FROM pg_stat_database WHERE datname = current_database()"
)


def stats(url: str) -> tuple[Any, ...]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(STATS).fetchone()  # type: ignore[return-value]  # one row for the database


def delta(url: str, before: tuple[Any, ...], after: tuple[Any, ...], n: int) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        wal = float(conn.execute("SELECT pg_wal_lsn_diff(%s, %s)", (after[3], before[3])).fetchone()[0])  # type: ignore[index]
    syncs = after[4] - before[4]
    return {
        "commits": (after[0] - before[0]) / n,
        "rows inserted": (after[1] - before[1]) / n,
        "rows updated": (after[2] - before[2]) / n,
        "WAL bytes": wal / n,
        "WAL flushes": syncs / n,
        "fdatasync ms": (after[5] - before[5]) / n,
        "ms per flush": (after[5] - before[5]) / syncs if syncs else 0.0,
    }


def counters_settled(url: str) -> tuple[Any, ...]:
    # The server publishes its statistics at most every 500 ms (PostgreSQL 15's
    # cumulative statistics): wait that long after a run before reading them.
    time.sleep(0.6)
    return stats(url)


CATEGORIES = (
    ("Connection.wait", "waiting for the PostgreSQL server (psycopg Connection.wait)"),
    ("psycopg", "psycopg client work (pipeline, adapt, results)"),
    ("boot.py:96", "idle in its event loop (select)"),
    ("_send_data", "writing to processes' sockets"),
    ("recv_with_fds", "reading processes' sockets"),
    ("durable", "durable writer and store (Python)"),
)


def central_profile(path: str) -> list[str]:
    """What central's main thread did, from py-spy's raw samples."""
    seen: collections.Counter[str] = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            parts = stack.split(";")
            # A stack names the process and its ancestors: the sampled one is the last.
            if "occasional: central" not in [p for p in parts if p.startswith("process")][-1]:
                continue
            frames = [p for p in parts if not p.startswith(("process", "thread"))]
            if frames and "concurrent/futures/thread.py" in frames[-1]:
                continue  # the reader pool's idle threads
            joined = ";".join(frames)
            last = frames[-1] if frames else ""
            for key, label in CATEGORIES:
                if key in (last if key == "boot.py:96" else joined):
                    seen[label] += int(count)
                    break
            else:
                seen["other Python"] += int(count)
    total = sum(seen.values()) or 1
    return [f"  {v / total:6.1%}  {k}" for k, v in seen.most_common()]


def spy(out: str, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        if not [p for p in descendants(os.getpid())]:
            return
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid", str(os.getpid()),
             "--subprocesses", "--duration", "4", "--rate", "200", "--format", "raw", "--idle", "-o", out],
            capture_output=True,
            check=False,
        )  # fmt: skip

    t = threading.Thread(target=run)
    t.start()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="messages per send run; steps per step run")
    ap.add_argument(
        "--py-spy", default="", help="a directory: sample the send runs with py-spy, keep the samples there"
    )
    args = ap.parse_args()
    if args.py_spy:
        os.makedirs(args.py_spy, exist_ok=True)
    _bench.header("where a durable send or step on a PostgreSQL journal spends its time (diagnostic)")
    rows = []
    profiles: dict[str, list[str]] = {}
    with _pg.server() as pg:
        import psycopg

        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET track_wal_io_timing = on")
            conn.execute("SELECT pg_reload_conf()")
        print(f"server: {_pg.server_settings(pg.url())}, track_wal_io_timing=on")
        runs: list[tuple[str, str, int]] = [(m, "send", k) for m in ("machine", "process") for k in (1, 8)]
        runs += [(m, "step", 1) for m in ("machine", "process")]
        for mode, what, senders in runs:
            with _pg.database(pg) as url:
                label = f"{what}, {mode}" + (
                    f", {senders} sender{'s' if senders > 1 else ''}" if what == "send" else ""
                )
                sampler = None
                if args.py_spy and what == "send":
                    out = os.path.join(args.py_spy, f"pyspy-{what}-{mode}-{senders}.txt")
                    sampler = spy(out, 1.0)
                before = stats(url)
                t0 = time.perf_counter()
                if what == "send":
                    rate = occ.run(durable_send.occ_main, senders, args.n, journal=url, journal_sync=mode)
                    n, per = args.n, 1e3 / rate
                else:
                    one, _ten = occ.run(durable_pg_step.occ_main, args.n // 2, journal=url, journal_sync=mode)
                    n, per = args.n // 2 + (args.n // 20) * 10, _bench.median(one) * 1e3
                wall = time.perf_counter() - t0
                if sampler is not None:
                    sampler.join()
                    if os.path.exists(out):
                        profiles[label] = central_profile(out)
                d = delta(url, before, counters_settled(url), n)
                rows.append(
                    [label, f"{per:.3f} ms", f"{d['commits']:.2f}", f"{d['rows inserted']:.2f}",
                     f"{d['rows updated']:.2f}", f"{d['WAL bytes']:.0f}", f"{d['WAL flushes']:.2f}",
                     f"{d['fdatasync ms']:.3f} ms", f"{d['ms per flush']:.3f} ms", f"{wall:.1f} s"]
                )  # fmt: skip
    _bench.table(
        ["run", "wall per msg (step)", "commits", "inserted", "updated", "WAL B", "WAL flushes", "fdatasync",
         "per flush", "run"],
        rows,
    )  # fmt: skip
    print("(per message or step: commits, rows, WAL bytes, WAL flushes and fdatasync time, from the server's counters;")
    print(" a step's wall time is the median single step, a send's is 1 / the rate)")
    for label, lines in profiles.items():
        print(f"central's main thread during {label} (py-spy):")
        print("\n".join(lines))
    if (
        args.py_spy
        and not shutil.which("py-spy")
        and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "py-spy"))
    ):
        print("py-spy: not installed; pip install py-spy into .venv")
    _bench.result("durable_pg_where", [])


if __name__ == "__main__":
    main()
