"""examples/await_job.py does what its docstring says: one job, one callback, across kill -9."""

import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "await_job.py")


@pytest.mark.timeout(90)
def test_a_job_awaited_by_webhook_finishes_once_after_kill_9_of_the_whole_runtime():
    done = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "started render-1: {'id': 'render-1', 'started': True}"
    assert [line for line in lines if line.startswith("job service: created")] == [
        "job service: created job-1 for 'render the report'"
    ]
    assert "kill -9 of the whole gateway runtime while render-1 waits" in lines
    # The callback, or the fallback poll if the callback came late on a slow machine: once, either way.
    assert [line for line in lines if line.startswith("render-1 finished")] in (
        ["render-1 finished: render the report: done (by callback)"],
        ["render-1 finished: render the report: done (by poll)"],
    )
