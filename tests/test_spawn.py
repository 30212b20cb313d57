"""Processes: spawn, spawn_link, spawn_monitor, slf and Pid (API.md, section 2)."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import textwrap

import pytest

import occasional as occ


def idle() -> None:
    occ.receive()


def report_to(parent: occ.Pid, word: str) -> None:
    """A module-level function of this (importable) test module."""
    occ.send(parent, ("module-level", word, occ.slf()))


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, parent: occ.Pid, whom: str) -> None:
        occ.send(parent, f"{self.greeting}, {whom}")


# --- what can be spawned --------------------------------------------------------


def test_spawn_runs_a_lambda_in_a_new_process():
    def main():
        occ.spawn(lambda parent: occ.send(parent, ("lambda", os.getpid())), occ.slf())
        _, os_pid = occ.receive(("lambda", int), timeout=10)
        return os_pid != os.getpid()

    assert occ.run(main) is True


def test_spawn_passes_positional_arguments_to_the_function():
    def main():
        occ.spawn(lambda parent, a, b: occ.send(parent, (a, b)), occ.slf(), 1, ("two",))
        return occ.receive(timeout=10)

    assert occ.run(main) == (1, ("two",))


def test_spawn_runs_a_closure_with_the_values_it_captured():
    def main():
        greeting = "hello from a closure"
        numbers = [1, 2, 3]

        def reply(parent):
            occ.send(parent, (greeting, sum(numbers)))

        occ.spawn(reply, occ.slf())
        return occ.receive(timeout=10)

    assert occ.run(main) == ("hello from a closure", 6)


def test_spawn_runs_a_partial_with_keyword_arguments():
    def main():
        def reply(parent, *, word):
            occ.send(parent, ("partial", word))

        occ.spawn(functools.partial(reply, word="keyword"), occ.slf())
        return occ.receive(timeout=10)

    assert occ.run(main) == ("partial", "keyword")


def test_spawn_runs_a_bound_method_with_its_instance():
    def main():
        occ.spawn(Greeter("good morning").greet, occ.slf(), "world")
        return occ.receive(timeout=10)

    assert occ.run(main) == "good morning, world"


def test_spawn_runs_a_module_level_function_of_this_test_module():
    def main():
        pid = occ.spawn(report_to, occ.slf(), "here")
        return occ.receive(timeout=10) == ("module-level", "here", pid)

    assert occ.run(main) is True


def test_spawn_runs_a_module_level_function_of_a_module_on_sys_path(tmp_path):
    module_name = "occ_spawn_target_module"
    (tmp_path / f"{module_name}.py").write_text(
        textwrap.dedent(
            """\
            import occasional as occ


            def report_home(parent):
                occ.send(parent, ("hello from", __name__))
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
        with occ.runtime():
            occ.spawn(module.report_home, occ.slf())
            answer = occ.receive(("hello from", occ.ANY), timeout=10)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module_name, None)
    assert answer == ("hello from", module_name)


def test_a_closure_using_the_occasional_module_gets_the_real_module_by_reference():
    def main():
        runtime_module = occ

        def report(parent):
            runtime_module.send(parent, (runtime_module.__name__, runtime_module is sys.modules["occasional"]))

        occ.spawn(report, occ.slf())
        return occ.receive(timeout=10)

    assert occ.run(main) == ("occasional", True)


def test_each_spawn_is_a_new_linux_process():
    def main():
        me = occ.slf()
        pids = [occ.spawn(lambda parent: occ.send(parent, os.getpid()), me) for _ in range(3)]
        os_pids = {occ.receive(int, timeout=10) for _ in pids}
        return len(os_pids | {os.getpid()}), os_pids == {p.os_pid for p in pids}

    assert occ.run(main) == (4, True)


# --- spawn_link, spawn_monitor, name= ---------------------------------------------


def test_spawn_link_links_the_new_process_before_it_can_end():
    def main():
        occ.trap_exits(True)
        pid = occ.spawn_link(lambda: 1 / 0)
        _, sender, (kind, exc) = occ.receive(("EXIT", occ.ANY, occ.ANY), timeout=10)
        return sender == pid, kind, type(exc)

    assert occ.run(main) == (True, "error", ZeroDivisionError)


