"""Exit reasons, monitors, links and trap_exits (API.md, section 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import occasional as occ

from conftest import drain_mailbox, snapshot, wait_until_gone, wait_until_in_mailbox


def idle() -> None:
    occ.receive()


def ready_then_idle(parent: occ.Pid) -> None:
    occ.send(parent, ("ready", occ.slf()))
    occ.receive()


def start_idle() -> tuple[occ.Pid, occ.Ref]:
    """spawn_monitor a process and wait until it runs; return its pid and ref."""
    pid, ref = occ.spawn_monitor(ready_then_idle, occ.slf())
    occ.receive(("ready", pid), timeout=10)
    return pid, ref


def down_of(pid: occ.Pid, ref: occ.Ref) -> Any:
    """The reason of the DOWN for ``ref``."""
    _, _, _, reason = occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
    return reason


def reason_of(f: Callable[..., Any], *args: Any) -> Any:
    """Spawn ``f(*args)`` under a monitor and return the reason its DOWN carries."""
    return down_of(*occ.spawn_monitor(f, *args))


def is_down_for(ref: occ.Ref) -> Callable[[Any], bool]:
    return lambda msg: isinstance(msg, tuple) and len(msg) == 4 and msg[:2] == ("DOWN", ref)


# --- the reasons, as a monitor sees them ------------------------------------------------


def test_a_returned_value_is_reason_ok_with_the_value():
    assert occ.run(reason_of, lambda: {"value": (1, 2)}) == ("ok", {"value": (1, 2)})


@pytest.mark.parametrize(
    "ending",
    [lambda: None, lambda: sys.exit(), lambda: sys.exit(0), lambda: sys.exit(None)],
    ids=["return None", "sys.exit()", "sys.exit(0)", "sys.exit(None)"],
)
def test_returning_nothing_or_a_clean_sys_exit_is_reason_ok_none(ending):
    assert occ.run(reason_of, ending) == ("ok", None)


def test_an_uncaught_exception_is_reason_error_with_the_exception():
    def blow_up():
        raise ValueError("boom", 7)

    def main():
        kind, exc = reason_of(blow_up)
        return kind, type(exc), exc.args

    assert occ.run(main) == ("error", ValueError, ("boom", 7))


def test_format_reason_shows_the_original_traceback_of_an_error():
    def blow_up_with_a_value_error():
        raise ValueError("boom")

    def main():
        return occ.format_reason(reason_of(blow_up_with_a_value_error))

    text = occ.run(main)
    assert "Traceback" in text
    assert "blow_up_with_a_value_error" in text
    assert "ValueError: boom" in text


def test_the_traceback_text_stays_with_an_error_reason_passed_on_to_another_process():
    def blow_up_with_a_key_error():
        raise KeyError("gone")

    def main():
        return reason_of(blow_up_with_a_key_error)

    text = occ.format_reason(occ.run(main))
    assert "blow_up_with_a_key_error" in text
    assert "KeyError: 'gone'" in text


@pytest.mark.parametrize("ending", [lambda: sys.exit(3), lambda: os._exit(3)], ids=["sys.exit(3)", "os._exit(3)"])
def test_an_exit_status_without_a_value_is_reason_exitcode(ending):
    assert occ.run(reason_of, ending) == ("exitcode", 3)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_sent_from_outside_the_runtime_is_reason_signal_with_its_name(signum):
    def main():
        pid, ref = start_idle()
        os.kill(pid.os_pid, signum)
        return down_of(pid, ref)

    assert occ.run(main) == ("signal", signum.name)


def test_kill_is_reason_killed_with_why():
    def main():
        pid, ref = start_idle()
        occ.kill(pid, "enough")
        return down_of(pid, ref)

    assert occ.run(main) == ("killed", "enough")


def test_kill_without_why_is_reason_killed_killed():
    def main():
        pid, ref = start_idle()
        occ.kill(pid)
        return down_of(pid, ref)

    assert occ.run(main) == ("killed", "killed")


def test_kill_ends_a_process_that_traps_exits():
    def trapper(parent):
        occ.trap_exits(True)
        ready_then_idle(parent)

    def main():
        pid, ref = occ.spawn_monitor(trapper, occ.slf())
        occ.receive(("ready", pid), timeout=10)
        occ.kill(pid, "no matter what")
        return down_of(pid, ref)

    assert occ.run(main) == ("killed", "no matter what")


def test_kill_ends_every_os_process_the_process_started():
    def parent_of_a_sleeper(parent):
        sleeper = subprocess.Popen(["sleep", "60"])
        occ.send(parent, ("sleeper", occ.slf(), sleeper.pid))
        occ.receive()

    def main():
        pid, ref = occ.spawn_monitor(parent_of_a_sleeper, occ.slf())
        _, _, sleeper = occ.receive(("sleeper", pid, int), timeout=10)
        taken = snapshot([sleeper])
        occ.kill(pid)
        down_of(pid, ref)
        return len(taken), wait_until_gone(taken, timeout=2.0)

    assert occ.run(main) == (1, [])


def test_the_end_of_a_linked_partner_is_reason_linked_with_its_pid_and_reason():
    def linker(parent):
        partner = occ.spawn_link(idle)
        occ.send(parent, ("partner", partner))
        occ.receive()

    def main():
        pid, ref = occ.spawn_monitor(linker, occ.slf())
        _, partner = occ.receive(("partner", occ.ANY), timeout=10)
        occ.kill(partner, "stop")
        return down_of(pid, ref), partner

    reason, partner = occ.run(main)
    assert reason == ("linked", (partner, ("killed", "stop")))


def test_a_linked_partner_that_raises_takes_its_partner_down_with_the_error():
    def fail_on_go():
        occ.receive("go")
        raise ValueError("partner failed")

    def linker(parent):
        partner = occ.spawn_link(fail_on_go)
        occ.send(parent, ("partner", partner))
        occ.send(partner, "go")
        occ.receive()

    def main():
        pid, ref = occ.spawn_monitor(linker, occ.slf())
        _, partner = occ.receive(("partner", occ.ANY), timeout=10)
        kind, (who, (partner_kind, exc)) = down_of(pid, ref)
        return kind, who == partner, partner_kind, type(exc), exc.args

    assert occ.run(main) == ("linked", True, "error", ValueError, ("partner failed",))


def test_monitoring_a_dead_pid_delivers_down_noproc_at_once():
    def main():
        pid, ref = occ.spawn_monitor(lambda: None)
        down_of(pid, ref)
        again = occ.monitor(pid)
        return occ.receive(is_down_for(again), timeout=2), again, pid

    down, ref, pid = occ.run(main)
    assert down == ("DOWN", ref, pid, ("noproc", None))


# --- monitor and demonitor ----------------------------------------------------------------


def test_a_monitor_delivers_exactly_one_down():
    def main():
        pid, ref = start_idle()
        occ.kill(pid)
        first = down_of(pid, ref)
        try:
            second = occ.receive(is_down_for(ref), timeout=0.3)
        except TimeoutError:
            second = None
        return first, second

    assert occ.run(main) == (("killed", "killed"), None)


def test_each_monitor_of_a_process_gets_its_own_down():
    def main():
        pid, first = start_idle()
        second = occ.monitor(pid)
        occ.kill(pid, "bye")
        return first != second, down_of(pid, first), down_of(pid, second)

    assert occ.run(main) == (True, ("killed", "bye"), ("killed", "bye"))


def test_monitor_returns_a_ref():
    def main():
        pid, _ = start_idle()
        return isinstance(occ.monitor(pid), occ.Ref)

    assert occ.run(main) is True


def test_no_down_is_delivered_after_demonitor():
    def main():
        pid, ref = start_idle()
        witness = occ.monitor(pid)
        occ.demonitor(ref)
        occ.kill(pid)
        down_of(pid, witness)
        try:
            return occ.receive(is_down_for(ref), timeout=0.3)
        except TimeoutError:
            return "no DOWN"

    assert occ.run(main) == "no DOWN"


def test_demonitor_with_flush_removes_a_down_already_in_the_mailbox():
    def main():
        occ.send(occ.slf(), "keep me")
        pid, ref = occ.spawn_monitor(lambda: None)
        wait_until_in_mailbox(is_down_for(ref))
        occ.demonitor(ref, flush=True)
        return drain_mailbox()

    assert occ.run(main) == ["keep me"]


# --- links and trap_exits -------------------------------------------------------------------


def test_a_link_made_by_one_side_takes_down_the_other_side_too():
    def link_to(parent, other):
        occ.link(other)
        occ.send(parent, ("linked", occ.slf()))
        occ.receive()

    def main():
        other, ref = start_idle()
        linker = occ.spawn(link_to, occ.slf(), other)
        occ.receive(("linked", linker), timeout=10)
        occ.kill(linker, "stop")
        return down_of(other, ref), linker

    reason, linker = occ.run(main)
    assert reason == ("linked", (linker, ("killed", "stop")))


def ping_and_check_alive(pid, ref):
    """Ping a process that answers ("still here", msg); then see it is still alive."""
    occ.send(pid, "ping")
    answer = occ.receive(("still here", occ.ANY), timeout=10)
    try:
        return answer, occ.receive(is_down_for(ref), timeout=0.3)
    except TimeoutError:
        return answer, "alive"


def test_an_unlinked_process_survives_its_former_partner():
    def link_then_unlink(parent, other):
        occ.link(other)
        occ.unlink(other)
        occ.send(parent, ("unlinked", occ.slf()))
        occ.send(parent, ("still here", occ.receive()))
        occ.receive()

    def main():
        other, other_ref = start_idle()
        pid, ref = occ.spawn_monitor(link_then_unlink, occ.slf(), other)
        occ.receive(("unlinked", pid), timeout=10)
        occ.kill(other, "stop")
        down_of(other, other_ref)
        return ping_and_check_alive(pid, ref)

    assert occ.run(main) == (("still here", "ping"), "alive")


def test_a_normal_end_kills_no_linked_partner():
    def parent_of_a_short_life(parent):
        partner = occ.spawn_link(lambda: "done")
        ref = occ.monitor(partner)
        occ.receive(is_down_for(ref), timeout=10)
        occ.send(parent, ("partner ended", occ.slf()))
        occ.send(parent, ("still here", occ.receive()))
        occ.receive()

    def main():
        pid, ref = occ.spawn_monitor(parent_of_a_short_life, occ.slf())
        occ.receive(("partner ended", pid), timeout=10)
        return ping_and_check_alive(pid, ref)

    assert occ.run(main) == (("still here", "ping"), "alive")


def test_trap_exits_returns_the_previous_flag():
    def main():
        return [
            occ.trap_exits(True),
            occ.trap_exits(True),
            occ.trap_exits(False),
            occ.trap_exits(False),
            occ.trap_exits(),
            occ.trap_exits(False),
        ]

    assert occ.run(main) == [False, True, True, False, False, True]


def test_a_process_trapping_exits_gets_exit_messages_and_survives_its_partner():
    def main():
        occ.trap_exits(True)
        partner = occ.spawn_link(idle)
        occ.kill(partner, "stop")
        return occ.receive(("EXIT", partner, occ.ANY), timeout=10), partner

    message, partner = occ.run(main)
    assert message == ("EXIT", partner, ("killed", "stop"))


def test_a_process_trapping_exits_gets_an_exit_message_for_a_normal_end_too():
    def main():
        occ.trap_exits(True)
        partner = occ.spawn_link(lambda: "done")
        return occ.receive(("EXIT", partner, occ.ANY), timeout=10), partner

    message, partner = occ.run(main)
    assert message == ("EXIT", partner, ("ok", "done"))


def test_linking_to_a_dead_pid_while_trapping_exits_gets_exit_noproc():
    def main():
        occ.trap_exits(True)
        pid, ref = occ.spawn_monitor(lambda: None)
        down_of(pid, ref)
        occ.link(pid)
        return occ.receive(("EXIT", pid, occ.ANY), timeout=2), pid

    message, pid = occ.run(main)
    assert message == ("EXIT", pid, ("noproc", None))


# --- ordering: DOWN and EXIT come after the messages -------------------------------------


def send_then_end(parent: occ.Pid, count: int, ending: str) -> str:
    for i in range(count):
        occ.send(parent, ("n", i))
    if ending == "raises":
        raise ValueError("ended after sending")
    if ending == "exits":
        sys.exit(3)
    return "sent them all"


ENDING_REASONS = {
    "returns": ("ok", "sent them all"),
    "raises": ("error", ValueError),
    "exits": ("exitcode", 3),
}


def summary(reason: Any) -> Any:
    """An error reason with the exception's type in place of the exception, to compare with ==."""
    kind, detail = reason
    return (kind, type(detail)) if kind == "error" else reason


