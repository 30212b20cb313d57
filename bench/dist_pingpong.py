"""Ping-pong round trip between processes on two nodes of one machine (issue 13, "Performance").

occasional: this interpreter is node a (``occ.run(..., node="a...")``); a peer node, a runtime in
an interpreter of its own, has registered "echo" (bench/_dist.py, ``echo_node``). Main sends
("ping", i) to the echo's pid, which answers ("pong", i); one round trip = send + receive both
ways, through each node's Erlang VM (process -> its proxy -> the other VM's proxy -> process).
Baselines, in the same run:
- two plain ``erl -name`` nodes, a process on each bouncing {ping, I} / {pong, I}, timed in Erlang
  (``timer:tc``, compiled code): the target's "same ping-pong between two BEAM nodes";
- two Python processes (fork) over TCP loopback with TCP_NODELAY, each message pickled behind a
  4-byte length: the least one can do in Python between two processes over TCP.

Target (issue 13): occasional <= 3x the BEAM ping-pong. Figure: median over batches of the mean
round trip in a batch. Rounds run raw, BEAM and occasional back to back; a ratio is the median of
the rounds' ratios (the machine is shared).

Diagnostic row: the same with every process of both sides pinned to CPU 0, where no wake-up
crosses CPUs, so the figures are the work done per round trip (--no-one-cpu skips it).

Run: .venv/bin/python bench/dist_pingpong.py [--rounds 7] [--batches 3] [--batch 2000] [--no-one-cpu]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import occasional as occ

import _bench
import _dist
from _bench import pin, unpin

TARGET = 3.0
_names = itertools.count(1)


def occ_round(peer_node: str, batches: int, batch: int, warm: int) -> list[float]:
    echo = _dist.handshake(("echo", peer_node))
    send, receive, perf = occ.send, occ.receive, time.perf_counter
    for i in range(warm):
        send(echo, ("ping", i))
        receive()
    out = []
    for _ in range(batches):
        t0 = perf()
        for i in range(batch):
            send(echo, ("ping", i))
            receive()
        out.append((perf() - t0) / batch)
    return out


def run_occ(peer_node: str, batches: int, batch: int, warm: int) -> list[float]:
    name = f"bench_a{next(_names)}@{_dist.HOST}"
    out: list[float] = occ.run(occ_round, peer_node, batches, batch, warm, node=name, cookie=_dist.COOKIE)
    return out


def measure(
    rounds: int, batches: int, batch: int, warm: int
) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """(raw, BEAM, occasional seconds per round trip of each batch, the rounds' ratios
    occasional / BEAM and occasional / raw), with nodes of their own started for it."""
    raw_all: list[float] = []
    beam_all: list[float] = []
    occ_all: list[float] = []
    vs_beam: list[float] = []
    vs_raw: list[float] = []
    with _dist.epmd() as port:
        peer = _dist.PeerNode(f"bench_b@{_dist.HOST}", "echo_node").wait_ready()
        try:
            with _dist.erlang_nodes() as erl:
                for _ in range(rounds):
                    r = _dist.tcp_pingpong(batches, batch, warm)
                    b = _dist.beam_pingpong(erl, batches, batch, warm)
                    o = run_occ(peer.name, batches, batch, warm)
                    raw_all += r
                    beam_all += b
                    occ_all += o
                    vs_beam.append(_bench.median(o) / _bench.median(b))
                    vs_raw.append(_bench.median(o) / _bench.median(r))
        finally:
            peer.kill()
    left = _dist.leftovers(port)  # after the block: its EPMD too must be gone
    if left:
        print(f"WARNING: left running: {left}")
    return raw_all, beam_all, occ_all, vs_beam, vs_raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(7, 3))
    ap.add_argument("--batches", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--batch", type=int, default=_bench.sized(2000, 1000))
    ap.add_argument("--warm", type=int, default=500)
    ap.add_argument("--no-one-cpu", dest="one_cpu", action="store_false", help="skip the pinned diagnostic")
    args = ap.parse_args()
    _bench.header("ping-pong round trip between two nodes on one machine")
    print(
        f"{args.rounds} rounds; each round runs {args.batches} batches of {args.batch} round trips over raw TCP, then "
        f"between two BEAM nodes, then between two occasional nodes (after {args.warm} warm-up); figure = median of "
        "batch means, ratio = median of the rounds' ratios"
    )
    raw_all, beam_all, occ_all, vs_beam, vs_raw = measure(args.rounds, args.batches, args.batch, args.warm)
    # Diagnostic: the same with every process (both nodes' runtimes and VMs, both erl nodes, the
    # raw pair) on CPU 0. No wake-up then crosses CPUs (on this VM one costs tens of
    # microseconds when the other CPU idles), so it shows the work done per round trip.
    one_cpu = None
    if args.one_cpu and (os.cpu_count() or 1) >= 2:
        pin(0)
        try:
            r1, b1, o1, _, _ = measure(max(1, args.rounds // 2), 1, args.batch, args.warm)
        finally:
            unpin()
        one_cpu = (_bench.median(r1), _bench.median(b1), _bench.median(o1))
    raw, beam, oc = _bench.median(raw_all), _bench.median(beam_all), _bench.median(occ_all)
    ratio = _bench.median(vs_beam)
    rows = [
        ["raw TCP loopback + pickle, 2 Python processes", _bench.us(raw), f"{raw / beam:.2f}x", "-", "-", "-",
         _bench.spread([x * 1e6 for x in raw_all])],
        ["two BEAM nodes (erl -name), timed in Erlang", _bench.us(beam), "1.00x", "-", "-", "-",
         _bench.spread([x * 1e6 for x in beam_all])],
        ["two occasional nodes, send + receive()", _bench.us(oc), f"{ratio:.2f}x", f"{_bench.median(vs_raw):.2f}x",
         f"<= {TARGET}x BEAM", _bench.verdict(ratio <= TARGET), _bench.spread([x * 1e6 for x in occ_all])],
    ]  # fmt: skip
    _bench.table(["round trip", "median", "vs BEAM", "vs raw TCP", "target", "verdict", "batch means (us)"], rows)
    print(f"ratio to BEAM per round: {', '.join(f'{x:.2f}' for x in vs_beam)}")
    print(f"round trips/s: raw TCP {1 / raw:,.0f}, BEAM {1 / beam:,.0f}, occasional {1 / oc:,.0f}")
    if one_cpu is not None:
        p_raw, p_beam, p_occ = one_cpu
        print("\ndiagnostic, one batch per round: every process of both sides pinned to CPU 0")
        _bench.table(
            ["placement", "raw TCP", "BEAM", "occasional", "occasional / BEAM", "occasional / raw"],
            [
                [
                    "one CPU",
                    _bench.us(p_raw),
                    _bench.us(p_beam),
                    _bench.us(p_occ),
                    f"{p_occ / p_beam:.2f}x",
                    f"{p_occ / p_raw:.2f}x",
                ]
            ],
        )
    _bench.result(
        "dist_pingpong",
        [
            {
                "figure": "ping-pong between two nodes",
                "measured": f"{oc * 1e6:.1f} us",
                "baseline": f"{beam * 1e6:.1f} us (two BEAM nodes); raw TCP+pickle {raw * 1e6:.1f} us",
                "ratio": round(ratio, 2),
                "target": f"<= {TARGET}x BEAM",
                "met": ratio <= TARGET,
            }
        ],
    )


if __name__ == "__main__":
    main()
