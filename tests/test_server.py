"""Servers: occ.Server, occ.call, occ.cast, occ.reply and occ.noreply (API.md, section 6).

The servers are module-level classes, so that every process finds them by
reference in this module. ``Counter`` keeps a number; each kind of request
exercises one part of the contract, and ``terminate`` reports to a watcher
so that a test can see that it ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import occasional as occ

from conftest import ask_a_new_process, drain_mailbox


def idle() -> None:
    occ.receive()


def reply_from_elsewhere(frm: Any) -> None:
    occ.reply(frm, ("answered by", os.getpid()))


def release_when_parked() -> None:
    """Once the server says a call is parked, cast it the answer to that call."""
    server = occ.receive(occ.Pid)
    occ.receive("parked")
    occ.cast(server, ("answer parked", "later"))


class Counter(occ.Server):
    def init(self, n: Any = 0, watcher: Any = None) -> dict[str, Any]:
        if n == "fail":
            raise ValueError("init failed", 7)
        return {"n": n, "watcher": watcher, "info": [], "parked": None}

    def handle_call(self, request: Any, frm: Any, state: dict[str, Any]) -> Any:
        if request == "get":
            return state["n"], state
        if request == "os pid":
            return os.getpid(), state
        if request == "info":
            return state["info"], state
        if request == "raise":
            raise ValueError("handle_call failed")
        if request == "delegate":
            occ.spawn(reply_from_elsewhere, frm)
            return occ.noreply(state)
        if request == "park":
            if state["watcher"] is not None:
                occ.send(state["watcher"], "parked")
            return occ.noreply({**state, "parked": frm})
        kind, arg = request
        if kind == "add":
            n = state["n"] + arg
            return n, {**state, "n": n}
        if kind == "sleep":
            time.sleep(arg)
            return "slept", state
        if kind == "os._exit":
            os._exit(arg)
        if kind == "return":
            return arg
        raise AssertionError(f"Counter got an unexpected call {request!r}")

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> Any:
        if msg == "raise":
            raise ValueError("handle_cast failed")
        kind, arg = msg
        if kind == "add":
            return {**state, "n": state["n"] + arg}
        if kind == "answer parked":
            occ.reply(state["parked"], arg)
            return {**state, "parked": None}
        raise AssertionError(f"Counter got an unexpected cast {msg!r}")

    def handle_info(self, msg: Any, state: dict[str, Any]) -> Any:
        if msg == "raise":
            raise ValueError("handle_info failed")
        return {**state, "info": state["info"] + [msg]}

    def terminate(self, reason: Any, state: dict[str, Any]) -> None:
        if state["watcher"] is not None:
            occ.send(state["watcher"], ("terminated", reason, state["n"]))


class SlowInit(occ.Server):
    """Registers a name at the end of a slow init, so that a caller can tell whether init returned."""

    def init(self) -> None:
        time.sleep(0.3)  # not a synchronisation: it makes a start that returns early observable
        occ.register("initialised")


def summary(reason: Any) -> Any:
    """An error reason with (type, args) in place of the exception, to compare with ==."""
    kind, detail = reason
    if kind == "error":
        return kind, type(detail), detail.args
    return reason


def down_of(pid: occ.Pid, ref: occ.Ref) -> Any:
    _, _, _, reason = occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
    return reason


def no_down_within(seconds: float) -> bool:
    try:
        occ.receive(lambda msg: isinstance(msg, tuple) and msg[:1] == ("DOWN",), timeout=seconds)
    except TimeoutError:
        return True
    return False


# --- start ------------------------------------------------------------------------------


def test_start_returns_the_pid_of_a_new_process():
    def main():
        pid = Counter.start()
        return isinstance(pid, occ.Pid), pid != occ.slf(), pid in occ.processes()

    assert occ.run(main) == (True, True, True)


def test_start_returns_after_init_returned():
    def main():
        pid = SlowInit.start()
        return occ.whereis("initialised") == pid

    assert occ.run(main) is True


def test_start_passes_its_arguments_to_init():
    def main():
        return occ.call(Counter.start(41), "get")

    assert occ.run(main) == 41


def test_start_raises_process_exit_with_the_error_in_the_caller_when_init_raises():
    def main():
        try:
            Counter.start("fail")
        except occ.ProcessExit as exc:
            return summary(exc.reason)
        return "start returned"

    assert occ.run(main) == ("error", ValueError, ("init failed", 7))


def test_start_with_a_name_registers_the_server():
    def main():
        pid = Counter.start(name="counter")
        return occ.whereis("counter") == pid

    assert occ.run(main) is True


def test_start_with_a_taken_name_raises_name_taken():
    def main():
        holder = occ.spawn(idle, name="taken")
        try:
            Counter.start(name="taken")
        except occ.NameTaken as exc:
            return type(exc), exc.name, occ.whereis("taken") == holder
        return "start returned"

    assert occ.run(main) == (occ.NameTaken, "taken", True)


def test_start_with_link_links_the_server_to_the_caller():
    def main():
        occ.trap_exits(True)
        pid = Counter.start(link=True)
        occ.kill(pid, "stop")
        return occ.receive(("EXIT", pid, occ.ANY), timeout=10), pid

    message, pid = occ.run(main)
    assert message == ("EXIT", pid, ("killed", "stop"))


# --- call ---------------------------------------------------------------------------------


def test_call_returns_the_reply_of_handle_call_and_the_server_keeps_the_new_state():
    def main():
        pid = Counter.start(10)
        return occ.call(pid, ("add", 5)), occ.call(pid, ("add", 1)), occ.call(pid, "get")

    assert occ.run(main) == (15, 16, 16)


def test_call_reaches_a_server_by_its_registered_name():
    def main():
        Counter.start(3, name="counter")
        return occ.call("counter", ("add", 4))

    assert occ.run(main) == 7


def test_call_to_a_server_that_has_ended_raises_process_exit_noproc():
    def main():
        pid = Counter.start()
        ref = occ.monitor(pid)
        occ.kill(pid)
        down_of(pid, ref)
        try:
            occ.call(pid, "get", timeout=2)
        except occ.ProcessExit as exc:
            return exc.reason
        return "call returned"

    assert occ.run(main) == ("noproc", None)


def test_call_to_an_unregistered_name_raises_process_exit_noproc():
    def main():
        try:
            occ.call("nobody-by-this-name", "get", timeout=2)
        except occ.ProcessExit as exc:
            return exc.reason
        return "call returned"

    assert occ.run(main) == ("noproc", None)


@pytest.mark.parametrize(
    "request_, reason",
    [
        ("raise", ("error", ValueError, ("handle_call failed",))),
        (("os._exit", 7), ("exitcode", 7)),
    ],
    ids=["handler raises", "os._exit(7)"],
)
def test_call_raises_process_exit_with_the_servers_reason_when_it_ends_during_the_call(request_, reason):
    def main():
        pid = Counter.start()
        try:
            occ.call(pid, request_, timeout=5)
        except occ.ProcessExit as exc:
            return summary(exc.reason)
        return "call returned"

    assert occ.run(main) == reason


def test_call_raises_timeout_error_when_no_reply_comes_in_time():
    def main():
        pid = Counter.start()
        started = time.monotonic()
        try:
            occ.call(pid, ("sleep", 1.0), timeout=0.2)
        except TimeoutError:
            return "timed out", time.monotonic() - started
        return "call returned", time.monotonic() - started

    outcome, waited = occ.run(main)
    assert outcome == "timed out"
    assert 0.15 <= waited < 0.9


def test_a_reply_that_comes_after_the_caller_gave_up_never_reaches_its_mailbox():
    def main():
        pid = Counter.start()
        try:
            occ.call(pid, ("sleep", 0.4), timeout=0.1)
        except TimeoutError:
            pass
        # The server replies 0.3 s after the call gave up, within this second.
        try:
            stray = occ.receive(timeout=1)
        except TimeoutError:
            stray = "nothing arrived"
        return stray, occ.call(pid, "get")  # the server lived on and answers

    assert occ.run(main) == ("nothing arrived", 0)


def test_a_call_leaves_no_down_behind_when_the_server_ends_later():
    def main():
        pid = Counter.start()
        answer = occ.call(pid, "get")
        ref = occ.monitor(pid)
        occ.kill(pid)
        down_of(pid, ref)
        return answer, no_down_within(0.3), drain_mailbox()

    assert occ.run(main) == (0, True, [])


def test_a_call_that_timed_out_leaves_no_down_behind_when_the_server_ends_later():
    def main():
        pid = Counter.start()
        try:
            occ.call(pid, "park", timeout=0.1)
        except TimeoutError:
            pass
        ref = occ.monitor(pid)
        occ.kill(pid)
        down_of(pid, ref)
        return no_down_within(0.3), drain_mailbox()

    assert occ.run(main) == (True, [])


# --- noreply and reply ------------------------------------------------------------------


def test_noreply_lets_another_process_answer_the_call_with_reply():
    def main():
        pid = Counter.start()
        server_os_pid = occ.call(pid, "os pid")
        answer, os_pid = occ.call(pid, "delegate")
        return answer, os_pid not in (server_os_pid, os.getpid())

    assert occ.run(main) == ("answered by", True)


def test_noreply_lets_the_server_answer_the_call_later_from_another_handler():
    def main():
        helper = occ.spawn(release_when_parked)
        pid = Counter.start(0, helper)
        occ.send(helper, pid)
        return occ.call(pid, "park", timeout=5), occ.call(pid, "get")

    assert occ.run(main) == ("later", 0)


# --- cast and plain messages ------------------------------------------------------------


def test_cast_returns_none_and_handle_cast_updates_the_state():
    def main():
        pid = Counter.start(1)
        results = [occ.cast(pid, ("add", 2)), occ.cast(pid, ("add", 3))]
        return results, occ.call(pid, "get")

    assert occ.run(main) == ([None, None], 6)


def test_cast_reaches_a_server_by_its_registered_name():
    def main():
        Counter.start(name="counter")
        occ.cast("counter", ("add", 2))
        return occ.call("counter", "get")

    assert occ.run(main) == 2


def test_cast_to_a_server_that_has_ended_does_not_fail():
    def main():
        pid = Counter.start()
        ref = occ.monitor(pid)
        occ.kill(pid)
        down_of(pid, ref)
        return occ.cast(pid, ("add", 1)), ask_a_new_process()

    assert occ.run(main) == (None, "are you there?")


def test_cast_to_an_unregistered_name_does_not_fail():
    def main():
        return occ.cast("nobody-by-this-name", ("add", 1)), ask_a_new_process()

    assert occ.run(main) == (None, "are you there?")


def test_a_plain_message_sent_to_a_server_goes_to_handle_info():
    def main():
        pid = Counter.start()
        occ.send(pid, ("hello", 1))
        occ.send(pid, "world")
        return occ.call(pid, "info")

    assert occ.run(main) == [("hello", 1), "world"]


# --- handlers that fail -------------------------------------------------------------------


@pytest.mark.parametrize("handler", ["handle_call", "handle_cast", "handle_info"])
def test_a_handler_that_raises_ends_the_server_with_the_error_after_terminate_ran(handler):
    def main():
        pid = Counter.start(5, occ.slf())
        ref = occ.monitor(pid)
        if handler == "handle_call":
            try:
                occ.call(pid, "raise")
            except occ.ProcessExit:
                pass
        elif handler == "handle_cast":
            occ.cast(pid, "raise")
        else:
            occ.send(pid, "raise")
        reason = down_of(pid, ref)
        # A DOWN comes after every message the server sent before it ended (API.md,
        # section 4), so terminate's report is in the mailbox already if terminate ran.
        try:
            _, terminate_reason, n = occ.receive(("terminated", occ.ANY, occ.ANY), timeout=0)
        except TimeoutError:
            return summary(reason), "terminate did not run"
        return summary(reason), summary(terminate_reason), n

    expected = ("error", ValueError, (f"{handler} failed",))
    assert occ.run(main) == (expected, expected, 5)


@pytest.mark.parametrize("returned", ["just a value", (1, 2, 3), None], ids=repr)
def test_handle_call_returning_the_wrong_shape_ends_the_server_with_a_type_error_naming_the_shape(returned):
    def main():
        pid = Counter.start()
        ref = occ.monitor(pid)
        try:
            occ.call(pid, ("return", returned))
        except occ.ProcessExit:
            pass
        kind, exc = down_of(pid, ref)
        return kind, type(exc), str(exc)

    kind, exc_type, message = occ.run(main)
    assert (kind, exc_type) == ("error", TypeError)
    assert "(reply, new_state)" in message
