"""Pipelines with no shell: one port, stages connected stdout to stdin, each stage's status
(API.md section 13, issue 14)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Any

import pytest

import occasional as occ
from occasional import ports

pytestmark = pytest.mark.timeout(30)


def until_exit(port: occ.Port) -> list[Any]:
    got = []
    while not got or got[-1][0] != "exit_status":
        got.append(occ.receive((port, occ.ANY), timeout=10)[1])
    return got


def test_what_is_sent_goes_through_every_stage_in_order():
    def main() -> list[Any]:
        port = ports.pipeline([["cat"], ["tr", "a-z", "A-Z"], ["cat"]])
        occ.send(port, b"hello")
        occ.send(port, b"world")
        ports.close(port)
        return until_exit(port)

    assert occ.run(main) == [
        ("data", b"HELLO"),
        ("data", b"WORLD"),
        ("statuses", [0, 0, 0]),
        ("exit_status", 0),
    ]


def test_a_failing_middle_stage_shows_in_the_statuses_and_the_exit_status_is_the_last_stages():
    def main() -> tuple[list[int], list[Any]]:
        port = ports.pipeline([["printf", "x\\n"], ["sh", "-c", "cat; exit 3"], ["cat"]])
        return ports.statuses(port, timeout=10), until_exit(port)

    statuses, got = occ.run(main)
    assert statuses == [0, 3, 0]
    assert got[0] == ("data", b"x") and got[-1] == ("exit_status", 0)


def test_arguments_with_semicolons_and_command_substitutions_are_passed_literally():
    def main() -> list[Any]:
        return until_exit(ports.pipeline([["printf", "%s\\n", "a; b $(echo x) `id`"], ["cat"]]))

    assert occ.run(main)[0] == ("data", b"a; b $(echo x) `id`")


def test_a_stage_writing_after_the_last_ended_ends_with_sigpipe_as_in_a_shell():
    def main() -> list[int]:
        return ports.statuses(ports.pipeline([["yes"], ["head", "-n", "1"]]), timeout=10)

    assert occ.run(main) == [-signal.SIGPIPE, 0]


def _running(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def test_every_stage_dies_with_the_owner():
    marker = "31.4159"

    def owner(to: occ.Pid) -> None:
        ports.pipeline([["sleep", marker], ["sleep", marker], ["sleep", marker]])
        occ.send(to, ("ready", os.getpid()))
        occ.receive("never sent")

    def main() -> tuple[int, list[str]]:
        occ.spawn(owner, occ.slf())
        _, os_pid = occ.receive(("ready", occ.ANY), timeout=10)
        started = len(_running(marker))
        os.kill(os_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _running(marker) and time.monotonic() < deadline:
            time.sleep(0.02)  # nothing tells us when the stages are gone: ask again
        return started, _running(marker)

    assert occ.run(main) == (3, [])


@pytest.mark.parametrize(
    ("stages", "error", "says"),
    [
        ([], TypeError, r"^pipeline\(\[\]\): pass a list of argv lists"),
        ("ls | wc", TypeError, r"^pipeline\('ls \| wc'\): pass a list of argv lists"),
        ([["ls"], ["no-such-executable-here"]], FileNotFoundError, r".*no-such-executable-here"),
    ],
    ids=["empty", "a-shell-string", "missing-executable"],
)
def test_a_bad_pipeline_is_refused_in_the_caller_naming_it(stages, error, says):
    def main() -> None:
        ports.pipeline(stages)

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    assert isinstance(info.value.reason[1], error)
    assert re.match(says, str(info.value.reason[1])), str(info.value.reason[1])
