"""Chaos: processes exchange messages while random ones are SIGKILLed (API.md, sections 3 and 4).

Every monitor must get exactly one DOWN with the right reason, and the runtime
must still spawn and answer afterwards. OCC_CHAOS_SECONDS sets how long the
killing goes on (default 20 s).
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import pytest

import occasional as occ

from conftest import ask_a_new_process

CHAOS_SECONDS = float(os.environ.get("OCC_CHAOS_SECONDS", "20"))
POPULATION = 200
KILL_EVERY = 0.1  # seconds between two SIGKILLs
FINAL_WHY = "chaos is over"


def chatterer(seed: int) -> None:
    """Send to random peers and read whatever arrives, until killed."""
    rng = random.Random(seed)
    _, peers = occ.receive(("peers", list))
    sent = 0
    while True:
        occ.send(rng.choice(peers), ("chatter", occ.slf(), sent))
        sent += 1
        try:
            while True:
                msg = occ.receive(timeout=0.1)
                if msg[0] == "peers":
                    peers = msg[1]
        except TimeoutError:
            pass


def chaos(seconds: float, seed: int) -> dict[str, Any]:
    """Run the chaos for ``seconds`` and return what every monitor received."""
    rng = random.Random(seed)
    refs: dict[Any, Any] = {}  # pid -> ref of its monitor
    alive: list[Any] = []
    sigkilled: set[Any] = set()
    downs: dict[Any, list[Any]] = {}  # pid -> [(ref, reason), ...] as received

    def add_one():
        pid, ref = occ.spawn_monitor(chatterer, rng.randrange(2**32))
        refs[pid] = ref
        alive.append(pid)
        return pid

    def note(down):
        _, ref, pid, reason = down
        downs.setdefault(pid, []).append((ref, reason))

    def any_down(timeout):
        note(occ.receive(("DOWN", occ.ANY, occ.ANY, occ.ANY), timeout=timeout))

    for _ in range(POPULATION):
        add_one()
    for pid in alive:
        occ.send(pid, ("peers", list(alive)))

    ends = time.monotonic() + seconds
    next_kill = time.monotonic()
    while time.monotonic() < ends:
        try:
            any_down(timeout=max(0.0, next_kill - time.monotonic()))
            continue
        except TimeoutError:
            pass
        victim = alive.pop(rng.randrange(len(alive)))
        try:
            os.kill(victim.os_pid, signal.SIGKILL)
            sigkilled.add(victim)
        except ProcessLookupError:
            pass  # it ended on its own: its DOWN will show why
        occ.send(add_one(), ("peers", list(alive)))
        next_kill = time.monotonic() + KILL_EVERY

    for pid in alive:
        occ.kill(pid, FINAL_WHY)

    deadline = time.monotonic() + 30
    while len(downs) < len(refs) and time.monotonic() < deadline:
        try:
            any_down(timeout=1)
        except TimeoutError:
            pass
    try:
        while True:
            any_down(timeout=0.5)  # a second DOWN for anyone would show here
    except TimeoutError:
        pass

    missing, duplicated, wrong = [], [], []
    for pid, ref in refs.items():
        got = downs.get(pid, [])
        expected = (ref, ("signal", "SIGKILL") if pid in sigkilled else ("killed", FINAL_WHY))
        if not got:
            missing.append(repr(pid))
        elif len(got) > 1:
            duplicated.append((repr(pid), repr(got)))
        elif got[0] != expected:
            wrong.append((repr(pid), repr(got[0]), repr(expected)))
    return {
        "monitored": len(refs),
        "sigkilled": len(sigkilled),
        "missing": missing,
        "duplicated": duplicated,
        "wrong": wrong,
        "unmonitored": [repr(pid) for pid in downs if pid not in refs],
        "answer after": ask_a_new_process("after the chaos"),
    }


@pytest.mark.timeout(max(90, CHAOS_SECONDS + 70))
def test_every_monitor_gets_one_right_down_while_random_processes_are_sigkilled():
    result = occ.run(chaos, CHAOS_SECONDS, 20240101)
    assert result["sigkilled"] > 0
    assert result["monitored"] == POPULATION + result["sigkilled"]
    assert (
        result["missing"],
        result["duplicated"],
        result["wrong"],
        result["unmonitored"],
        result["answer after"],
    ) == ([], [], [], [], "after the chaos")
