"""Where a PostgreSQL journal's commit time goes: the store alone, without central or any IPC (diagnostic).

Not a benchmark with a target: it times, in one process and on one private
PostgreSQL server (``bench/_pg.py``), the parts that ``durable_pg_step.py``
and ``durable_pg_send.py`` measure whole, so the difference between them is
central's loop and the round trips between processes:

- a pipeline of ``SELECT 1`` with one sync: one client-server round trip;
- a raw one-row commit (``BEGIN; INSERT; COMMIT``, one sync), with
  ``synchronous_commit`` on and off: the difference is the WAL flush;
- ``PostgresStore.write`` of the batch a step commits (one event) and of the
  batch a send commits (1 or 8 mailbox rows to one process), "machine" and
  "process": what occasional's store adds to the raw commit (the fence on
  the ``nodes`` row, the per-process counter row).

The parts take turns, one commit each, so a burst of disk or CPU load from
other work falls on all alike; the store's step, send and raw parts each
write a database of their own.

It uses occasional's internal store interface (``occasional.durable.store``:
``Store``, ``Batch``, ``ProcessRow``), which may change; it is not part of
``run_all.py``.

Run: .venv/bin/python bench/durable_pg_parts.py [--n 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import _pg
import msgpack
import psycopg

from occasional.durable.store import Batch, ProcessRow, Store

import _bench


def parts(urls: list[str], n: int) -> dict[str, list[float]]:
    """Each part once per turn, n turns: every part sees the same disk and the same neighbours."""
    raw_on, raw_off, ping = (psycopg.connect(urls[0], autocommit=True) for _ in range(3))
    stores: dict[str, Any] = {}
    try:
        for conn, sync in ((raw_on, "on"), (raw_off, "off")):
            conn.execute(f"SET synchronous_commit = {sync}")
        raw_on.execute("DROP TABLE IF EXISTS mailbox")
        raw_on.execute(_pg.RAW_TABLE)
        for mode, url in (("machine", urls[1]), ("process", urls[2])):
            stores[mode] = Store(url, mode)
            stores[mode].write(Batch(processes=[_row("sink")]))

        def raw(conn: Any, i: int) -> None:
            with conn.pipeline():
                conn.execute("BEGIN")
                conn.execute(_pg.RAW_INSERT, ("p", i, None, None, _pg.BODY))
                conn.execute("COMMIT")

        def select(i: int) -> None:
            with ping.pipeline():
                ping.execute("SELECT 1")

        event = msgpack.packb(["ok", 1])
        todo: dict[str, Callable[[int], None]] = {
            "round trip (pipeline, SELECT 1, one sync)": select,
            "raw one-row commit, synchronous_commit=on": lambda i: raw(raw_on, 2 * i),
            "raw one-row commit, synchronous_commit=off": lambda i: raw(raw_off, 2 * i + 1),
        }
        for mode, store in stores.items():
            todo[f"PostgresStore.write, {mode}, step: one event"] = lambda i, st=store: st.write(
                Batch(events=[("sink", i + 1, "step", "trivial", event)])
            )
            for b in (1, 8):
                todo[f"PostgresStore.write, {mode}, send: {b} mailbox row{'s' if b > 1 else ''}"] = (
                    lambda i, st=store, b=b: st.write(
                        Batch(mailbox=[("sink", 0, f"s{k}", i * b + k + 1, _pg.BODY) for k in range(b)])
                    )
                )
        out: dict[str, list[float]] = {k: [] for k in todo}
        perf = time.perf_counter
        for i in range(n):
            for k, f in todo.items():
                t0 = perf()
                f(i)
                out[k].append(perf() - t0)
        return out
    finally:
        for st in stores.values():
            st.close()
        for conn in (raw_on, raw_off, ping):
            conn.close()


def _row(id: str) -> ProcessRow:
    blob = msgpack.packb(b"x" * 300)  # about a pickled trivial function and its arguments
    return ProcessRow(id, "bench", blob, msgpack.packb([]), "bench", "running", None, None, 0.0, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="commits per part and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    _bench.header("the parts of a commit to a PostgreSQL journal, in one process (diagnostic)")
    s: dict[str, list[float]] = {}
    with _pg.server() as pg:
        print(f"server: {_pg.server_settings(pg.url())}")
        for _ in range(args.rounds):
            with _pg.database(pg) as a, _pg.database(pg) as b, _pg.database(pg) as c:
                for k, v in parts([a, b, c], args.n).items():
                    s.setdefault(k, []).extend(v)
    _bench.table(
        ["part", "median", "p90", "samples"],
        [[k, _bench.ms(_bench.median(v)), _bench.ms(sorted(v)[len(v) * 9 // 10]), len(v)] for k, v in s.items()],
    )
    _bench.result("durable_pg_parts", [])


if __name__ == "__main__":
    main()
