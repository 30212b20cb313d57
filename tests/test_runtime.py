"""Starting and stopping a runtime (API.md, section 1)."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

import pytest

import occasional as occ

from conftest import Snapshot, descendants, snapshot, survivors


def idle() -> None:
    occ.receive()


def tree_of(interpreter: int) -> Snapshot:
    """(pid, start time) of every process below the test interpreter: the whole runtime."""
    return snapshot(descendants(interpreter))


# --- run ----------------------------------------------------------------------


def test_run_returns_the_value_main_returns():
    def main():
        return {"answer": 42, "pair": (1, 2)}

    assert occ.run(main) == {"answer": 42, "pair": (1, 2)}


def test_run_returns_none_when_main_returns_nothing():
    def main():
        pass

    assert occ.run(main) is None


def test_run_passes_positional_arguments_to_main():
    assert occ.run(lambda a, b: (a, b), "first", ["second"]) == ("first", ["second"])


def test_run_passes_keyword_arguments_of_main_through_a_partial():
    def main(a, *, b):
        return a - b

    assert occ.run(functools.partial(main, 10, b=3)) == 7


def test_run_runs_main_in_another_linux_process():
    assert occ.run(os.getpid) != os.getpid()


def test_run_returns_none_when_main_calls_sys_exit():
    def main():
        sys.exit()

    assert occ.run(main) is None


def test_run_raises_process_exit_with_the_error_reason_when_main_raises():
    def main():
        raise ValueError("boom")

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    kind, exc = info.value.reason
    assert (kind, type(exc), exc.args) == ("error", ValueError, ("boom",))


def test_process_exit_chains_the_original_exception_as_its_cause():
    def main():
        raise KeyError("missing")

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    cause = info.value.__cause__
    assert (type(cause), cause.args) == (KeyError, ("missing",))


def test_process_exit_shows_the_remote_traceback_text():
    def explode_in_a_process():
        raise ValueError("boom from far away")

    def main():
        explode_in_a_process()

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    text = str(info.value)
    assert "explode_in_a_process" in text
    assert "ValueError: boom from far away" in text


def test_run_raises_process_exit_with_the_exit_code_when_main_exits_with_a_status():
    def main():
        sys.exit(3)

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    assert info.value.reason == ("exitcode", 3)


def test_run_raises_process_exit_with_the_signal_when_main_is_killed_by_one():
    def main():
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    assert info.value.reason == ("signal", "SIGKILL")


def test_run_raises_process_exit_with_killed_when_another_process_kills_main():
    def main():
        occ.spawn(lambda victim: occ.kill(victim, "enough"), occ.slf())
        occ.receive()

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    assert info.value.reason == ("killed", "enough")


ENDINGS = {
    "returns": lambda: "done",
    "raises": lambda: 1 / 0,
    "exits": lambda: sys.exit(3),
    "is SIGKILLed": lambda: os.kill(os.getpid(), signal.SIGKILL),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_run_kills_and_reaps_every_process_of_the_runtime_before_it_returns(ending, tmp_path):
    report = tmp_path / "tree.json"

    def main(interpreter):
        workers = [occ.spawn(idle) for _ in range(3)]
        tree = tree_of(interpreter) + snapshot(w.os_pid for w in workers)
        report.write_text(json.dumps(tree))
        return ENDINGS[ending]()

    try:
        occ.run(main, os.getpid())
    except occ.ProcessExit:
        pass
    tree = [tuple(entry) for entry in json.loads(report.read_text())]
    assert len(tree) >= 4  # main and three idle processes, at least
    assert survivors(tree) == []


def test_run_can_be_called_again_in_the_same_interpreter():
    assert [occ.run(lambda: "again") for _ in range(2)] == ["again", "again"]


# --- start / stop / runtime() -------------------------------------------------


def test_start_makes_the_calling_interpreter_a_process_of_a_new_runtime():
    occ.start()
    try:
        me = occ.slf()
        occ.spawn(lambda asker: occ.send(asker, ("hello", asker)), me)
        answer = occ.receive(("hello", occ.ANY), timeout=10)
        mine = me.os_pid
    finally:
        occ.stop()
    assert (answer, mine) == (("hello", me), os.getpid())


def test_stop_kills_and_reaps_every_process_of_the_runtime():
    occ.start()
    try:
        workers = [occ.spawn(idle) for _ in range(3)]
        tree = tree_of(os.getpid()) + snapshot(w.os_pid for w in workers)
    finally:
        occ.stop()
    assert survivors(tree) == []


def test_after_stop_the_interpreter_is_no_longer_a_process():
    occ.start()
    occ.stop()
    with pytest.raises(RuntimeError, match=r"^slf\(\) needs a running occasional runtime; "):
        occ.slf()


def test_stop_then_start_gives_a_working_new_runtime():
    occ.start()
    occ.stop()
    occ.start()
    try:
        occ.spawn(lambda asker: occ.send(asker, "second runtime"), occ.slf())
        answer = occ.receive("second runtime", timeout=10)
    finally:
        occ.stop()
    assert answer == "second runtime"


def test_the_runtime_context_manager_runs_a_runtime_for_its_block():
    with occ.runtime():
        occ.spawn(lambda asker: occ.send(asker, "inside"), occ.slf())
        answer = occ.receive("inside", timeout=10)
    assert answer == "inside"


def test_the_runtime_context_manager_kills_and_reaps_every_process_when_the_block_ends():
    with occ.runtime():
        workers = [occ.spawn(idle) for _ in range(3)]
        tree = tree_of(os.getpid()) + snapshot(w.os_pid for w in workers)
    assert survivors(tree) == []


def test_the_runtime_context_manager_stops_the_runtime_when_the_block_raises():
    with pytest.raises(ZeroDivisionError), occ.runtime():
        worker = occ.spawn(idle)
        tree = tree_of(os.getpid()) + snapshot([worker.os_pid])
        raise ZeroDivisionError
    assert survivors(tree) == []
    with pytest.raises(RuntimeError, match=r"^slf\(\) needs a running occasional runtime; "):
        occ.slf()


# --- options ------------------------------------------------------------------


def test_an_unknown_option_of_run_raises_type_error_naming_it():
    with pytest.raises(TypeError, match=r"(?s)^.*\bcolour_of_the_sky\b"):
        occ.run(lambda: None, colour_of_the_sky="blue")
    assert descendants(os.getpid()) == []


def test_a_journal_that_is_not_a_path_raises_type_error_naming_it_and_starts_nothing():
    with pytest.raises(
        TypeError,
        match=r"^run\(\): journal=42 is not a path; pass a file path or a store URL as a string$",
    ):
        occ.run(lambda: None, journal=42)
    assert descendants(os.getpid()) == []


def test_the_unknown_option_error_lists_the_options_the_extensions_take():
    with pytest.raises(
        TypeError,
        match=r"^run\(\) got an unknown option 'jurnal'; the options are journal, journal_sync, lease, node, cookie, net_ticktime\. ",
    ):
        occ.run(lambda: None, jurnal="x.sqlite")


def test_an_unknown_option_of_start_raises_type_error_naming_it():
    with pytest.raises(TypeError, match=r"(?s)^.*\bcolour_of_the_sky\b"):
        occ.start(colour_of_the_sky="blue")
    assert descendants(os.getpid()) == []
    with pytest.raises(RuntimeError, match=r"^slf\(\) needs a running occasional runtime; "):
        occ.slf()


def test_an_unknown_option_of_runtime_raises_type_error_naming_it():
    with pytest.raises(TypeError, match=r"(?s)^.*\bcolour_of_the_sky\b"), occ.runtime(colour_of_the_sky="blue"):
        pass
    assert descendants(os.getpid()) == []


def test_run_accepts_a_journal_option(tmp_path):
    assert occ.run(lambda: "journaled", journal=str(tmp_path / "journal.sqlite")) == "journaled"


# --- outside a runtime --------------------------------------------------------


OUTSIDE = {
    "send": lambda: occ.send("someone", "hello"),
    "receive": lambda: occ.receive(timeout=0),
    "slf": lambda: occ.slf(),
    "spawn": lambda: occ.spawn(print),
    "spawn_link": lambda: occ.spawn_link(print),
    "spawn_monitor": lambda: occ.spawn_monitor(print),
    "register": lambda: occ.register("someone"),
    "whereis": lambda: occ.whereis("someone"),
    "registered": lambda: occ.registered(),
    "processes": lambda: occ.processes(),
    "trap_exits": lambda: occ.trap_exits(True),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_the_api_outside_a_runtime_raises_runtime_error_saying_how_to_start_one(name):
    with pytest.raises(RuntimeError, match=rf"^{name}\(\) needs a running occasional runtime; "):
        OUTSIDE[name]()
    assert descendants(os.getpid()) == []


def test_the_api_outside_a_runtime_says_to_start_one_with_run_or_start():
    with pytest.raises(RuntimeError) as info:
        occ.send("someone", "hello")
    assert "occ.run(" in str(info.value)
    assert "occ.start(" in str(info.value)


def test_a_pid_from_a_finished_runtime_cannot_be_monitored_outside_a_runtime():
    pid = occ.run(occ.slf)
    with pytest.raises(RuntimeError, match=r"^monitor\(\) needs a running occasional runtime; "):
        occ.monitor(pid)
