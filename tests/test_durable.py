"""Durable processes (API.md section 7, issue 6): each guarantee, with real SIGKILLs.

Every test runs real processes on a real journal file in ``tmp_path`` and
kills them with ``os.kill(pid, SIGKILL)``: a durable process, or the whole
runtime, which then runs in a child interpreter (``ChildRun``) so that the test
can SIGKILL every process of it and start a new runtime on the same journal.

How a test knows where a durable process is: the process tells the test's
main with a send. A send made during replay is not made again (that is one of
the guarantees), so a process that must be reached after a restart announces
itself again from the live part of its run, after a ``receive``.

Side effects that must happen once are counted outside the runtime, as lines
appended to a file in ``tmp_path`` (``effects``), which no replay can undo.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import occasional as occ
from occasional import durable
from occasional.testing import run

from conftest import ROOT, descendants, effects, naming, note, reap_orphans, snapshot, wait_until_gone

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")
SYNC_MODES = ("machine", "process")


# --- helpers, inside a runtime ----------------------------------------------------------


def sigkill(pid: occ.Pid) -> None:
    os.kill(pid.os_pid, signal.SIGKILL)


def kill_and_wait_for_the_next(pid: occ.Pid, tag: str, timeout: float = 10) -> occ.Pid:
    """SIGKILL ``pid`` and return the pid of the process that announces ``(tag, pid)`` next.

    Only the restarted process can announce itself: the one that was killed
    already announced itself, and the restarted one does not repeat that send.
    """
    sigkill(pid)
    _, new = occ.receive((tag, occ.ANY), timeout=timeout)
    assert new != pid
    return new


def others_in_mailbox() -> list[Any]:
    """What is left in the mailbox, oldest first (a repeated send shows up here)."""
    left = []
    while True:
        try:
            left.append(occ.receive(timeout=0.2))
        except TimeoutError:
            return left


# --- durable processes used by the tests ------------------------------------------------


def collect(main: occ.Pid, n: int) -> list[Any]:
    """Receive ``n`` messages; after each one, tell main where this process is now."""
    got = []
    for _ in range(n):
        got.append(occ.receive())
        occ.send(main, ("took", occ.slf(), len(got)))
    return got


def wait_for_go_then_collect(n: int) -> list[Any]:
    """Leave everything in the mailbox until ("go",) arrives, then receive ``n`` messages."""
    occ.receive(("go",))
    return [occ.receive() for _ in range(n)]


# --- send: committed before it returns, in order ----------------------------------------


def test_a_durable_process_receives_what_was_sent_to_it_in_the_order_sent(journal):
    def main():
        pid = durable.spawn("inbox", collect, occ.slf(), 5)
        for i in range(5):
            occ.send(pid, ("m", i))
        return durable.result("inbox", timeout=10)

    assert run(main, journal=journal) == ("ok", [("m", i) for i in range(5)])


def test_messages_sent_while_a_durable_process_is_restarting_are_received_once_in_order(journal):
    def main():
        me = occ.slf()
        pid = durable.spawn("inbox", collect, me, 20)
        for i in range(10):
            occ.send(pid, ("m", i))
        _, pid, _ = occ.receive(("took", occ.ANY, 3), timeout=10)
        sigkill(pid)
        for i in range(10, 20):
            occ.send(pid, ("m", i))  # to the killed pid: the journal takes it for the restarted one
        return durable.result("inbox", timeout=10)

    assert run(main, journal=journal) == ("ok", [("m", i) for i in range(20)])


def send_numbered(dest: occ.Pid, tag: str, n: int) -> None:
    for i in range(n):
        occ.send(dest, (tag, i))


def test_messages_of_concurrent_senders_keep_each_senders_order_across_a_restart(journal):
    def main():
        me = occ.slf()
        pid = durable.spawn("inbox", collect, me, 90)
        for tag in ("a", "b", "c"):
            occ.spawn(send_numbered, pid, tag, 30)
        _, pid, _ = occ.receive(("took", occ.ANY, 20), timeout=10)
        sigkill(pid)
        kind, got = durable.result("inbox", timeout=10)
        return kind, {tag: [i for t, i in got if t == tag] for tag in ("a", "b", "c")}

    assert run(main, journal=journal) == ("ok", {tag: list(range(30)) for tag in ("a", "b", "c")})


# --- exactly-once consumption -----------------------------------------------------------


def consume_with_effects(main: occ.Pid, log: str, n: int) -> list[int]:
    """Receive ``n`` numbers, note each in ``log`` through a step; return them as consumed."""
    consumed = []
    for _ in range(n):
        _, i = occ.receive(("n", int))
        durable.step(note, log, i)
        consumed.append(i)
        occ.send(main, ("took", occ.slf(), i))
    return consumed


def test_each_message_is_consumed_exactly_once_although_the_consumer_is_sigkilled_twice(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        me = occ.slf()
        pid = durable.spawn("consumer", consume_with_effects, me, log, 30)
        for i in range(30):
            occ.send(pid, ("n", i))
        for after in (5, 17):
            _, pid, _ = occ.receive(("took", occ.ANY, after), timeout=10)
            sigkill(pid)
        return durable.result("consumer", timeout=10)

    assert run(main, journal=journal) == ("ok", list(range(30)))
    # A kill between a step's effect and its record repeats the effect (at-least-once), never skips it.
    assert sorted({i for [i] in effects(log)}) == list(range(30))


def pick_b_then_the_rest(main: occ.Pid) -> list[Any]:
    first = occ.receive(("b", occ.ANY))
    occ.send(main, ("picked", occ.slf()))
    occ.receive(("go",))
    return [first] + [occ.receive(timeout=5) for _ in range(3)]


def test_a_selective_receive_replays_the_recorded_message_and_skipped_messages_keep_their_order(journal):
    def main():
        me = occ.slf()
        pid = durable.spawn("picky", pick_b_then_the_rest, me)
        for msg in (("a", 1), ("b", 2), ("a", 3), ("b", 4)):
            occ.send(pid, msg)
        _, pid = occ.receive(("picked", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("picky", timeout=10), others_in_mailbox()

    assert run(main, journal=journal) == (("ok", [("b", 2), ("a", 1), ("a", 3), ("b", 4)]), [])


def wait_for_b_then_take_the_rest(main: occ.Pid, count: int) -> list[Any]:
    occ.send(main, ("waiting", occ.slf()))
    first = occ.receive(("b", occ.ANY))
    return [first] + [occ.receive(timeout=5) for _ in range(count)]


def test_a_selective_receive_waiting_while_skipped_messages_arrive_one_by_one_takes_the_match_and_keeps_their_order(
    journal,
):
    def main():
        pid = durable.spawn("waiter", wait_for_b_then_take_the_rest, occ.slf(), 20)
        _, pid = occ.receive(("waiting", occ.ANY), timeout=10)
        for i in range(20):
            occ.send(pid, ("a", i))  # each returns after its commit: the waiter wakes for most one by one
        occ.send(pid, ("b", 20))
        return durable.result("waiter", timeout=10)

    assert run(main, journal=journal) == ("ok", [("b", 20)] + [("a", i) for i in range(20)])


def time_out_then_wait(main: occ.Pid) -> tuple[str, Any]:
    try:
        first = occ.receive(timeout=0.05)
    except TimeoutError:
        first = "timed out"
    occ.send(main, ("waiting", occ.slf()))
    occ.receive(("go",))
    return first, occ.receive(timeout=5)


def test_a_receive_that_timed_out_replays_as_a_timeout_even_when_a_message_is_waiting_now(journal):
    def main():
        pid = durable.spawn("patient", time_out_then_wait, occ.slf())
        _, pid = occ.receive(("waiting", occ.ANY), timeout=10)
        occ.send(pid, "late")  # in the mailbox before the restart: replay must not take it
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("patient", timeout=10)

    assert run(main, journal=journal) == ("ok", ("timed out", "late"))


# --- sends made by a durable process ----------------------------------------------------


def greet_then_wait(main: occ.Pid) -> str:
    occ.send(main, ("hello", occ.slf()))
    return occ.receive(("bye",))[0]


def test_a_send_made_before_a_sigkill_is_not_made_again_on_replay(journal):
    def main():
        pid = durable.spawn("greeter", greet_then_wait, occ.slf())
        _, pid = occ.receive(("hello", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("bye",))
        return durable.result("greeter", timeout=10), others_in_mailbox()

    assert run(main, journal=journal) == (("ok", "bye"), [])


def send_numbers_to(target: str, n: int, main: occ.Pid) -> None:
    for i in range(n):
        occ.send(durable.whereis(target), ("n", i))
        if i % 10 == 9:
            occ.send(main, ("sent", occ.slf(), i))
            occ.receive(("on",))  # live again: tell main where this process is
            occ.send(main, ("up", occ.slf()))


def test_a_restarted_durable_sender_does_not_send_again_what_a_durable_receiver_already_has(journal):
    def main():
        me = occ.slf()
        durable.spawn("counter", collect, me, 40)
        sender = durable.spawn("sender", send_numbers_to, "counter", 40, me)
        for i in (9, 19, 29, 39):
            _, sender, _ = occ.receive(("sent", occ.ANY, i), timeout=10)
            sigkill(sender)
            occ.send(sender, ("on",))
            occ.receive(("up", occ.ANY), timeout=10)
        return durable.result("counter", timeout=10)

    assert run(main, journal=journal) == ("ok", [("n", i) for i in range(40)])


def send_fast_to(target: str, n: int) -> int:
    dest = durable.whereis(target)
    for i in range(n):
        occ.send(dest, ("n", i))
    return n


def test_a_sender_sigkilled_at_random_moments_while_sending_delivers_each_message_once_in_order(journal):
    def main():
        import random

        rng = random.Random(6)
        durable.spawn("counter", collect, occ.slf(), 300)
        durable.spawn("sender", send_fast_to, "counter", 300)
        kills = 0
        for progress in (30, 80, 130, 180, 230):
            # Once the sender is sending again (a crash loop needs kills at one position), wait
            # a random moment of its sending: nothing to wait for on purpose.
            occ.receive(("took", occ.ANY, progress), timeout=10)
            time.sleep(rng.uniform(0.0, 0.02))
            sender = durable.whereis("sender")
            if sender is not None and sender.os_pid:
                try:
                    sigkill(sender)
                    kills += 1
                except ProcessLookupError:
                    pass  # between two incarnations, or done
        return kills, durable.result("sender", timeout=10), durable.result("counter", timeout=10)

    kills, sender, counter = run(main, journal=journal)
    assert (sender, counter) == (("ok", 300), ("ok", [("n", i) for i in range(300)]))
    assert kills >= 1


# --- steps ------------------------------------------------------------------------------


def draw_ticket(log: str) -> str:
    ticket = os.urandom(8).hex()
    note(log, ticket)
    return ticket


def take_a_ticket_then_wait(main: occ.Pid, log: str) -> str:
    ticket = durable.step(draw_ticket, log)
    occ.send(main, ("drew", occ.slf()))
    occ.receive(("go",))
    return ticket


def test_a_step_result_is_journaled_and_replay_returns_it_without_calling_the_function(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        pid = durable.spawn("ticket", take_a_ticket_then_wait, occ.slf(), log)
        _, pid = occ.receive(("drew", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("ticket", timeout=10)

    reason = run(main, journal=journal)
    assert effects(log) == [[reason[1]]]  # drawn once, and the replay returned the same ticket
    assert reason[0] == "ok"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def values_of_many_types() -> Any:
    return ((1, 2), {3, 4}, frozenset({5}), b"raw", Point(1, 2), [("t",)], {"k": (1,)}, None, 1.5)


def make_values_then_wait(main: occ.Pid) -> Any:
    made = durable.step(values_of_many_types)()
    occ.send(main, ("made", occ.slf()))
    occ.receive(("go",))
    return made


def test_a_replayed_step_returns_its_value_with_the_types_it_had(journal):
    def main():
        durable.spawn("typed", make_values_then_wait, occ.slf())
        _, pid = occ.receive(("made", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        kind, made = durable.result("typed", timeout=10)
        return kind, made, [type(v).__name__ for v in made]

    assert run(main, journal=journal) == (
        "ok",
        values_of_many_types(),
        ["tuple", "set", "frozenset", "bytes", "Point", "list", "dict", "NoneType", "float"],
    )


def refuse(log: str) -> None:
    note(log, "refused")
    raise ValueError("no such account", 42)


def fail_a_step_then_wait(main: occ.Pid, log: str) -> tuple[str, tuple[Any, ...]]:
    try:
        durable.step(refuse, log)
    except ValueError as exc:
        caught = (type(exc).__name__, exc.args)
    occ.send(main, ("failed", occ.slf()))
    occ.receive(("go",))
    return caught


def test_a_step_exception_is_journaled_and_replay_raises_it_again_without_calling_the_function(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        pid = durable.spawn("refusal", fail_a_step_then_wait, occ.slf(), log)
        _, pid = occ.receive(("failed", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("refusal", timeout=10)

    assert (run(main, journal=journal), effects(log)) == (
        ("ok", ("ValueError", ("no such account", 42))),
        [["refused"]],
    )


@durable.step
def add_to_ledger(log: str, amount: int) -> int:
    note(log, amount)
    return amount * 2


def two_decorated_steps_then_wait(main: occ.Pid, log: str) -> list[int]:
    doubled = [add_to_ledger(log, 5), add_to_ledger(log, 7)]
    occ.send(main, ("booked", occ.slf()))
    occ.receive(("go",))
    return doubled


def test_a_function_decorated_with_step_is_journaled_like_a_step_call(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        pid = durable.spawn("ledger", two_decorated_steps_then_wait, occ.slf(), log)
        _, pid = occ.receive(("booked", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("ledger", timeout=10)

    assert (run(main, journal=journal), effects(log)) == (("ok", [10, 14]), [[5], [7]])


def decorate_a_step_inside_then_wait(main: occ.Pid, log: str) -> int:
    @durable.step
    def fetch(x: int) -> int:
        note(log, x)
        return x * 10

    value = fetch(3)
    occ.send(main, ("fetched", occ.slf()))
    occ.receive(("go",))
    return value


def test_a_step_decorated_inside_a_durable_function_is_a_step_that_replay_does_not_run_again(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        pid = durable.spawn("inside", decorate_a_step_inside_then_wait, occ.slf(), log)
        _, pid = occ.receive(("fetched", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("inside", timeout=10)

    assert (run(main, journal=journal), effects(log)) == (("ok", 30), [[3]])


def draw_with_a_zero_argument_step_then_wait(main: occ.Pid, log: str) -> int:
    def draw() -> int:
        note(log, "drawn")
        return 4

    value = durable.step(draw)()
    occ.send(main, ("drawn", occ.slf()))
    occ.receive(("go",))
    return value


def test_step_of_a_function_alone_called_with_no_arguments_runs_a_zero_argument_step(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        pid = durable.spawn("zero", draw_with_a_zero_argument_step_then_wait, occ.slf(), log)
        _, pid = occ.receive(("drawn", occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return durable.result("zero", timeout=10)

    assert (run(main, journal=journal), effects(log)) == (("ok", 4), [["drawn"]])


def test_step_of_something_not_callable_alone_raises_type_error_naming_it():
    with pytest.raises(TypeError, match=r"^durable\.step\(42\): 42 is not callable; decorate a function"):
        durable.step(42)


def charge_and_crash_once(log: str) -> str:
    """Make the effect, then die before the step's result can be journaled, the first time only."""
    key, attempt = durable.step_key(), durable.attempt()
    note(log, key, attempt)
    if len(effects(log)) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"charged under {key}"


