"""Supervisors: occ.Supervisor (API.md, section 6).

Start and stop order, the strategies' effect on siblings, intensity and
period, backoff, management calls, trees, significant children and
auto_shutdown, shutdown, and bad specs. The grid of strategy x restart type x
how a child ended is in test_supervisor_grid.py.

Children report to the test's main process, registered as ``"recorder"``,
with a ``time.monotonic()`` stamp taken in the child: messages from
different processes have no order between them, but the stamps do (one clock
for the whole machine).

The log records on the logger ``occasional.supervisor`` are emitted in the
supervisor's process, out of reach of caplog; tests/test_logging.py checks
the one that reaches stderr by default (a give-up) the way a user sees it.
"""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any

import pytest

import occasional as occ

from conftest import ask_a_new_process, children_of, naming, poll, worker

RECORDER = "recorder"


def spec(cid: str, function: Any = worker, args: tuple[Any, ...] | None = None, **more: Any) -> dict[str, Any]:
    """A child spec; ``function`` gets ``(cid,)`` (a nested supervisor: nothing) unless ``args`` is given."""
    if args is None:
        args = () if isinstance(function, functools.partial) else (cid,)
    return {"id": cid, "function": function, "args": args, **more}


def nested(children: list[dict[str, Any]], **options: Any) -> Any:
    """The ``function`` of a child that is itself a supervisor."""
    return functools.partial(occ.Supervisor.start, children, **options)


class Recorded(occ.Server):
    """A server child that traps exits and reports its start and its terminate."""

    def init(self, cid: str) -> str:
        occ.trap_exits(True)
        occ.send(RECORDER, ("started", cid, occ.slf(), time.monotonic()))
        return cid

    def handle_info(self, msg: Any, cid: str) -> str:
        if msg == "raise":
            raise ValueError(f"{cid} was told to raise")
        return cid

    def terminate(self, reason: Any, cid: str) -> None:
        occ.send(RECORDER, ("stopped", cid, occ.slf(), time.monotonic()))


class Tally(occ.Server):
    def init(self, n: int) -> int:
        return n

    def handle_call(self, request: Any, frm: Any, n: int) -> Any:
        return n, n

    def handle_cast(self, msg: Any, n: int) -> int:
        return n + msg

    def handle_info(self, msg: Any, n: int) -> int:
        raise ValueError("Tally was told to raise")


class FailingInit(occ.Server):
    def init(self) -> None:
        raise ValueError("init failed")


def crash_at_once(cid: str) -> None:
    occ.send(RECORDER, ("started", cid, occ.slf(), time.monotonic()))
    raise ValueError(f"{cid} crashed at once")


def stubborn(cid: str) -> None:
    """Traps exits and ignores every message, so a shutdown cannot end it."""
    occ.trap_exits(True)
    occ.send(RECORDER, ("started", cid, occ.slf(), time.monotonic()))
    while True:
        occ.receive()


def idle() -> None:
    occ.receive()


# --- helpers for main ---------------------------------------------------------------------


def events(kind: str, n: int, timeout: float = 10.0) -> list[tuple[Any, ...]]:
    """Receive ``n`` reports of ``kind``; return them as (kind, id, pid, time)."""
    return [occ.receive((kind, occ.ANY, occ.ANY, occ.ANY), timeout=timeout) for _ in range(n)]


