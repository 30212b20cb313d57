"""Registered names and introspection (API.md, section 5)."""

from __future__ import annotations

import os
import re

import pytest

import occasional as occ

from conftest import naming


def idle() -> None:
    occ.receive()


def echo_forever() -> None:
    while True:
        sender, payload = occ.receive()
        occ.send(sender, ("echo", payload))


def a_process_to_inspect(parent: occ.Pid) -> None:
    occ.send(parent, ("ready", occ.slf()))
    occ.receive()


# --- register, unregister, whereis, registered ------------------------------------------


def test_register_without_a_pid_registers_the_calling_process():
    def main():
        occ.register("me")
        return occ.whereis("me") == occ.slf()

    assert occ.run(main) is True


def test_register_with_a_pid_registers_that_process():
    def main():
        pid = occ.spawn(idle)
        occ.register("worker", pid)
        return occ.whereis("worker") == pid

    assert occ.run(main) is True


def test_whereis_of_an_unregistered_name_is_none():
    assert occ.run(lambda: occ.whereis("nobody-by-this-name")) is None


def test_registered_lists_the_registered_names():
    def main():
        occ.register("alpha")
        occ.register("beta", occ.spawn(idle))
        return sorted(name for name in occ.registered() if name in ("alpha", "beta", "gamma"))

    assert occ.run(main) == ["alpha", "beta"]


def test_registered_returns_a_list_of_strings():
    def main():
        occ.register("alpha")
        names = occ.registered()
        return type(names), all(type(name) is str for name in names)

    assert occ.run(main) == (list, True)


def test_unregister_frees_the_name():
    def main():
        occ.register("alpha")
        occ.unregister("alpha")
        return occ.whereis("alpha"), "alpha" in occ.registered()

    assert occ.run(main) == (None, False)


def test_an_unregistered_name_can_be_registered_again():
    def main():
        occ.register("alpha")
        occ.unregister("alpha")
        other = occ.spawn(idle)
        occ.register("alpha", other)
        return occ.whereis("alpha") == other

    assert occ.run(main) is True


def test_registering_a_name_held_by_a_live_process_raises_name_taken_naming_it():
    def main():
        holder = occ.spawn(idle, name="taken")
        try:
            occ.register("taken")
        except occ.NameTaken as exc:
            return type(exc), str(exc), occ.whereis("taken") == holder

    kind, message, still_the_holders = occ.run(main)
    assert (kind, still_the_holders) == (occ.NameTaken, True)
    assert "'taken'" in message


@pytest.mark.parametrize("how", ["spawn name=", "register"])
def test_a_name_is_freed_by_the_time_its_holders_down_arrives(how):
    def main():
        if how == "register":
            pid, ref = occ.spawn_monitor(idle)
            occ.register("ephemeral", pid)
        else:
            pid, ref = occ.spawn_monitor(idle, name="ephemeral")
        holder_then = occ.whereis("ephemeral") == pid
        occ.kill(pid)
        occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
        return holder_then, occ.whereis("ephemeral"), "ephemeral" in occ.registered()

    assert occ.run(main) == (True, None, False)


def test_a_name_freed_by_its_holders_end_can_be_taken_again():
    def main():
        pid, ref = occ.spawn_monitor(lambda: None, name="reusable")
        occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
        again = occ.spawn(idle, name="reusable")
        return occ.whereis("reusable") == again

    assert occ.run(main) is True


# --- send to a name ----------------------------------------------------------------------


def test_send_to_a_registered_name_delivers_to_its_process():
    def main():
        occ.spawn(echo_forever, name="echo")
        occ.send("echo", (occ.slf(), "hello by name"))
        return occ.receive(("echo", occ.ANY), timeout=10)

    assert occ.run(main) == ("echo", "hello by name")


def test_send_to_an_unregistered_name_raises_no_process_naming_it():
    def main():
        try:
            occ.send("nobody-home", "hello")
        except occ.NoProcess as exc:
            return type(exc), str(exc)

    kind, message = occ.run(main)
    assert kind == occ.NoProcess
    assert "'nobody-home'" in message


def test_send_to_a_name_whose_holder_ended_raises_no_process():
    def main():
        pid, ref = occ.spawn_monitor(lambda: None, name="short-lived")
        occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
        try:
            occ.send("short-lived", "hello")
        except occ.NoProcess:
            return "no process"

    assert occ.run(main) == "no process"