def charge_twice(log: str) -> list[str]:
    return [durable.step(charge_and_crash_once, log), durable.step(charge_and_crash_once, log)]


def test_a_crash_between_a_steps_effect_and_its_record_runs_it_again_with_the_same_key_and_the_next_attempt(
    journal, tmp_path
):
    log = str(tmp_path / "effects")

    def main():
        durable.spawn("payment", charge_twice, log)
        return durable.result("payment", timeout=10)

    reason = run(main, journal=journal)
    # The key is "{id}:{n}" for the n-th step of the process, the same in every attempt of it.
    assert effects(log) == [["payment:1", 1], ["payment:1", 2], ["payment:2", 1]]
    assert reason == ("ok", ["charged under payment:1", "charged under payment:2"])


def flaky(log: str, failures: int) -> str:
    note(log, durable.attempt(), time.time())
    if durable.attempt() <= failures:
        raise ConnectionError(f"attempt {durable.attempt()} failed")
    return f"done at attempt {durable.attempt()}"


def retry_flaky(log: str, failures: int, retry: Any) -> Any:
    try:
        return durable.step(flaky, log, failures, retry=retry)
    except ConnectionError as exc:
        return ("gave up", str(exc))


def test_retry_calls_a_failing_step_again_until_it_succeeds(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        durable.spawn("flaky", retry_flaky, log, 2, durable.Retry(attempts=4, backoff=0.01, max_delay=0.05))
        return durable.result("flaky", timeout=10)

    assert run(main, journal=journal) == ("ok", "done at attempt 3")
    assert [attempt for attempt, _ in effects(log)] == [1, 2, 3]


def test_retry_raises_the_last_exception_after_its_attempts_are_used_up(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        durable.spawn("hopeless", retry_flaky, log, 99, durable.Retry(attempts=3, backoff=0.01, max_delay=0.05))
        return durable.result("hopeless", timeout=10)

    assert run(main, journal=journal) == ("ok", ("gave up", "attempt 3 failed"))
    assert [attempt for attempt, _ in effects(log)] == [1, 2, 3]


def retry_slowly_and_report(main: occ.Pid, log: str) -> Any:
    occ.send(main, ("starting", occ.slf()))
    return retry_flaky(log, 1, durable.Retry(attempts=2, backoff=1.0, max_delay=1.0))


def test_the_wait_between_retry_attempts_is_a_durable_timer_that_a_sigkill_does_not_restart(journal, tmp_path):
    log = str(tmp_path / "effects")

    def main():
        durable.spawn("slow", retry_slowly_and_report, occ.slf(), log)
        _, pid = occ.receive(("starting", occ.ANY), timeout=10)
        deadline = time.monotonic() + 10
        while not effects(log) and time.monotonic() < deadline:
            time.sleep(0.01)  # the first attempt is an effect outside the runtime; nothing else tells
        time.sleep(0.4)  # well into the 1 s wait before the second attempt
        sigkill(pid)
        return durable.result("slow", timeout=10)

    assert run(main, journal=journal) == ("ok", "done at attempt 2")
    (a1, t1), (a2, t2) = effects(log)
    assert (a1, a2) == (1, 2)
    assert 0.95 <= t2 - t1 < 1.3  # a timer started again after the kill would end at about 1.4 s


# --- durable clock, randomness, sleep ---------------------------------------------------


def draw_values_then_wait(main: occ.Pid) -> tuple[float, float, str]:
    values = (durable.now(), durable.random(), str(durable.uuid4()))
    occ.send(main, ("drew", occ.slf(), values))
    occ.receive(("go",))
    return values


def test_now_random_and_uuid4_return_their_recorded_values_on_replay(journal):
    def main():
        durable.spawn("dice", draw_values_then_wait, occ.slf())
        _, pid, first = occ.receive(("drew", occ.ANY, occ.ANY), timeout=10)
        sigkill(pid)
        occ.send(pid, ("go",))
        return first, durable.result("dice", timeout=10)

    first, reason = run(main, journal=journal)
    assert reason == ("ok", first)
    now, rnd, uid = first
    assert abs(now - time.time()) < 60 and 0.0 <= rnd < 1.0 and re.fullmatch(r"[0-9a-f-]{36}", uid)


def sleep_then_tell_the_time(main: occ.Pid, seconds: float) -> float:
    occ.send(main, ("sleeping", occ.slf(), durable.now()))
    durable.sleep(seconds)
    return time.time()


def test_a_durable_sleep_ends_at_its_recorded_deadline_although_the_sleeper_was_sigkilled(journal):
    def main():
        durable.spawn("sleeper", sleep_then_tell_the_time, occ.slf(), 1.0)
        _, pid, started = occ.receive(("sleeping", occ.ANY, float), timeout=10)
        time.sleep(0.4)  # well into the sleep
        sigkill(pid)
        _, woke = durable.result("sleeper", timeout=10)
        return woke - started

    slept = run(main, journal=journal)
    assert 0.95 <= slept < 1.3  # a sleep started again after the kill would end at about 1.4 s


# --- replay checks ----------------------------------------------------------------------


def stamp(what: str) -> str:
    return what


def follow_the_flag(main: occ.Pid, flag: str, starts: str) -> str:
    note(starts, "started")
    with open(flag) as f:
        which = f.read()
    durable.step(stamp, "before")
    if which == "step":
        durable.step(stamp, "step")
    else:
        occ.receive(timeout=0)  # a receive where the first run made a step
    occ.send(main, ("went", occ.slf()))
    return occ.receive(("go",))[0]


def a_replay_down_another_path(journal: str, tmp_path: Path) -> tuple[Any, list[Any]]:
    flag, starts = str(tmp_path / "flag"), str(tmp_path / "starts")
    Path(flag).write_text("step")

    def main():
        durable.spawn("wanderer", follow_the_flag, occ.slf(), flag, starts)
        _, pid = occ.receive(("went", occ.ANY), timeout=10)
        Path(flag).write_text("receive")  # the code now takes another path than the journal shows
        sigkill(pid)
        reason = durable.result("wanderer", timeout=10)
        time.sleep(0.5)  # time for a restart loop to show in the starts file, if there were one
        return reason

    return run(main, journal=journal), effects(starts)


def test_a_replay_that_takes_another_path_ends_the_process_with_nondeterminism(journal, tmp_path):
    reason, _ = a_replay_down_another_path(journal, tmp_path)
    assert (reason[0], type(reason[1])) == ("error", durable.NonDeterminism)


def test_nondeterminism_carries_the_position_and_the_recorded_and_attempted_kind_and_name(journal, tmp_path):
    reason, _ = a_replay_down_another_path(journal, tmp_path)
    exc = reason[1]
    # The journal: 1-2 the step "before" (its attempt, then its outcome), 3 the attempt of the second step.
    assert (exc.id, exc.position, exc.recorded, exc.attempted) == (
        "wanderer",
        3,
        ("step.attempt", "stamp"),
        ("receive", ""),
    )


def test_nondeterminism_shows_both_sides_in_its_message(journal, tmp_path):
    reason, _ = a_replay_down_another_path(journal, tmp_path)
    assert re.match(
        r"^the replay of durable process 'wanderer' took a different path at position 3: "
        r"the journal has step\.attempt 'stamp' there, the code attempted receive\b",
        str(reason[1]),
    )


def test_a_process_that_raised_nondeterminism_is_not_restarted(journal, tmp_path):
    _, starts = a_replay_down_another_path(journal, tmp_path)
    assert starts == [["started"], ["started"]]  # the first run and the one replay that failed


def stop_early_when_told(main: occ.Pid, flag: str) -> str:
    durable.step(stamp, "a")
    if Path(flag).read_text() == "go on":
        durable.step(stamp, "b")
        occ.send(main, ("went", occ.slf()))
        occ.receive(("go",))
    return "done"


def test_a_replay_that_returns_before_the_journal_is_used_up_raises_nondeterminism(journal, tmp_path):
    flag = tmp_path / "flag"
    flag.write_text("go on")

    def main():
        durable.spawn("hasty", stop_early_when_told, occ.slf(), str(flag))
        _, pid = occ.receive(("went", occ.ANY), timeout=10)
        flag.write_text("stop")  # the code now returns where the journal goes on with a step
        sigkill(pid)
        kind, exc = durable.result("hasty", timeout=10)
        return kind, (exc.position, exc.recorded, exc.attempted)

    assert run(main, journal=journal) == ("error", (3, ("step.attempt", "stamp"), ("return", "")))


def die_after_a_step(starts: str) -> None:
    note(starts, "started")
    durable.step(stamp, "before the crash")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_process_that_crashes_again_and_again_at_the_same_position_stops_with_a_distinct_reason(journal, tmp_path):
    starts = str(tmp_path / "starts")

    def main():
        durable.spawn("doomed", die_after_a_step, starts)
        return durable.result("doomed", timeout=20)

    kind, detail = run(main, journal=journal)
    assert (kind, detail["position"], detail["last"]) == ("crashloop", 2, "signal SIGKILL")
    assert detail["crashes"] == len(effects(starts)) >= 2  # then no further start


# --- the end of a durable process -------------------------------------------------------


def test_result_with_a_timeout_raises_timeout_error_while_the_process_runs(journal):
    def main():
        durable.spawn("busy", wait_for_go_then_collect, 0)
        try:
            durable.result("busy", timeout=0.1)
        except TimeoutError:
            return "timed out"

    assert run(main, journal=journal) == "timed out"


def wait_for_the_result_of(main: occ.Pid, id: str) -> Any:
    occ.send(main, ("waiting", occ.slf()))
    return durable.result(id)


def test_result_is_there_for_a_new_caller_after_the_first_caller_was_sigkilled_while_waiting(journal):
    def main():
        job = durable.spawn("job", wait_for_go_then_collect, 0)
        waiter, ref = occ.spawn_monitor(wait_for_the_result_of, occ.slf(), "job")
        occ.receive(("waiting", waiter), timeout=10)
        sigkill(waiter)
        occ.receive(("DOWN", ref, waiter, occ.ANY), timeout=10)
        occ.send(job, ("go",))
        return durable.result("job", timeout=10)

    assert run(main, journal=journal) == ("ok", [])


def raise_an_error() -> None:
    raise KeyError("missing")


def test_result_of_a_process_that_raised_is_reason_error_with_the_exception(journal):
    def main():
        durable.spawn("failing", raise_an_error)
        kind, exc = durable.result("failing", timeout=10)
        return kind, type(exc), exc.args

    assert run(main, journal=journal) == ("error", KeyError, ("missing",))


def count_start(starts: str) -> str:
    note(starts, "started")
    return "finished"


def test_spawning_an_id_that_already_finished_starts_nothing_and_keeps_its_result(journal, tmp_path):
    starts = str(tmp_path / "starts")

    def main():
        durable.spawn("once", count_start, starts)
        first = durable.result("once", timeout=10)
        durable.spawn("once", count_start, starts)
        return first, durable.result("once", timeout=10)

    assert run(main, journal=journal) == (("ok", "finished"), ("ok", "finished"))
    assert effects(starts) == [["started"]]


def test_a_finished_id_is_not_started_again_by_a_new_runtime_on_the_same_journal(journal, tmp_path):
    starts = str(tmp_path / "starts")

    def first():
        durable.spawn("once", count_start, starts)
        return durable.result("once", timeout=10)

    def second():
        durable.spawn("once", count_start, starts)
        return durable.result("once", timeout=10)

    assert (run(first, journal=journal), run(second, journal=journal)) == (("ok", "finished"), ("ok", "finished"))
    assert effects(starts) == [["started"]]


# --- the whole runtime SIGKILLed --------------------------------------------------------

CHILD_MODULE = textwrap.dedent(
    """\
    import json
    import os
    import sys
    import time

    import occasional as occ
    from occasional import durable


    def hold(n):
        occ.receive(("go",))
        return [occ.receive() for _ in range(n)]


    def fill(ready, n):
        pid = durable.spawn("held", hold, int(n))
        for i in range(int(n)):
            occ.send(pid, ("m", i))
        with open(ready, "w") as f:
            f.write("sent")
        occ.receive()  # until the whole runtime is SIGKILLed


    def finish(ready):
        durable.spawn("finished", lambda: "it finished")
        reason = durable.result("finished", timeout=10)
        with open(ready, "w") as f:
            f.write(repr(reason))
        occ.receive()


    def release():
        occ.send(durable.whereis("held"), ("go",))
        return durable.result("held", timeout=10)


    def result_of(id):
        return durable.result(id, timeout=10)


    def sleep_and_tell(main, seconds):
        started = durable.now()
        occ.send(main, ("sleeping", started))
        durable.sleep(seconds)
        return started, time.time()


    def nap(ready, seconds):
        durable.spawn("sleeper", sleep_and_tell, occ.slf(), float(seconds))
        _, started = occ.receive(("sleeping", float))
        with open(ready, "w") as f:
            f.write(repr(started))
        occ.receive()


    def hold_many(ready, n):
        for i in range(int(n)):
            occ.send(durable.spawn(f"held-{i}", hold, 1), ("number", i))
        with open(ready, "w") as f:
            f.write("spawned")
        occ.receive()


    def release_many(n):
        for i in range(int(n)):
            occ.send(durable.whereis(f"held-{i}"), ("go",))
        return [durable.result(f"held-{i}", timeout=10) for i in range(int(n))]


    PROGRAMS = {"fill": fill, "finish": finish, "release": release, "result_of": result_of, "nap": nap,
                "hold_many": hold_many, "release_many": release_many}


    def start():
        program, journal, sync, *args = sys.argv[1:]
        options = {"journal": journal} if sync == "-" else {"journal": journal, "journal_sync": sync}
        try:
            result = {"returned": repr(occ.run(PROGRAMS[program], *args, **options))}
        except BaseException as exc:
            result = {"raised": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)
    """
)


class ChildRun:
    """``occ.run`` of one of CHILD_MODULE's programs in a child interpreter, on ``journal``."""

    def __init__(self, tmp_path: Path, journal: str, sync: str, program: str, *args: str) -> None:
        (tmp_path / "durable_child.py").write_text(CHILD_MODULE)
        self.tree: list[tuple[int, int, int]] = []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import durable_child; durable_child.start()", program, journal, sync, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )

    def wait_for_file(self, path: Path, timeout: float = 30.0) -> str:
        """Poll for the file the program writes at the point where it waits to be killed."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            self.tree = snapshot(descendants(self.proc.pid))
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                raise AssertionError(f"the child runtime never got there; its stderr:\n{self.proc.stderr.read()}")  # type: ignore[union-attr]  # stderr=PIPE: never None
            time.sleep(0.01)
        self.tree = snapshot([self.proc.pid, *descendants(self.proc.pid)])
        return path.read_text()

    def sigkill_everything(self) -> None:
        """SIGKILL the interpreter and every process of its runtime at once, as a power cut would."""
        for pid, _, _ in self.tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.cleanup()

    def outcome(self, timeout: float = 30.0) -> dict[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        assert out, f"the child runtime printed nothing; its stderr:\n{err}"
        return json.loads(out.splitlines()[-1])

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        assert wait_until_gone(self.tree, 2.0) == []
        reap_orphans(self.tree)


def run_in_a_child(tmp_path: Path, journal: str, sync: str, program: str, *args: str) -> dict[str, str]:
    child = ChildRun(tmp_path, journal, sync, program, *args)
    try:
        return child.outcome()
    finally:
        child.cleanup()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sync", SYNC_MODES)
def test_messages_sent_before_the_whole_runtime_was_sigkilled_are_received_by_the_resumed_process(
    journal, tmp_path, sync
):
    ready = tmp_path / "ready"
    child = ChildRun(tmp_path, journal, sync, "fill", str(ready), "50")
    try:
        child.wait_for_file(ready)  # every send returned
        child.sigkill_everything()
    finally:
        child.cleanup()
    resumed = run_in_a_child(tmp_path, journal, sync, "release")
    assert resumed == {"returned": repr(("ok", [("m", i) for i in range(50)]))}


@pytest.mark.timeout(60)
def test_a_new_runtime_resumes_every_unfinished_durable_process_of_the_journal(journal, tmp_path):
    ready = tmp_path / "ready"
    child = ChildRun(tmp_path, journal, "-", "hold_many", str(ready), "20")
    try:
        child.wait_for_file(ready)
        child.sigkill_everything()
    finally:
        child.cleanup()
    resumed = run_in_a_child(tmp_path, journal, "-", "release_many", "20")
    assert resumed == {"returned": repr([("ok", [("number", i)]) for i in range(20)])}


@pytest.mark.timeout(60)
def test_result_of_a_process_that_finished_before_the_whole_runtime_was_sigkilled_is_there_after(journal, tmp_path):
    ready = tmp_path / "ready"
    child = ChildRun(tmp_path, journal, "-", "finish", str(ready))
    try:
        first = child.wait_for_file(ready)
        child.sigkill_everything()
    finally:
        child.cleanup()
    after = run_in_a_child(tmp_path, journal, "-", "result_of", "finished")
    assert (first, after) == (repr(("ok", "it finished")), {"returned": repr(("ok", "it finished"))})


@pytest.mark.timeout(60)
def test_a_durable_sleep_ends_at_its_recorded_deadline_although_the_whole_runtime_was_sigkilled(journal, tmp_path):
    ready = tmp_path / "ready"
    child = ChildRun(tmp_path, journal, "-", "nap", str(ready), "2.5")  # long enough to hibernate
    try:
        child.wait_for_file(ready)
        time.sleep(0.3)  # into the sleep; nothing to wait for
        child.sigkill_everything()
    finally:
        child.cleanup()
    resumed = run_in_a_child(tmp_path, journal, "-", "result_of", "sleeper")
    kind, (started, woke) = ast.literal_eval(resumed["returned"])
    assert kind == "ok"
    assert 2.45 <= woke - started < 2.9  # a sleep started again by the new runtime would end after 3 s


@pytest.mark.parametrize("sync", SYNC_MODES)
def test_both_journal_sync_modes_keep_the_journal_in_sqlite_wal(sqlite_journal, sync):
    def main():
        durable.spawn("w", lambda: "written")
        return durable.result("w", timeout=10)

    assert run(main, journal=sqlite_journal, journal_sync=sync) == ("ok", "written")
    with sqlite3.connect(sqlite_journal) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# --- bad input --------------------------------------------------------------------------


def spawn_and_catch(*args: Any) -> tuple[str, str]:
    try:
        durable.spawn(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "nothing raised", ""


def test_a_durable_id_that_is_not_a_string_raises_type_error_naming_it(journal):
    kind, message = run(spawn_and_catch, 42, stamp, journal=journal)
    assert kind == "TypeError"
    assert re.match(naming(42), message)


def test_an_empty_durable_id_raises_value_error_naming_it(journal):
    kind, message = run(spawn_and_catch, "", stamp, journal=journal)
    assert kind == "ValueError"
    assert re.match(naming(""), message)


def test_a_durable_function_that_is_not_callable_raises_type_error_naming_it(journal):
    kind, message = run(spawn_and_catch, "job", "not a function", journal=journal)
    assert kind == "TypeError"
    assert re.match(naming("not a function"), message)


def test_an_unknown_journal_sync_raises_value_error_naming_it(journal):
    with pytest.raises(ValueError, match=naming("sometimes")):
        occ.run(stamp, "x", journal=journal, journal_sync="sometimes")


def test_a_retry_with_no_attempts_raises_value_error_naming_the_value():
    with pytest.raises(ValueError, match=naming(0)):
        durable.Retry(attempts=0, backoff=0.1, max_delay=1.0)


def test_a_retry_with_a_negative_backoff_raises_value_error_naming_the_value():
    with pytest.raises(ValueError, match=naming(-1.0)):
        durable.Retry(attempts=3, backoff=-1.0, max_delay=1.0)


def test_a_negative_durable_sleep_raises_value_error_naming_it(journal):
    def sleep_badly():
        try:
            durable.sleep(-1.5)
        except ValueError as exc:
            return str(exc)

    def main():
        durable.spawn("bad-sleep", sleep_badly)
        return durable.result("bad-sleep", timeout=10)

    kind, message = run(main, journal=journal)
    assert kind == "ok" and re.match(naming(-1.5), message)


def test_a_step_outside_a_durable_process_raises_runtime_error_saying_where_it_works():
    def main():
        try:
            durable.step(stamp, "x")
        except RuntimeError as exc:
            return str(exc)

    assert re.match(r"^durable\.step\(\) works only inside a durable process", run(main))


# --- the occasional journal command -----------------------------------------------------


def journal_command(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCCASIONAL, "journal", *args], capture_output=True, text=True, timeout=30, cwd=cwd)


def two_steps_and_a_message(main: occ.Pid) -> str:
    durable.step(stamp, "first")
    durable.step(stamp, "second")
    return occ.receive(("hello", str))[1]


@pytest.fixture
def recorded(journal: str) -> str:
    """A journal with one finished durable process, "recorded", and one still running, "open"."""

    def main():
        pid = durable.spawn("recorded", two_steps_and_a_message, occ.slf())
        occ.send(pid, ("hello", "world"))
        durable.result("recorded", timeout=10)
        durable.spawn("open", wait_for_go_then_collect, 0)
        return "recorded"

    run(main, journal=journal)
    return journal


def test_journal_ls_lists_every_durable_process_of_the_journal(recorded):
    done = journal_command("ls", recorded)
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"(?m)^recorded\s+done\s+5\s+1\s+test_durable\.two_steps_and_a_message\s+\('ok', 'world'\)$", done.stdout
    )
    assert re.search(r"(?m)^open\s+running\s+0\s+0\s+test_durable\.wait_for_go_then_collect$", done.stdout)


def test_journal_show_prints_each_entry_with_its_seq_kind_and_name(recorded):
    done = journal_command("show", recorded, "recorded")
    assert done.returncode == 0, done.stderr
    entries = [line.split(None, 3) for line in done.stdout.splitlines() if re.match(r"^\s*\d+\s", line)]
    assert [(seq, kind) for seq, kind, *_ in entries] == [
        ("1", "step.attempt"),
        ("2", "step"),
        ("3", "step.attempt"),
        ("4", "step"),
        ("5", "receive"),
    ]
    assert (entries[1][2:], entries[3][2:]) == (["stamp", "'first'"], ["stamp", "'second'"])
    # A receive shows which mailbox entry it took (it has no name: the body follows the kind).
    assert re.search(r"(?m)^\s*5\s+receive\s+#1 \('hello', 'world'\)$", done.stdout)


def test_journal_show_of_an_unknown_id_fails_naming_it(recorded):
    done = journal_command("show", recorded, "nobody")
    assert done.returncode == 1
    assert re.match(r"^occasional journal show: the journal .* has no durable process 'nobody'", done.stderr)


JOBS_BEFORE = textwrap.dedent(
    """\
    from occasional import durable

    def stamp(what):
        return what

    def job():
        durable.step(stamp, "a")
        durable.step(stamp, "b")
        return "done"

    def main():
        durable.spawn("job", job)
        return durable.result("job", timeout=10)
    """
)


def record_jobs(tmp_path: Path, journal: str) -> None:
    (tmp_path / "jobs.py").write_text(JOBS_BEFORE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", f"import occasional as occ, jobs; print(occ.run(jobs.main, journal={journal!r}))"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )
    assert done.stdout == "('ok', 'done')\n", done.stderr


def test_journal_replay_of_code_that_takes_the_recorded_path_succeeds(journal, tmp_path):
    record_jobs(tmp_path, journal)
    done = journal_command("replay", journal, "job", cwd=str(tmp_path))
    assert (done.returncode, done.stdout) == (
        0,
        "job: the code takes the recorded path through all 4 events and returns 'done'\n",
    )


def test_journal_replay_of_changed_code_reports_the_first_nondeterminism(journal, tmp_path):
    record_jobs(tmp_path, journal)
    (tmp_path / "jobs.py").write_text(JOBS_BEFORE.replace('durable.step(stamp, "a")', "durable.sleep(0)"))
    done = journal_command("replay", journal, "job", cwd=str(tmp_path))
    assert done.returncode == 1
    assert re.match(
        r"^job: NonDeterminism: the replay of durable process 'job' took a different path at position 1: "
        r"the journal has step\.attempt 'stamp' there, the code attempted sleep\b",
        done.stdout + done.stderr,
    )