def in_time_order(reports: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    return [(kind, cid) for kind, cid, _, _ in sorted(reports, key=lambda r: r[3])]


def down_of(pid: occ.Pid, ref: occ.Ref, timeout: float = 10.0) -> Any:
    _, _, _, reason = occ.receive(("DOWN", ref, pid, occ.ANY), timeout=timeout)
    return reason


def end_and_wait(pid: occ.Pid, how: str = "raise") -> Any:
    """Tell a worker to end ``how`` and return its reason once its DOWN arrived."""
    ref = occ.monitor(pid)
    occ.send(pid, how)
    return down_of(pid, ref)


def replaced(sup: Any, cid: str, old: occ.Pid, timeout: float = 3.0) -> Any:
    """The pid of ``cid`` once it is no longer ``old`` or None (or whatever it is at the deadline)."""
    return poll(lambda: children_of(sup).get(cid), lambda pid: pid not in (old, None), timeout)


def alive(sup: Any) -> bool:
    try:
        occ.Supervisor.which_children(sup)
    except occ.ProcessExit:
        return False
    return True


def summary(reason: Any) -> Any:
    kind, detail = reason
    return (kind, type(detail)) if kind == "error" else reason


# --- start and stop order -----------------------------------------------------------------


def test_children_start_in_list_order():
    def main():
        occ.register(RECORDER)
        occ.Supervisor.start([spec(c, Recorded) for c in "abc"])
        return in_time_order(events("started", 3))

    assert occ.run(main) == [("started", "a"), ("started", "b"), ("started", "c")]


def test_start_returns_after_every_child_started():
    def main():
        occ.register(RECORDER)
        occ.Supervisor.start([spec(c, Recorded) for c in "abc"])
        returned = time.monotonic()
        return [t < returned for _, _, _, t in events("started", 3)]

    assert occ.run(main) == [True, True, True]


def test_children_stop_in_reverse_order_when_their_supervisor_stops():
    def main():
        occ.register(RECORDER)
        top = occ.Supervisor.start([spec("sub", nested([spec(c, Recorded) for c in "abc"]))])
        events("started", 3)
        occ.Supervisor.terminate_child(top, "sub")
        return in_time_order(events("stopped", 3))

    assert occ.run(main) == [("stopped", "c"), ("stopped", "b"), ("stopped", "a")]


def test_a_child_that_fails_to_start_stops_the_ones_already_started_and_start_raises_process_exit():
    def main():
        occ.register(RECORDER)
        try:
            occ.Supervisor.start([spec("a", Recorded), spec("broken", FailingInit, ())])
        except occ.ProcessExit:
            outcome = "raised ProcessExit"
        else:
            outcome = "start returned"
        _, _, a, _ = occ.receive(("started", "a", occ.ANY, occ.ANY), timeout=5)
        ref = occ.monitor(a)
        return outcome, occ.receive(("DOWN", ref, a, occ.ANY), timeout=5)[0]

    assert occ.run(main) == ("raised ProcessExit", "DOWN")


# --- strategies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy, restarted",
    [
        ("one_for_one", {"a": False, "b": True, "c": False}),
        ("one_for_all", {"a": True, "b": True, "c": True}),
        ("rest_for_one", {"a": False, "b": True, "c": True}),
    ],
)
def test_a_strategy_restarts_the_child_that_ended_and_the_siblings_it_names(strategy, restarted):
    def main():
        sup = occ.Supervisor.start([spec(c, shutdown="brutal_kill") for c in "abc"], strategy=strategy, intensity=5)
        old = children_of(sup)
        end_and_wait(old["b"])
        replaced(sup, "b", old["b"])
        new = children_of(sup)
        return {c: new[c] not in (old[c], None) for c in "abc"}

    assert occ.run(main) == restarted


def test_one_for_all_stops_the_siblings_in_reverse_order_then_starts_every_child_in_order():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec(c, Recorded) for c in "abc"], strategy="one_for_all", intensity=5)
        events("started", 3)
        occ.send(children_of(sup)["a"], "raise")
        return in_time_order(events("stopped", 3) + events("started", 3))

    assert occ.run(main) == [
        ("stopped", "a"), ("stopped", "c"), ("stopped", "b"),
        ("started", "a"), ("started", "b"), ("started", "c"),
    ]  # fmt: skip


