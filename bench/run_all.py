"""Run every benchmark in bench/, one after another, and print one summary.

Each benchmark runs in its own interpreter (as ``python bench/NAME.py``),
prints its own table with the baseline it measured in the same run, and ends
with a ``RESULT <json>`` line; this script gathers those lines into one table
(figure, measured, baseline, ratio, target, verdict), printed as text and then
as Markdown headed with the date, the commit and the load average, ready to
paste into bench/RESULTS.md (issue 15: "bench/RESULTS.md carries that table
per run, dated, with the commit").

Run: .venv/bin/python bench/run_all.py [--quick] [--all] [--only pingpong,oneway] [--repeat 1]
     [--postgres] [--nodes] [--markdown FILE]

Modes (issue 15: "quick mode for CI, full mode for the record"):

- full (the default): every benchmark's own defaults, for the record.
- ``--quick``: the same benchmarks and code paths with fewer rounds and items
  (about 2-3 minutes for the default set): run_all sets ``OCC_BENCH_QUICK=1``
  in each benchmark's environment and the benchmarks size their defaults with
  ``_bench.sized(full, quick)``. A quick run's figures are noisier; record
  full runs.

Sets: the default set needs nothing beyond .venv (SQLite journals; the peers
DBOS, Pykka, Thespian, pexpect, uvloop, circus and supervisord are used when
installed). ``--postgres`` runs the PostgreSQL journal benchmarks of issue 12
instead (each starts a private PostgreSQL server and runs DBOS Transact
against it: they need Debian's ``postgresql`` and ``pip install dbos``).
``--nodes`` runs the benchmarks of nodes (issue 13) likewise: each starts a
private EPMD and real Erlang nodes (Debian's ``erlang-base``); about 4
minutes. ``--all`` runs every figure: the default set, then both of those.
``--only`` names benchmarks of any set (``--postgres``/``--nodes`` add theirs).

Exit status: 0 if every target was met, 1 if one was missed, 2 if a benchmark failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import _bench

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = [
    "pingpong", "oneway", "spawn", "many", "startup", "restart", "call", "port_restart", "port_lines", "up_many",
    "net_echo", "net_oneway", "pty_expect", "http_gateway", "durable_step", "durable_send", "durable_restart",
]  # fmt: skip
# Not in the default set: they need a PostgreSQL server's binaries and DBOS (issue 12).
POSTGRES = ["durable_pg_step", "durable_pg_send", "durable_pg_restart", "durable_pg_takeover"]
# Not in the default set either: they need Erlang (issue 13). About 4 minutes together.
NODES = ["dist_pingpong", "dist_oneway", "dist_local", "dist_kill"]
HEADERS = ["figure", "measured", "baseline (same run)", "ratio", "target", "verdict"]


def run_one(name: str, quick: bool) -> tuple[dict[str, object] | None, float]:
    t0 = time.perf_counter()
    env = dict(os.environ)
    if quick:
        env[_bench.QUICK_ENV] = "1"
    else:
        env.pop(_bench.QUICK_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, f"{name}.py")], stdout=subprocess.PIPE, text=True, env=env
    )
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


def choose(args: argparse.Namespace) -> list[str]:
    names = [n for n in args.only.split(",") if n]
    if not names and (args.all or not (args.postgres or args.nodes)):
        names = list(BENCHES)
    for extra, wanted in ((POSTGRES, args.postgres or args.all), (NODES, args.nodes or args.all)):
        if wanted:
            names += [n for n in extra if n not in names]
    every = BENCHES + POSTGRES + NODES
    for n in names:
        if n not in every:
            sys.exit(f"run_all: {n!r} is not a benchmark; choose from {', '.join(every)}")
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and items (CI, a check); full by default")
    ap.add_argument("--all", action="store_true", help="every figure: the default set, --postgres and --nodes")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (default: the default set)")
    ap.add_argument("--repeat", type=int, default=1, help="run the set this many times")
    ap.add_argument(
        "--postgres", action="store_true", help="the PostgreSQL journal benchmarks (issue 12), not the default set"
    )
    ap.add_argument("--nodes", action="store_true", help="the benchmarks of nodes (issue 13), not the default set")
    ap.add_argument("--markdown", metavar="FILE", help="also write the Markdown summary to FILE")
    args = ap.parse_args()
    names = choose(args)

    started = datetime.datetime.now()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows = []
    failed = False
    took: dict[str, float] = {}
    for rep in range(args.repeat):
        for name in names:
            print(f"\n### {name}.py" + (f" (run {rep + 1} of {args.repeat})" if args.repeat > 1 else ""), flush=True)
            result, secs = run_one(name, args.quick)
            took[name] = took.get(name, 0.0) + secs
            print(f"({name}.py took {secs:.1f} s)", flush=True)
            run = f" (run {rep + 1})" if args.repeat > 1 else ""
            if result is None:
                failed = True
                rows.append([f"{name}.py{run}", "FAILED", "-", "-", "-", "FAILED"])
                continue
            for r in result["rows"]:  # type: ignore[attr-defined]  # parsed JSON: "rows" is a list of dicts
                ratio = "-" if r["ratio"] is None else f"{r['ratio']}x"
                verdict = _bench.verdict(r["met"])
                rows.append([r["figure"] + run, r["measured"], r["baseline"], ratio, r["target"], verdict])
    elapsed = time.perf_counter() - t0
    load_after = os.getloadavg()[0]

    mode = "quick" if args.quick else "full"
    print("\n== summary ==")
    print(f"machine: {_bench.machine()}")
    print(_bench.version())
    print(
        f"mode: {mode}; {len(names)} benchmarks in {elapsed:.0f} s; load average {load_before:.2f} -> {load_after:.2f}"
    )
    _bench.table(HEADERS, rows)
    missed = sum(r[5] == "NOT MET" for r in rows)
    met = sum(r[5] == "met" for r in rows)
    n_failed = sum(r[5] == "FAILED" for r in rows)
    print(f"targets: {met} met, {missed} not met" + (f", {n_failed} benchmarks failed" if n_failed else ""))
    print(f"time per benchmark: {', '.join(f'{n} {s:.0f} s' for n, s in took.items())}")

    md = "\n".join(
        [
            f"### run_all.py, {started:%Y-%m-%d %H:%M} ({mode} mode)",
            "",
            f"**Commit:** `{_bench.commit()}`. **Load average:** {load_before:.2f} before, {load_after:.2f} after. "
            f"**Machine:** {_bench.machine()}. **Took:** {elapsed:.0f} s. "
            f"**Run:** `{' '.join(['.venv/bin/python', 'bench/run_all.py', *sys.argv[1:]])}`",
            "",
            _bench.markdown(HEADERS, rows),
            "",
            f"Targets: {met} met, {missed} not met" + (f", {n_failed} benchmarks failed." if n_failed else "."),
        ]
    )
    print("\n== summary, Markdown for bench/RESULTS.md ==\n")
    print(md, flush=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    sys.exit(2 if failed else 1 if missed else 0)


if __name__ == "__main__":
    main()
