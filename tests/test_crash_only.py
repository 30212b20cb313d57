"""Crash-only: no OS process of a runtime outlives it, whatever is SIGKILLed (API.md, section 1).

Each crash test runs the runtime in a child interpreter, so that the test can
SIGKILL the interpreter that started it, its central services or its
forkserver, and then check from outside, through /proc, that every process of
that runtime is gone within 2 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import occasional as occ

from conftest import (
    ROOT,
    Snapshot,
    descendants,
    kill_survivors,
    reap_orphans,
    snapshot,
    title,
    wait_until_gone,
)

GONE_WITHIN = 2.0

CHILD_MODULE = textwrap.dedent(
    """\
    import json
    import os
    import sys

    import occasional as occ


    def idle():
        occ.receive()


    def main(report_path):
        for _ in range(3):
            occ.spawn(idle)
        infos = [occ.process_info(p) for p in occ.processes()]
        pids = [info["os_pid"] for info in infos if info is not None]
        with open(report_path + ".tmp", "w") as f:
            json.dump(pids, f)
        os.rename(report_path + ".tmp", report_path)
        occ.receive()


    def start():
        try:
            result = {"returned": repr(occ.run(main, sys.argv[1]))}
        except BaseException as exc:
            result = {"raised": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)
    """
)


class ChildRuntime:
    """A runtime started by ``occ.run`` in a child interpreter, and every process it made."""

    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "crash_child.py").write_text(CHILD_MODULE)
        self.report = tmp_path / "pids.json"
        self.out = tmp_path / "stdout.txt"
        self.err = tmp_path / "stderr.txt"
        self.tree: Snapshot = []
        self.reported: list[int] = []
        self.titles: dict[int, str] = {}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.interpreter = subprocess.Popen(
                [sys.executable, "-c", "import crash_child; crash_child.start()", str(self.report)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
            )

    def wait_until_up(self, timeout: float = 30.0) -> None:
        """Wait for the child's main to report its processes, then note every process below the child."""
        # Nothing in that runtime can message this interpreter, so poll the
        # file main writes once its processes are up, with a deadline.
        deadline = time.monotonic() + timeout
        while not self.report.exists():
            self.tree = snapshot(descendants(self.interpreter.pid))
            if self.interpreter.poll() is not None or time.monotonic() >= deadline:
                raise AssertionError(
                    "the child runtime did not report its processes; its stderr:\n" + self.err.read_text()
                )
            time.sleep(0.01)
        self.reported = json.loads(self.report.read_text())
        self.tree = snapshot(set(descendants(self.interpreter.pid)) | set(self.reported))
        self.titles = {pid: title(pid) for pid, _, _ in self.tree}

    def only(self, wanted: str) -> int:
        """The one service process of the runtime (not one of its processes()) shown as ``wanted``.

        A process just forked by the forkserver may still show the forkserver's
        title for a moment, so the processes main reported are left out.
        """
        found = [pid for pid, shown in self.titles.items() if shown == wanted and pid not in self.reported]
        assert len(found) == 1, f"expected one process shown as {wanted!r}, got {self.titles}"
        return found[0]

    def result(self) -> dict[str, str]:
        """What occ.run in the child returned or raised."""
        return json.loads(self.out.read_text())

    def cleanup(self) -> None:
        kill_survivors(self.tree)
        if self.interpreter.poll() is None:
            self.interpreter.kill()
        self.interpreter.wait()
        wait_until_gone(self.tree, GONE_WITHIN)
        reap_orphans(self.tree)


@pytest.fixture
def child_runtime(tmp_path):
    runtime = ChildRuntime(tmp_path)
    try:
        runtime.wait_until_up()
        yield runtime
    finally:
        runtime.cleanup()


def test_sigkill_of_the_interpreter_that_started_the_runtime_leaves_no_process(child_runtime):
    assert len(child_runtime.reported) >= 4  # main and three idle processes
    os.kill(child_runtime.interpreter.pid, signal.SIGKILL)
    child_runtime.interpreter.wait(timeout=5)
    assert wait_until_gone(child_runtime.tree, GONE_WITHIN) == []


def test_sigkill_of_central_leaves_no_process(child_runtime):
    central = child_runtime.only("occasional: central")
    os.kill(central, signal.SIGKILL)
    assert wait_until_gone(child_runtime.tree, GONE_WITHIN) == []
    child_runtime.interpreter.wait(timeout=10)  # and run() in the child does not hang


def test_sigkill_of_the_forkserver_leaves_no_process(child_runtime):
    forkserver = child_runtime.only("occasional: forkserver")
    os.kill(forkserver, signal.SIGKILL)
    assert wait_until_gone(child_runtime.tree, GONE_WITHIN) == []
    child_runtime.interpreter.wait(timeout=10)  # and run() in the child does not hang


def test_sigkill_of_the_forkserver_ends_main_with_a_reason_that_says_so(child_runtime):
    forkserver = child_runtime.only("occasional: forkserver")
    os.kill(forkserver, signal.SIGKILL)
    child_runtime.interpreter.wait(timeout=10)
    result = child_runtime.result()
    assert result.get("raised") == "ProcessExit", result
    assert "forkserver" in result["message"]


# --- what ps shows ---------------------------------------------------------------------------


def crunch_numbers(parent: occ.Pid) -> None:
    """A module-level function, so its name and its qualified name are the same."""
    occ.send(parent, ("up", occ.slf()))
    occ.receive()


def titles_of_a_running_runtime() -> dict[str, object]:
    """Run a runtime with a named and an unnamed process; return what ps shows for its processes."""

    def main(interpreter):
        me = occ.slf()
        worker = occ.spawn(crunch_numbers, me, name="worker")
        unnamed = occ.spawn(crunch_numbers, me)
        for pid in (worker, unnamed):
            occ.receive(("up", pid), timeout=10)
        return {
            "all": sorted(title(pid) for pid in descendants(interpreter)),
            "worker": title(worker.os_pid),
            "unnamed": title(unnamed.os_pid),
        }

    return occ.run(main, os.getpid())


def test_central_shows_in_ps_as_occasional_central():
    assert "occasional: central" in titles_of_a_running_runtime()["all"]


def test_the_forkserver_shows_in_ps_as_occasional_forkserver():
    assert "occasional: forkserver" in titles_of_a_running_runtime()["all"]


def test_a_process_spawned_with_a_name_shows_in_ps_as_occasional_and_its_name():
    assert titles_of_a_running_runtime()["worker"] == "occasional: worker"


def test_a_process_spawned_without_a_name_shows_in_ps_as_occasional_and_its_function_name():
    assert titles_of_a_running_runtime()["unnamed"] == "occasional: crunch_numbers"
