"""The HTTP gateway: POST -> committed -> 202, against a durable send in the same run.

- baseline: a process of a runtime sends N messages one after another to a
  durable process (``occ.send`` returns once committed, journal_sync
  "machine"): the durable send latency.
- one client: ``occasional gateway`` on a journal holding such a process;
  one client (http.client, one kept-alive connection) POSTs N JSON messages
  one after another: the latency of POST -> commit -> 202. Target (issue
  16): <= 2x the durable send latency. Info: the same client answered 401
  by the gateway's auth, i.e. HTTP alone.
- 50 clients: 50 concurrent aiohttp clients POST M messages each: deliveries
  per second on SQLite. Target: >= 3,000/s.

The receiver leaves its mailbox alone (bench/_http_sink.py). Rounds run the
three sides in turn; figures are medians, the ratio the median of the
rounds' ratios.

Run: .venv/bin/python bench/http_gateway.py [--rounds 3] [--n 1000] [--clients 50] [--each 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import occasional as occ
from occasional import durable

import _bench
import _http_sink

HERE = os.path.dirname(os.path.abspath(__file__))
OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")
TOKEN = "bench-token"
TARGET_RATIO = 2.0
TARGET_RATE = 3000


def send_latency(n: int) -> float:
    def main() -> float:
        dest = durable.spawn("sink", _http_sink.hold)
        send, perf = occ.send, time.perf_counter
        for i in range(50):
            send(dest, {"warm": i})
        t0 = perf()
        for i in range(n):
            send(dest, {"n": i, "payload": "x" * 40})
        return (perf() - t0) / n

    d = tempfile.mkdtemp(prefix="occ-bench-http-")
    try:
        return float(occ.run(main, journal=os.path.join(d, "journal.sqlite")))
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Gateway:
    def __init__(self, directory: str) -> None:
        journal = os.path.join(directory, "journal.sqlite")
        occ.run(_http_sink.put_sink, "sink", journal=journal)
        env = dict(os.environ, OCC_GATEWAY_TOKEN=TOKEN, PYTHONPATH=HERE)
        argv = [OCCASIONAL, "gateway", "--journal", journal, "--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"http_gateway: the gateway did not start: {line!r}")
        self.url = line.split()[-1] + "/processes/sink/messages"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def one_client(url: str, n: int, token: str = TOKEN) -> float:
    """Mean seconds per POST from one client, the standard library's
    http.client on one kept-alive connection: httpx adds about 380 us a
    request of its own on this machine, which is the client's, not the
    gateway's. A wrong ``token`` measures the HTTP path alone (401)."""
    import http.client
    import json
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    expect = 202 if token == TOKEN else 401

    def post(body: object) -> None:
        conn.request("POST", parts.path, json.dumps(body), headers)
        r = conn.getresponse()
        r.read()
        assert r.status == expect, r.status

    try:
        for i in range(50):
            post({"warm": i})
        t0 = time.perf_counter()
        for i in range(n):
            post({"n": i, "payload": "x" * 40})
        return (time.perf_counter() - t0) / n
    finally:
        conn.close()


def many_clients(url: str, clients: int, each: int) -> float:
    import aiohttp

    async def client(session: aiohttp.ClientSession, k: int) -> None:
        for i in range(each):
            async with session.post(url, json={"client": k, "n": i}) as r:
                assert r.status == 202, await r.text()

    async def run() -> float:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=clients)) as session:
            await asyncio.gather(*(client(session, -1 - k) for k in range(clients)))  # warm: connections made
            t0 = time.perf_counter()
            await asyncio.gather(*(client(session, k) for k in range(clients)))
            return clients * each / (time.perf_counter() - t0)

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 1))
    ap.add_argument("--n", type=int, default=_bench.sized(1000, 300), help="sequential sends / POSTs per round")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--each", type=int, default=_bench.sized(100, 20), help="POSTs per concurrent client")
    args = ap.parse_args()
    _bench.header("HTTP gateway: POST -> committed -> 202, and 50 concurrent clients")
    print(
        f"{args.rounds} rounds of: {args.n} durable sends, {args.n} POSTs from one client, then "
        f"{args.clients} clients x {args.each} POSTs; journal_sync machine, SQLite"
    )
    sends: list[float] = []
    posts: list[float] = []
    bare: list[float] = []
    rates: list[float] = []
    ratios: list[float] = []
    for _ in range(args.rounds):
        s = send_latency(args.n)
        d = tempfile.mkdtemp(prefix="occ-bench-gw-")
        gw = Gateway(d)
        try:
            p = one_client(gw.url, args.n)
            bare.append(one_client(gw.url, args.n, token="wrong"))
            rates.append(many_clients(gw.url, args.clients, args.each))
        finally:
            gw.stop()
            shutil.rmtree(d, ignore_errors=True)
        sends.append(s)
        posts.append(p)
        ratios.append(p / s)
    send, post, rate, ratio, http_only = (_bench.median(x) for x in (sends, posts, rates, ratios, bare))
    _bench.table(
        ["side", "figure", "ratio", "target", "verdict", "rounds"],
        [
            ["durable send, 1 sender (baseline)", _bench.us(send), "-", "-", "-", _bench.spread([x * 1e6 for x in sends])],
            ["POST -> committed -> 202, 1 client", _bench.us(post), f"{ratio:.2f}x", f"<= {TARGET_RATIO}x",
             _bench.verdict(ratio <= TARGET_RATIO), _bench.spread([x * 1e6 for x in posts])],
            ["the same client answered 401 (HTTP alone, info)", _bench.us(http_only), f"{http_only / send:.2f}x",
             "(info)", "-", _bench.spread([x * 1e6 for x in bare])],
            [f"{args.clients} concurrent clients", f"{rate:,.0f}/s", "-", f">= {TARGET_RATE:,}/s",
             _bench.verdict(rate >= TARGET_RATE), _bench.spread(rates)],
        ],
    )  # fmt: skip
    print(f"ratio per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    _bench.result(
        "http_gateway",
        [
            {
                "figure": "gateway: POST -> committed -> 202, one client",
                "measured": f"{post * 1e6:.0f} us",
                "baseline": f"{send * 1e6:.0f} us (durable send, same run)",
                "ratio": round(ratio, 2),
                "target": f"<= {TARGET_RATIO}x",
                "met": ratio <= TARGET_RATIO,
            },
            {
                "figure": f"gateway: {args.clients} concurrent clients, deliveries/s",
                "measured": f"{rate:,.0f}/s",
                "baseline": "-",
                "ratio": None,
                "target": f">= {TARGET_RATE:,}/s",
                "met": rate >= TARGET_RATE,
            },
        ],
    )


if __name__ == "__main__":
    main()
