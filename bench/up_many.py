"""Starting 50 services from a config file: the command is run -> all 50 are running.

Every side starts the same 50 long-running services (bench/_native.py): each,
once its executable runs, connects to main's Unix socket, says ``up <pid>``
and then waits on that connection. "All running" is the moment main has
accepted 50 connections from 50 distinct pids; main then checks in
``/proc/<pid>/stat`` that all 50 are alive (not zombies). The clock starts
just before the command is spawned, so each figure includes the daemon's own
start-up (interpreter, imports, reading its config).

- occasional: ``occasional up services.toml``, a TOML file generated here with
  one ``argv = [...]`` service per executable.
- supervisord and circus: a generated ini file with 50 ``[program:...]`` /
  ``[watcher:...]`` sections (``startsecs=0`` for supervisord, whose default
  of 1 s only delays its RUNNING state, not the process).
- for reference, a raw fork+exec loop in a fresh ``python -S`` interpreter
  (the baseline of bench/port_restart.py) given the 50 argvs.

Each service also says when it started running (bench/_native.py), so the
table shows when the first one ran and the mean spacing of the others.

Then each daemon gets SIGTERM; the time until it exits is reported (info), and
so is any service still alive 2 s after it exited (there should be none).

Issue 5: report the times (no target). Rounds alternate the sides.

Run: .venv/bin/python bench/up_many.py [--rounds 3] [--services 50] [--service c,py]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import _bench
import _native
from _native import Listener

SIDES = ("raw", "occ", "circus", "supervisord")
LABEL = {
    "raw": "raw fork+exec loop (python -S)",
    "occ": "occasional up",
    "circus": "circus",
    "supervisord": "supervisord",
}


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a TOML basic string for the paths we write


def occ_config(d: str, programs: Mapping[str, Sequence[str]]) -> str:
    path = os.path.join(d, "services.toml")
    with open(path, "w") as f:
        for name, argv in programs.items():
            f.write(f"[services.{name}]\nargv = [{', '.join(toml_str(a) for a in argv)}]\n\n")
    return path


def occ_command(conf: str) -> list[str]:
    exe = os.path.join(_native.BIN, "occasional")
    return [exe, "up", conf] if os.path.exists(exe) else [sys.executable, "-m", "occasional", "up", conf]


def one_round(side: str, template: list[str], count: int) -> dict[str, Any]:
    """Start count services under side; return the time to all running, the stop time and leftovers."""
    lst = Listener(prefix=f"occ-bench-up-{side}-")
    proc: subprocess.Popen[bytes] | None = None
    try:
        programs = {f"svc{i:02d}": [lst.path if a == "{sock}" else a for a in template] for i in range(count)}
        if side == "raw":
            t0 = time.monotonic()  # the services' clock, so their start times can be placed
            proc = _native.start_raw(list(programs.values()))
        else:
            if side == "occ":
                cmd = occ_command(occ_config(lst.dir, programs))
            else:
                cmd = _native.ext_command(side, _native.ext_config(side, lst.dir, programs))
            log = os.path.join(lst.dir, "daemon.out")
            t0 = time.monotonic()
            proc = _native.start_session(cmd, log)
        pids: set[int] = set()
        starts: list[float] = []
        try:
            while len(pids) < count:
                c, pid = lst.accept()
                lst.conns.append(c)
                pids.add(pid)
                starts.append(lst.started - t0)
        except OSError as e:
            out = ""
            if side != "raw":
                with open(os.path.join(lst.dir, "daemon.out"), "rb") as f:
                    out = f.read()[-2000:].decode(errors="replace")
            raise RuntimeError(
                f"{side}: {len(pids)} of {count} services said up before {e!r}; daemon output: {out}"
            ) from None
        took = time.monotonic() - t0
        dead = [p for p in pids if not _native.alive(p)]
        assert not dead, f"{side}: services {dead} said up but are no longer alive"
        stop = _native.stop_session(proc)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_native.alive(p) for p in pids):
            time.sleep(0.01)
        left = sum(_native.alive(p) for p in pids)
        if left:
            print(
                f"{side}: {left} services alive 2 s after the daemon exited: {_native.describe([p for p in pids if _native.alive(p)])}"
            )
        return {"up": took, "first": min(starts), "last": max(starts), "stop": stop, "left": left}
    finally:
        if proc is not None and proc.poll() is None:
            _native.stop_session(proc)
        lst.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(3, 1))
    ap.add_argument("--services", type=int, default=_bench.sized(50, 20))
    ap.add_argument("--service", default="c,py", help="which builds of the service: c, py or both")
    args = ap.parse_args()
    kinds = [k for k in args.service.split(",") if k]
    for k in kinds:
        if k not in _native.SERVICES:
            ap.error(f"--service {k!r}: choose from {', '.join(_native.SERVICES)}")
    _bench.header(f"start {args.services} services from a config file -> all running")
    print(
        f"{args.rounds} rounds; each round, for each service build: raw, occasional up, circus, supervisord; figure = median"
    )

    build = _native.Build()
    why: dict[tuple[str, str], str | None] = {}
    for k in kinds:
        for side in SIDES:
            why[(side, k)] = build.available(k) or (
                None if side == "occ" else _native.ext_available(side) if side in ("circus", "supervisord") else None
            )
    res: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in why}
    try:
        for _ in range(args.rounds):
            for k in kinds:
                template = build.argv(k, "{sock}")
                for side in SIDES:
                    if why[(side, k)] is not None:
                        continue
                    try:
                        res[(side, k)].append(one_round(side, template, args.services))
                    except Exception as e:
                        why[(side, k)] = f"failed: {e}"
    finally:
        build.close()

    rows: list[list[Any]] = []
    out: list[dict[str, Any]] = []
    for k in kinds:
        label = build.label(k)
        base = [r["up"] for r in res[("raw", k)]]
        for side in SIDES:
            rs = res[(side, k)]
            if not rs:
                rows.append([f"{LABEL[side]}, {label}", "-", "-", "-", "-", "-", "-", why[(side, k)] or "no samples"])
                if side == "occ":
                    out.append(
                        {
                            "figure": f"occasional up of {args.services} services -> all running ({label})",
                            "measured": why[(side, k)] or "no samples",
                            "baseline": "-",
                            "ratio": None,
                            "target": "(report)",
                            "met": None,
                        }
                    )
                continue
            ups = [r["up"] for r in rs]
            m = _bench.median(ups)
            ratio = f"{m / _bench.median(base):.2f}x" if base else "-"
            first = _bench.median([r["first"] for r in rs])
            spacing = _bench.median([(r["last"] - r["first"]) / (args.services - 1) for r in rs])
            rows.append(
                [
                    f"{LABEL[side]}, {label}",
                    _bench.ms(m),
                    ratio,
                    _bench.spread([x * 1e3 for x in ups]),
                    _bench.ms(first),
                    _bench.ms(spacing),
                    _bench.ms(_bench.median([r["stop"] for r in rs])),
                    sum(r["left"] for r in rs),
                ]
            )
            if side != "raw":
                out.append(
                    {
                        "figure": f"{LABEL[side]} of {args.services} services -> all running ({label})",
                        "measured": f"{m * 1e3:.1f} ms",
                        "baseline": f"{_bench.median(base) * 1e3:.1f} ms (raw fork+exec loop)" if base else "-",
                        "ratio": round(m / _bench.median(base), 2) if base else None,
                        "target": "(report)",
                        "met": None,
                    }
                )
    _bench.table(
        [
            f"{args.services} services: command -> all running",
            "median",
            "vs raw",
            "samples (ms)",
            "-> first runs",
            "then one per",
            "stop (SIGTERM -> exit)",
            "alive 2 s after stop",
        ],
        rows,
    )
    _bench.result("up_many", out)


if __name__ == "__main__":
    main()
