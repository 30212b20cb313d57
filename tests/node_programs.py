"""Durable jobs, and the programs of nodes, for tests/test_nodes_journal.py.

A node is a runtime in an interpreter of its own on a PostgreSQL journal
(API.md section 11), started as ``python -c "import node_programs;
node_programs.node()" URL LEASE PROGRAM ARGS...``. The jobs live in this module,
not in the test module, so every node finds them by reference.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import occasional as occ
from occasional import durable


# note and effects are conftest's, again: a node's processes import this module,
# and conftest would bring pytest into each of them (a takeover's start-up time).
def note(path: str, *values: Any) -> None:
    """Append one line to ``path``: an effect outside the runtime, which replay cannot undo."""
    with open(path, "a") as f:
        f.write(json.dumps(list(values)) + "\n")


def effects(path: str | Path) -> list[Any]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def two_steps(effects: str, ready: str) -> str:
    """Step "one", say so in ``ready`` (outside the journal), wait for "go", step "two"."""
    durable.step(note, effects, "one")
    Path(ready).touch()
    occ.receive("go")
    durable.step(note, effects, "two")
    return "done"


def started(effects: str, ready: str) -> str:
    """Note which node's forkserver started this incarnation (its parent), then wait for "go"."""
    note(effects, "started", os.getppid())
    Path(ready).touch()
    occ.receive("go")
    return "done"


def counting(effects: str, ready: str) -> int:
    """A step after another, each noting (pid, n), until "stop" arrives; returns the last n."""
    n = 0
    while True:
        n = durable.step(_count, effects, n)
        if n == 3:
            Path(ready).touch()
        try:
            occ.receive("stop", timeout=0.02)
        except TimeoutError:
            continue
        return n


def _count(effects: str, n: int) -> int:
    note(effects, os.getpid(), n + 1)
    return n + 1


def collecting(count: int) -> list[Any]:
    """Receive ``count`` messages and return them in the order they came."""
    return [occ.receive() for _ in range(count)]


# -- what a node runs ---------------------------------------------------------------


def spawn_and_wait(job: str, effects: str, ready: str, *ids: str) -> None:
    """Spawn durable ``ids`` running ``job``, then wait for a message that never comes."""
    for id in ids:
        durable.spawn(id, globals()[job], effects, f"{ready}.{id}")
    occ.receive("never sent")


def spawn_and_stop(job: str, effects: str, ready: str, id: str) -> None:
    """Spawn durable ``id``, wait until it is ready, and stop the runtime cleanly."""
    durable.spawn(id, globals()[job], effects, ready)
    while not os.path.exists(ready):
        try:
            occ.receive("never sent", timeout=0.01)
        except TimeoutError:
            pass


def wait(ready: str) -> None:
    """Be a node and nothing more: say so in ``ready``, then wait."""
    Path(ready).touch()
    occ.receive("never sent")


def node() -> None:
    url, lease, program, *args = sys.argv[1:]
    occ.run(globals()[program], *args, journal=url, lease=float(lease))


def send_numbers(id: str, count: str) -> None:
    """Send 0, 1, ... ``count`` - 1 to durable process ``id``, which runs on another node."""
    to = durable.whereis(id)
    assert to is not None, f"no durable process {id!r} in the journal"
    for n in range(int(count)):
        occ.send(to, n)


def sending(to: str, ready: str) -> int:
    """Send 0, 1, ... 299 to durable process ``to``; say so in ``ready`` after 100 of them."""
    dest = durable.whereis(to)
    assert dest is not None, f"no durable process {to!r} in the journal"
    for n in range(300):
        occ.send(dest, n)
        if n == 100:
            Path(ready).touch()
    return 300
