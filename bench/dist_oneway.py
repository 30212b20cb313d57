"""One-way small messages across nodes: a sender on one node, a receiver on another (issue 13).

occasional: this interpreter is node a; a peer node, a runtime in an interpreter of its own,
has registered "sink" (bench/_dist.py, ``sink_node``). Main tells the sink to count N, then
sends it N messages ("msg", i); the sink times from the first message to the last and reports
the rate. Both sides shake hands first, so neither the connection between the nodes nor the
proxies' set-up is in the figure.
Peers, in the same run:
- two plain ``erl -name`` nodes, the same flood of {msg, I} timed the same way in Erlang;
- the same one-way between two processes of one runtime that is not a node (bench/oneway.py's
  ``occ_main``): what the trip through the two VMs costs.

Target (issue 13): >= 50,000 msg/s at the receiver. Rounds run BEAM, local and occasional
across nodes back to back; figures are medians, a ratio the median of the rounds' ratios.

Run: .venv/bin/python bench/dist_oneway.py [--n 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import time

import occasional as occ

import _bench
import _dist
import oneway

TARGET = 50_000
_names = itertools.count(1)


def occ_round(peer_node: str, n: int) -> tuple[float, float]:
    """(seconds per message at the sink, seconds of the sender's loop)."""
    sink = _dist.handshake(("sink", peer_node))
    occ.send(sink, ("count", (occ.slf(), n)))
    assert occ.receive() == "ready"
    send = occ.send
    t0 = time.perf_counter()
    for i in range(n):
        send(sink, ("msg", i))
    sent = time.perf_counter() - t0
    _, per_msg = occ.receive(("done", occ.ANY))
    return per_msg, sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=_bench.sized(100_000, 30_000))
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument(
        "--n-small", type=int, default=_bench.sized(10_000, 5_000), help="N of the diagnostic row (0: none)"
    )
    args = ap.parse_args()
    n = args.n
    _bench.header("one-way small messages across two nodes on one machine")
    print(
        f"N = {n:,} messages ('msg', i) per run, {args.rounds} rounds of (two BEAM nodes, one occasional runtime, "
        "two occasional nodes); rate measured at the receiver; figure = median, ratio = median of the rounds' ratios"
    )
    beam: list[tuple[float, float]] = []
    local: list[tuple[float, float]] = []
    dist: list[tuple[float, float]] = []
    vs_beam: list[float] = []
    vs_local: list[float] = []
    small: list[tuple[float, float]] = []
    with _dist.epmd() as port:
        peer = _dist.PeerNode(f"bench_b@{_dist.HOST}", "sink_node").wait_ready()
        try:
            with _dist.erlang_nodes() as erl:
                for _ in range(args.rounds):
                    b = _dist.beam_oneway(erl, n)
                    (loc,) = occ.run(oneway.occ_main, n, [False])
                    name = f"bench_a{next(_names)}@{_dist.HOST}"
                    d = occ.run(occ_round, peer.name, n, node=name, cookie=_dist.COOKIE)
                    if args.n_small:
                        name = f"bench_a{next(_names)}@{_dist.HOST}"
                        small.append(occ.run(occ_round, peer.name, args.n_small, node=name, cookie=_dist.COOKIE))
                    beam.append(b)
                    local.append(loc)
                    dist.append(d)
                    vs_beam.append(b[0] / d[0])
                    vs_local.append(loc[0] / d[0])
        finally:
            peer.kill()
    left = _dist.leftovers(port)  # after the block: its EPMD too must be gone

    def rate(samples: list[tuple[float, float]]) -> float:
        return 1 / _bench.median([s[0] for s in samples])

    def send_rate(samples: list[tuple[float, float]]) -> float:
        return n / _bench.median([s[1] for s in samples])

    d = rate(dist)
    rows = [
        ["two BEAM nodes (erl -name)", f"{rate(beam):,.0f}", "1.00x", "-", f"{send_rate(beam):,.0f}", "-", "-",
         _bench.spread([1 / s[0] for s in beam])],
        ["one occasional runtime, node= off (oneway.py)", f"{rate(local):,.0f}", "-", "1.00x", f"{send_rate(local):,.0f}",
         "-", "-", _bench.spread([1 / s[0] for s in local])],
        ["two occasional nodes", f"{d:,.0f}", f"{_bench.median(vs_beam):.2f}x", f"{_bench.median(vs_local):.2f}x",
         f"{send_rate(dist):,.0f}", f">= {TARGET:,}/s", _bench.verdict(d >= TARGET), _bench.spread([1 / s[0] for s in dist])],
    ]  # fmt: skip
    _bench.table(
        [
            "one-way",
            "msg/s at receiver",
            "vs BEAM",
            "vs local",
            "sender loop msg/s",
            "target",
            "verdict",
            "rounds (msg/s)",
        ],
        rows,
    )
    print(f"ratio to BEAM per round: {', '.join(f'{x:.2f}' for x in vs_beam)}")
    if small:
        # The rate depends on N: what the receiving node's VM holds for its process grows
        # with N when the VM cannot keep up (see bench/results/dist-oneway-profile.txt).
        print(
            f"diagnostic: two occasional nodes with N = {args.n_small:,}: {1 / _bench.median([s[0] for s in small]):,.0f} "
            f"msg/s at the receiver (rounds {_bench.spread([1 / s[0] for s in small])})"
        )
    if left:
        print(f"WARNING: left running: {left}")
    _bench.result(
        "dist_oneway",
        [
            {
                "figure": "one-way msg/s across two nodes",
                "measured": f"{d:,.0f} msg/s",
                "baseline": f"{rate(beam):,.0f} msg/s (two BEAM nodes); one runtime {rate(local):,.0f} msg/s",
                "ratio": round(_bench.median(vs_beam), 2),
                "target": f">= {TARGET:,} msg/s",
                "met": d >= TARGET,
            }
        ],
    )


if __name__ == "__main__":
    main()
