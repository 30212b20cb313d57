"""A resumed durable process runs the code of the program that resumes it (issue 6)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, descendants, reap_orphans, snapshot, wait_until_gone

JOB_MODULE = textwrap.dedent(
    """\
    import sys

    import occasional as occ
    from occasional import durable

    VERSION = {version!r}


    def job():
        occ.receive("go")
        return VERSION


    def first(ready):
        durable.spawn("job", job)
        open(ready, "w").close()
        occ.receive("never sent")


    def second():
        occ.send(durable.whereis("job"), "go")
        return durable.result("job", timeout=20)


    def start():
        print(occ.run(globals()[sys.argv[1]], *sys.argv[3:], journal=sys.argv[2]), flush=True)
    """
)


def write_release(where: Path, version: str) -> Path:
    where.mkdir()
    (where / "jobs.py").write_text(JOB_MODULE.format(version=version))
    return where


def run_jobs(where: Path, *args: str) -> subprocess.Popen[str]:
    # The release is found through PYTHONPATH, from a directory of its own,
    # as an installed program is: its path is in the journal's spawn record.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(ROOT)])}
    # Imported, not run as __main__: functions of __main__ travel by value,
    # those of a module by reference, resolved on the path of the process.
    return subprocess.Popen(
        [sys.executable, "-c", "import jobs; jobs.start()", *args],
        cwd=where.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.timeout(60)
def test_a_journal_resumes_under_the_code_of_the_program_now_running_even_from_another_directory(journal, tmp_path):
    ready = tmp_path / "ready"
    old = write_release(tmp_path / "release-1", "one")
    child = run_jobs(old, "first", journal, str(ready))
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert ready.exists(), child.stderr.read() if child.stderr else ""
        tree = snapshot([child.pid, *descendants(child.pid)])
        for pid, _, _ in tree:
            os.kill(pid, signal.SIGKILL)
        child.communicate()
        assert wait_until_gone(tree) == []
        reap_orphans(tree)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    shutil.rmtree(old)  # the release it was spawned from is gone, as after an upgrade
    new = write_release(tmp_path / "release-2", "two")
    resumed = run_jobs(new, "second", journal)
    out, err = resumed.communicate(timeout=40)
    assert resumed.returncode == 0, err
    assert out.strip() == "('ok', 'two')"
