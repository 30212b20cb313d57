"""A durable process as a Supervisor child (API.md sections 6 and 7, issue 6).

The child is the durable process, not one of its Linux processes: the
supervisor follows it across the incarnations the runtime starts, and only its
final end is an exit of the child (occasional/durable/supervised.py). Every
test runs real processes on a real journal and kills with real SIGKILLs.
Effects that must happen once are lines appended to a file (``effects``).
"""

from __future__ import annotations

import functools
import os
import signal
from typing import Any

import pytest

import occasional as occ
from occasional import durable
from occasional.testing import run

from conftest import children_of, effects, note, poll

pytestmark = pytest.mark.timeout(30)


def durable_child(id: str, f: Any, *args: Any, restart: str = "permanent") -> dict[str, Any]:
    return {"id": id, "function": functools.partial(durable.spawn, id, f, *args), "restart": restart}


# --- durable processes used by the tests ------------------------------------------------


def step_then_wait(main: occ.Pid, path: str) -> str:
    """One step with an effect, then wait for ("go",); announce itself after each receive."""
    durable.step(note, path, "step")
    occ.send(main, ("ready", occ.slf()))
    occ.receive(("go",))
    occ.send(main, ("live", occ.slf()))
    occ.receive(("go",))
    return "done"


def step_then_fail_once(main: occ.Pid, path: str, flag: str) -> str:
    """One step with an effect, then raise while ``flag`` exists (it removes it)."""
    durable.step(note, path, "step")
    if os.path.exists(flag):
        os.unlink(flag)
        raise RuntimeError("failed once")
    occ.send(main, ("recovered",))
    return "recovered"


def step_then_raise(path: str) -> None:
    durable.step(note, path, "step")
    raise RuntimeError("always")


def returns_at_once(value: Any) -> Any:
    return value


def wait_for_go() -> None:
    occ.receive(("go",))


# --- start, SIGKILL, shutdown -------------------------------------------------------------


def test_a_supervisor_starts_a_durable_child_linked_to_it_and_shows_its_durable_address(journal, tmp_path):
    def main():
        sup = occ.Supervisor.start([durable_child("job", step_then_wait, occ.slf(), str(tmp_path / "fx"))])
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        shown = children_of(sup)["job"]
        return shown == pid, shown.durable_id, sup in occ.process_info(pid)["links"]

    assert run(main, journal=journal) == (True, "job", True)


def test_a_sigkilled_durable_child_is_live_again_under_its_supervisor_without_redoing_its_step(journal, tmp_path):
    fx = tmp_path / "fx"

    def main():
        sup = occ.Supervisor.start([durable_child("job", step_then_wait, occ.slf(), str(fx))], intensity=0)
        _, first = occ.receive(("ready", occ.ANY), timeout=10)
        os.kill(first.os_pid, signal.SIGKILL)
        occ.send(first, ("go",))  # journaled: the next incarnation receives it
        _, live = occ.receive(("live", occ.ANY), timeout=10)
        shown = poll(lambda: children_of(sup)["job"], lambda p: p == live)
        followed = shown == live and sup in occ.process_info(live)["links"]
        occ.send(live, ("go",))
        return live.durable_id, live != first, followed, durable.result("job", timeout=10), sup in occ.processes()

    # intensity=0: had the supervisor counted the runtime's restart as its own, it would have given up.
    assert run(main, journal=journal) == ("job", True, True, ("ok", "done"), True)
    assert effects(fx) == [["step"]]


def test_a_supervisor_shutdown_ends_its_durable_child_for_good(journal, tmp_path):
    def main():
        inner = functools.partial(
            occ.Supervisor.start, [durable_child("job", step_then_wait, occ.slf(), str(tmp_path / "fx"))]
        )
        outer = occ.Supervisor.start([{"id": "inner", "function": inner}])
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        ref = occ.monitor(pid)
        occ.Supervisor.terminate_child(outer, "inner")
        down = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
        return down[3], durable.result("job", timeout=10), durable.whereis("job").os_pid

    assert run(main, journal=journal) == (("killed", "shutdown"), ("killed", "shutdown"), 0)


def test_terminating_a_sleeping_durable_child_ends_it_for_good(journal):
    def sleeper() -> None:
        durable.sleep(30)

    def main():
        sup = occ.Supervisor.start([durable_child("sleeper", sleeper)])
        poll(lambda: durable.whereis("sleeper").os_pid, lambda os_pid: os_pid == 0, timeout=10)
        occ.Supervisor.terminate_child(sup, "sleeper")
        return durable.result("sleeper", timeout=10), children_of(sup)

    assert run(main, journal=journal) == (("killed", "shutdown"), {"sleeper": None})


# --- restart types ------------------------------------------------------------------------


@pytest.mark.parametrize("restart", ["transient", "permanent"])
def test_a_raising_durable_child_is_resumed_by_its_restart_without_redoing_its_step(journal, tmp_path, restart):
    fx, flag = tmp_path / "fx", tmp_path / "fail"
    flag.touch()

    def main():
        occ.Supervisor.start(
            [durable_child("job", step_then_fail_once, occ.slf(), str(fx), str(flag), restart=restart)]
        )
        occ.receive(("recovered",), timeout=10)
        return durable.result("job", timeout=10)

    assert run(main, journal=journal) == ("ok", "recovered")
    assert effects(fx) == [["step"]]