def test_rest_for_one_stops_the_later_siblings_in_reverse_order_then_starts_them_in_order():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec(c, Recorded) for c in "abcd"], strategy="rest_for_one", intensity=5)
        events("started", 4)
        occ.send(children_of(sup)["b"], "raise")
        return in_time_order(events("stopped", 3) + events("started", 3))

    assert occ.run(main) == [
        ("stopped", "b"), ("stopped", "d"), ("stopped", "c"),
        ("started", "b"), ("started", "c"), ("started", "d"),
    ]  # fmt: skip


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_temporary_child_that_a_siblings_restart_stopped_is_not_started_again_and_leaves_the_children(strategy):
    # As OTP: "a temporary child process is never restarted (even when the
    # supervisor's restart strategy is rest_for_one or one_for_all and a
    # sibling's death causes the temporary process to be terminated)" (issue 10).
    def main():
        sup = occ.Supervisor.start(
            [
                spec("crasher", shutdown="brutal_kill"),
                spec("temp", restart="temporary", shutdown="brutal_kill"),
                spec("last", shutdown="brutal_kill"),
            ],
            strategy=strategy,
            intensity=5,
        )
        old = children_of(sup)
        temp_ref = occ.monitor(old["temp"])
        end_and_wait(old["crasher"])
        down_of(old["temp"], temp_ref)
        replaced(sup, "last", old["last"])
        return [cid for cid, _, _ in occ.Supervisor.which_children(sup)]

    assert occ.run(main) == ["crasher", "last"]


# --- restart types ----------------------------------------------------------------------------


@pytest.mark.parametrize("why", ["shutdown", ("shutdown", "closed")], ids=["shutdown", "shutdown-term"])
def test_a_transient_child_killed_with_shutdown_is_not_restarted(why):
    # ("killed", "shutdown") and ("killed", ("shutdown", term)) are OTP's shutdown
    # and {shutdown, Term}: a transient child is not restarted after them (issue 10).
    def main():
        sup = occ.Supervisor.start([spec("t", restart="transient")])
        old = children_of(sup)["t"]
        ref = occ.monitor(old)
        occ.kill(old, why)
        reason = down_of(old, ref)
        return reason, poll(lambda: children_of(sup)["t"], lambda pid: pid is None)

    assert occ.run(main) == (("killed", why), None)


# --- intensity and period ---------------------------------------------------------------------


def test_more_than_intensity_restarts_within_period_end_the_supervisor_with_too_many_restarts():
    def main():
        sup = occ.Supervisor.start([spec("crasher")], intensity=1, period=5.0)
        sup_ref = occ.monitor(sup)
        first = children_of(sup)["crasher"]
        end_and_wait(first)
        second = replaced(sup, "crasher", first)
        occ.send(second, "raise")
        kind, exc = down_of(sup, sup_ref)
        return kind, type(exc), exc.child, summary(exc.reason), exc.reason[1].args, str(exc)

    kind, exc_type, child, reason, args, message = occ.run(main)
    assert (kind, exc_type, child, reason, args) == (
        "error",
        occ.TooManyRestarts,
        "crasher",
        ("error", ValueError),
        ("crasher was told to raise",),
    )
    assert "crasher" in message
    assert "ValueError" in message


def test_intensity_zero_gives_up_at_the_first_end_of_a_child():
    def main():
        sup = occ.Supervisor.start([spec("crasher")], intensity=0)
        sup_ref = occ.monitor(sup)
        end_and_wait(children_of(sup)["crasher"])
        kind, exc = down_of(sup, sup_ref)
        return kind, type(exc), exc.child

    assert occ.run(main) == ("error", occ.TooManyRestarts, "crasher")


def test_a_supervisor_that_gives_up_stops_its_other_children_before_it_ends():
    def main():
        sup = occ.Supervisor.start([spec("bystander"), spec("crasher")], intensity=0)
        sup_ref = occ.monitor(sup)
        bystander = children_of(sup)["bystander"]
        bystander_ref = occ.monitor(bystander)
        end_and_wait(children_of(sup)["crasher"])
        down_of(sup, sup_ref)
        # Stopped by its supervisor it ends "killed"; had the supervisor ended
        # first, the link would have ended it "linked".
        return down_of(bystander, bystander_ref)[0]

    assert occ.run(main) == "killed"


