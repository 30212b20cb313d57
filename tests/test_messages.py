"""Messages: send, selective receive, timeouts, ordering, value types (API.md, section 3)."""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Any

import pytest

import occasional as occ

from conftest import drain_mailbox


def idle() -> None:
    occ.receive()


def echo() -> None:
    """Send every (sender, payload) message's payload back to its sender."""
    while True:
        sender, payload = occ.receive()
        occ.send(sender, payload)


# --- selective receive ------------------------------------------------------------


def test_a_message_skipped_by_match_stays_in_the_mailbox_in_order():
    def main():
        me = occ.slf()
        for msg in (("a", 1), ("b", 2), ("a", 3)):
            occ.send(me, msg)
        first = occ.receive(("b", occ.ANY), timeout=1)
        return first, [occ.receive(timeout=1) for _ in range(2)]

    assert occ.run(main) == (("b", 2), [("a", 1), ("a", 3)])


def test_receive_without_match_returns_the_oldest_message():
    def main():
        me = occ.slf()
        for msg in ("first", "second", "third"):
            occ.send(me, msg)
        return [occ.receive(timeout=1) for _ in range(3)]

    assert occ.run(main) == ["first", "second", "third"]


def test_a_predicate_match_returns_the_oldest_message_it_accepts():
    def main():
        me = occ.slf()
        for n in (1, 5, 3, 8):
            occ.send(me, n)
        big = [occ.receive(lambda m: m > 4, timeout=1) for _ in range(2)]
        return big, drain_mailbox()

    assert occ.run(main) == ([5, 8], [1, 3])


def test_any_matches_any_message():
    def main():
        me = occ.slf()
        occ.send(me, {"any": "thing"})
        occ.send(me, None)
        return [occ.receive(occ.ANY, timeout=1) for _ in range(2)]

    assert occ.run(main) == [{"any": "thing"}, None]


def test_a_type_template_matches_by_isinstance():
    def main():
        me = occ.slf()
        for msg in ("text", 7, b"bytes", 8):
            occ.send(me, msg)
        ints = [occ.receive(int, timeout=1) for _ in range(2)]
        return ints, drain_mailbox()

    assert occ.run(main) == ([7, 8], ["text", b"bytes"])


def test_a_type_template_matches_instances_of_subclasses():
    def main():
        me = occ.slf()
        occ.send(me, ValueError("not a lookup"))
        occ.send(me, KeyError("missing"))
        got = occ.receive(LookupError, timeout=1)
        return type(got), got.args

    assert occ.run(main) == (KeyError, ("missing",))


def test_a_tuple_template_matches_element_wise_into_nested_tuples():
    def main():
        me = occ.slf()
        occ.send(me, ("result", ("x", 1)))
        occ.send(me, ("result", (2, "y")))
        return occ.receive(("result", (int, occ.ANY)), timeout=1), drain_mailbox()

    assert occ.run(main) == (("result", (2, "y")), [("result", ("x", 1))])


def test_a_tuple_template_matches_only_tuples_of_its_length():
    def main():
        me = occ.slf()
        for msg in (("a",), ("a", 1, 2), ("a", 3)):
            occ.send(me, msg)
        return occ.receive(("a", occ.ANY), timeout=1), drain_mailbox()

    assert occ.run(main) == (("a", 3), [("a",), ("a", 1, 2)])


def test_a_tuple_template_does_not_match_a_string_of_the_same_length():
    def main():
        me = occ.slf()
        occ.send(me, "ab")
        occ.send(me, ("a", "b"))
        return occ.receive(("a", occ.ANY), timeout=1), drain_mailbox()

    assert occ.run(main) == (("a", "b"), ["ab"])


def test_a_list_template_matches_element_wise_and_by_length():
    def main():
        me = occ.slf()
        for msg in (["x", "y"], ["x", 5, 6], ["x", 5]):
            occ.send(me, msg)
        return occ.receive(["x", int], timeout=1), drain_mailbox()

    assert occ.run(main) == (["x", 5], [["x", "y"], ["x", 5, 6]])


def test_a_value_template_matches_by_equality():
    def main():
        me = occ.slf()
        for msg in (("n", 1), ("n", 2.0), {"k": 1, "extra": 2}, {"k": 1}):
            occ.send(me, msg)
        number = occ.receive(("n", 2), timeout=1)
        mapping = occ.receive({"k": 1}, timeout=1)
        return number, mapping, drain_mailbox()

    assert occ.run(main) == (("n", 2.0), {"k": 1}, [("n", 1), {"k": 1, "extra": 2}])


# --- timeouts -------------------------------------------------------------------------


def test_receive_with_a_timeout_raises_timeout_error_when_nothing_matches():
    def main():
        occ.send(occ.slf(), "not this one")
        try:
            occ.receive("that one", timeout=0.1)
        except TimeoutError:
            return "timed out", drain_mailbox()

    assert occ.run(main) == ("timed out", ["not this one"])


