"""Helpers shared by the benchmarks in bench/: the machine, medians, tables.

Every benchmark runs its baseline and occasional in the same run and prints a
table with absolute figures and ratios (STYLE.md, "Tests": benchmarks). Its
last line is ``RESULT <json>``, which ``bench/run_all.py`` collects into one
summary.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, Linux {platform.release()}"


def version() -> str:
    """The commit of occasional under test, and whether occasional/ has uncommitted changes."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(
            ["git", "-C", repo, "log", "-1", "--format=%h %ad %s", "--date=format:%H:%M"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--", "occasional"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "occasional: version unknown (not a git checkout)"
    return f"occasional at {rev}" + (" + uncommitted changes in occasional/" if dirty else "")


def load() -> str:
    """The 1-minute load average, with a warning when other work competes for the CPUs."""
    one = os.getloadavg()[0]
    warn = "" if one < (os.cpu_count() or 1) else "  (WARNING: other work competes for the CPUs; figures are noisy)"
    return f"load average {one:.2f}{warn}"


def header(title: str) -> None:
    print(f"== {title} ==")
    print(f"machine: {machine()}")
    print(version())
    print(f"before: {load()}")
    sys.stdout.flush()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has run so far, to the nanosecond.

    From /proc/<pid>/schedstat: /proc/<pid>/stat counts in 10 ms ticks, too
    coarse for a process that lives a few milliseconds.
    """
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float]) -> str:
    """min..max of samples, for the reader to judge the noise."""
    return f"{min(xs):.3g}..{max(xs):.3g}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)))
    print(line)
    for r in cells[1:]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT MET")


def result(name: str, rows: list[dict[str, Any]]) -> None:
    """The machine-readable last line: one dict per figure.

    Keys: figure, measured, baseline, ratio, target, met (None = report only).
    """
    print(f"after: {load()}")
    print("RESULT " + json.dumps({"bench": name, "rows": rows}))
    sys.stdout.flush()


# Placements for the diagnostic rows: (first process's CPU, second's), or
# None for wherever the scheduler puts them (the measured figure).
SPLIT = (0, 1)
SHARED = (0, 0)


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def unpin() -> None:
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