def test_restarts_further_apart_than_period_do_not_add_up():
    def main():
        sup = occ.Supervisor.start([spec("crasher")], intensity=1, period=0.25)
        pid = children_of(sup)["crasher"]
        for _ in range(2):
            end_and_wait(pid)
            pid = replaced(sup, "crasher", pid)
            time.sleep(0.4)  # not a synchronisation: calm longer than period has to pass
        return alive(sup), isinstance(pid, occ.Pid)

    assert occ.run(main) == (True, True)


# --- backoff ----------------------------------------------------------------------------------


def within(gaps: list[float], expected: list[float]) -> bool:
    """Each gap is at least 80 % of the expected wait and at most 0.5 s longer.

    A gap is the wait plus the crash and the new start, about 0.1 s on an idle
    machine and 0.3 s on a loaded one. Each test picks its waits so that what
    it rules out (no doubling, no cap, no reset) lands outside these bounds
    even so."""
    return len(gaps) == len(expected) and all(0.8 * e <= g <= e + 0.5 for g, e in zip(gaps, expected, strict=True))


def test_backoff_doubles_the_wait_before_each_restart_of_the_same_child_up_to_the_cap():
    def main():
        occ.register(RECORDER)
        occ.Supervisor.start([spec("looper", crash_at_once)], backoff=(0.15, 0.6), intensity=50, period=30)
        times = sorted(t for _, _, _, t in events("started", 5))
        return [round(b - a, 3) for a, b in itertools.pairwise(times)]

    # The first wait is large enough to tell from no wait at all; without
    # doubling the third gap would be under 0.48 s; without the cap the
    # fourth would be 1.2 s, over 0.6 + 0.5.
    gaps = occ.run(main)
    assert within(gaps, [0.15, 0.3, 0.6, 0.6]), gaps


def test_backoff_starts_again_from_its_first_wait_after_period_of_calm():
    def main():
        occ.register(RECORDER)
        occ.Supervisor.start([spec("w", args=("w", RECORDER))], backoff=(0.3, 1.2), intensity=10, period=1.5)
        _, _, pid, _ = events("started", 1)[0]
        gaps = []
        for calm in (0, 0, 2.4):
            time.sleep(calm)  # not a synchronisation: calm longer than period has to pass
            told = time.monotonic()
            occ.send(pid, "raise")
            _, _, pid, started = events("started", 1)[0]
            gaps.append(round(started - told, 3))
        return gaps

    # Without the reset the third wait would be 1.2 s, over 0.3 + 0.5.
    gaps = occ.run(main)
    assert within(gaps, [0.3, 0.6, 0.3]), gaps


def test_a_child_crash_looping_under_backoff_does_not_hold_up_management_calls():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec("looper", crash_at_once)], backoff=(0.25, 0.5), intensity=50, period=60)
        slowest = 0.0
        until = time.monotonic() + 1.2
        while time.monotonic() < until:
            asked = time.monotonic()
            occ.Supervisor.which_children(sup)
            slowest = max(slowest, time.monotonic() - asked)
            time.sleep(0.02)
        starts = len(events("started", 3))  # it did crash-loop meanwhile
        return starts, slowest

    starts, slowest = occ.run(main)
    assert starts == 3
    assert slowest < 0.2, slowest


# --- management calls -------------------------------------------------------------------------


def test_which_children_lists_id_pid_and_restart_type_in_start_order():
    def main():
        sup = occ.Supervisor.start([spec("a"), spec("b", restart="transient"), spec("c", restart="temporary")])
        listed = occ.Supervisor.which_children(sup)
        pids = [pid for _, pid, _ in listed]
        return (
            [(cid, restart) for cid, _, restart in listed],
            all(isinstance(pid, occ.Pid) and pid in occ.processes() for pid in pids),
            len(set(pids)),
        )

    assert occ.run(main) == ([("a", "permanent"), ("b", "transient"), ("c", "temporary")], True, 3)


def test_start_child_starts_a_new_child_listed_last_and_returns_its_pid():
    def main():
        sup = occ.Supervisor.start([spec("a")])
        pid = occ.Supervisor.start_child(sup, spec("b", restart="transient"))
        listed = occ.Supervisor.which_children(sup)
        return [(cid, restart) for cid, _, restart in listed], listed[-1][1] == pid, pid in occ.processes()

    assert occ.run(main) == ([("a", "permanent"), ("b", "transient")], True, True)