NON_STRING_NAMES = {
    "register": lambda name: occ.register(name),
    "unregister": lambda name: occ.unregister(name),
    "whereis": lambda name: occ.whereis(name),
    "spawn name=": lambda name: occ.spawn(idle, name=name),
}


@pytest.mark.parametrize("call", sorted(NON_STRING_NAMES))
@pytest.mark.parametrize("name", [4242, ("a", "tuple"), b"bytes-name"], ids=repr)
def test_a_name_that_is_not_a_string_raises_type_error_naming_it(call, name):
    def main():
        before = len(occ.processes())
        try:
            NON_STRING_NAMES[call](name)
        except TypeError as exc:
            return "type error", str(exc), len(occ.processes()) - before

    outcome, message, started = occ.run(main)
    assert (outcome, started) == ("type error", 0)
    assert re.match(naming(name), message)


# --- processes and process_info -----------------------------------------------------------


def test_processes_lists_the_live_processes_of_the_runtime():
    def main():
        me = occ.slf()
        a = occ.spawn(idle)
        b = occ.spawn(idle)
        gone, ref = occ.spawn_monitor(lambda: None)
        occ.receive(("DOWN", ref, gone, occ.ANY), timeout=10)
        live = occ.processes()
        return {me, a, b} <= set(live), gone in live, type(live)

    assert occ.run(main) == (True, False, list)


def test_process_info_has_the_keys_of_the_contract():
    def main():
        pid = occ.spawn(idle)
        return sorted(occ.process_info(pid))

    keys = occ.run(main)
    expected = {"os_pid", "name", "function", "links", "monitors", "started_at", "rss_bytes"}
    assert expected - set(keys) == set()


def test_process_info_reports_the_os_pid_and_the_registered_name():
    def main():
        pid = occ.spawn(a_process_to_inspect, occ.slf(), name="inspected")
        occ.receive(("ready", pid), timeout=10)
        info = occ.process_info(pid)
        return info["os_pid"] == pid.os_pid, info["name"]

    assert occ.run(main) == (True, "inspected")


def test_process_info_of_an_unnamed_process_has_name_none():
    def main():
        return occ.process_info(occ.spawn(idle))["name"]

    assert occ.run(main) is None


def test_process_info_names_the_function_the_process_runs():
    def main():
        pid = occ.spawn(a_process_to_inspect, occ.slf())
        occ.receive(("ready", pid), timeout=10)
        return str(occ.process_info(pid)["function"])

    assert "a_process_to_inspect" in occ.run(main)


def test_process_info_lists_the_links_of_a_process():
    def main():
        me = occ.slf()
        pid = occ.spawn_link(a_process_to_inspect, me)
        occ.receive(("ready", pid), timeout=10)
        return me in occ.process_info(pid)["links"], pid in occ.process_info(me)["links"]

    assert occ.run(main) == (True, True)


def test_process_info_reports_the_resident_memory_in_bytes():
    def main():
        pid = occ.spawn(a_process_to_inspect, occ.slf())
        occ.receive(("ready", pid), timeout=10)
        return occ.process_info(pid)["rss_bytes"]

    rss = occ.run(main)
    assert type(rss) is int
    assert rss > 1024 * 1024  # a Python interpreter holds more than 1 MiB


def test_process_info_of_the_calling_process_is_about_itself():
    def main():
        return occ.process_info(occ.slf())["os_pid"] == os.getpid()

    assert occ.run(main) is True


def test_process_info_of_a_dead_pid_is_none():
    def main():
        pid, ref = occ.spawn_monitor(lambda: None)
        occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
        return occ.process_info(pid)

    assert occ.run(main) is None


def test_a_name_registered_at_spawn_never_resolves_to_a_pid_without_its_linux_pid():
    def watcher(parent, rounds):
        seen = []
        for i in range(rounds):
            while (pid := occ.whereis(f"racer-{i}")) is None:
                pass
            seen.append(pid.os_pid)
            occ.send(pid, "go")
        occ.send(parent, seen)

    def main():
        rounds = 20
        occ.spawn(watcher, occ.slf(), rounds)
        spawned = [occ.spawn(occ.receive, name=f"racer-{i}").os_pid for i in range(rounds)]
        return spawned, occ.receive(timeout=20)

    spawned, seen = occ.run(main)
    assert seen == spawned
