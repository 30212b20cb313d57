"""Run every benchmark in bench/, one after another, and print one summary.

Each benchmark runs in its own interpreter (as ``python bench/NAME.py``),
prints its own table with the baseline it measured in the same run, and ends
with a ``RESULT <json>`` line; this script gathers those lines into the
summary table (figure, measured, baseline, ratio, target, verdict).

Run: .venv/bin/python bench/run_all.py [--only pingpong,oneway] [--repeat 1] [--postgres] [--nodes]

``--postgres`` runs the PostgreSQL journal benchmarks of issue 12 instead of
the default set (after the ``--only`` names, if any; ``--only`` also takes
theirs). Each starts a private PostgreSQL server and runs DBOS Transact
against it: they need Debian's ``postgresql`` and ``pip install dbos`` in .venv.
``--nodes`` runs the benchmarks of nodes (issue 13) likewise: each starts a
private EPMD and real Erlang nodes (Debian's ``erlang-base``).

Exit status: 0 if every target was met, 1 if one was missed, 2 if a benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _bench

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = [
    "pingpong", "oneway", "spawn", "many", "startup", "restart", "call", "port_restart", "port_lines", "up_many",
    "net_echo", "net_oneway", "pty_expect",
]  # fmt: skip
# Not in the default set: they need a PostgreSQL server's binaries and DBOS (issue 12).
POSTGRES = ["durable_pg_step", "durable_pg_send", "durable_pg_restart", "durable_pg_takeover"]
# Not in the default set either: they need Erlang (issue 13). About 4 minutes together.
NODES = ["dist_pingpong", "dist_oneway", "dist_local", "dist_kill"]


def run_one(name: str) -> tuple[dict[str, object] | None, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, f"{name}.py")], stdout=subprocess.PIPE, text=True)
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
        else:
            print(line, end="", flush=True)
    proc.wait()
    if proc.returncode != 0:
        print(f"run_all: {name}.py failed with exit status {proc.returncode}", flush=True)
        result = None
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="run the set this many times")
    ap.add_argument(
        "--postgres", action="store_true", help="the PostgreSQL journal benchmarks (issue 12), not the default set"
    )
    ap.add_argument("--nodes", action="store_true", help="the benchmarks of nodes (issue 13), not the default set")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or ([] if args.postgres or args.nodes else BENCHES)
    if args.postgres:
        names += [n for n in POSTGRES if n not in names]
    if args.nodes:
        names += [n for n in NODES if n not in names]
    every = BENCHES + POSTGRES + NODES
    for n in names:
        if n not in every:
            sys.exit(f"run_all: {n!r} is not a benchmark; choose from {', '.join(every)}")

    rows = []
    failed = False
    for rep in range(args.repeat):
        for name in names:
            print(f"\n### {name}.py" + (f" (run {rep + 1} of {args.repeat})" if args.repeat > 1 else ""), flush=True)
            result, took = run_one(name)
            print(f"({name}.py took {took:.1f} s)", flush=True)
            if result is None:
                failed = True
                rows.append([name, "FAILED", "-", "-", "-", "-"])
                continue
            for r in result["rows"]:  # type: ignore[attr-defined]  # parsed JSON: "rows" is a list of dicts
                ratio = "-" if r["ratio"] is None else f"{r['ratio']}x"
                rows.append([r["figure"], r["measured"], r["baseline"], ratio, r["target"], _bench.verdict(r["met"])])

    print("\n== summary ==")
    print(f"machine: {_bench.machine()}")
    print(_bench.version())
    _bench.table(["figure", "measured", "baseline (same run)", "ratio", "target", "verdict"], rows)
    missed = any(r[5] == "NOT MET" for r in rows)
    sys.exit(2 if failed else 1 if missed else 0)


if __name__ == "__main__":
    main()
