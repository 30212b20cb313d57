"""examples/two_nodes_chat.py does what the README says: two nodes chat, and
the survivor of a kill -9 gets a noconnection DOWN (API.md section 11)."""

import os
import subprocess
import sys

import pytest

from occasional.dist.config import sweep

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "two_nodes_chat.py")


@pytest.mark.timeout(60)
def test_two_nodes_chat_and_the_survivor_of_a_kill_9_gets_a_noconnection_down():
    done = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=50)
    sweep()  # the directory of the node the example killed, which cannot remove its own
    assert done.returncode == 0, done.stderr
    lines = [line.split(": ", 1)[1] for line in done.stdout.splitlines()]
    assert lines[0] == "up"
    assert lines[1].endswith("acknowledged 'hello alice'")
    assert lines[2:] == [
        "alice answered all three; kill -9 of alice's whole runtime",
        "DOWN of alice's chat process: ('noconnection', 'alice@127.0.0.1')",
        "connected to alice: False",
    ]
