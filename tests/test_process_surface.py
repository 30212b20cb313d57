"""The process side of core: the surface the layers above it use (issue 11),
and timeouts that say how long they waited and for what.

Upper layers (behaviours, ports, durable) reach a process's context only
through its public methods: a client call to central (``request`` and
``wait_reply``), fd watching, posting to the mailbox, flow control and
dropping a late answer. Each is tried here in a real process.
"""

from __future__ import annotations

import os
import select
import time
from typing import Any

import pytest

import occasional as occ
from occasional import durable
from occasional.core import protocol as P
from occasional.core.context import current
from occasional.testing import run


class Parker(occ.Server):
    """A server that never answers a call."""

    def handle_call(self, request: Any, frm: Any, state: Any) -> Any:
        return occ.noreply(state)


def _send_to(dest: occ.Pid, *msgs: Any) -> None:
    for msg in msgs:
        occ.send(dest, msg)


# --- timeouts say how long and for what ---------------------------------------------------


def test_a_receive_that_times_out_names_its_template_and_how_long_it_waited():
    def main():
        occ.send(occ.slf(), ("a", 1))
        with pytest.raises(
            TimeoutError,
            match=r"^receive\(\('b', occ\.ANY\), timeout=0\.2\): no matching message arrived within 0\.2 s$",
        ):
            occ.receive(("b", occ.ANY), timeout=0.2)
        return occ.receive(timeout=0)

    assert run(main) == ("a", 1)


def test_a_receive_that_times_out_names_its_predicate():
    def main():
        def wanted(msg: Any) -> bool:
            return msg == "never"

        with pytest.raises(
            TimeoutError,
            match=r"^receive\(test_a_receive_that_times_out_names_its_predicate\.<locals>\.main\.<locals>\.wanted, "
            r"timeout=0\.1\): no matching message arrived within 0\.1 s$",
        ):
            occ.receive(wanted, timeout=0.1)

    run(main)


def test_a_receive_with_timeout_0_and_an_empty_mailbox_says_it_only_looked():
    def main():
        with pytest.raises(TimeoutError, match=r"^receive\(timeout=0\): no message in the mailbox$"):
            occ.receive(timeout=0)

    run(main)


def test_a_call_that_times_out_names_the_server_the_request_and_the_seconds():
    def main():
        pid = Parker.start()
        with pytest.raises(TimeoutError, match=r"^call\(<occ \d+>, 'get'\): no reply within 0\.2 s$"):
            occ.call(pid, "get", timeout=0.2)

    run(main)


def test_a_call_by_name_that_times_out_names_the_process_that_holds_the_name():
    def main():
        pid = Parker.start(name="parker")
        with pytest.raises(
            TimeoutError, match=r"^call\('parker', 'get'\): no reply from <occ (\d+)> within 0\.25 s$"
        ) as e:
            occ.call("parker", "get", timeout=0.25)
        return str(e.value).endswith(f"from {pid!r} within 0.25 s")

    assert run(main) is True


def test_a_durable_result_that_times_out_names_the_id_and_the_seconds(journal: str):
    def waits() -> None:
        occ.receive()

    def main():
        durable.spawn("waits", waits)
        with pytest.raises(
            TimeoutError, match=r"^durable\.result\('waits', timeout=0\.2\): the process did not end within 0\.2 s$"
        ):
            durable.result("waits", timeout=0.2)

    run(main, journal=journal)


# --- late replies: dropped by a behaviour's rule, not core's ------------------------------


def test_a_message_shaped_like_a_reply_with_an_unhashable_ref_arrives_while_a_late_reply_is_awaited():
    def main():
        pid = Parker.start()
        try:
            occ.call(pid, "get", timeout=0.1)
        except TimeoutError:
            pass
        occ.spawn(_send_to, occ.slf(), ("$reply", [1], "a user's message"))
        return occ.receive(timeout=10)

    assert run(main) == ("$reply", [1], "a user's message")


def test_drop_on_arrival_drops_the_one_message_with_the_key_and_delivers_the_rest():
    def key_of(msg: Any) -> Any:
        return msg[1] if type(msg) is tuple and len(msg) == 2 and msg[0] == "answer" else None

    def main():
        current("test").drop_on_arrival(7, key_of)
        occ.spawn(_send_to, occ.slf(), ("answer", 7), ("answer", 7), ("answer", 8), "end")
        return [occ.receive(timeout=10) for _ in range(3)]

    assert run(main) == [("answer", 7), ("answer", 8), "end"]


# --- the context's surface ------------------------------------------------------------------


def test_request_sends_at_once_and_wait_reply_gets_the_answer_later():
    def main():
        ctx = current("test")
        req = ctx.request(P.WHEREIS, "nobody")
        return ctx.wait_reply(req, None)

    assert run(main) == (True, None)


def test_wait_reply_returns_none_at_the_deadline_and_the_answer_is_kept_for_later():
    def main():
        ctx = current("test")
        req = ctx.request(P.REGISTERED)
        early = ctx.wait_reply(req, time.monotonic())  # a deadline already past: nothing is read
        return early, ctx.wait_reply(req, time.monotonic() + 10)

    assert run(main) == (None, (True, []))


def test_post_puts_a_message_at_the_end_of_the_mailbox():
    def main():
        me = occ.slf()
        occ.send(me, "sent")
        current("test").post("posted")
        return occ.receive(timeout=0), occ.receive(timeout=0)

    assert run(main) == ("sent", "posted")


def test_discard_message_removes_only_the_oldest_message_it_accepts():
    def main():
        me = occ.slf()
        for msg in ("a", "b", "a"):
            occ.send(me, msg)
        found = current("test").discard_message(lambda m: m == "a")
        missing = current("test").discard_message(lambda m: m == "z")
        return found, missing, [occ.receive(timeout=0) for _ in range(2)]

    assert run(main) == (True, False, ["b", "a"])


def test_a_watched_fd_runs_its_handler_inside_receive():
    def main():
        ctx = current("test")
        r, w = os.pipe()
        try:
            ctx.watch_fd(r, select.EPOLLIN, lambda ev: ctx.post(("readable", os.read(r, 10))))
            os.write(w, b"x")
            got = occ.receive(timeout=10)
            ctx.unwatch_fd(r)
            ctx.unwatch_fd(r)  # a second time: nothing
            return got
        finally:
            os.close(r)
            os.close(w)

    assert run(main) == ("readable", b"x")


def test_modify_fd_with_no_events_pauses_a_watched_fd():
    def main():
        ctx = current("test")
        r, w = os.pipe()
        try:
            ctx.watch_fd(r, select.EPOLLIN, lambda ev: ctx.post(("readable", os.read(r, 10))))
            ctx.modify_fd(r, 0)
            os.write(w, b"x")
            try:
                paused = occ.receive(timeout=0.2)
            except TimeoutError:
                paused = "nothing"
            ctx.modify_fd(r, select.EPOLLIN)
            resumed = occ.receive(timeout=10)
            ctx.unwatch_fd(r)
            return paused, resumed
        finally:
            os.close(r)
            os.close(w)

    assert run(main) == ("nothing", ("readable", b"x"))


def test_queued_bytes_is_zero_for_a_process_nothing_waits_for():
    def main():
        ctx = current("test")
        pid = occ.spawn(occ.receive)
        before = ctx.queued_bytes(pid.id)
        occ.send(pid, "small")  # a small message goes straight to the socket
        return before, ctx.queued_bytes(pid.id)

    assert run(main) == (0, 0)
