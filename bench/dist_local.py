"""Local messages with distribution on and off: two processes of ONE runtime (issue 13).

Issue 13: "Local messages must not get slower: nothing of this is on the path between two
processes of one node." The same programs as bench/pingpong.py and bench/oneway.py (their
``occ_main``, imported, so the code timed is the same), in a runtime started without node= and
in one started with ``node="...@127.0.0.1"`` (its Erlang VM runs beside central, idle).

Rounds alternate the two, and which goes first swaps every round, so a burst of other load hits
both alike; a ratio is on / off, the median of the rounds' ratios (> 1: slower with node=). Each
is run with the two processes pinned to one CPU, to two CPUs, and unpinned (for information: the
scheduler puts them on one CPU or two from run to run, which alone changes a local round trip
several times over).

Target (issue 13): within noise: a median ratio within 1 +/- 0.10, or rounds' ratios on both
sides of 1. The noise is shown too: the spread of the per-round ratios.

Run: .venv/bin/python bench/dist_local.py [--rounds 5] [--batch 5000] [--n 100000]
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import occasional as occ

import _bench
import _dist
import oneway
import pingpong
from _bench import SHARED, SPLIT

_names = itertools.count(1)
NOISE = 0.10  # a median ratio within 1 +/- this, and within the spread of the rounds, is "within noise"


def run(node: bool, main: Callable[..., Any], *args: Any) -> Any:
    if not node:
        return occ.run(main, *args)
    return occ.run(main, *args, node=f"bench_l{next(_names)}@{_dist.HOST}", cookie=_dist.COOKIE)


PLACES: dict[str, tuple[int, int] | None] = {"one CPU": SHARED, "two CPUs": SPLIT, "unpinned": None}


def within_noise(ratios: list[float]) -> bool:
    m = _bench.median(ratios)
    return abs(m - 1) <= NOISE or min(ratios) <= 1 <= max(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(5, 2))
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch", type=int, default=_bench.sized(5000, 2000))
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--n", type=int, default=_bench.sized(100_000, 30_000))
    args = ap.parse_args()
    _bench.header("local ping-pong and one-way, node= on vs off")
    print(
        f"{args.rounds} rounds; each runs ping-pong ({args.batches} batches of {args.batch}) and one-way "
        f"(N = {args.n:,}) in a runtime without node= and in one with node=, the order swapped every round, with "
        f"the two processes on one CPU, on two CPUs, and where the scheduler puts them; figures are medians, a ratio "
        "(time with node= / without) the median of the rounds' ratios"
    )
    places = PLACES if (os.cpu_count() or 1) >= 2 else {"unpinned": None}
    # (kind, place, node on) -> seconds (per round trip, per message); (kind, place) -> ratios
    got: dict[tuple[str, str, bool], list[float]] = defaultdict(list)
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    with _dist.epmd() as port:
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for place, cpus in places.items():
                this: dict[tuple[str, bool], float] = {}
                for on in order:
                    batches = run(on, pingpong.occ_main, args.batches, args.batch, args.warm, cpus)["plain"]
                    got["ping-pong", place, on] += batches
                    this["ping-pong", on] = _bench.median(batches)
                for on in order:
                    ((per_msg, _),) = run(on, oneway.occ_main, args.n, [False], cpus)
                    got["one-way", place, on].append(per_msg)
                    this["one-way", on] = per_msg
                for kind in ("ping-pong", "one-way"):
                    # > 1: slower with node=.
                    ratios[kind, place].append(this[kind, True] / this[kind, False])
    left = _dist.leftovers(port)  # after the block: its EPMD too must be gone

    def shown(kind: str, seconds: float) -> str:
        return _bench.us(seconds) if kind == "ping-pong" else f"{1 / seconds:,.0f} msg/s"

    rows = []
    results: list[dict[str, Any]] = []
    for kind in ("ping-pong", "one-way"):
        for place in places:
            t_off, t_on = _bench.median(got[kind, place, False]), _bench.median(got[kind, place, True])
            rs = ratios[kind, place]
            # The pinned rows are the verdict: unpinned, the two processes land on one CPU or on
            # two from run to run, which changes a local round trip 2-5x (bench/RESULTS.md).
            met = within_noise(rs) if place != "unpinned" else None
            target = "within noise" if met is not None else "(info)"
            rows.append([f"{kind}, {place}", shown(kind, t_off), shown(kind, t_on), f"{_bench.median(rs):.3f}x",
                         _bench.spread(rs), target, _bench.verdict(met)])  # fmt: skip
            results.append(
                {
                    "figure": f"local {kind} ({place}), node= on vs off",
                    "measured": shown(kind, t_on),
                    "baseline": f"{shown(kind, t_off)} (node= off)",
                    "ratio": round(_bench.median(rs), 3),
                    "target": target,
                    "met": met,
                }
            )
    _bench.table(
        ["local, one runtime", "node= off", "node= on", "time on/off", "rounds' ratios", "target", "verdict"], rows
    )
    for (kind, place), rs in ratios.items():
        print(f"{kind}, {place}: ratio per round {', '.join(f'{x:.3f}' for x in rs)}")
    if left:
        print(f"WARNING: left running: {left}")
    _bench.result("dist_local", results)


if __name__ == "__main__":
    main()
