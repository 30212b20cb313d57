"""Durable send on a PostgreSQL journal: messages per second into a durable process, 1 and 8 senders.

The program is ``bench/durable_send.py``'s (imported from it): a durable
sink that leaves its mailbox alone, and 1 or 8 ordinary sender processes
that send their share ``("m", sender, i)`` as fast as ``send`` returns (a
send returns once central's writer has committed it; group commit: what
arrived in one loop turn goes in one transaction). The rate is every message
over the time from the first sender's start to the last one's end. The
journal is a fresh database of its own on one private PostgreSQL server
started for the run (``bench/_pg.py``).

Baseline, in the same run (issue 12: "as a ratio to a raw psycopg pipelined
insert loop with the same batching"): one psycopg 3 loop that commits every
B rows of the journal's mailbox shape as one transaction sent as one
pipeline (``BEGIN``, ``executemany(INSERT)``, ``COMMIT``, one sync), with
``synchronous_commit=on``; B = the number of senders (each sender has at
most one send waiting for its commit, so a commit can carry at most one
message per sender).

Targets (issue 12): "machine" >= 4,000 / >= 15,000 msg/s with 1 / 8
senders. "process" (``synchronous_commit=off``) is printed for information,
and so is "machine" on a SQLite journal in a temporary directory
(``durable_send.occ_round``), in the same rounds: what the machine's load
does to occasional whatever the store.

Rounds interleave the sides: raw, then occasional machine and process, with
1 and then 8 senders.

Run: .venv/bin/python bench/durable_pg_send.py [--rounds 3] [--n 4000] [--no-process] [--no-sqlite]
"""

from __future__ import annotations

import argparse
from typing import Any

import _pg
import durable_send

import occasional as occ

import _bench

TARGETS = {("machine", 1): 4_000, ("machine", 8): 15_000}


def occ_round(pg: Any, mode: str, senders: int, n: int) -> float:
    with _pg.database(pg) as url:
        return occ.run(durable_send.occ_main, senders, n, journal=url, journal_sync=mode)


def raw_round(pg: Any, n: int, batch: int) -> float:
    with _pg.database(pg) as url:
        return _pg.raw_send_rate(url, n, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--n", type=int, default=_bench.sized(4000, 1000), help="messages per round and side")
    ap.add_argument("--no-process", action="store_true", help='leave out "process" (information only)')
    ap.add_argument("--no-sqlite", action="store_true", help="leave out SQLite (information only)")
    args = ap.parse_args()
    modes = ("machine",) if args.no_process else ("machine", "process")
    _bench.header("durable send on a PostgreSQL journal: committed messages per second into a durable process")
    print(
        f"{args.rounds} rounds of {args.n} messages per side; sides interleaved per round; "
        "figure = median of the rounds, ratio = median of the rounds' ratios"
    )
    raw: dict[int, list[float]] = {}
    rates: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    with _pg.server() as pg:
        print(f"server: {_pg.server_settings(pg.url())}")
        for _ in range(args.rounds):
            for senders in (1, 8):
                base = raw_round(pg, args.n, senders)
                raw.setdefault(senders, []).append(base)
                for mode in modes:
                    rate = occ_round(pg, mode, senders, args.n)
                    rates.setdefault((mode, senders), []).append(rate)
                    ratios.setdefault((mode, senders), []).append(rate / base)
                if not args.no_sqlite:
                    rate = durable_send.occ_round("machine", senders, args.n)
                    rates.setdefault(("machine on SQLite", senders), []).append(rate)
                    ratios.setdefault(("machine on SQLite", senders), []).append(rate / base)

    rows: list[list[Any]] = []
    out = []
    for senders in (1, 8):
        base = _bench.median(raw[senders])
        rows.append(
            [
                f"raw psycopg: {senders} row{'s' if senders > 1 else ''} per pipelined commit",
                f"{base:,.0f}",
                "-",
                "-",
                "-",
                _bench.spread(raw[senders]),
            ]
        )
        for mode in modes + (() if args.no_sqlite else ("machine on SQLite",)):
            rate = _bench.median(rates[(mode, senders)])
            ratio = _bench.median(ratios[(mode, senders)])
            target = TARGETS.get((mode, senders))
            met = None if target is None else rate >= target
            rows.append(
                [
                    f"occasional {mode}, {senders} sender{'s' if senders > 1 else ''}",
                    f"{rate:,.0f}",
                    f"{ratio:.2f}x",
                    "(info)" if target is None else f">= {target:,}",
                    _bench.verdict(met),
                    _bench.spread(rates[(mode, senders)]),
                ]
            )
            out.append(
                {
                    "figure": f"durable send on PostgreSQL, {senders} sender(s), {mode}",
                    "measured": f"{rate:,.0f} msg/s",
                    "baseline": f"raw psycopg, {senders} rows per pipelined commit: {base:,.0f} msg/s",
                    "ratio": round(ratio, 2),
                    "target": "(info)" if target is None else f">= {target:,} msg/s",
                    "met": met,
                }
            )
    _bench.table(["side", "msg/s", "vs raw psycopg", "target", "verdict", "rounds (msg/s)"], rows)
    _bench.result("durable_pg_send", out)


if __name__ == "__main__":
    main()