def test_a_child_added_with_start_child_is_restarted_like_the_others():
    def main():
        sup = occ.Supervisor.start([spec("a")])
        pid = occ.Supervisor.start_child(sup, spec("b"))
        end_and_wait(pid)
        return replaced(sup, "b", pid) not in (pid, None)

    assert occ.run(main) is True


def test_terminate_child_ends_the_child_and_keeps_its_spec_with_pid_none():
    def main():
        sup = occ.Supervisor.start([spec("a"), spec("b")])
        b = children_of(sup)["b"]
        ref = occ.monitor(b)
        occ.Supervisor.terminate_child(sup, "b")
        down_of(b, ref)
        return occ.Supervisor.which_children(sup)[1]

    assert occ.run(main) == ("b", None, "permanent")


def test_restart_child_starts_a_terminated_child_again():
    def main():
        sup = occ.Supervisor.start([spec("a"), spec("b")])
        old = children_of(sup)["b"]
        occ.Supervisor.terminate_child(sup, "b")
        occ.Supervisor.restart_child(sup, "b")
        new = children_of(sup)["b"]
        return isinstance(new, occ.Pid), new != old, new in occ.processes()

    assert occ.run(main) == (True, True, True)


def test_delete_child_removes_the_spec_of_a_terminated_child():
    def main():
        sup = occ.Supervisor.start([spec("a"), spec("b")])
        occ.Supervisor.terminate_child(sup, "b")
        occ.Supervisor.delete_child(sup, "b")
        return list(children_of(sup))

    assert occ.run(main) == ["a"]


def test_delete_child_of_a_running_child_raises_value_error_naming_it():
    with occ.runtime():
        sup = occ.Supervisor.start([spec("busy")])
        with pytest.raises(ValueError, match=naming("busy")):
            occ.Supervisor.delete_child(sup, "busy")
        assert list(children_of(sup)) == ["busy"]


@pytest.mark.parametrize("call", ["terminate_child", "restart_child", "delete_child"])
def test_a_management_call_with_an_unknown_id_raises_value_error_naming_it(call):
    with occ.runtime():
        sup = occ.Supervisor.start([spec("a")])
        with pytest.raises(ValueError, match=naming("no-such-child")):
            getattr(occ.Supervisor, call)(sup, "no-such-child")
        assert list(children_of(sup)) == ["a"]


def test_start_child_with_an_id_already_in_use_raises_value_error_naming_it():
    with occ.runtime():
        sup = occ.Supervisor.start([spec("twin")])
        before = len(occ.processes())
        with pytest.raises(ValueError, match=naming("twin")):
            occ.Supervisor.start_child(sup, spec("twin"))
        assert len(occ.processes()) == before
        assert list(children_of(sup)) == ["twin"]


def test_start_child_with_a_bad_spec_raises_in_the_caller_and_the_supervisor_keeps_running():
    with occ.runtime():
        sup = occ.Supervisor.start([spec("a")])
        before = len(occ.processes())
        with pytest.raises(ValueError, match=naming("sometimes")):
            occ.Supervisor.start_child(sup, spec("b", restart="sometimes"))
        assert len(occ.processes()) == before
        assert list(children_of(sup)) == ["a"]


def test_a_supervisor_started_with_a_name_is_registered_and_managed_by_that_name():
    def main():
        sup = occ.Supervisor.start([spec("a")], name="top")
        occ.Supervisor.terminate_child("top", "a")
        return occ.whereis("top") == sup, occ.Supervisor.which_children("top")

    assert occ.run(main) == (True, [("a", None, "permanent")])


def test_a_server_class_as_function_is_started_with_its_args_and_restarted_fresh():
    def main():
        sup = occ.Supervisor.start([spec("tally", Tally, (10,))])
        pid = children_of(sup)["tally"]
        occ.cast(pid, 1)
        before = occ.call(pid, "get")
        ref = occ.monitor(pid)
        occ.send(pid, "raise")
        down_of(pid, ref)
        return before, occ.call(replaced(sup, "tally", pid), "get")

    assert occ.run(main) == (11, 10)


