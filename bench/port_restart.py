"""Restart of a SIGKILLed native service: kill -> the new service's pid answers.

Every side supervises the same executable (bench/_native.py): started with the
path of a Unix socket, it connects, says ``up <pid>`` and answers each
``ping N`` with ``pong N``. One sample: main takes the time,
``os.kill(service, SIGKILL)``, accepts the new service's connection, reads its
``up`` line and pid, sends a ping and reads the pong.

- occasional: ``occ.Supervisor.start([{"id": "svc", "function":
  functools.partial(occasional.ports.open_port, argv)}], intensity=10**6,
  period=1)``; the port runs the service, main kills the executable by the pid
  it reported.
- baseline, in the same run: a raw fork+exec supervisor loop in Python, in its
  own ``python -S`` interpreter: ``fork()`` + ``execv()``, then ``wait()``,
  then again.
- supervisord and circus, with the same executable (bench/restart.py explains
  their timers; each kill first waits a random part of the timer's period).

Both builds of the service are measured: the C program (its start costs well
under a millisecond, so the ratio is the supervisor's own cost) and the
``python -S`` script (what a small service script costs to start).

Target (issue 15): occasional <= 1.5x the raw fork+exec loop for the C
program, <= 1.1x for python -S. Rounds alternate the sides; the ratio is the
median of the rounds' ratios.

Run: .venv/bin/python bench/port_restart.py [--rounds 4] [--n 40] [--ext-n 3] [--ext-rounds 2] [--service c,py]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import signal
import time
from typing import Any

import occasional as occ

import _bench
import _native
from _native import EXT_LABEL, EXT_PERIOD, Listener

# Issue 15: a native service restarts within 1.5x a raw fork+exec loop, a python -S one within 1.1x.
TARGET_RATIO = {"c": 1.5, "py": 1.1}
SOCK = "{sock}"  # stands for the Listener's path in an argv template


def restarts(lst: Listener, n: int, warm: int, period: float = 0.0) -> list[tuple[float, float]]:
    """n timed kills of the service (after warm untimed ones); the first service is already up.

    Each sample: (kill -> the new service answered, kill -> the new executable started running).
    """
    conn, pid = lst.accept()
    samples = []
    clock = time.monotonic  # the services' clock (CLOCK_MONOTONIC), so their start can be placed
    for i in range(warm + n):
        if period:
            time.sleep(random.uniform(0, period))
        t0 = clock()
        os.kill(pid, signal.SIGKILL)
        new, pid = lst.accept()
        _native.ping(new, i)
        dt = clock() - t0
        conn.close()
        conn = new
        if i >= warm:
            samples.append((dt, lst.started - t0))
    conn.close()
    return samples


def fill(template: list[str], path: str) -> list[str]:
    return [path if a == SOCK else a for a in template]


# -- the sides ------------------------------------------------------------------------------


def raw_round(template: list[str], n: int, warm: int) -> list[tuple[float, float]]:
    lst = Listener(prefix="occ-bench-raw-")
    sup = None
    try:
        sup = _native.start_raw([fill(template, lst.path)])
        return restarts(lst, n, warm)
    finally:
        if sup is not None:
            _native.stop_session(sup)
        lst.close()


def occ_main(template: list[str], n: int, warm: int) -> list[tuple[float, float]]:
    import occasional.ports

    lst = Listener(prefix="occ-bench-occ-")
    try:
        spec = {"id": "svc", "function": functools.partial(occasional.ports.open_port, fill(template, lst.path))}
        sup = occ.Supervisor.start([spec], intensity=10**6, period=1)
        try:
            return restarts(lst, n, warm)
        finally:
            occ.kill(sup)
    finally:
        lst.close()


def ext_round(name: str, template: list[str], n: int, warm: int) -> list[tuple[float, float]]:
    lst = Listener(prefix=f"occ-bench-{name}-")
    daemon = None
    try:
        conf = _native.ext_config(name, lst.dir, {"svc": fill(template, lst.path)})
        daemon = _native.start_session(_native.ext_command(name, conf), os.path.join(lst.dir, "daemon.out"))
        return restarts(lst, n, warm, EXT_PERIOD[name])
    finally:
        if daemon is not None:
            _native.stop_session(daemon)
        lst.close()


# -- main ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(4, 2))
    ap.add_argument("--n", type=int, default=_bench.sized(40, 15), help="kills per round for raw and occasional")
    ap.add_argument("--warm", type=int, default=_bench.sized(5, 3))
    ap.add_argument("--ext-n", type=int, default=_bench.sized(3, 2), help="kills per round for supervisord and circus")
    ap.add_argument(
        "--ext-rounds", type=int, default=_bench.sized(2, 1), help="rounds that also run supervisord and circus"
    )
    ap.add_argument("--service", default="c,py", help="which builds of the service: c, py or both")
    args = ap.parse_args()
    kinds = [k for k in args.service.split(",") if k]
    for k in kinds:
        if k not in _native.SERVICES:
            ap.error(f"--service {k!r}: choose from {', '.join(_native.SERVICES)}")
    _bench.header("port restart: SIGKILL of a native service -> the new one answers")
    print(
        f"{args.rounds} rounds; each round, for each service: {args.n} kills (after {args.warm} warm-up) raw, occasional, "
        f"then in the first {args.ext_rounds} rounds {args.ext_n} (after 1) under circus and supervisord; "
        "figure = median, ratio = median of the rounds' ratios"
    )

    build = _native.Build()
    try:
        sides = ("raw", "occ", "circus", "supervisord")
        why: dict[tuple[str, str], str | None] = {}
        for k in kinds:
            kind_why = build.available(k)
            why[("raw", k)] = kind_why
            why[("occ", k)] = kind_why
            for name in ("circus", "supervisord"):
                why[(name, k)] = (
                    kind_why
                    or _native.ext_available(name)
                    or ("skipped (--ext-rounds 0)" if args.ext_rounds == 0 else None)
                )
        samples: dict[tuple[str, str], list[float]] = {(s, k): [] for s in sides for k in kinds}
        starts: dict[tuple[str, str], list[float]] = {
            (s, k): [] for s in sides for k in kinds
        }  # kill -> the executable runs
        ratios: dict[str, list[float]] = {k: [] for k in kinds}
        for rnd in range(args.rounds):
            for k in kinds:
                template = build.argv(k, SOCK)
                if why[("raw", k)] is not None:
                    continue
                rs = raw_round(template, args.n, args.warm)
                r = [x for x, _ in rs]
                samples[("raw", k)] += r
                starts[("raw", k)] += [x for _, x in rs]
                if why[("occ", k)] is None:
                    try:
                        got = occ.run(occ_main, template, args.n, args.warm)
                        o = [x for x, _ in got]
                        starts[("occ", k)] += [x for _, x in got]
                    except Exception as e:
                        why[("occ", k)] = f"failed: {e!r}"
                    else:
                        samples[("occ", k)] += o
                        ratios[k].append(_bench.median(o) / _bench.median(r))
                for name in ("circus", "supervisord"):
                    if why[(name, k)] is None and rnd < args.ext_rounds:
                        try:
                            es = ext_round(name, template, args.ext_n, 1)
                            samples[(name, k)] += [x for x, _ in es]
                            starts[(name, k)] += [x for _, x in es]
                        except Exception as e:
                            why[(name, k)] = f"failed: {e!r}"
    finally:
        build.close()

    rows: list[list[Any]] = []
    out: list[dict[str, Any]] = []

    def row(side: str, k: str, label: str, ratio: str, target: str, verdict: str) -> list[Any]:
        xs, st = samples[(side, k)], starts[(side, k)]
        if not xs:
            return [label, "-", "-", ratio, target, verdict, why[(side, k)] or "no samples"]
        return [
            label,
            _bench.ms(_bench.median(xs)),
            _bench.ms(_bench.median(st)),
            ratio,
            target,
            verdict,
            _bench.spread([x * 1e3 for x in xs]),
        ]

    for k in kinds:
        label = build.label(k)
        xs = samples[("raw", k)]
        if not xs:
            rows.append(row("raw", k, f"raw fork+exec loop, {label}", "-", "-", "-"))
            continue
        base = _bench.median(xs)
        rows.append(row("raw", k, f"raw fork+exec loop, {label} (baseline)", "-", "-", "-"))
        figure = f"port restart: SIGKILL -> new pid answers ({label})"
        target = TARGET_RATIO[k]
        o = samples[("occ", k)]
        if o:
            ratio = _bench.median(ratios[k])
            met = ratio <= target
            rows.append(
                row(
                    "occ",
                    k,
                    f"occasional Supervisor + port, {label}",
                    f"{ratio:.2f}x",
                    f"<= {target}x",
                    _bench.verdict(met),
                )
            )
            out.append(
                {
                    "figure": figure,
                    "measured": f"{_bench.median(o) * 1e3:.2f} ms",
                    "baseline": f"{base * 1e3:.2f} ms (raw fork+exec loop)",
                    "ratio": round(ratio, 2),
                    "target": f"<= {target}x raw",
                    "met": met,
                }
            )
        else:
            rows.append(row("occ", k, f"occasional Supervisor + port, {label}", "-", f"<= {target}x", "-"))
            out.append(
                {
                    "figure": figure,
                    "measured": why[("occ", k)],
                    "baseline": f"{base * 1e3:.2f} ms (raw fork+exec loop)",
                    "ratio": None,
                    "target": f"<= {target}x raw",
                    "met": False,
                }
            )
        for name in ("circus", "supervisord"):
            ext = samples[(name, k)]
            m = _bench.median(ext) if ext else None
            rows.append(
                row(name, k, f"{EXT_LABEL[name]}, {label}", "-" if m is None else f"{m / base:.2f}x", "(info)", "-")
            )
            if m is not None:
                out.append(
                    {
                        "figure": f"port restart under {EXT_LABEL[name]} ({label})",
                        "measured": f"{m * 1e3:.2f} ms",
                        "baseline": f"{base * 1e3:.2f} ms (raw fork+exec loop)",
                        "ratio": round(m / base, 2),
                        "target": "(info)",
                        "met": None,
                    }
                )
    _bench.table(
        [
            "kill -> new service answers",
            "median",
            "of which kill -> it runs",
            "ratio vs raw",
            "target",
            "verdict",
            "samples (ms)",
        ],
        rows,
    )
    for k in kinds:
        if ratios[k]:
            print(f"ratio per round ({build.label(k)}): {', '.join(f'{x:.2f}' for x in ratios[k])}")
    _bench.result("port_restart", out)


if __name__ == "__main__":
    main()
