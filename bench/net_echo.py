"""TCP echo, 50 concurrent clients, small messages: occasional.net with a handler process per
connection against an asyncio (uvloop) echo server, same machine, same client, same run (issue 14).

The client is one process driving 50 connections with a selector: each connection sends a line,
waits for its echo and sends the next, for SECONDS; requests/s is what it counts. The peer is an
asyncio server on uvloop (one process, a task per connection). occasional's server is
examples/echo_server.py's shape: an acceptor that hands each connection (its fd) to a handler
process of its own.

Target (issue 14): >= 0.5x the asyncio server's requests/s.

Run: .venv/bin/python bench/net_echo.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
import time

import occasional as occ
from occasional import net

import _bench

CLIENTS = 50
TARGET = 0.5


def client(port: int, seconds: float) -> int:
    """Round trips done by CLIENTS connections in ``seconds``."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(CLIENTS):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    for s in socks:
        s.send(b"ping\n")
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            data = s.recv(4096)
            done += data.count(b"\n")
            s.send(b"ping\n" * data.count(b"\n"))
    for s in socks:
        s.close()
    return done


def asyncio_server(port_file: str) -> None:
    import asyncio

    import uvloop

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line)
        except ConnectionResetError:
            pass  # a client closed with echoes unread at the end of a round

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        with open(port_file, "w") as f:
            f.write(str(server.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    uvloop.run(main())


def handler(sock: net.Socket) -> None:
    while True:
        _, (kind, data) = occ.receive((sock, occ.ANY))
        if kind != "tcp":
            return
        net.send(sock, data)


def acceptor(listener: net.Listener) -> None:
    while True:
        sock = net.accept(listener)
        net.controlling_process(sock, occ.spawn(handler, sock))


def run_client(port: int, seconds: float) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "client", str(port), str(seconds)], capture_output=True, text=True, check=True
    )
    return int(out.stdout) / seconds


def asyncio_round(seconds: float) -> float:
    import tempfile
    from pathlib import Path

    with tempfile.NamedTemporaryFile("r") as f:
        server = subprocess.Popen([sys.executable, __file__, "asyncio", f.name])
        try:
            while not Path(f.name).read_text():  # the server writes its port there once it listens
                time.sleep(0.01)
            return run_client(int(Path(f.name).read_text()), seconds)
        finally:
            server.kill()
            server.wait()


def occasional_round(seconds: float) -> float:
    def main() -> float:
        listener = net.listen(0, framing="line", backlog=256)
        port = listener.port
        assert port is not None
        net.controlling_process(listener, occ.spawn(acceptor, listener))
        return run_client(port, seconds)

    return float(occ.run(main))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--seconds", type=float, default=_bench.sized(3.0, 1.0))
    args = ap.parse_args()
    _bench.header(f"TCP echo, {CLIENTS} concurrent clients, small messages")
    peers, ours, ratios = [], [], []
    for _ in range(args.rounds):
        peer = asyncio_round(args.seconds)
        mine = occasional_round(args.seconds)
        peers.append(peer)
        ours.append(mine)
        ratios.append(mine / peer)
    ratio = _bench.median(ratios)
    _bench.table(
        ["server", "requests/s", "vs asyncio", "target", "verdict", "rounds"],
        [
            ["asyncio (uvloop), a task per connection", f"{_bench.median(peers):,.0f}", "1.00x", "-", "-",
             _bench.spread(peers)],
            ["occasional.net, a process per connection", f"{_bench.median(ours):,.0f}", f"{ratio:.2f}x",
             f">= {TARGET}x", _bench.verdict(ratio >= TARGET), _bench.spread(ours)],
        ],
    )  # fmt: skip
    print("ratio per round: " + ", ".join(f"{r:.2f}" for r in ratios))
    _bench.result(
        "net_echo",
        [
            {
                "figure": f"TCP echo, {CLIENTS} clients, requests/s",
                "measured": f"{_bench.median(ours):,.0f}/s",
                "baseline": f"{_bench.median(peers):,.0f}/s (asyncio on uvloop)",
                "ratio": round(ratio, 3),
                "target": f">= {TARGET}x asyncio",
                "met": ratio >= TARGET,
            }
        ],
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        print(client(int(sys.argv[2]), float(sys.argv[3])))
    elif sys.argv[1:2] == ["asyncio"]:
        asyncio_server(sys.argv[2])
    else:
        main()
