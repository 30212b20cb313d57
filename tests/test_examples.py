"""The examples the README shows run and say what the README says they do."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], capture_output=True, text=True, timeout=60)


def test_hello_prints_both_greetings():
    done = _run("hello.py")
    assert (done.returncode, done.stdout) == (0, "hello foo\nhello bar\n")


@pytest.mark.timeout(90)
def test_the_supervision_tree_survives_kill_9_of_each_kind_of_process():
    done = _run("supervision_tree.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" ")[2] for line in lines if line.startswith("kill -9")] == ["kv", "square", "the", "flaky"]
    assert lines[-1] == "survived"
