"""Durable processes: the choices occasional made where API.md section 7 is silent (CHANGELOG.md)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from typing import Any

import pytest

import occasional as occ
from occasional import durable
from occasional.testing import run

from conftest import naming


def wait_for_go() -> str:
    return occ.receive(("go",))[0]


def sleep_long(main: occ.Pid, seconds: float) -> float:
    occ.send(main, ("sleeping", occ.slf()))
    durable.sleep(seconds)
    return time.time()


def test_a_long_durable_sleep_leaves_no_process_alive_until_its_deadline(journal):
    def main():
        durable.spawn("sleeper", sleep_long, occ.slf(), 2.5)
        _, pid = occ.receive(("sleeping", occ.ANY), timeout=10)
        started = time.time()
        deadline = time.monotonic() + 5
        while durable.whereis("sleeper").os_pid != 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # nothing tells when the sleeper's Linux process has ended
        asleep = durable.whereis("sleeper").os_pid == 0 and pid not in occ.processes()
        _, woke = durable.result("sleeper", timeout=10)
        return asleep, woke - started

    asleep, slept = run(main, journal=journal)
    assert asleep is True
    assert 2.3 <= slept < 3.0


def test_kill_of_a_durable_process_ends_it_for_good_with_the_kill_reason(journal):
    def main():
        pid = durable.spawn("victim", wait_for_go)
        occ.kill(pid, "enough")
        return durable.result("victim", timeout=10)

    assert run(main, journal=journal) == ("killed", "enough")


def test_slf_in_a_durable_process_is_its_durable_address(journal):
    def me() -> Any:
        return occ.slf().durable_id

    def main():
        durable.spawn("me", me)
        return durable.result("me", timeout=10)

    assert run(main, journal=journal) == ("ok", "me")


def echo_once() -> Any:
    frm, msg = occ.receive()
    occ.send(frm, ("echo", msg))
    return msg


def test_a_durable_address_that_travelled_in_a_message_still_reaches_the_journal(journal):
    def forward(to: Any) -> None:
        occ.send(to, (occ.slf(), "via a message"))

    def main():
        pid = durable.spawn("echo", echo_once)
        occ.spawn(forward, pid)
        return durable.result("echo", timeout=10)

    assert run(main, journal=journal) == ("ok", "via a message")


def test_whereis_of_an_id_the_journal_does_not_have_is_none(journal):
    assert run(lambda: durable.whereis("nobody"), journal=journal) is None


def test_result_of_an_id_the_journal_does_not_have_raises_no_process(journal):
    def main():
        try:
            durable.result("nobody", timeout=1)
        except occ.NoProcess as exc:
            return exc.name

    assert run(main, journal=journal) == "nobody"


def test_durable_spawn_in_a_runtime_without_a_journal_raises_runtime_error_saying_so():
    def main():
        try:
            durable.spawn("job", wait_for_go)
        except RuntimeError as exc:
            return str(exc)

    assert re.match(
        r"^durable processes need a journal; start the runtime with occ.run\(main, journal=PATH\)", run(main)
    )


def test_journal_sync_without_a_journal_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=naming("process")):
        occ.run(wait_for_go, journal_sync="process")


def crash_right_away() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_crash_loop_reason_says_where_and_how_often_it_crashed(journal):
    def main():
        durable.spawn("doomed", crash_right_away)
        return durable.result("doomed", timeout=20)

    kind, detail = run(main, journal=journal)
    assert (kind, detail["position"], detail["crashes"], detail["last"]) == ("crashloop", 0, 5, "signal SIGKILL")


def test_replay_of_a_long_journal_reaches_the_live_part_quickly(journal):
    """SIGKILL -> live again, with 1,000 events to replay (issue 6: <= 50 ms on the bench machine)."""

    def many(main: occ.Pid) -> int:
        for _ in range(1000):
            durable.now()
        occ.send(main, ("ready", occ.slf()))
        occ.receive(("go",))
        occ.send(main, ("live", time.monotonic()))
        return 1000

    def main():
        durable.spawn("long", many, occ.slf())
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        killed = time.monotonic()
        os.kill(pid.os_pid, signal.SIGKILL)
        occ.send(pid, ("go",))
        _, live = occ.receive(("live", float), timeout=10)
        return durable.result("long", timeout=10), live - killed

    reason, took = run(main, journal=journal)
    assert reason == ("ok", 1000)
    assert took < 0.5  # generous: a loaded CI machine; bench/durable_restart.py measures it


@pytest.mark.timeout(90)
def test_the_durable_job_example_survives_kill_9_of_the_whole_program_and_creates_one_job():
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "durable_job.py")], capture_output=True, text=True, timeout=80
    )
    reap_what_the_killed_run_left_to_us()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-2:] == ["  ('ok', 'result of render the report')", "jobs created on the service: 1"]
    assert [line for line in lines if "creating the job" in line] == [
        "  creating the job (attempt 1, key await-job:1)",
        "  creating the job (attempt 2, key await-job:1)",
    ]


def reap_what_the_killed_run_left_to_us() -> None:
    """The example SIGKILLs its first run; the rest of that runtime dies of its
    death signals and, pytest being a child subreaper (occasional.testing.plugin),
    ends as our zombies, which init would reap at once. Nothing tells when they
    are all gone, so poll /proc with a deadline."""
    from conftest import _stat, children, title

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ours = [(pid, _stat(pid)) for pid in children(os.getpid())]
        zombies = [pid for pid, stat in ours if stat is not None and stat[0] == "Z"]
        dying = [
            pid for pid, stat in ours if stat is not None and stat[0] != "Z" and title(pid).startswith("occasional")
        ]
        for pid in zombies:
            with contextlib.suppress(ChildProcessError):  # the plugin's reaper may be first
                os.waitpid(pid, os.WNOHANG)
        if not zombies and not dying:
            return
        time.sleep(0.01)