# --- simple_one_for_one -----------------------------------------------------------------------


def report_args(*args: Any) -> None:
    occ.send(RECORDER, ("args", args, occ.slf(), time.monotonic()))
    worker("dynamic")


def test_simple_one_for_one_starts_no_child_by_itself():
    def main():
        sup = occ.Supervisor.start([spec("t", report_args, ("fixed",))], strategy="simple_one_for_one")
        return occ.Supervisor.which_children(sup)

    assert occ.run(main) == []


def test_simple_one_for_one_start_child_appends_the_extra_args_and_returns_the_pid():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec("t", report_args, ("fixed",))], strategy="simple_one_for_one")
        first = occ.Supervisor.start_child(sup, ("one",))
        second = occ.Supervisor.start_child(sup, ("two", 2))
        reports = {pid: args for _, args, pid, _ in events("args", 2)}
        listed = {pid for _, pid, _ in occ.Supervisor.which_children(sup)}
        return reports == {first: ("fixed", "one"), second: ("fixed", "two", 2)}, listed == {first, second}

    assert occ.run(main) == (True, True)


def test_simple_one_for_one_restarts_a_child_with_the_same_args():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec("t", report_args, ("fixed",))], strategy="simple_one_for_one", intensity=5)
        first = occ.Supervisor.start_child(sup, ("one",))
        events("args", 1)
        end_and_wait(first)
        _, args, again, _ = events("args", 1)[0]
        listed = [pid for _, pid, _ in occ.Supervisor.which_children(sup)]
        return args, again != first, listed == [again]

    assert occ.run(main) == (("fixed", "one"), True, True)


# --- trees --------------------------------------------------------------------------------------


def test_killing_a_supervisor_ends_its_whole_subtree():
    def main():
        top = occ.Supervisor.start([spec("a"), spec("sub", nested([spec("b"), spec("c")]))])
        sub = children_of(top)["sub"]
        pids = {"top": top, "a": children_of(top)["a"], "sub": sub, **children_of(sub)}
        refs = {cid: occ.monitor(pid) for cid, pid in pids.items()}
        occ.kill(top)
        return sorted(cid for cid, pid in pids.items() if down_of(pid, refs[cid], timeout=5))

    assert occ.run(main) == ["a", "b", "c", "sub", "top"]


def test_a_nested_supervisor_that_gives_up_is_restarted_whole_by_its_parent():
    def main():
        sub = nested([spec("b"), spec("crasher")], intensity=0)
        top = occ.Supervisor.start([spec("a"), spec("sub", sub)])
        old_a, old_sub = children_of(top)["a"], children_of(top)["sub"]
        old_b = children_of(old_sub)["b"]
        end_and_wait(children_of(old_sub)["crasher"])
        new_sub = replaced(top, "sub", old_sub)
        new_children = children_of(new_sub)
        return (
            new_sub != old_sub,
            children_of(top)["a"] == old_a,
            new_children["b"] not in (old_b, None),
            isinstance(new_children["crasher"], occ.Pid),
        )

    assert occ.run(main) == (True, True, True, True)


# --- significant children and auto_shutdown ---------------------------------------------------


@pytest.mark.parametrize("restart, how", [("transient", "return"), ("temporary", "return"), ("temporary", "raise")])
def test_any_significant_shuts_the_supervisor_down_when_a_significant_child_ends_unrestarted(restart, how):
    def main():
        sup = occ.Supervisor.start(
            [spec("other"), spec("sig", restart=restart, significant=True)], auto_shutdown="any_significant"
        )
        sup_ref = occ.monitor(sup)
        other = children_of(sup)["other"]
        other_ref = occ.monitor(other)
        end_and_wait(children_of(sup)["sig"], how)
        down_of(sup, sup_ref)
        down_of(other, other_ref)
        return "sup ended", "other ended"

    assert occ.run(main) == ("sup ended", "other ended")


