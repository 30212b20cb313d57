"""Start-up: occ.run of a trivial main, from a fresh interpreter.

Each sample is a fresh interpreter (subprocess), timed from outside, start to
exit; the occasional and multiprocessing scripts also time their own part from
inside (``occ.run(main)`` start to return; forkserver ``Process.start()`` +
``join()``, which includes launching the forkserver). Beside them:
``python -c pass`` and ``python -c "import occasional"``. The kinds of sample
are interleaved, so a burst of other load hits them all alike.

Report only: no target.

Run: .venv/bin/python bench/startup.py [--n 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import _bench

OCC_SCRIPT = """
import time
t0 = time.perf_counter()
import occasional as occ
t1 = time.perf_counter()

def main():
    return None

if __name__ == "__main__":
    occ.run(main)
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1)
"""

MP_SCRIPT = """
import time
t0 = time.perf_counter()
import multiprocessing as mp
t1 = time.perf_counter()

def trivial():
    pass

if __name__ == "__main__":
    p = mp.get_context("forkserver").Process(target=trivial)
    p.start()
    p.join()
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1)
"""


def sample(argv: list[str]) -> tuple[float, list[float]]:
    """(wall seconds for the whole interpreter, the figures it printed)."""
    t0 = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    return wall, [float(x) for x in out.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=_bench.sized(15, 5))
    args = ap.parse_args()
    _bench.header("start-up of a runtime, fresh interpreter per sample")
    py = sys.executable
    print(f"{args.n} samples of each, interleaved; median")
    with tempfile.TemporaryDirectory() as d:
        occ_script = os.path.join(d, "occ_trivial.py")
        mp_script = os.path.join(d, "mp_trivial.py")
        with open(occ_script, "w") as f:
            f.write(OCC_SCRIPT)
        with open(mp_script, "w") as f:
            f.write(MP_SCRIPT)
        kinds = {
            "pass": [py, "-c", "pass"],
            "import": [py, "-c", "import occasional"],
            "occ": [py, occ_script],
            "mp": [py, mp_script],
        }
        for argv in kinds.values():  # warm the page cache
            sample(argv)
        got: dict[str, list[tuple[float, list[float]]]] = {k: [] for k in kinds}
        for _ in range(args.n):
            for k, argv in kinds.items():
                got[k].append(sample(argv))

    def wall(k: str) -> float:
        return _bench.median([w for w, _ in got[k]])

    def inner(k: str, i: int) -> float:
        return _bench.median([xs[i] for _, xs in got[k]])

    base = wall("pass")
    run_only = inner("occ", 1)
    mp_only = inner("mp", 1)
    rows = [
        ["python -c pass", _bench.ms(base), "-", "-"],
        ['python -c "import occasional"', _bench.ms(wall("import")), _bench.ms(wall("import") - base), "-"],
        ["script: import occasional; occ.run(main)", _bench.ms(wall("occ")), _bench.ms(wall("occ") - base),
         f"import {_bench.ms(inner('occ', 0))}, occ.run() start to return {_bench.ms(run_only)}"],
        ["script: mp forkserver Process start()+join()", _bench.ms(wall("mp")), _bench.ms(wall("mp") - base),
         f"import {_bench.ms(inner('mp', 0))}, start()+join() incl. forkserver launch {_bench.ms(mp_only)}"],
    ]  # fmt: skip
    _bench.table(["fresh interpreter", "wall, start to exit", "minus python -c pass", "timed inside"], rows)
    print(f"occ.run() start to return / mp forkserver first start()+join(): {run_only / mp_only:.2f}x")
    _bench.result(
        "startup",
        [
            {
                "figure": "occ.run(trivial main), start to return (inside)",
                "measured": f"{run_only * 1e3:.1f} ms",
                "baseline": f"{mp_only * 1e3:.1f} ms (mp forkserver first start+join, inside)",
                "ratio": round(run_only / mp_only, 2),
                "target": "(report only)",
                "met": None,
            },
            {
                "figure": "fresh interpreter running occ.run(trivial main), wall",
                "measured": f"{wall('occ') * 1e3:.1f} ms",
                "baseline": f"{base * 1e3:.1f} ms (python -c pass); import occasional {wall('import') * 1e3:.1f} ms; mp script {wall('mp') * 1e3:.1f} ms",
                "ratio": round(wall("occ") / base, 2),
                "target": "(report only)",
                "met": None,
            },
        ],
    )


if __name__ == "__main__":
    main()