@pytest.mark.parametrize("ending", sorted(ENDING_REASONS))
def test_a_down_arrives_after_every_message_the_process_sent_before_it_ended(ending):
    def main():
        pid, ref = occ.spawn_monitor(send_then_end, occ.slf(), 1000, ending)
        reason = down_of(pid, ref)  # a template match: skips the 1000 messages
        return summary(reason), drain_mailbox()

    assert occ.run(main) == (ENDING_REASONS[ending], [("n", i) for i in range(1000)])


@pytest.mark.parametrize("ending", ["raises", "exits"])
def test_an_exit_message_arrives_after_every_message_the_partner_sent_before_it_ended(ending):
    def main():
        occ.trap_exits(True)
        pid = occ.spawn_link(send_then_end, occ.slf(), 1000, ending)
        _, _, reason = occ.receive(("EXIT", pid, occ.ANY), timeout=10)
        return summary(reason), drain_mailbox()

    assert occ.run(main) == (ENDING_REASONS[ending], [("n", i) for i in range(1000)])


def test_an_error_whose_exception_the_watcher_cannot_import_arrives_as_a_stand_in(tmp_path):
    (tmp_path / "only_here.py").write_text("class Private(Exception):\n    pass\n")

    def raise_private(path):
        sys.path.insert(0, path)
        import only_here

        raise only_here.Private("from a module only this process has")

    def main(path):
        _pid, ref = occ.spawn_monitor(raise_private, path)
        (_, _, _, (kind, detail)) = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
        return kind, type(detail).__name__, str(detail)

    kind, name, text = occ.run(main, str(tmp_path))
    assert (kind, name) == ("error", "RuntimeError")
    assert text.startswith("the detail of a 'error' reason (")
    assert "could not be decoded here: No module named 'only_here'" in text