def test_any_significant_keeps_running_when_a_transient_significant_child_crashes_and_is_restarted():
    def main():
        sup = occ.Supervisor.start(
            [spec("sig", restart="transient", significant=True)], auto_shutdown="any_significant", intensity=5
        )
        old = children_of(sup)["sig"]
        end_and_wait(old, "raise")
        return replaced(sup, "sig", old) not in (old, None), alive(sup)

    assert occ.run(main) == (True, True)


def test_a_non_significant_child_that_ends_does_not_shut_the_supervisor_down():
    def main():
        sup = occ.Supervisor.start(
            [spec("plain", restart="transient"), spec("sig", restart="transient", significant=True)],
            auto_shutdown="any_significant",
        )
        end_and_wait(children_of(sup)["plain"], "return")
        return poll(lambda: children_of(sup)["plain"], lambda pid: pid is None), alive(sup)

    assert occ.run(main) == (None, True)


def test_all_significant_shuts_the_supervisor_down_only_when_the_last_significant_child_ended():
    def main():
        sup = occ.Supervisor.start(
            [spec(c, restart="transient", significant=True) for c in ("s1", "s2")],
            auto_shutdown="all_significant",
        )
        sup_ref = occ.monitor(sup)
        end_and_wait(children_of(sup)["s1"], "return")
        after_first = poll(lambda: children_of(sup)["s1"], lambda pid: pid is None), alive(sup)
        end_and_wait(children_of(sup)["s2"], "return")
        down_of(sup, sup_ref)
        return after_first, "sup ended"

    assert occ.run(main) == ((None, True), "sup ended")


def test_auto_shutdown_of_a_significant_nested_supervisor_shuts_its_parent_down_too():
    def main():
        inner = nested([spec("leaf", restart="transient", significant=True)], auto_shutdown="any_significant")
        top = occ.Supervisor.start(
            [spec("other"), spec("sub", inner, restart="transient", significant=True)],
            auto_shutdown="any_significant",
        )
        top_ref = occ.monitor(top)
        sub = children_of(top)["sub"]
        end_and_wait(children_of(sub)["leaf"], "return")
        down_of(top, top_ref)
        return "top ended"

    assert occ.run(main) == "top ended"


# --- shutdown -------------------------------------------------------------------------------------


def test_brutal_kill_ends_a_child_at_once_without_running_terminate():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec("r", Recorded, shutdown="brutal_kill")])
        _, _, pid, _ = events("started", 1)[0]
        ref = occ.monitor(pid)
        occ.Supervisor.terminate_child(sup, "r")
        kind = down_of(pid, ref)[0]
        # The DOWN comes after every message the child sent (API.md, section 4).
        try:
            occ.receive(("stopped", "r", occ.ANY, occ.ANY), timeout=0)
        except TimeoutError:
            return kind, "terminate did not run"
        return kind, "terminate ran"

    assert occ.run(main) == ("killed", "terminate did not run")


def test_a_server_child_that_traps_exits_runs_terminate_within_its_shutdown_time():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec("r", Recorded, shutdown=5.0)])
        _, _, pid, _ = events("started", 1)[0]
        ref = occ.monitor(pid)
        asked = time.monotonic()
        occ.Supervisor.terminate_child(sup, "r")
        took = time.monotonic() - asked
        down_of(pid, ref)
        try:
            occ.receive(("stopped", "r", pid, occ.ANY), timeout=0)
        except TimeoutError:
            return "terminate did not run", took < 2
        return "terminate ran", took < 2

    assert occ.run(main) == ("terminate ran", True)


def test_a_child_that_ignores_its_shutdown_is_killed_when_its_shutdown_time_is_up():
    def main():
        occ.register(RECORDER)
        sup = occ.Supervisor.start([spec("stubborn", stubborn, shutdown=0.5)])
        _, _, pid, _ = events("started", 1)[0]
        ref = occ.monitor(pid)
        asked = time.monotonic()
        occ.Supervisor.terminate_child(sup, "stubborn")
        took = time.monotonic() - asked
        return down_of(pid, ref)[0], round(took, 3)

    kind, took = occ.run(main)
    assert kind == "killed"
    assert 0.45 <= took < 2.5, took


