"""One connection, one-way throughput in raw framing: an occasional process reading its socket
in active mode against a plain blocking-socket reader, same sender, same run (issue 14).

A sender process writes MB megabytes in 64 KiB writes over TCP loopback; the receiver counts
bytes from the first to the last. The peer is a Python process doing ``sock.recv(256 KiB)`` in
a loop; occasional's receiver gets ``(sock, ("tcp", data))`` messages from its own loop.

Target (issue 14): >= 0.5x the plain reader's MB/s.

Run: .venv/bin/python bench/net_oneway.py [--rounds 3] [--mb 200]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import occasional as occ
from occasional import net

import _bench

TARGET = 0.5
CHUNK = b"x" * 65536


def sender(port: int, mb: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(mb * 16):
            s.sendall(CHUNK)


def start_sender(port: int, mb: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "send", str(port), str(mb)])


def plain_round(mb: int) -> float:
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        proc = start_sender(lsock.getsockname()[1], mb)
        conn, _ = lsock.accept()
        total, t0 = 0, 0.0
        with conn:
            while data := conn.recv(1 << 18):
                if not total:
                    t0 = time.perf_counter()
                total += len(data)
        elapsed = time.perf_counter() - t0
        proc.wait()
    return total / elapsed / 1e6


def occasional_round(mb: int) -> float:
    def main() -> float:
        listener = net.listen(0)
        port = listener.port
        assert port is not None
        proc = start_sender(port, mb)
        sock = net.accept(listener, timeout=30)
        total, t0 = 0, 0.0
        while True:
            _, (kind, data) = occ.receive((sock, occ.ANY))
            if kind != "tcp":
                break
            if not total:
                t0 = time.perf_counter()
            total += len(data)
        elapsed = time.perf_counter() - t0
        proc.wait()
        return total / elapsed / 1e6

    return float(occ.run(main))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--mb", type=int, default=_bench.sized(200, 50))
    args = ap.parse_args()
    _bench.header(f"one connection, one-way, raw framing, {args.mb} MB in 64 KiB writes")
    peers, ours, ratios = [], [], []
    for _ in range(args.rounds):
        peer = plain_round(args.mb)
        mine = occasional_round(args.mb)
        peers.append(peer)
        ours.append(mine)
        ratios.append(mine / peer)
    ratio = _bench.median(ratios)
    _bench.table(
        ["receiver", "MB/s", "vs plain", "target", "verdict", "rounds"],
        [
            ["plain blocking recv() loop", f"{_bench.median(peers):,.0f}", "1.00x", "-", "-", _bench.spread(peers)],
            ["occasional.net, active=True messages", f"{_bench.median(ours):,.0f}", f"{ratio:.2f}x", f">= {TARGET}x",
             _bench.verdict(ratio >= TARGET), _bench.spread(ours)],
        ],
    )  # fmt: skip
    print("ratio per round: " + ", ".join(f"{r:.2f}" for r in ratios))
    _bench.result(
        "net_oneway",
        [
            {
                "figure": "one connection, raw framing, MB/s",
                "measured": f"{_bench.median(ours):,.0f} MB/s",
                "baseline": f"{_bench.median(peers):,.0f} MB/s (plain blocking recv)",
                "ratio": round(ratio, 3),
                "target": f">= {TARGET}x plain",
                "met": ratio >= TARGET,
            }
        ],
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["send"]:
        sender(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
