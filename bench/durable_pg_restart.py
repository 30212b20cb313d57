"""Durable restart on a PostgreSQL journal: SIGKILL -> live again with a 1,000-event journal, and replay speed.

The program and the measurements are ``bench/durable_restart.py``'s
(imported from it), on a fresh database of one private PostgreSQL server
started for the run (``bench/_pg.py``) instead of a SQLite file:

- occasional, process killed: a durable process with 1,000 trivial steps in
  its journal, then a loop answering pings. Main SIGKILLs it, at once sends
  it the next ping (kept in the journal for the restarted process) and waits
  for the pong. One sample = kill -> pong; the replay reads the journal from
  PostgreSQL. Replay rates: 1,000 steps, and 2,500 receives + 2,500 steps.
- the same, on a SQLite journal in a temporary directory, in the same run
  (``durable_restart.occ_round``): what the PostgreSQL journal adds, apart
  from what the machine's load does to both.
- occasional, whole runtime killed (info): the same program in a child
  interpreter, ``occ.run(main, journal=URL)``; one sample = SIGKILL of every
  process of that runtime -> a fresh interpreter on the same database has the
  process answer a ping. With leases (issue 12) the new runtime is another
  node and waits for the dead one's lease, so this is also a takeover.
- DBOS Transact on the same server, in the same run:
  ``bench/_dbos_pg_peer.py resume``, a workflow of 1,000 steps then
  ``DBOS.recv``; one sample = SIGKILL of its interpreter -> a fresh
  interpreter's ``DBOS.launch()`` recovered it and it is past its steps.

Target (issue 12): replay of a 1,000-event journal from PostgreSQL, SIGKILL
of the durable process -> it answers again, <= 50 ms.

Run: .venv/bin/python bench/durable_pg_restart.py [--rounds 3] [--n 10] [--whole 2] [--dbos 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import _pg
import durable_restart as dr

import occasional as occ

import _bench

HERE = os.path.dirname(os.path.abspath(__file__))


def occ_round(pg: Any, n: int) -> dict[str, list[float]]:
    with _pg.database(pg) as url:
        return occ.run(dr.occ_main, n, journal=url)


def occ_child(url: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {HERE!r}); import occasional as occ, durable_restart as b; "
        f"occ.run(b.child_main, journal={url!r})",
    ]


def whole_round(pg: Any, n: int) -> dict[str, list[float]]:
    with _pg.database(pg) as url:
        return dr.kill_and_resume(occ_child(url), n)


def dbos_round(pg: Any, n: int) -> dict[str, list[float]]:
    with _pg.database(pg) as url:
        argv = [sys.executable, os.path.join(HERE, "_dbos_pg_peer.py"), "resume", _pg.dbos_url(pg, url), "1000"]
        return dr.kill_and_resume(argv, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--n", type=int, default=_bench.sized(10, 5), help="kills of the durable process per round")
    ap.add_argument(
        "--whole", type=int, default=_bench.sized(2, 1), help="kills of a whole occasional runtime per round (0: none)"
    )
    ap.add_argument(
        "--dbos", type=int, default=_bench.sized(2, 1), help="kills of a DBOS interpreter per round (0: none)"
    )
    args = ap.parse_args()
    _bench.header(f"durable restart on a PostgreSQL journal: SIGKILL -> live again, {dr.EVENTS}-event journal")
    print(
        f"{args.rounds} rounds; each: {args.n} kills of the process, {args.whole} of a whole runtime, "
        f"{args.dbos} of DBOS; sides interleaved per round; figure = median"
    )
    try:
        import dbos  # noqa: F401

        with_dbos = args.dbos > 0
    except Exception as e:
        print(f"DBOS: not installed ({e!r})")
        with_dbos = False
    s: dict[str, dict[str, list[float]]] = {}

    def add(key: str, got: dict[str, list[float]]) -> None:
        for k, v in got.items():
            s.setdefault(key, {}).setdefault(k, []).extend(v)

    with _pg.server() as pg:
        print(f"server: {_pg.server_settings(pg.url())}")
        for _ in range(args.rounds):
            add("occ", occ_round(pg, args.n))
            add("sqlite", dr.occ_round(args.n))
            if args.whole > 0:
                add("whole", whole_round(pg, args.whole))
            if with_dbos:
                add("dbos", dbos_round(pg, args.dbos))

    med = _bench.median
    occ_live = med(s["occ"]["live"]) * 1e3
    rows = [
        [
            "occasional: durable process SIGKILLed -> answers",
            f"{occ_live:.2f} ms",
            f"<= {dr.TARGET_LIVE_MS:g} ms",
            _bench.verdict(occ_live <= dr.TARGET_LIVE_MS),
            f"{med(s['occ']['replay']):,.0f}",
            "-",
            _bench.spread([x * 1e3 for x in s["occ"]["live"]]),
        ]
    ]
    for key, label in (
        ("sqlite", "occasional on SQLite, same run: durable process SIGKILLed -> answers"),
        ("whole", "occasional: whole runtime SIGKILLed -> new interpreter, answers"),
        ("dbos", "DBOS: interpreter SIGKILLed -> new one recovered, past the steps"),
    ):
        if key not in s:
            continue
        x = s[key]
        rows.append(
            [
                label,
                f"{med(x['live']) * 1e3:.1f} ms",
                "(peer)" if key == "dbos" else "(info)",
                "-",
                f"{med(x['replay']):,.0f}",
                f"{med(x['startup']) * 1e3:.1f} ms" if "startup" in x else "-",
                _bench.spread([v * 1e3 for v in x["live"]]),
            ]
        )
    _bench.table(
        [
            "kill -> live, 1,000 steps in the journal",
            "median",
            "target",
            "verdict",
            "replay events/s",
            "of which: start-up until the function runs",
            "samples (ms)",
        ],
        rows,
    )
    mixed_rate = med(s["occ"]["mixed"])
    pg_vs_sqlite = med(s["occ"]["live"]) / med(s["sqlite"]["live"])
    print(f"PostgreSQL / SQLite, durable process SIGKILLed -> answers: {pg_vs_sqlite:.2f}x")
    print(
        f"occasional replay of {dr.MIXED:,} receives + {dr.MIXED:,} steps from PostgreSQL: {mixed_rate:,.0f} events/s"
    )
    dbos_live = f"DBOS on PostgreSQL {med(s['dbos']['live']) * 1e3:.0f} ms" if "dbos" in s else "-"
    out: list[dict[str, Any]] = [
        {
            "figure": "durable SIGKILL -> live, 1,000-event journal on PostgreSQL",
            "measured": f"{occ_live:.2f} ms",
            "baseline": f"SQLite {med(s['sqlite']['live']) * 1e3:.2f} ms; {dbos_live}",
            "ratio": round(pg_vs_sqlite, 2),
            "target": f"<= {dr.TARGET_LIVE_MS:g} ms",
            "met": occ_live <= dr.TARGET_LIVE_MS,
        },
        {
            "figure": "durable replay from PostgreSQL, receive + step",
            "measured": f"{mixed_rate:,.0f} events/s",
            "baseline": f"DBOS {med(s['dbos']['replay']):,.0f} steps/s" if "dbos" in s else "-",
            "ratio": None,
            "target": "(info)",
            "met": None,
        },
    ]
    if "whole" in s:
        out.append(
            {
                "figure": "whole runtime SIGKILL -> live (new interpreter), PostgreSQL",
                "measured": f"{med(s['whole']['live']) * 1e3:.1f} ms",
                "baseline": dbos_live,
                "ratio": None,
                "target": "(info)",
                "met": None,
            }
        )
    _bench.result("durable_pg_restart", out)


if __name__ == "__main__":
    main()
