"""One-way small messages: one sender -> one receiver.

occasional: main sends N messages ("msg", i) to a receiver process; the
receiver times from the first message to the last and reports the rate.
Baseline, in the same run: a raw socketpair+pickle pair, two processes made
with os.fork(): the sender ``sendall``s each message as one length-prefixed
pickle frame (one syscall per message, as an occasional send is), the
receiver reads a blocking socket and unpickles every message; same N, same
message, timed the same way in the receiving process.
Peer, in the same run (info): multiprocessing.Queue, likewise.

Every side shakes hands first (a message each way), so the connection set-up
is not in the figure, and the receiver clock starts at the first message.

Target (issue 15, raised: the peers are behind us, so the yardstick is the
operating system): occasional >= 0.8x the raw pair's msg/s.

Rounds alternate raw, Queue and occasional; the ratio is the median of the
rounds' ratios.

Run: .venv/bin/python bench/oneway.py [--n 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import socket
import struct
import time

import occasional as occ

import _bench
from _bench import SHARED, SPLIT, pin, unpin

TARGET_RATIO = 0.8  # of the raw pair's msg/s (issue 15's raised target; was >= 1.5x Queue and >= 200,000/s)
HDR = struct.Struct(">I")


# -- raw baseline ---------------------------------------------------------------------


def raw_receiver(sock: socket.socket, n: int, cpu: int | None) -> None:
    """Read length-prefixed pickle frames off a blocking socket and unpickle each."""
    pin(cpu)
    unpack_from, loads, recv = HDR.unpack_from, pickle.loads, sock.recv
    buf, pos, got, t0 = b"", 0, -1, 0.0  # got = -1: the hello comes first
    while got < n:
        data = recv(262144)
        if not data:
            raise EOFError("the raw sender closed early")
        buf = buf[pos:] + data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = unpack_from(buf, pos)
            if end - pos - 4 < size:
                break
            loads(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            got += 1
            if got == 0:
                sock.sendall(b"r")  # ready
            elif got == 1:
                t0 = time.perf_counter()
    per_msg = pickle.dumps((time.perf_counter() - t0) / (n - 1))
    sock.sendall(HDR.pack(len(per_msg)) + per_msg)


def raw_round(n: int, cpus: tuple[int, int] | None = None) -> tuple[float, float]:
    """(seconds per message at the receiver, seconds for the sender's loop)."""
    pin(cpus and cpus[0])
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        try:
            a.close()
            raw_receiver(b, n, cpus and cpus[1])
        finally:
            os._exit(0)
    b.close()
    dumps, pack, sendall, proto = pickle.dumps, HDR.pack, a.sendall, pickle.HIGHEST_PROTOCOL
    hello = dumps("hello", proto)
    sendall(pack(len(hello)) + hello)
    assert a.recv(1) == b"r"
    t0 = time.perf_counter()
    for i in range(n):
        data = dumps(("msg", i), proto)
        sendall(pack(len(data)) + data)
    sent = time.perf_counter() - t0
    reply = b""
    while len(reply) < 4 or len(reply) < 4 + HDR.unpack_from(reply)[0]:
        chunk = a.recv(4096)
        if not chunk:
            raise EOFError("the raw receiver closed early")
        reply += chunk
    per_msg = pickle.loads(reply[4:])
    a.close()
    os.waitpid(child, 0)
    if cpus:
        unpin()
    return per_msg, sent


# -- multiprocessing.Queue baseline ----------------------------------------------------


def mp_receiver(q: mp.Queue[object], back: mp.Queue[object], n: int, cpu: int | None) -> None:
    pin(cpu)
    q.get()
    back.put("ready")
    get = q.get
    get()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        get()
    back.put((time.perf_counter() - t0) / (n - 1))


def mp_round(n: int, cpus: tuple[int, int] | None = None) -> tuple[float, float]:
    """(seconds per message at the receiver, seconds for the sender's loop)."""
    # Pinned before the Queue exists, so its feeder thread sits with the sender.
    pin(cpus and cpus[0])
    q: mp.Queue[object] = mp.Queue()
    back: mp.Queue[object] = mp.Queue()
    p = mp.Process(target=mp_receiver, args=(q, back, n, cpus and cpus[1]))
    p.start()
    q.put("hello")
    assert back.get() == "ready"
    put = q.put
    t0 = time.perf_counter()
    for i in range(n):
        put(("msg", i))
    sent = time.perf_counter() - t0
    per_msg = back.get()
    p.join()
    if cpus:
        unpin()
    return per_msg, sent  # type: ignore[return-value]  # per_msg: the float the receiver put in an mp.Queue[object]


# -- occasional ----------------------------------------------------------------------


def receiver(boss: occ.Pid, n: int, template: bool, cpu: int | None) -> None:
    pin(cpu)
    occ.receive()
    occ.send(boss, "ready")
    receive = occ.receive
    if template:
        m = ("msg", occ.ANY)
        receive(m)
        t0 = time.perf_counter()
        for _ in range(n - 1):
            receive(m)
    else:
        receive()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            receive()
    occ.send(boss, ("done", (time.perf_counter() - t0) / (n - 1)))


def occ_main(n: int, templates: list[bool], cpus: tuple[int, int] | None = None) -> list[tuple[float, float]]:
    pin(cpus and cpus[0])
    out = []
    for template in templates:
        r, ref = occ.spawn_monitor(receiver, occ.slf(), n, template, cpus and cpus[1])
        occ.send(r, "hello")
        assert occ.receive() == "ready"
        send = occ.send
        t0 = time.perf_counter()
        for i in range(n):
            send(r, ("msg", i))
        sent = time.perf_counter() - t0
        _, per_msg = occ.receive(("done", occ.ANY))
        occ.receive(("DOWN", ref, occ.ANY, occ.ANY))
        out.append((per_msg, sent))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=_bench.sized(200_000, 50_000))
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    args = ap.parse_args()
    n = args.n
    _bench.header("one-way small messages, one sender -> one receiver")
    print(
        f"N = {n:,} messages ('msg', i) per run, {args.rounds} rounds of (raw, Queue, occasional, occasional with a "
        "template); rate measured at the receiver; figure = median, ratio = median of the rounds' ratios"
    )

    # Rounds alternate baseline and occasional, so a burst of other load on
    # the machine hits both alike (the benchmark machine is shared).
    raw, queue, plain, tmpl, ratios, q_ratios = [], [], [], [], [], []
    for _ in range(args.rounds):
        r = raw_round(n)
        q = mp_round(n)
        p, t = occ.run(occ_main, n, [False, True])
        raw.append(r)
        queue.append(q)
        plain.append(p)
        tmpl.append(t)
        ratios.append(r[0] / p[0])
        q_ratios.append(q[0] / p[0])

    def rate(samples: list[tuple[float, float]]) -> float:
        return 1 / _bench.median([s[0] for s in samples])

    def send_rate(samples: list[tuple[float, float]]) -> float:
        return n / _bench.median([s[1] for s in samples])

    def rounds(samples: list[tuple[float, float]]) -> str:
        return _bench.spread([1 / s[0] for s in samples])

    # Diagnostic: the same, with sender and receiver pinned to two CPUs, then
    # to one. On a 2-CPU machine any other runnable process makes the
    # scheduler put both on one CPU, which changes the figure most.
    placed = {}
    if (os.cpu_count() or 1) >= 2:
        for label, cpus in (("different CPUs", SPLIT), ("one CPU", SHARED)):
            placed[label] = (raw_round(n, cpus), mp_round(n, cpus), occ.run(occ_main, n, [False], cpus)[0])

    b, q, p, t = rate(raw), rate(queue), rate(plain), rate(tmpl)
    ratio = _bench.median(ratios)
    ok = ratio >= TARGET_RATIO
    rows = [
        ["raw socketpair+pickle, a sendall per message (baseline)", f"{b:,.0f}", "-", f"{send_rate(raw):,.0f}", "-",
         "-", rounds(raw)],
        ["multiprocessing.Queue (peer)", f"{q:,.0f}", f"{q / b:.2f}x", f"{send_rate(queue):,.0f}", "(peer)", "-",
         rounds(queue)],
        ["occasional receive()", f"{p:,.0f}", f"{ratio:.2f}x", f"{send_rate(plain):,.0f}", f">= {TARGET_RATIO}x raw",
         _bench.verdict(ok), rounds(plain)],
        ["occasional receive(('msg', ANY))", f"{t:,.0f}", f"{t / b:.2f}x", f"{send_rate(tmpl):,.0f}", "(info)", "-",
         rounds(tmpl)],
    ]  # fmt: skip
    _bench.table(
        ["one-way", "msg/s at receiver", "ratio vs raw", "sender loop msg/s", "target", "verdict", "rounds (msg/s)"],
        rows,
    )
    print(f"ratio to raw per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"ratio to Queue per round: {', '.join(f'{x:.2f}' for x in q_ratios)}")
    if placed:
        print("\ndiagnostic, one run each: sender and receiver pinned")
        _bench.table(
            ["placement", "raw msg/s", "Queue msg/s", "occasional msg/s", "ratio vs raw"],
            [
                [label, f"{1 / rw[0]:,.0f}", f"{1 / mq[0]:,.0f}", f"{1 / oc[0]:,.0f}", f"{rw[0] / oc[0]:.2f}x"]
                for label, (rw, mq, oc) in placed.items()
            ],
        )
    _bench.result(
        "oneway",
        [
            {
                "figure": "one-way msg/s",
                "measured": f"{p:,.0f} msg/s",
                "baseline": f"{b:,.0f} msg/s (raw socketpair+pickle)",
                "ratio": round(ratio, 2),
                "target": f">= {TARGET_RATIO}x raw",
                "met": ok,
            },
            {
                "figure": "one-way msg/s against multiprocessing.Queue",
                "measured": f"{p:,.0f} msg/s",
                "baseline": f"{q:,.0f} msg/s (multiprocessing.Queue)",
                "ratio": round(_bench.median(q_ratios), 2),
                "target": "(info)",
                "met": None,
            },
            {
                "figure": "one-way msg/s, template receive",
                "measured": f"{t:,.0f} msg/s",
                "baseline": f"{b:,.0f} msg/s (raw socketpair+pickle)",
                "ratio": round(t / b, 2),
                "target": "(info)",
                "met": None,
            },
        ],
    )


if __name__ == "__main__":
    main()