def test_a_child_that_does_not_trap_exits_is_stopped_at_once_whatever_its_shutdown_time():
    # As exit(Pid, shutdown) in OTP: the shutdown signal ends a process that
    # does not trap exits; only a trapping one gets the time to clean up.
    def main():
        sup = occ.Supervisor.start([spec("w", shutdown=10.0)])
        pid = children_of(sup)["w"]
        ref = occ.monitor(pid)
        asked = time.monotonic()
        occ.Supervisor.terminate_child(sup, "w")
        took = time.monotonic() - asked
        down_of(pid, ref)
        return round(took, 3)

    took = occ.run(main)
    assert took < 2, took


# --- bad specs --------------------------------------------------------------------------------------


def good(cid: str = "a", **more: Any) -> dict[str, Any]:
    return {"id": cid, "function": worker, "args": (cid,), **more}


BAD_SPECS = {
    # name: (children, options, exception, match)
    "missing id": ([{"function": worker, "args": ("a",)}], {}, (ValueError, TypeError), r"(?s)^.*\bid\b"),
    "missing function": ([{"id": "a"}], {}, (ValueError, TypeError), r"(?s)^.*\bfunction\b"),
    "unknown restart type": ([good(restart="sometimes")], {}, ValueError, naming("sometimes")),
    "unknown key": ([good(restrat="permanent")], {}, ValueError, naming("restrat")),
    "non-callable function": ([{"id": "a", "function": "not a function"}], {}, TypeError, naming("not a function")),
    "duplicate ids": ([good("twin"), good("twin")], {}, ValueError, naming("twin")),
    "unknown strategy": ([good()], {"strategy": "one_for_some"}, ValueError, naming("one_for_some")),
    "negative intensity": ([good()], {"intensity": -1}, ValueError, naming(-1)),
    "simple_one_for_one with two specs": (
        [good("a"), good("b")], {"strategy": "simple_one_for_one"}, ValueError, r"(?s)^.*simple_one_for_one"
    ),
    "simple_one_for_one with no spec": ([], {"strategy": "simple_one_for_one"}, ValueError, r"(?s)^.*simple_one_for_one"),
    "unknown auto_shutdown": ([good()], {"auto_shutdown": "sometimes"}, ValueError, naming("sometimes")),
    "permanent significant child": (
        [good("sig", significant=True)], {"auto_shutdown": "any_significant"}, ValueError, r"(?s)^.*('sig'|'permanent')"
    ),
    # OTP 24: with auto_shutdown "never", a significant child is rejected.
    "significant child with auto_shutdown never": (
        [good("sig", restart="transient", significant=True)], {}, ValueError, r"(?s)^.*('sig'|significant)"
    ),
}  # fmt: skip


@pytest.mark.parametrize("auto_shutdown", ["any_significant", "all_significant"])
def test_simple_one_for_one_with_an_auto_shutdown_other_than_never_raises_value_error_naming_both(auto_shutdown):
    # OTP refuses the pair with bad_combination (issue 10).
    with occ.runtime():
        before = len(occ.processes())
        with pytest.raises(
            ValueError,
            match=rf"^strategy='simple_one_for_one' cannot have auto_shutdown='{auto_shutdown}' \(OTP refuses it too\); "
            r"use auto_shutdown='never' with simple_one_for_one, or another strategy$",
        ):
            occ.Supervisor.start(
                [good("t", restart="temporary", significant=True)],
                strategy="simple_one_for_one",
                auto_shutdown=auto_shutdown,
            )
        assert len(occ.processes()) == before


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_bad_spec_raises_in_the_caller_naming_the_offending_value_before_any_process_starts(case):
    children, options, exception, match = BAD_SPECS[case]
    with occ.runtime():
        before = len(occ.processes())
        with pytest.raises(exception, match=match):
            occ.Supervisor.start(children, **options)
        assert len(occ.processes()) == before
        assert ask_a_new_process() == "are you there?"
