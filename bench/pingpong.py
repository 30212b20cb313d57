"""Ping-pong round trip between two processes.

occasional: main sends ("ping", i) to an echo process, which answers
("pong", i); one round trip = send + receive both ways.
Baseline, in the same run: two processes made with os.fork() talking over
socket.socketpair(), each message pickle.dumps'd behind a 4-byte length prefix.

Target (ARCHITECTURE.md, "Performance budget"): occasional <= 1.5x raw.
Figure: median over batches of the mean round trip in a batch. Rounds
alternate raw and occasional; the ratio is the median of the rounds' ratios.

Run: .venv/bin/python bench/pingpong.py [--rounds 5] [--batches 3] [--batch 5000]
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import struct
import time

import occasional as occ

import _bench
from _bench import SHARED, SPLIT, pin, unpin

TARGET = 1.5
HDR = struct.Struct(">I")


# -- raw baseline ---------------------------------------------------------------------


class RawConn:
    """A length-prefixed pickle stream over a blocking socket: the least one can do."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, obj: object) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(HDR.pack(len(data)) + data)

    def recv(self) -> object:
        buf = self.buf
        while True:
            if len(buf) >= 4:
                (n,) = HDR.unpack_from(buf)
                if len(buf) >= 4 + n:
                    self.buf = buf[4 + n :]
                    return pickle.loads(buf[4 : 4 + n])
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            buf += data


def raw_echo(sock: socket.socket) -> None:
    conn = RawConn(sock)
    while True:
        try:
            tag, i = conn.recv()  # type: ignore[misc]  # recv() returns object; the peer sends (tag, i)
        except EOFError:
            return
        conn.send(("pong", i))


def raw(batches: int, batch: int, warm: int, cpus: tuple[int, int] | None = None) -> list[float]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        try:
            a.close()
            pin(cpus and cpus[1])
            raw_echo(b)
        finally:
            os._exit(0)
    b.close()
    pin(cpus and cpus[0])
    conn = RawConn(a)
    for i in range(warm):
        conn.send(("ping", i))
        conn.recv()
    per_trip = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for i in range(batch):
            conn.send(("ping", i))
            conn.recv()
        per_trip.append((time.perf_counter() - t0) / batch)
    a.close()
    os.waitpid(child, 0)
    if cpus:
        unpin()
    return per_trip


# -- occasional ---------------------------------------------------------------------


def echo(cpu: int | None = None) -> None:
    pin(cpu)
    tag, peer = occ.receive()
    while True:
        tag, i = occ.receive()
        if tag == "stop":
            return
        occ.send(peer, ("pong", i))


def occ_main(batches: int, batch: int, warm: int, cpus: tuple[int, int] | None = None) -> dict[str, list[float]]:
    pin(cpus and cpus[0])
    peer = occ.spawn(echo, cpus and cpus[1])
    occ.send(peer, ("hello", occ.slf()))
    send, receive, perf = occ.send, occ.receive, time.perf_counter
    for i in range(warm):
        send(peer, ("ping", i))
        receive()
    out: dict[str, list[float]] = {"plain": [], "template": []}
    for _ in range(batches):
        t0 = perf()
        for i in range(batch):
            send(peer, ("ping", i))
            receive()
        out["plain"].append((perf() - t0) / batch)
    # The same with a selective receive, as an Erlang programmer writes it.
    pong = ("pong", occ.ANY)
    for _ in range(batches):
        t0 = perf()
        for i in range(batch):
            send(peer, ("ping", i))
            receive(pong)
        out["template"].append((perf() - t0) / batch)
    send(peer, ("stop", None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--warm", type=int, default=1000)
    args = ap.parse_args()
    _bench.header("ping-pong round trip")
    print(
        f"{args.rounds} rounds; each round runs {args.batches} batches of {args.batch} round trips raw, then the same "
        f"in occasional (after {args.warm} warm-up); figure = median of batch means, ratio = median of the rounds' ratios"
    )

    # Rounds alternate baseline and occasional, so a burst of other load on
    # the machine hits both alike (the benchmark machine is shared).
    raw_all: list[float] = []
    plain_all: list[float] = []
    tmpl_all: list[float] = []
    ratios: list[float] = []
    for _ in range(args.rounds):
        r = raw(args.batches, args.batch, args.warm)
        o = occ.run(occ_main, args.batches, args.batch, args.warm)
        raw_all += r
        plain_all += o["plain"]
        tmpl_all += o["template"]
        ratios.append(_bench.median(o["plain"]) / _bench.median(r))
    # Diagnostic: the same with both processes pinned to two CPUs, then to
    # one. Across CPUs a round trip is two cross-CPU wake-ups, which on a VM
    # whose other CPU is idle (halted) cost far more than the work itself.
    placed = {}
    if (os.cpu_count() or 1) >= 2:
        for label, cpus in (("different CPUs", SPLIT), ("one CPU", SHARED)):
            r = _bench.median(raw(1, args.batch, args.warm, cpus))
            o = _bench.median(occ.run(occ_main, 1, args.batch, args.warm, cpus)["plain"])
            placed[label] = (r, o)

    base = _bench.median(raw_all)
    plain = _bench.median(plain_all)
    tmpl = _bench.median(tmpl_all)
    ratio = _bench.median(ratios)

    rows = [
        ["raw fork+socketpair+pickle (baseline)", _bench.us(base), "-", "-", "-", _bench.spread([x * 1e6 for x in raw_all])],
        ["occasional send + receive()", _bench.us(plain), f"{ratio:.2f}x", f"<= {TARGET}x", _bench.verdict(ratio <= TARGET),
         _bench.spread([x * 1e6 for x in plain_all])],
        ["occasional send + receive(('pong', ANY))", _bench.us(tmpl), f"{tmpl / base:.2f}x", "(info)", "-",
         _bench.spread([x * 1e6 for x in tmpl_all])],
    ]  # fmt: skip
    _bench.table(["round trip", "median", "ratio vs raw", "target", "verdict", "batch means (us)"], rows)
    print(f"ratio per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"round trips/s: raw {1 / base:,.0f}, occasional {1 / plain:,.0f}")
    if placed:
        print(f"\ndiagnostic, one batch of {args.batch} each: both processes pinned")
        _bench.table(
            ["placement", "raw", "occasional", "ratio"],
            [[label, _bench.us(r), _bench.us(o), f"{o / r:.2f}x"] for label, (r, o) in placed.items()],
        )
    _bench.result(
        "pingpong",
        [
            {
                "figure": "ping-pong round trip",
                "measured": f"{plain * 1e6:.1f} us",
                "baseline": f"{base * 1e6:.1f} us (raw socketpair+pickle)",
                "ratio": round(ratio, 2),
                "target": f"<= {TARGET}x",
                "met": ratio <= TARGET,
            },
            {
                "figure": "ping-pong round trip, template receive",
                "measured": f"{tmpl * 1e6:.1f} us",
                "baseline": f"{base * 1e6:.1f} us (raw socketpair+pickle)",
                "ratio": round(tmpl / base, 2),
                "target": "(info)",
                "met": None,
            },
        ],
    )


if __name__ == "__main__":
    main()
