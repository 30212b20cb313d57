"""Bad input raises in the caller, names the offending value, and leaves the runtime running (API.md, section 10).

The calling interpreter is made a process with ``occ.runtime()`` so that each
error is raised right here, in the test, where ``pytest.raises`` sees it.
Every test then shows that the runtime still spawns a process and gets its
answer.

Note: dill serializes locks, so the unserializable value used here is a
generator, which neither msgpack nor dill can carry.
"""

from __future__ import annotations

import re

import pytest

import occasional as occ

from conftest import ask_a_new_process, naming

NOT_A_FUNCTION = "not a function"
NOT_A_PID = 424242
NOT_AN_ADDRESS = 3.25


def idle() -> None:
    occ.receive()


def a_generator():
    return (n for n in range(3))


def naming_or_word(value: object, word: str) -> str:
    """A match for a message that shows ``repr(value)``, or at least says ``word``."""
    return r"(?s)^.*(" + re.escape(repr(value)) + r"|\b" + re.escape(word) + r"\b)"


SPAWNS = {
    "spawn": occ.spawn,
    "spawn_link": occ.spawn_link,
    "spawn_monitor": occ.spawn_monitor,
}


# --- spawn ----------------------------------------------------------------------------


@pytest.mark.parametrize("spawn", sorted(SPAWNS))
def test_spawning_a_non_callable_raises_type_error_naming_it(spawn):
    with occ.runtime():
        before = len(occ.processes())
        with pytest.raises(TypeError, match=naming(NOT_A_FUNCTION)):
            SPAWNS[spawn](NOT_A_FUNCTION)
        assert len(occ.processes()) == before
        assert ask_a_new_process() == "are you there?"


def test_spawning_an_unserializable_function_raises_and_starts_nothing():
    numbers = a_generator()

    def uses_a_generator():
        return next(numbers)

    with occ.runtime():
        before = len(occ.processes())
        with pytest.raises(TypeError, match=naming_or_word(uses_a_generator, "generator")):
            occ.spawn(uses_a_generator)
        assert len(occ.processes()) == before
        assert ask_a_new_process() == "are you there?"


def test_spawning_with_an_unserializable_argument_raises_and_starts_nothing():
    numbers = a_generator()
    with occ.runtime():
        before = len(occ.processes())
        with pytest.raises(TypeError, match=naming_or_word(numbers, "generator")):
            occ.spawn(print, "fine", numbers)
        assert len(occ.processes()) == before
        assert ask_a_new_process() == "are you there?"


@pytest.mark.parametrize("spawn", sorted(SPAWNS))
def test_an_unknown_keyword_option_of_spawn_raises_type_error_naming_it(spawn):
    with occ.runtime():
        before = len(occ.processes())
        with pytest.raises(TypeError, match=r"(?s)^.*\bcolour_of_the_sky\b"):
            SPAWNS[spawn](idle, colour_of_the_sky="blue")
        assert len(occ.processes()) == before
        assert ask_a_new_process() == "are you there?"


def test_an_unknown_keyword_option_of_run_raises_type_error_naming_it_and_run_still_works():
    with pytest.raises(TypeError, match=r"(?s)^.*\bcolour_of_the_sky\b"):
        occ.run(ask_a_new_process, colour_of_the_sky="blue")
    assert occ.run(ask_a_new_process) == "are you there?"


# --- messages ----------------------------------------------------------------------------


def first_message_to(parent: occ.Pid) -> None:
    occ.send(parent, ("first", occ.receive()))


def test_sending_an_unserializable_message_raises_and_sends_nothing():
    numbers = a_generator()
    with occ.runtime():
        receiver = occ.spawn(first_message_to, occ.slf())
        with pytest.raises(TypeError, match=naming_or_word(numbers, "generator")):
            occ.send(receiver, ("payload", numbers))
        occ.send(receiver, "the next message")
        assert occ.receive(("first", occ.ANY), timeout=10) == ("first", "the next message")


@pytest.mark.parametrize("dest", [NOT_AN_ADDRESS, None, b"bytes-name", ["a", "list"]], ids=repr)
def test_sending_to_something_that_is_not_an_address_raises_type_error_naming_it(dest):
    with occ.runtime():
        with pytest.raises(TypeError, match=naming(dest)):
            occ.send(dest, "hello")
        assert ask_a_new_process() == "are you there?"


def test_a_negative_timeout_raises_value_error_naming_it():
    with occ.runtime():
        occ.send(occ.slf(), "waiting")
        with pytest.raises(ValueError, match=naming(-2.5)):
            occ.receive(timeout=-2.5)
        assert occ.receive(timeout=10) == "waiting"
        assert ask_a_new_process() == "are you there?"


@pytest.mark.parametrize("timeout", ["soon", [1], object()], ids=["str", "list", "object"])
def test_a_timeout_that_is_not_a_number_raises_type_error_naming_it(timeout):
    with occ.runtime():
        occ.send(occ.slf(), "waiting")
        with pytest.raises(TypeError, match=naming(timeout)):
            occ.receive(timeout=timeout)
        assert occ.receive(timeout=10) == "waiting"
        assert ask_a_new_process() == "are you there?"


# --- links, monitors, kill ---------------------------------------------------------------


PID_TAKERS = {
    "link": lambda bad: occ.link(bad),
    "unlink": lambda bad: occ.unlink(bad),
    "monitor": lambda bad: occ.monitor(bad),
    "kill": lambda bad: occ.kill(bad),
    "kill with why": lambda bad: occ.kill(bad, "because"),
    "register": lambda bad: occ.register("a-name", bad),
    "process_info": lambda bad: occ.process_info(bad),
}


@pytest.mark.parametrize("call", sorted(PID_TAKERS))
def test_a_non_pid_where_a_pid_is_needed_raises_type_error_naming_it(call):
    with occ.runtime():
        with pytest.raises(TypeError, match=naming(NOT_A_PID)):
            PID_TAKERS[call](NOT_A_PID)
        assert ask_a_new_process() == "are you there?"


def test_demonitor_of_something_that_is_not_a_ref_raises_type_error_naming_it():
    with occ.runtime():
        with pytest.raises(TypeError, match=naming(NOT_A_PID)):
            occ.demonitor(NOT_A_PID)
        assert ask_a_new_process() == "are you there?"


def test_a_process_that_gets_a_bad_argument_can_catch_it_and_go_on():
    def main():
        try:
            occ.spawn(NOT_A_FUNCTION)
        except TypeError:
            pass
        return ask_a_new_process("still working?")

    assert occ.run(main) == "still working?"
