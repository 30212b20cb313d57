"""Durable steps on a PostgreSQL journal: ``durable.step`` of a trivial function, and 10 steps, against DBOS.

As ``bench/durable_step.py`` (SQLite), on one private PostgreSQL server
started for the run (``bench/_pg.py``). Every side times the same thing
inside a running durable process (a DBOS workflow): one ``step(trivial, i)``
call, from the call to its return, with the result committed (the figure is
the median); then blocks of 10 such calls back to back.

- occasional: one durable process per round and journal_sync mode, on a
  fresh database of its own: ``occ.run(main, journal="postgresql://...")``.
  "machine" is ``synchronous_commit=on`` (the commit waits for the server's
  WAL flush), "process" is ``off`` (for information).
- DBOS Transact on the same server, in the same run:
  ``bench/_dbos_pg_peer.py steps``, one fresh interpreter and database per
  round; the server's ``synchronous_commit=on``, the promise of "machine".
  The whole-workflow time of a 10-step workflow is printed for information.
- The floor, in the same run: a raw psycopg 3 loop of one-row commits, each
  one pipeline ``BEGIN; INSERT; COMMIT`` with one sync (``bench/_pg.py``):
  a step in "machine" mode waits for at least one such commit.

- For information, occasional "machine" on a SQLite journal in a temporary
  directory (``durable_step.occ_round``), in the same rounds.

Target (issue 12): one step, "machine", <= 0.5x DBOS on PostgreSQL.

Rounds interleave the sides (raw, occasional machine, occasional process,
occasional on SQLite, DBOS), so a burst of load from other work falls on all alike.

Run: .venv/bin/python bench/durable_pg_step.py [--rounds 3] [--n 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import _pg
import durable_step

import occasional as occ
from occasional import durable

import _bench

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_VS_DBOS = 0.5


def occ_main(n: int) -> tuple[list[float], list[float]]:
    durable.spawn("bench-steps", durable_step.timed_steps, n)  # the same steps, timed the same way
    kind, value = durable.result("bench-steps", timeout=600)
    assert kind == "ok", (kind, value)
    return value


def occ_round(pg: Any, mode: str, n: int) -> tuple[list[float], list[float]]:
    with _pg.database(pg) as url:
        return occ.run(occ_main, n, journal=url, journal_sync=mode)


def raw_round(pg: Any, n: int) -> tuple[list[float], list[float]]:
    with _pg.database(pg) as url:
        return _pg.raw_commits(url, n)


def dbos_round(pg: Any, n: int) -> dict[str, Any]:
    with _pg.database(pg) as url:
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "_dbos_pg_peer.py"), "steps", _pg.dbos_url(pg, url), str(n)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"the DBOS peer failed with status {out.returncode}: {out.stderr[-3000:]}")
        return json.loads(out.stdout.splitlines()[-1])


def dbos_available() -> str | None:
    try:
        import dbos  # noqa: F401
    except Exception as e:
        return f"not installed ({e!r}); pip install dbos into .venv"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 1))
    ap.add_argument(
        "--n", type=int, default=_bench.sized(300, 100), help="single steps per round (and n/10 blocks of 10)"
    )
    args = ap.parse_args()
    _bench.header("durable.step of a trivial function on a PostgreSQL journal, inside a running durable process")
    print(
        f"{args.rounds} rounds of {args.n} single steps and {args.n // 10} blocks of 10 per side; "
        "sides interleaved per round; figure = median over all rounds"
    )
    why_no_dbos = dbos_available()
    one: dict[str, list[float]] = {k: [] for k in ("raw", "machine", "process", "sqlite", "dbos")}
    ten: dict[str, list[float]] = {k: [] for k in one}
    whole: list[float] = []
    dbos_settings: dict[str, Any] = {}
    with _pg.server() as pg:
        print(f"server: {_pg.server_settings(pg.url())}")
        for _ in range(args.rounds):
            o, t = raw_round(pg, args.n)
            one["raw"] += o
            ten["raw"] += t
            for mode in ("machine", "process"):
                o, t = occ_round(pg, mode, args.n)
                one[mode] += o
                ten[mode] += t
            o, t = durable_step.occ_round("machine", args.n)
            one["sqlite"] += o
            ten["sqlite"] += t
            if why_no_dbos is None:
                r = dbos_round(pg, args.n)
                one["dbos"] += r["step"]
                ten["dbos"] += r["ten"]
                whole += r["workflow10"]
                dbos_settings = r["settings"]

    def med_ms(xs: list[float]) -> float | None:
        return _bench.median(xs) * 1e3 if xs else None

    def show(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f} ms"

    dbos_one, dbos_ten = med_ms(one["dbos"]), med_ms(ten["dbos"])
    rows = []
    out = []
    for label, key in (
        ('raw psycopg one-row commit, pipelined (the floor for "machine")', "raw"),
        ('occasional, journal_sync="machine"', "machine"),
        ('occasional, journal_sync="process" (info)', "process"),
        ('occasional on SQLite, "machine", same run (info)', "sqlite"),
        ("DBOS on PostgreSQL (synchronous_commit=on)", "dbos"),
    ):
        m1, m10 = med_ms(one[key]), med_ms(ten[key])
        ratio = None if m1 is None or dbos_one is None else m1 / dbos_one
        ratio10 = None if m10 is None or dbos_ten is None else m10 / dbos_ten
        met = None if key != "machine" or ratio is None else ratio <= TARGET_VS_DBOS
        rows.append(
            [
                label,
                show(m1),
                "-" if ratio is None else f"{ratio:.2f}x",
                f"<= {TARGET_VS_DBOS}x DBOS" if key == "machine" else "-",
                _bench.verdict(met),
                show(m10),
                "-" if ratio10 is None else f"{ratio10:.2f}x",
                _bench.spread([x * 1e3 for x in one[key]]) if one[key] else why_no_dbos or "-",
            ]
        )
        if key in ("machine", "process") and m1 is not None:
            out.append(
                {
                    "figure": f"durable.step on PostgreSQL, {key}",
                    "measured": f"{m1:.3f} ms",
                    "baseline": "-" if dbos_one is None else f"DBOS on PostgreSQL {dbos_one:.3f} ms",
                    "ratio": None if ratio is None else round(ratio, 2),
                    "target": f"<= {TARGET_VS_DBOS}x DBOS" if key == "machine" else "(info)",
                    "met": met,
                }
            )
            out.append(
                {
                    "figure": f"10 steps on PostgreSQL, {key}",
                    "measured": show(m10),
                    "baseline": "-" if dbos_ten is None else f"DBOS on PostgreSQL {dbos_ten:.3f} ms",
                    "ratio": None if ratio10 is None else round(ratio10, 2),
                    "target": "(info)",
                    "met": None,
                }
            )
    _bench.table(
        ["side", "one step", "vs DBOS", "target", "verdict", "10 steps", "vs DBOS", "one step, samples (ms)"], rows
    )
    raw1 = med_ms(one["raw"])
    m1 = med_ms(one["machine"])
    if raw1 is not None and m1 is not None:
        print(f'occasional "machine" step / raw one-row commit: {m1 / raw1:.2f}x')
    if whole:
        print(
            f"DBOS: a whole 10-step workflow, call to return: {show(med_ms(whole))}; "
            f"settings seen on its connection: {dbos_settings}"
        )
    if why_no_dbos:
        print(f"DBOS: {why_no_dbos}")
    _bench.result("durable_pg_step", out)


if __name__ == "__main__":
    main()