def test_a_timeout_is_a_deadline_that_arriving_non_matching_messages_do_not_extend():
    def chatter(target):
        for _ in range(300):  # a steady stream for about 3 s
            occ.send(target, "noise")
            time.sleep(0.01)

    def main():
        occ.spawn(chatter, occ.slf())
        occ.receive("noise", timeout=10)  # the stream has started
        started = time.monotonic()
        try:
            occ.receive("never sent", timeout=0.5)
        except TimeoutError:
            return "timed out", time.monotonic() - started

    outcome, elapsed = occ.run(main)
    assert outcome == "timed out"
    assert 0.49 <= elapsed < 1.5


def test_timeout_zero_returns_a_matching_message_already_in_the_mailbox():
    def main():
        me = occ.slf()
        occ.send(me, "first")
        occ.send(me, "second")
        occ.receive("second", timeout=10)  # so "first" is in the mailbox too
        return occ.receive(timeout=0)

    assert occ.run(main) == "first"


def test_timeout_zero_on_an_empty_mailbox_raises_timeout_error_at_once():
    def main():
        started = time.monotonic()
        try:
            occ.receive(timeout=0)
        except TimeoutError:
            return "timed out", time.monotonic() - started

    outcome, elapsed = occ.run(main)
    assert outcome == "timed out"
    assert elapsed < 0.5


def test_a_negative_timeout_raises_value_error():
    def main():
        try:
            occ.receive(timeout=-1)
        except ValueError:
            return "value error"

    assert occ.run(main) == "value error"


# --- sending ------------------------------------------------------------------------


def test_send_returns_none():
    def main():
        return occ.send(occ.slf(), "hello"), occ.receive(timeout=1)

    assert occ.run(main) == (None, "hello")


def test_sending_to_a_dead_pid_is_silently_dropped():
    def main():
        pid, ref = occ.spawn_monitor(lambda: None)
        occ.receive(("DOWN", ref, pid, occ.ANY), timeout=10)
        return occ.send(pid, "into the void")

    assert occ.run(main) is None


def test_messages_from_one_sender_arrive_in_the_order_sent():
    def sender(target, count):
        for i in range(count):
            occ.send(target, ("seq", i))

    def main():
        occ.spawn(sender, occ.slf(), 10_000)
        return [occ.receive(("seq", int), timeout=10)[1] for _ in range(10_000)]

    assert occ.run(main) == list(range(10_000))


def test_messages_from_several_senders_keep_each_senders_order():
    def sender(target, tag, count):
        for i in range(count):
            occ.send(target, (tag, i))

    def main():
        me = occ.slf()
        for tag in ("a", "b", "c"):
            occ.spawn(sender, me, tag, 2_000)
        got = [occ.receive(timeout=10) for _ in range(6_000)]
        return {tag: [i for t, i in got if t == tag] for tag in ("a", "b", "c")}

    assert occ.run(main) == {tag: list(range(2_000)) for tag in ("a", "b", "c")}


PAYLOAD = b"x" * 100


def flooder(parent: occ.Pid, count: int) -> None:
    """Send ``count`` messages to a peer before reading any of the peer's, then read them all."""
    _, peer = occ.receive(("peer", occ.ANY))
    for i in range(count):
        occ.send(peer, ("flood", i, PAYLOAD))
    got = [occ.receive(("flood", int, bytes), timeout=30)[1] for _ in range(count)]
    occ.send(parent, ("done", occ.slf(), got == list(range(count))))


@pytest.mark.timeout(90)
def test_two_processes_flooding_each_other_do_not_deadlock():
    def main():
        me = occ.slf()
        a = occ.spawn(flooder, me, 50_000)
        b = occ.spawn(flooder, me, 50_000)
        occ.send(a, ("peer", b))
        occ.send(b, ("peer", a))
        done = [occ.receive(("done", occ.ANY, occ.ANY), timeout=60) for _ in range(2)]
        return sorted((pid == a, in_order) for _, pid, in_order in done)

    assert occ.run(main) == [(False, True), (True, True)]


