"""Helpers shared by the benchmarks in bench/: the machine, medians, tables.

Every benchmark runs its baseline and occasional in the same run and prints a
table with absolute figures and ratios (STYLE.md, "Tests": benchmarks). Its
last line is ``RESULT <json>``, which ``bench/run_all.py`` collects into one
summary.

Quick mode (issue 15: "quick mode for CI, full mode for the record"):
``run_all.py --quick`` sets ``OCC_BENCH_QUICK=1`` in each benchmark's
environment, and each benchmark sizes its defaults with :func:`sized`, so no
benchmark needs an argument of its own for it. Explicit arguments still win.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Set by run_all.py --quick (or by hand): fewer rounds and items, same code paths.
QUICK_ENV = "OCC_BENCH_QUICK"
QUICK = os.environ.get(QUICK_ENV, "") not in ("", "0")


def sized(full: T, quick: T) -> T:
    """An argparse default: ``full`` for the record, ``quick`` under OCC_BENCH_QUICK=1."""
    return quick if QUICK else full


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


def commit() -> str:
    """The short commit of the checkout, with " + changes" if its tree is dirty (for RESULTS.md)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return rev + (" + changes" if dirty else "")


def header(title: str) -> None:
    print(f"== {title}" + (" (quick mode: fewer rounds and items)" if QUICK else "") + " ==")
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


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table in Markdown, for bench/RESULTS.md ("|" in a cell escaped)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "---|" * len(headers)] + [line(r) for r in rows])


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


# -- the raw baseline for replay speed (issue 15) ---------------------------------------


def journal_rows(journal: str, durable_id: str) -> tuple[list[tuple[int, str, str, bytes]], list[tuple[int, bytes]]]:
    """(events, mailbox) of ``durable_id`` in an SQLite journal, read as the journal's reader reads them."""
    import sqlite3  # here, not at the top: most benchmarks never read a journal
    import urllib.parse

    db = sqlite3.connect(f"file:{urllib.parse.quote(journal)}?mode=ro", uri=True, isolation_level=None)
    try:
        events = db.execute(
            "SELECT seq, kind, name, body FROM events WHERE process=? ORDER BY seq", (durable_id,)
        ).fetchall()
        mailbox = db.execute("SELECT seq, body FROM mailbox WHERE process=? ORDER BY seq", (durable_id,)).fetchall()
    finally:
        db.close()
    return events, mailbox


def raw_replay(events: list[tuple[int, str, str, bytes]], mailbox: list[tuple[int, bytes]], upto: int) -> int:
    """The least a replay must do with a journal's rows: walk the events in
    order until ``upto`` receives and steps are behind, and decode what the
    program gets back the way the journal's reader does (a receive: unpack the
    mailbox position it took, take that message and ``codec.loads`` it; a step:
    ``codec.loads`` its outcome and take the value; a ``step.attempt``: step
    over it). No matching against a program's calls, no process, no sockets.
    Returns how many receives and steps it walked."""
    import msgpack

    from occasional.core import codec

    unpackb, loads = msgpack.unpackb, codec.loads
    inbox = dict(mailbox)
    done = 0
    for _seq, kind, _name, body in events:
        if done >= upto:
            break
        if kind == "receive":
            loads(inbox.pop(unpackb(body)))
            done += 1
        elif kind == "step":
            loads(body)[1]
            done += 1
    return done


def raw_replay_rate(journal: str, durable_id: str, upto: int, repeat: int = 3) -> float:
    """Events/s of :func:`raw_replay` over the first ``upto`` receives and steps
    of ``durable_id`` in the SQLite journal at ``journal``: the baseline of
    "replay through receive/step >= 0.8x a raw loop over the same rows" (issue
    15). The rows are read first and not timed, as occasional's figure starts
    when the function starts, after its journal was read. Median of ``repeat``.

    Raises:
        ValueError: the journal holds fewer than ``upto`` receives and steps of ``durable_id``.
    """
    events, mailbox = journal_rows(journal, durable_id)
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = raw_replay(events, mailbox, upto)
        took.append(time.perf_counter() - t0)
        if done < upto:
            raise ValueError(
                f"the journal {journal!r} holds {done} receives and steps of {durable_id!r}, not {upto}: "
                "pass the number the program journaled"
            )
    return upto / statistics.median(took)
