"""Durable send: messages per second into a durable process's journal, 1 and 8 senders.

A send to a durable process returns only once central's journal writer has
committed it (group commit: what arrived in one loop turn goes in one
transaction). The receiver is a durable process that leaves its mailbox
alone (it waits for a message no sender sends), so the figure is the send
path alone. Senders are ordinary processes; each first waits for "go", then
sends its share ``("m", sender, i)`` as fast as ``send`` returns. The rate is
every message over the time from the first sender's start to the last one's
end.

Baseline, in the same run (issue 6: "as a ratio to a raw append+fdatasync
loop with the same batching"): one Python loop that appends frames of the
same size to a file with ``os.write`` and calls ``os.fdatasync`` after every
batch of B frames, B = the number of senders (each sender has at most one
send waiting for its commit, so a commit can carry at most one message per
sender). For "process", which does not wait for the disk, the same loop
without ``fdatasync`` is printed for information.

Targets (issue 6): "machine" >= 5,000 / >= 16,000 msg/s with 1 / 8 senders;
"process" >= 12,000 / >= 30,000 msg/s.

Rounds interleave the sides: raw, then occasional machine and process, with
1 and then 8 senders.

Run: .venv/bin/python bench/durable_send.py [--rounds 3] [--n 4000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from typing import Any

import occasional as occ
from occasional import durable

import _bench

TARGETS = {("machine", 1): 5_000, ("machine", 8): 16_000, ("process", 1): 12_000, ("process", 8): 30_000}
FRAME = 40  # bytes: about a msgpack-encoded ("m", <pid>, i) with its length prefix and row overhead


# -- raw baseline -----------------------------------------------------------------------


def raw_round(n: int, batch: int, sync: bool, directory: str) -> float:
    """msg/s of an append loop that makes every batch of ``batch`` frames durable at once."""
    path = os.path.join(directory, "raw.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    frame = b"x" * FRAME
    write, fdatasync, perf = os.write, os.fdatasync, time.perf_counter
    try:
        t0 = perf()
        for _ in range(n // batch):
            for _ in range(batch):
                write(fd, frame)
            if sync:
                fdatasync(fd)
        return (n // batch) * batch / (perf() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


# -- occasional -------------------------------------------------------------------------


def hold() -> None:
    occ.receive(("never sent",))


def sender(main: occ.Pid, dest: occ.Pid, k: int, count: int) -> None:
    send, perf = occ.send, time.perf_counter
    occ.receive(("go",))
    t0 = perf()
    for i in range(count):
        send(dest, ("m", k, i))
    occ.send(main, ("done", k, t0, perf()))


def occ_main(senders: int, n: int) -> float:
    me = occ.slf()
    dest = durable.spawn("sink", hold)
    pids = [occ.spawn(sender, me, dest, k, n // senders) for k in range(senders)]
    for p in pids:
        occ.send(p, ("go",))
    done = [occ.receive(("done", occ.ANY, float, float), timeout=600) for _ in pids]
    start = min(d[2] for d in done)
    end = max(d[3] for d in done)
    return senders * (n // senders) / (end - start)


def occ_round(mode: str, senders: int, n: int) -> float:
    d = tempfile.mkdtemp(prefix="occ-bench-durable-")
    try:
        return occ.run(occ_main, senders, n, journal=os.path.join(d, "journal.sqlite"), journal_sync=mode)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 2))
    ap.add_argument("--n", type=int, default=_bench.sized(4000, 1000), help="messages per round and side")
    args = ap.parse_args()
    _bench.header("durable send: committed messages per second into a durable process")
    print(
        f"{args.rounds} rounds of {args.n} messages per side; sides interleaved per round; "
        "figure = median of the rounds, ratio = median of the rounds' ratios"
    )
    raw: dict[tuple[bool, int], list[float]] = {}
    occ_rates: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    scratch = tempfile.mkdtemp(prefix="occ-bench-raw-")
    try:
        for _ in range(args.rounds):
            for senders in (1, 8):
                base = raw_round(args.n, senders, True, scratch)
                raw.setdefault((True, senders), []).append(base)
                raw.setdefault((False, senders), []).append(raw_round(args.n, senders, False, scratch))
                for mode in ("machine", "process"):
                    rate = occ_round(mode, senders, args.n)
                    occ_rates.setdefault((mode, senders), []).append(rate)
                    ratios.setdefault((mode, senders), []).append(rate / base)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows: list[list[Any]] = []
    out = []
    for senders in (1, 8):
        rows.append(
            [
                f"raw append + fdatasync every {senders}",
                f"{_bench.median(raw[(True, senders)]):,.0f}",
                "-",
                "-",
                "-",
                "-",
            ]
        )
        rows.append(
            ["raw append, no fdatasync (info)", f"{_bench.median(raw[(False, senders)]):,.0f}", "-", "-", "-", "-"]
        )
        for mode in ("machine", "process"):
            rate = _bench.median(occ_rates[(mode, senders)])
            ratio = _bench.median(ratios[(mode, senders)])
            target = TARGETS[(mode, senders)]
            met = rate >= target
            rows.append(
                [
                    f"occasional {mode}, {senders} sender{'s' if senders > 1 else ''}",
                    f"{rate:,.0f}",
                    f"{ratio:.2f}x",
                    f">= {target:,}",
                    _bench.verdict(met),
                    _bench.spread(occ_rates[(mode, senders)]),
                ]
            )
            out.append(
                {
                    "figure": f"durable send, {senders} sender(s), {mode}",
                    "measured": f"{rate:,.0f} msg/s",
                    "baseline": f"raw append+fdatasync every {senders}: {_bench.median(raw[(True, senders)]):,.0f} msg/s",
                    "ratio": round(ratio, 2),
                    "target": f">= {target:,} msg/s",
                    "met": met,
                }
            )
    _bench.table(["side", "msg/s", "vs raw+fdatasync", "target", "verdict", "rounds (msg/s)"], rows)
    _bench.result("durable_send", out)


if __name__ == "__main__":
    main()