def test_a_10_mb_bytes_message_arrives_whole():
    size = 10 * 1024 * 1024

    def send_big(parent):
        occ.send(parent, ("big", bytes(range(256)) * (size // 256)))

    def main():
        occ.spawn(send_big, occ.slf())
        _, got = occ.receive(("big", bytes), timeout=30)
        return len(got), got == bytes(range(256)) * (size // 256)

    assert occ.run(main) == (size, True)


def test_a_message_sent_to_oneself_arrives():
    def main():
        occ.send(occ.slf(), ("to", "myself"))
        return occ.receive(timeout=1)

    assert occ.run(main) == ("to", "myself")


# --- value types round-trip exactly -------------------------------------------------


class CustomError(Exception):
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: tuple


class Colour(enum.IntEnum):
    RED = 1
    GREEN = 2


def exactly_equal(a: Any, b: Any) -> bool:
    """``a == b`` with the same types all the way down (a tuple stays a tuple, a frozenset a frozenset).

    Exceptions compare by type and ``args``.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseException):
        return exactly_equal(a.args, b.args)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(exactly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for key, value in a.items():
            keys = [k for k in b if exactly_equal(key, k)]
            if len(keys) != 1 or not exactly_equal(value, b[keys[0]]):
                return False
        return True
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(exactly_equal(x, y) for y in b) for x in a)
    return bool(a == b)


def a_no_process_error() -> occ.NoProcess:
    try:
        occ.send("nobody-by-this-name", "hello")
    except occ.NoProcess as exc:
        return exc
    raise AssertionError("sending to an unregistered name did not raise NoProcess")


# Each value is made inside the runtime, so only messages carry it.
VALUES: dict[str, Callable[[], Any]] = {
    "None": lambda: None,
    "True": lambda: True,
    "False": lambda: False,
    "zero": lambda: 0,
    "negative int": lambda: -17,
    "int just past 64 bits": lambda: 2**64,
    "big negative int": lambda: -(2**200) - 1,
    "huge int": lambda: 3**2000,
    "float": lambda: 3.25,
    "float equal to an int": lambda: 2.0,
    "infinity": lambda: float("-inf"),
    "str": lambda: "hello",
    "unicode str": lambda: "ünïcödé ✓ 🐍",
    "empty str": lambda: "",
    "bytes": lambda: b"\x00\xff bytes",
    "empty bytes": lambda: b"",
    "empty tuple": lambda: (),
    "one-element tuple": lambda: ("only",),
    "tuple": lambda: (1, "two", 3.0),
    "nested tuples": lambda: (1, (2, (3, ()))),
    "bool and int in a tuple": lambda: (True, 1, False, 0),
    "empty list": lambda: [],
    "list": lambda: [1, "two", None],
    "list of tuples": lambda: [(1, 2), (3, 4)],
    "tuple of lists": lambda: ([1], [2, [3]]),
    "dict": lambda: {"a": 1, "b": [2]},
    "dict with tuple keys": lambda: {(1, 2): "pair", ("x", ("y",)): "nested"},
    "dict with mixed keys": lambda: {1: "int", "1": "str", None: "none", b"k": "bytes", 2.5: "float"},
    "empty set": lambda: set(),
    "set": lambda: {1, 2, 3},
    "set of tuples": lambda: {(1, 2), (3, 4)},
    "frozenset": lambda: frozenset({"a", "b"}),
    "set of frozensets": lambda: {frozenset({1}), frozenset({2, 3})},
    "nested": lambda: {
        "list": [(1, 2), {3}],
        "tuple": ({"x": frozenset({(1,)})}, [b"b", ("c",)]),
        "none": None,
    },
    "pid": lambda: occ.slf(),
    "pid in a tuple": lambda: ("pid", occ.slf()),
    "pid as a dict key": lambda: {occ.slf(): "me"},
    "ref": lambda: occ.spawn_monitor(idle)[1],
    "ValueError": lambda: ValueError("bad", 42),
    "KeyError": lambda: KeyError("key"),
    "custom exception": lambda: CustomError("custom", (1, 2)),
    "exception in a tuple": lambda: ("failed", RuntimeError("inner")),
    "occ.NoProcess": a_no_process_error,
    "dataclass": lambda: Point(1, (2, 3)),
    "IntEnum": lambda: Colour.RED,
    "IntEnum in a list": lambda: [Colour.GREEN, 2],
}


@pytest.mark.parametrize("make", VALUES.values(), ids=list(VALUES))
def test_a_value_round_trips_exactly_through_another_process(make):
    def main():
        sent = make()
        occ.send(occ.spawn(echo), (occ.slf(), sent))
        received = occ.receive(timeout=10)
        return exactly_equal(received, sent), repr(sent), repr(received)

    same, sent, received = occ.run(main)
    assert same, f"sent {sent}, received {received}"


def test_a_bytearray_arrives_as_bytes_with_the_same_content():
    # Mutable buffers travel as bytes, like Erlang binaries (CHANGELOG.md,
    # "Contract notes"): msgpack packs them natively, and telling them apart
    # would cost a walk of every message.
    def main():
        occ.send(occ.spawn(echo), (occ.slf(), [bytearray(b"mutable"), memoryview(b"view")]))
        received = occ.receive(timeout=10)
        return [(type(x).__name__, x) for x in received]

    assert occ.run(main) == [("bytes", b"mutable"), ("bytes", b"view")]
