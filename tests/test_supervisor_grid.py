"""The supervisor grid: strategy x restart type x how a child ended (API.md, section 6).

Three children ``before``, ``target``, ``after``; the target ends one of five
ways, and each child is then either the ``same`` process, a ``new`` one
(restarted), ``none`` (listed with no pid) or ``gone`` (no longer listed).

- permanent: always restarted; transient: restarted only after an abnormal
  end that is not a shutdown (kind != "ok", and not ("killed", "shutdown") or
  ("killed", ("shutdown", term)), as OTP); temporary: never restarted, and its
  spec is dropped.
- A restart restarts no sibling under one_for_one, every sibling under
  one_for_all, and the later siblings under rest_for_one. A child that is not
  restarted leaves its siblings alone.

Children use ``shutdown="brutal_kill"`` so that siblings stopped for a
restart go at once, whatever the shutdown of a plain function is.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

import occasional as occ

from conftest import children_of, poll, worker

STRATEGIES = ["one_for_one", "one_for_all", "rest_for_one"]
RESTARTS = ["permanent", "transient", "temporary"]
ENDINGS = ["returns", "raises", "sys.exit(3)", "SIGKILL", "occ.kill"]
IDS = ["before", "target", "after"]


def end(pid: occ.Pid, ending: str) -> None:
    if ending == "returns":
        occ.send(pid, "return")
    elif ending == "raises":
        occ.send(pid, "raise")
    elif ending == "sys.exit(3)":
        occ.send(pid, "exit")
    elif ending == "SIGKILL":
        os.kill(pid.os_pid, signal.SIGKILL)
    else:
        occ.kill(pid)


def expected(strategy: str, restart: str, ending: str) -> dict[str, str]:
    restarted = restart == "permanent" or (restart == "transient" and ending != "returns")
    if not restarted:
        return {"before": "same", "target": "gone" if restart == "temporary" else "none", "after": "same"}
    return {
        "before": "new" if strategy == "one_for_all" else "same",
        "target": "new",
        "after": "same" if strategy == "one_for_one" else "new",
    }


def compare(old: dict[str, Any], now: dict[str, Any]) -> dict[str, str]:
    def fate(cid: str) -> str:
        if cid not in now:
            return "gone"
        if now[cid] is None:
            return "none"
        return "same" if now[cid] == old[cid] else "new"

    return {cid: fate(cid) for cid in IDS}


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("restart", RESTARTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_child_that_ended_is_restarted_with_its_siblings_as_strategy_and_restart_type_say(strategy, restart, ending):
    want = expected(strategy, restart, ending)

    def main():
        sup = occ.Supervisor.start(
            [
                {"id": "before", "function": worker, "args": ("before",), "shutdown": "brutal_kill"},
                {
                    "id": "target",
                    "function": worker,
                    "args": ("target",),
                    "shutdown": "brutal_kill",
                    "restart": restart,
                },
                {"id": "after", "function": worker, "args": ("after",), "shutdown": "brutal_kill"},
            ],
            strategy=strategy,
            intensity=5,
        )
        old = children_of(sup)
        ref = occ.monitor(old["target"])
        end(old["target"], ending)
        occ.receive(("DOWN", ref, old["target"], occ.ANY), timeout=5)
        poll(lambda: compare(old, children_of(sup)), lambda fates: fates == want, timeout=2.0)
        # Asked once more: what the supervisor shows must also stay so.
        return compare(old, children_of(sup))

    assert occ.run(main) == want
