"""examples/echo_server.py does what the README says: kill -9 of one handler drops only its client."""

import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "echo_server.py")


@pytest.mark.timeout(60)
def test_kill_9_of_one_handler_drops_only_its_client():
    done = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[:2] == ["alice got b'echo: hello from alice'", "bob got b'echo: hello from bob'"]
    assert lines[2].startswith("kill -9 of alice's handler <occ ")
    assert lines[3:] == ["alice: the server closed her connection", "bob got b'echo: still there?'"]