def test_a_raising_temporary_durable_child_is_not_restarted(journal, tmp_path):
    fx = tmp_path / "fx"

    def main():
        sup = occ.Supervisor.start([durable_child("job", step_then_raise, str(fx), restart="temporary")])
        kind, exc = durable.result("job", timeout=10)
        return kind, str(exc), poll(lambda: children_of(sup), lambda c: c == {})

    assert run(main, journal=journal) == ("error", "always", {})
    assert effects(fx) == [["step"]]


def test_a_durable_child_that_raises_at_every_resume_makes_its_supervisor_give_up(journal, tmp_path):
    fx = tmp_path / "fx"

    def main():
        sup = occ.Supervisor.start([durable_child("job", step_then_raise, str(fx), restart="transient")], intensity=2)
        ref = occ.monitor(sup)
        _, _, _, reason = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
        return reason[0], type(reason[1]).__name__, reason[1].child

    assert run(main, journal=journal) == ("error", "TooManyRestarts", "job")
    assert effects(fx) == [["step"]]


def test_a_permanent_durable_child_that_returned_is_not_started_again(journal):
    def main():
        sup = occ.Supervisor.start([durable_child("job", returns_at_once, 42)], intensity=0)
        reason = durable.result("job", timeout=10)
        shown = poll(lambda: occ.Supervisor.which_children(sup), lambda c: c[0][1] is None)
        return reason, shown, sup in occ.processes()

    assert run(main, journal=journal) == (("ok", 42), [("job", None, "permanent")], True)


def test_a_supervisor_started_on_a_journal_where_its_durable_child_returned_starts_nothing(journal):
    def first():
        durable.spawn("job", returns_at_once, 7)
        return durable.result("job", timeout=10)

    def second():
        sup = occ.Supervisor.start([durable_child("job", returns_at_once, 8)])
        return children_of(sup), durable.result("job", timeout=10)

    assert run(first, journal=journal) == ("ok", 7)
    assert run(second, journal=journal) == ({"job": None}, ("ok", 7))


# --- occ.call from a durable process replays (its refs are the same in every incarnation) ---


class Counter(occ.Server):
    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, frm: Any, n: int) -> Any:
        return n + 1, n + 1


def call_then_wait(main: occ.Pid, server: occ.Pid) -> int:
    got = occ.call(server, "bump", timeout=10)
    occ.send(main, ("ready", occ.slf()))
    occ.receive(("go",))
    return got


def test_a_call_a_durable_process_made_replays_its_reply_and_is_not_sent_again(journal):
    def main():
        server = Counter.start()
        durable.spawn("caller", call_then_wait, occ.slf(), server)
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        os.kill(pid.os_pid, signal.SIGKILL)
        occ.send(pid, ("go",))
        return durable.result("caller", timeout=10), occ.call(server, "bump")

    # The server's count: 1 from the durable process, whose replay did not call again, then ours.
    assert run(main, journal=journal) == (("ok", 1), 2)


class Answering(occ.Server):
    """Answers "q" with what main sends it, counting the calls it got."""

    def init(self, main: occ.Pid) -> tuple[occ.Pid, int]:
        return main, 0

    def handle_call(self, request: Any, frm: Any, state: tuple[occ.Pid, int]) -> Any:
        main, n = state
        if request == "count":
            return n, state
        occ.send(main, ("asked", frm[0]))
        _, answer = occ.receive(("answer", occ.ANY))
        return answer, (main, n + 1)


def call_once(server: occ.Pid) -> Any:
    return occ.call(server, "q", timeout=10)


def test_the_reply_to_a_durable_caller_killed_during_its_call_reaches_its_next_incarnation(journal):
    def main():
        server = Answering.start(occ.slf())
        durable.spawn("caller", call_once, server)
        _, caller = occ.receive(("asked", occ.ANY), timeout=10)
        os.kill(caller.os_pid, signal.SIGKILL)
        occ.send(server, ("answer", 42))
        return durable.result("caller", timeout=10), occ.call(server, "count")

    assert run(main, journal=journal) == (("ok", 42), 1)


def test_a_durable_child_spec_without_a_string_id_raises_type_error_in_the_caller_naming_it():
    bad = {"id": "job", "function": functools.partial(durable.spawn, 7, returns_at_once)}
    with pytest.raises(
        TypeError,
        match=r"^child 'job': functools\.partial\(.*\) does not start a durable process; use functools\.partial\(durable\.spawn, id, f, \*args\)",
    ):
        occ.Supervisor.start([bad])


class Failing(occ.Server):
    def handle_call(self, request: Any, frm: Any, state: Any) -> Any:
        raise ValueError(f"cannot {request}")


def call_a_failing_server_then_wait(main: occ.Pid, server: occ.Pid) -> str:
    try:
        occ.call(server, "serve", timeout=10)
    except occ.ProcessExit as exc:
        got = f"{exc.reason[0]}: {exc.reason[1]}"
    occ.send(main, ("ready", occ.slf()))
    occ.receive(("go",))
    return got


def test_a_call_from_a_durable_process_to_a_server_that_ends_raises_process_exit_also_on_replay(journal):
    def main():
        durable.spawn("caller", call_a_failing_server_then_wait, occ.slf(), Failing.start())
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        os.kill(pid.os_pid, signal.SIGKILL)
        occ.send(pid, ("go",))
        return durable.result("caller", timeout=10)

    assert run(main, journal=journal) == ("ok", "error: cannot serve")