def test_spawn_monitor_returns_a_pid_and_a_ref():
    def main():
        pid, ref = occ.spawn_monitor(idle)
        return isinstance(pid, occ.Pid), isinstance(ref, occ.Ref)

    assert occ.run(main) == (True, True)


def test_spawn_monitor_monitors_the_new_process_before_it_can_end():
    def main():
        pid, ref = occ.spawn_monitor(lambda: "finished")
        return occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)[3]

    assert occ.run(main) == ("ok", "finished")


def test_spawn_with_a_name_registers_the_process_before_spawn_returns():
    def main():
        pid = occ.spawn(idle, name="greeter")
        return occ.whereis("greeter") == pid

    assert occ.run(main) is True


def test_spawn_link_and_spawn_monitor_take_a_name_too():
    def main():
        linked = occ.spawn_link(idle, name="linked-one")
        monitored, _ = occ.spawn_monitor(idle, name="monitored-one")
        return occ.whereis("linked-one") == linked, occ.whereis("monitored-one") == monitored

    assert occ.run(main) == (True, True)


def test_spawn_with_a_taken_name_raises_name_taken_and_starts_nothing():
    def main():
        occ.register("taken")
        before = len(occ.processes())
        error = None
        try:
            occ.spawn(idle, name="taken")
        except occ.NameTaken as exc:
            error = (type(exc), str(exc))
        return error, len(occ.processes()) - before, occ.whereis("taken") == occ.slf()

    (kind, message), started, still_mine = occ.run(main)
    assert (kind, started, still_mine) == (occ.NameTaken, 0, True)
    assert "'taken'" in message


# --- slf and Pid ------------------------------------------------------------------


def test_slf_in_a_spawned_process_equals_the_pid_spawn_returned():
    def main():
        pid = occ.spawn(lambda parent: occ.send(parent, ("me", occ.slf())), occ.slf())
        _, reported = occ.receive(("me", occ.ANY), timeout=10)
        return reported == pid

    assert occ.run(main) is True


def test_os_pid_of_a_pid_is_the_linux_pid_of_its_process():
    def main():
        pid = occ.spawn(lambda parent: occ.send(parent, ("os pid", os.getpid())), occ.slf())
        _, os_pid = occ.receive(("os pid", int), timeout=10)
        return pid.os_pid == os_pid, occ.slf().os_pid == os.getpid()

    assert occ.run(main) == (True, True)


def test_a_pid_is_hashable_and_equal_after_a_round_trip_through_another_process():
    def main():
        pid = occ.spawn(idle)
        echo = occ.spawn(lambda: occ.send(*occ.receive()))
        occ.send(echo, (occ.slf(), ("pid", pid)))
        _, back = occ.receive(("pid", occ.ANY), timeout=10)
        return back == pid, hash(back) == hash(pid), {pid: "found"}.get(back), back in {pid}

    assert occ.run(main) == (True, True, "found", True)


def test_pids_are_ordered():
    def main():
        pids = [occ.spawn(idle) for _ in range(5)]
        ordered = sorted(pids)
        pairs_in_one_order = all((a < b) != (b < a) and (a <= b) != (a > b) for a in pids for b in pids if a != b)
        return sorted(reversed(ordered)) == ordered, set(ordered) == set(pids), pairs_in_one_order

    assert occ.run(main) == (True, True, True)


def test_a_pid_prints_as_occ_and_its_os_pid():
    def main():
        pid = occ.spawn(idle)
        return str(pid), repr(pid), f"{pid}", pid.os_pid

    as_str, as_repr, as_format, os_pid = occ.run(main)
    assert (as_str, as_repr, as_format) == (f"<occ {os_pid}>",) * 3


def test_pid_has_no_public_constructor():
    with pytest.raises(TypeError, match=r"^occasional\.Pid has no public constructor; "):
        occ.Pid(12)
