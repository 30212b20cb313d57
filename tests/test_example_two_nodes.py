"""examples/two_nodes.py does what the README says: node 2 finishes the job node 1 was killed in."""

import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "two_nodes.py")


@pytest.mark.timeout(120)
def test_two_nodes_finishes_on_node_2_the_job_node_1_was_killed_in_without_running_a_finished_step_again():
    done = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    steps = [line.split()[2:] for line in lines if line.startswith(("  node 1: step", "  node 2: step"))]
    assert steps == [
        ["step", "1", "runs", "on", "node", "1"],
        ["step", "2", "runs", "on", "node", "1"],
        ["step", "3", "runs", "on", "node", "1"],
        ["step", "3", "runs", "on", "node", "2"],
        ["step", "4", "runs", "on", "node", "2"],
        ["step", "5", "runs", "on", "node", "2"],
    ]
    assert lines[-2:] == ["  node 2: the job is done on node 2: 55", "  node 2: node 2 sees the job's result: ok 55"]
