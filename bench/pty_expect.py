"""expect round trip to a program on a pty: occasional's ``ports.expect`` beside pexpect, same
program, same run (issue 14; report only).

pexpect runs with ``delaybeforesend = None`` (its default sleeps 50 ms before each send, which
would make it 100x slower here). The program is ``python3 -i -q`` with a plain prompt: each round trip sends ``1+1`` and
expects ``2`` followed by the next prompt. pexpect is a bench-only peer
(``pip install pexpect``; the row is skipped without it).

Run: .venv/bin/python bench/pty_expect.py [--rounds 3] [--n 300]
"""

from __future__ import annotations

import argparse
import sys
import time

import occasional as occ
from occasional import ports

import _bench

PROGRAM = [sys.executable, "-i", "-q", "-c", "import sys; sys.ps1 = '>>> '"]


def occasional_round(n: int) -> float:
    def main() -> float:
        port = ports.open_port(PROGRAM, pty=True)
        ports.expect(port, rb">>> ", timeout=10)
        t0 = time.perf_counter()
        for _ in range(n):
            occ.send(port, b"1+1\n")
            ports.expect(port, rb"2\r\n>>> ", timeout=10)
        elapsed = time.perf_counter() - t0
        ports.close(port)
        return elapsed / n

    return float(occ.run(main))


def pexpect_round(n: int) -> float | None:
    try:
        import pexpect
    except ImportError:
        return None
    child = pexpect.spawn(PROGRAM[0], PROGRAM[1:], timeout=10)
    child.delaybeforesend = None  # its default sleeps 50 ms before every send; we compare the mechanics
    child.expect(rb">>> ")
    t0 = time.perf_counter()
    for _ in range(n):
        child.sendline(b"1+1")
        child.expect(rb"2\r\n>>> ")
    elapsed = time.perf_counter() - t0
    child.sendeof()
    child.close()
    return elapsed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--n", type=int, default=_bench.sized(300, 100))
    args = ap.parse_args()
    _bench.header(f"expect round trip to python3 -i on a pty, {args.n} per round")
    ours, peers = [], []
    for _ in range(args.rounds):
        peer = pexpect_round(args.n)
        if peer is not None:
            peers.append(peer)
        ours.append(occasional_round(args.n))
    rows = [["occasional ports.expect", _bench.us(_bench.median(ours)), _bench.spread([x * 1e6 for x in ours])]]
    ratio = None
    if peers:
        ratio = _bench.median(ours) / _bench.median(peers)
        rows.insert(0, ["pexpect", _bench.us(_bench.median(peers)), _bench.spread([x * 1e6 for x in peers])])
    _bench.table(["expect round trip", "median", "rounds (us)"], rows)
    if ratio is not None:
        print(f"occasional / pexpect: {ratio:.2f}x")
    _bench.result(
        "pty_expect",
        [
            {
                "figure": "expect round trip to a pty program",
                "measured": _bench.us(_bench.median(ours)),
                "baseline": f"{_bench.us(_bench.median(peers))} (pexpect)" if peers else "pexpect not installed",
                "ratio": None if ratio is None else round(ratio, 3),
                "target": "report beside pexpect",
                "met": None,
            }
        ],
    )


if __name__ == "__main__":
    main()
