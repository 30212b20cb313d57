"""occ.call round trip to an occ.Server, against the core ping-pong.

occasional: main calls ``occ.call(server, ("ping", i))`` on a Server whose
``handle_call`` returns ``(request, state)``. Baseline, in the same run and the
same runtime: the core ping-pong of bench/pingpong.py (main sends ("ping", i)
to an echo process and receives the ("pong", i) it answers), which is what a
call is built on. Each round alternates ping-pong and call batches in one
``occ.run``; the ratio of a round is call / ping-pong.

Placement decides the figure. On this 2-CPU VM a round trip between two
processes on one CPU takes about 15 us and across CPUs about 60 us (two
wake-ups of an idle vCPU). Left to the scheduler, the echo process and the
server are two different processes, and it often puts one beside main and the
other on the other CPU, so an unpinned ratio swings between 0.3x and 4.5x by
placement alone. The target is therefore judged with both pairs in the same
placement: main on CPU 0 and the answering process on CPU 1, then all on CPU 0
(central is never pinned). The unpinned figure is printed for information.

For reference, beside it: Pykka's ``ActorRef.ask`` on a ThreadingActor (two
threads of one interpreter, no proxy) and Thespian's ``ActorSystem.ask`` with
the ``multiprocQueueBase`` system (the actor in its own process, messages on
multiprocessing queues through Thespian's admin process; the TCP system was
left out because it listens on TCP ports).

Target (issue 4): call <= 1.3x the core ping-pong, in each placement.
Figure: median over batches of the mean round trip in a batch. A round's ratio
is the median over its pairs of batches (a ping-pong batch, then a call batch)
of call / ping-pong; the ratio is the median of the rounds' ratios.

Run: .venv/bin/python bench/call.py [--rounds 5] [--batches 5] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import occasional as occ

import _bench
from _bench import SHARED, SPLIT, pin, unpin
from pingpong import echo

TARGET = 1.3


class Echo(occ.Server):
    def init(self, cpu: int | None = None) -> None:
        pin(cpu)

    def handle_call(self, request: Any, frm: Any, state: Any) -> Any:
        return request, state


def occ_main(batches: int, batch: int, warm: int, cpus: tuple[int, int] | None = None) -> dict[str, list[float]]:
    """Alternating batches of ping-pong and call; with ``cpus``, main runs on
    cpus[0] and the echo process and the server on cpus[1] (central is not pinned)."""
    pin(cpus and cpus[0])
    peer = occ.spawn(echo, cpus and cpus[1])
    occ.send(peer, ("hello", occ.slf()))
    server = Echo.start(cpus and cpus[1])
    send, receive, call, perf = occ.send, occ.receive, occ.call, time.perf_counter
    for i in range(warm):
        send(peer, ("ping", i))
        receive()
        call(server, ("ping", i))
    out: dict[str, list[float]] = {"pingpong": [], "call": []}
    for _ in range(batches):
        t0 = perf()
        for i in range(batch):
            send(peer, ("ping", i))
            receive()
        out["pingpong"].append((perf() - t0) / batch)
        t0 = perf()
        for i in range(batch):
            call(server, ("ping", i))
        out["call"].append((perf() - t0) / batch)
    send(peer, ("stop", None))
    return out


def pykka_samples(batches: int, batch: int, warm: int) -> list[float] | str:
    try:
        import pykka
    except Exception as e:
        return f"not installed: {e!r}"

    class PEcho(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = PEcho.start()
    try:
        for i in range(warm):
            ref.ask(("ping", i))
        out = []
        for _ in range(batches):
            t0 = time.perf_counter()
            for i in range(batch):
                ref.ask(("ping", i))
            out.append((time.perf_counter() - t0) / batch)
        return out
    finally:
        ref.stop()


try:
    from thespian.actors import Actor as _ThActor

    class ThEcho(_ThActor):
        def receiveMessage(self, msg: Any, sender: Any) -> None:
            if isinstance(msg, tuple):
                self.send(sender, msg)

except Exception as _e:  # reported in the table
    ThEcho = None  # type: ignore[assignment,misc]  # None: Thespian is unavailable, the table says why
    _th_error = repr(_e)

THESPIAN_BASE = "multiprocQueueBase"


def thespian_samples(batches: int, batch: int, warm: int) -> list[float] | str:
    if ThEcho is None:
        return f"not installed: {_th_error}"
    from thespian.actors import ActorSystem

    asys = ActorSystem(THESPIAN_BASE, transientUnique=True)
    try:
        actor = asys.createActor(ThEcho)
        for i in range(warm):
            assert asys.ask(actor, ("ping", i), 5) == ("ping", i)
        out = []
        for _ in range(batches):
            t0 = time.perf_counter()
            for i in range(batch):
                asys.ask(actor, ("ping", i), 5)
            out.append((time.perf_counter() - t0) / batch)
        return out
    finally:
        asys.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(5, 2))
    ap.add_argument("--batches", type=int, default=_bench.sized(5, 3))
    ap.add_argument("--batch", type=int, default=_bench.sized(1000, 500))
    ap.add_argument("--warm", type=int, default=_bench.sized(500, 200))
    ap.add_argument(
        "--ref-batch", type=int, default=_bench.sized(1000, 300), help="round trips per batch for Pykka and Thespian"
    )
    args = ap.parse_args()
    _bench.header("occ.call round trip to a Server vs core ping-pong")
    placements: dict[str, tuple[int, int] | None] = {"different CPUs": SPLIT, "one CPU": SHARED, "unpinned": None}
    if (os.cpu_count() or 1) < 2:
        placements = {"unpinned": None}
    print(
        f"{args.rounds} rounds; each round runs, for each placement ({', '.join(placements)}), one runtime with "
        f"{args.batches} x (a batch of {args.batch} ping-pongs, then {args.batch} calls), after {args.warm} warm-up each; "
        f"then Pykka and Thespian, {args.batches} batches of {args.ref_batch}. Figure = median of batch means; "
        "ratio = median over rounds of the median over batch pairs"
    )

    pp_all: dict[str, list[float]] = {k: [] for k in placements}
    call_all: dict[str, list[float]] = {k: [] for k in placements}
    ratios: dict[str, list[float]] = {k: [] for k in placements}
    refs: dict[str, list[float]] = {"pykka": [], "thespian": []}
    why: dict[str, str] = {}
    for _ in range(args.rounds):
        for label, cpus in placements.items():
            o = occ.run(occ_main, args.batches, args.batch, args.warm, cpus)
            pp_all[label] += o["pingpong"]
            call_all[label] += o["call"]
            # A batch of calls is compared with the ping-pong batch just before it.
            ratios[label].append(_bench.median([c / p for p, c in zip(o["pingpong"], o["call"], strict=True)]))
        unpin()
        for name, fn in (("pykka", pykka_samples), ("thespian", thespian_samples)):
            if name in why:
                continue
            try:
                got = fn(args.batches, args.ref_batch, min(args.warm, 200))
            except Exception as e:
                got = f"failed: {e!r}"
            if isinstance(got, str):
                why[name] = got
            else:
                refs[name] += got

    def spread(xs: list[float]) -> str:
        return _bench.spread([x * 1e6 for x in xs])

    judged = [k for k in placements if placements[k] is not None] or ["unpinned"]
    rows = []
    out = []
    for label in placements:
        pp, c, ratio = _bench.median(pp_all[label]), _bench.median(call_all[label]), _bench.median(ratios[label])
        target = f"<= {TARGET}x" if label in judged else "(info)"
        met = ratio <= TARGET if label in judged else None
        rows.append(
            [
                label,
                _bench.us(pp),
                spread(pp_all[label]),
                _bench.us(c),
                spread(call_all[label]),
                f"{ratio:.2f}x",
                target,
                _bench.verdict(met),
                ", ".join(f"{x:.2f}" for x in ratios[label]),
            ]
        )
        out.append(
            {
                "figure": f"call() round trip to a Server, {label}",
                "measured": f"{c * 1e6:.1f} us",
                "baseline": f"{pp * 1e6:.1f} us (core ping-pong, {label})",
                "ratio": round(ratio, 2),
                "target": target,
                "met": met,
            }
        )
    _bench.table(
        [
            "placement",
            "ping-pong",
            "batch means (us)",
            "call()",
            "batch means (us)",
            "ratio",
            "target",
            "verdict",
            "ratio per round",
        ],
        rows,
    )
    print(
        "different CPUs: main on CPU 0, the echo process and the server on CPU 1; one CPU: all three on CPU 0; central unpinned"
    )

    base_label = "unpinned"
    base = _bench.median(pp_all[base_label])
    labels = {
        "pykka": "Pykka ActorRef.ask, ThreadingActor (threads)",
        "thespian": f"Thespian ActorSystem.ask, {THESPIAN_BASE}",
    }
    ref_rows = []
    for name, xs in refs.items():
        if xs:
            m = _bench.median(xs)
            ref_rows.append([labels[name], _bench.us(m), f"{m / base:.2f}x", spread(xs)])
            out.append(
                {
                    "figure": f"ask round trip, {labels[name]}",
                    "measured": f"{m * 1e6:.1f} us",
                    "baseline": f"{base * 1e6:.1f} us (core ping-pong, unpinned)",
                    "ratio": round(m / base, 2),
                    "target": "(info)",
                    "met": None,
                }
            )
        else:
            ref_rows.append([labels[name], "-", "-", why.get(name, "no samples")])
            out.append(
                {
                    "figure": f"ask round trip, {labels[name]}",
                    "measured": why.get(name, "no samples"),
                    "baseline": "-",
                    "ratio": None,
                    "target": "(info)",
                    "met": None,
                }
            )
    print("\nfor reference, unpinned:")
    _bench.table(["round trip", "median", "vs occasional ping-pong, unpinned", "batch means (us)"], ref_rows)
    _bench.result("call", out)


if __name__ == "__main__":
    main()
