"""Chaos for durable processes (issue 6): a pipeline keeps its count while everything is SIGKILLed.

producer -> transformer -> counter, three durable processes, with steps and a
durable sleep, run by ``occ.run(main, journal=...)`` in a child interpreter, on each store in turn (an
SQLite file, a PostgreSQL database: issue 12).
Meanwhile this test, the killer, SIGKILLs at random moments one of the
durable processes, the forkserver, or the whole runtime (every process of it
at once); whenever the runtime is gone it starts a new child interpreter on
the same journal. The producer makes items until it is told to stop: when the
killing time is over, the test writes a stop file, main tells the producer,
and the last runtime finishes the pipeline. Then the test checks:

- the counter received every item exactly once, in the order produced, and
  its total equals what the producer sent;
- every step outcome is in the journal once: one per item for the producer
  and the transformer (``occasional journal show``);
- every step's effect happened at least once for every item (at-least-once:
  a kill between an effect and its record repeats it, never loses it).

OCC_DURABLE_CHAOS_SECONDS sets how long the killing goes on (default 20 s);
the test's timeout leaves room for the last runtime to finish.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, descendants, reap_orphans, snapshot, title, wait_until_gone

CHAOS_SECONDS = float(os.environ.get("OCC_DURABLE_CHAOS_SECONDS", "20"))
OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")

PIPELINE = textwrap.dedent(
    """\
    import json
    import os
    import sys

    import occasional as occ
    from occasional import durable

    HERE = os.path.dirname(os.path.abspath(__file__))


    def effect(kind, i):
        # An effect outside the runtime: the test counts these lines.
        with open(os.path.join(HERE, kind + ".effects"), "a") as f:
            f.write(f"{i}\\n")


    def here(id):
        # Where this incarnation runs, for the killer (a plain write: it happens on every start).
        path = os.path.join(HERE, "pids", id)
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(path + ".tmp", path)


    def make(i):
        effect("make", i)
        return i * 3 + 1


    def transform(i, value):
        effect("transform", i)
        return value * 2


    def producer():
        here("producer")
        i = 0
        while True:
            value = durable.step(make, i)
            occ.send(durable.whereis("transformer"), ("item", i, value))
            i += 1
            if i % 25 == 0:
                durable.sleep(0.05)
                try:
                    occ.receive(("stop",), timeout=0)
                    break
                except TimeoutError:
                    pass
        occ.send(durable.whereis("transformer"), ("end", i))
        return i


    def transformer():
        here("transformer")
        while True:
            msg = occ.receive()
            if msg[0] == "end":
                occ.send(durable.whereis("counter"), msg)
                return msg[1]
            _, i, value = msg
            occ.send(durable.whereis("counter"), ("item", i, durable.step(transform, i, value)))


    def counter():
        here("counter")
        total, seen = 0, []
        while True:
            msg = occ.receive()
            if msg[0] == "end":
                return total, seen
            _, i, value = msg
            total += value
            seen.append(i)


    def main():
        # Spawning an id that the journal already has starts nothing new: the
        # runtime resumed it (or it finished).
        durable.spawn("counter", counter)
        durable.spawn("transformer", transformer)
        durable.spawn("producer", producer)
        while not os.path.exists(os.path.join(HERE, "stop")):
            try:
                occ.receive(timeout=0.05)  # nothing comes: the stop file is the killer's word
            except TimeoutError:
                pass
        occ.send(durable.whereis("producer"), ("stop",))
        return [durable.result(id, timeout=None) for id in ("producer", "transformer", "counter")]


    if __name__ == "__main__":
        os.makedirs(os.path.join(HERE, "pids"), exist_ok=True)
        try:
            out = {"returned": repr(occ.run(main, journal=sys.argv[1]))}
        except BaseException as exc:
            out = {"raised": type(exc).__name__, "message": str(exc)}
        print(json.dumps(out), flush=True)
    """
)


class Runtime:
    """One child interpreter running the pipeline on the journal."""

    def __init__(self, tmp_path: Path, journal: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        # Not a with block: the file outlives __init__; end() closes it once the child is gone.
        self.out = open(tmp_path / "stdout.txt", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "pipeline.py"), journal],
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.tree: list[tuple[int, int, int]] = []

    def look(self) -> list[int]:
        """Every process of this runtime now, noted for the clean-up."""
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        self.tree = sorted(set(self.tree) | set(snapshot(pids)))
        return pids

    def ended(self) -> bool:
        self.look()
        return self.proc.poll() is not None

    def sigkill(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def end(self) -> None:
        """SIGKILL whatever is left of it, and wait until every process of it is gone."""
        self.sigkill([pid for pid, _, _ in self.tree] + [self.proc.pid])
        self.proc.wait()
        self.out.close()
        assert wait_until_gone(self.tree, 5.0) == []
        reap_orphans(self.tree)


def durable_pids(tmp_path: Path, runtime_pids: list[int]) -> list[int]:
    """The durable processes of this runtime, as they last wrote down where they run."""
    found = []
    for path in (tmp_path / "pids").glob("*"):
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            continue
        if pid in runtime_pids:  # never a reused pid outside this runtime
            found.append(pid)
    return found


def chaos(tmp_path: Path, journal: str, seconds: float, seed: int) -> tuple[dict[str, str], dict[str, int]]:
    """Kill for ``seconds``, then let a last runtime finish; return its outcome and what was killed."""
    rng = random.Random(seed)
    kills = {"durable process": 0, "forkserver": 0, "whole runtime": 0, "runtimes started": 1}
    kinds = ["durable process", "forkserver", "whole runtime"]
    due = rng.sample(kinds, len(kinds))  # each kind of kill at least once, then at random
    runtime = Runtime(tmp_path, journal)
    try:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            time.sleep(rng.uniform(0.05, 0.6))
            if runtime.ended():
                runtime.end()  # ended by a kill of its forkserver: start the next one
                runtime = Runtime(tmp_path, journal)
                kills["runtimes started"] += 1
                continue
            pids = runtime.look()
            action = due.pop(0) if due else rng.choices(kinds, [6, 1, 2])[0]
            if action == "durable process":
                victims = durable_pids(tmp_path, pids)
                if not victims:  # the new runtime has not started them yet: kill one next time
                    due.insert(0, action)
                    continue
                runtime.sigkill([rng.choice(victims)])
                kills[action] += 1
            elif action == "forkserver":
                forkservers = [p for p in pids if title(p) == "occasional: forkserver"]
                if not forkservers:  # not up yet, or titled yet
                    due.insert(0, action)
                    continue
                runtime.sigkill(forkservers)
                kills[action] += 1
            else:
                runtime.sigkill(pids)
                kills[action] += 1
                runtime.end()
                runtime = Runtime(tmp_path, journal)
                kills["runtimes started"] += 1
        (tmp_path / "stop").write_text("the killing is over")
        deadline = time.monotonic() + 60
        while True:
            while not runtime.ended():
                if time.monotonic() > deadline:
                    raise AssertionError(f"the last runtime did not finish the pipeline within 60 s; kills: {kills}")
                time.sleep(0.05)
            outcome = json.loads((tmp_path / "stdout.txt").read_text())
            if "forkserver ended" not in outcome.get("message", ""):
                break
            # The last kill took its forkserver just before the killing stopped, and
            # the loop above had no turn left to start the next runtime: start it here.
            runtime.end()
            runtime = Runtime(tmp_path, journal)
            kills["runtimes started"] += 1
    finally:
        runtime.end()
    return outcome, kills


def step_entries(journal: str, id: str) -> list[str]:
    done = subprocess.run([OCCASIONAL, "journal", "show", journal, id], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if re.match(r"^\s*\d+\s+step\s", line)]


def effects(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.timeout(CHAOS_SECONDS + 120)
def test_a_durable_pipeline_counts_every_item_once_while_its_processes_and_runtime_are_sigkilled(journal, tmp_path):
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    outcome, kills = chaos(tmp_path, journal, CHAOS_SECONDS, seed=20261122)

    assert outcome.keys() == {"returned"}, (outcome, kills)
    returned = re.match(r"^\[\('ok', (\d+)\)", outcome["returned"])
    assert returned is not None, outcome
    produced = int(returned.group(1))
    items = list(range(produced))
    total = sum((i * 3 + 1) * 2 for i in items)
    assert outcome == {"returned": repr([("ok", produced), ("ok", produced), ("ok", (total, items))])}, kills
    assert (len(step_entries(journal, "producer")), len(step_entries(journal, "transformer"))) == (produced, produced)
    made, transformed = effects(tmp_path / "make.effects"), effects(tmp_path / "transform.effects")
    assert (sorted(set(made)), sorted(set(transformed))) == (items, items)
    assert min(kills.values()) > 0 and produced >= 100, (kills, produced)
