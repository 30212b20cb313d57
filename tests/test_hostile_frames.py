"""One process must not take down the runtime (API.md section 10, issue 10).

A malformed control frame gets an error reply, raised in the caller, or ends
its sender with a reason that names the problem; central, the journal writer
and every other process go on. What a process that does not read can make
central hold is bounded.

Only a raw socket can carry a malformed frame, so these tests write to the
calling process's central socket through its context (as tests/test_wire.py
does): there is no public way to send one.
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Any

import msgpack
import pytest

import occasional as occ
from occasional import durable
from occasional.core import codec, protocol as P
from occasional.core.context import current
from occasional.durable import protocol as D
from occasional.sck.frame import frame
from occasional.testing import run


def _central() -> Any:
    return current("test")


def _write(data: bytes) -> None:
    _central().central.sendall(data)


def _packed(msg: list[Any]) -> bytes:
    return frame(msgpack.packb(msg))


def _echo() -> None:
    while True:
        msg = occ.receive()
        if type(msg) is tuple and len(msg) == 2 and isinstance(msg[0], occ.Pid):
            occ.send(msg[0], msg[1])


def _durable_echo() -> None:
    while True:
        msg = occ.receive()
        if type(msg) is tuple and len(msg) == 2 and isinstance(msg[0], occ.Pid):
            occ.send(msg[0], ("durable", msg[1]))


def _round_trip(pid: occ.Pid, value: Any) -> Any:
    occ.send(pid, (occ.slf(), value))
    return occ.receive(timeout=10)


def _down(ref: occ.Ref) -> Any:
    return occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)[3]


# -- malformed frames -------------------------------------------------------------------


def _writes_then_sleeps(data: bytes) -> None:
    _write(data)
    time.sleep(30)


def test_an_unhashable_op_code_ends_its_sender_with_a_reason_naming_it_and_the_runtime_goes_on():
    def main():
        echo = occ.spawn(_echo)
        _, ref = occ.spawn_monitor(_writes_then_sleeps, _packed([[1], 2]))
        return _down(ref), _round_trip(echo, "still here"), occ.whereis("nobody")

    assert run(main) == (("killed", "sent a control frame with an unknown op code [1]"), "still here", None)


def _asks(op: int, *fields: Any) -> str:
    try:
        _central().call(op, *fields)
    except TypeError as e:
        return str(e)
    return "answered"


def test_a_kill_whose_why_is_not_an_encoded_value_raises_type_error_in_the_caller_and_kills_nobody():
    def main():
        echo = occ.spawn(_echo)
        asked = occ.spawn(_asks, P.KILL, echo.id, 3)
        occ.monitor(asked)
        _, _, _, (_, said) = occ.receive(("DOWN", occ.ANY, asked, occ.ANY), timeout=10)
        return said, _round_trip(echo, "alive")

    said, answer = run(main)
    assert (
        said == "central refused a malformed request: a KILL request has why=3, which is not bytes of an encoded value"
    )
    assert answer == "alive"


@pytest.mark.parametrize(
    "reason",
    [["linked", b"\x00"], ["killed"], "shutdown", ["killed", "not bytes"], ["killed", b"\xc1"]],
    ids=["linked-with-bytes", "one-item", "a-str", "detail-not-bytes", "detail-not-msgpack"],
)
def test_an_exit_signal_whose_reason_has_the_wrong_shape_is_refused_and_its_target_lives(reason):
    # Accepted, it would reach the target's monitors (here: main) in a DOWN
    # that they cannot decode.
    def main():
        target = occ.spawn(_echo)
        occ.monitor(target)
        said = _asks(P.SIGNAL, target.id, reason)
        return said, _round_trip(target, "alive")

    said, answer = run(main)
    assert re.match(
        r"^central refused a malformed request: a SIGNAL request has reason=.*, which is not a reason", said
    )
    assert answer == "alive"


def _register_after_garbage(bystander_id: int) -> None:
    garbage = frame(b"\xc1")  # a whole frame whose body is not msgpack
    _write(garbage + _packed([P.REGISTER, 1, "named-after-the-garbage", bystander_id]))
    time.sleep(30)


def test_frames_after_a_malformed_one_in_the_same_write_are_still_handled():
    def main():
        bystander = occ.spawn(_echo)
        _, ref = occ.spawn_monitor(_register_after_garbage, bystander.id)
        return _down(ref), occ.whereis("named-after-the-garbage") == bystander

    (kind, why), registered = run(main)
    assert (kind, registered) == ("killed", True)
    assert why.startswith("sent a control frame that is not msgpack")


def _register_then_bad_header(bystander_id: int) -> None:
    _write(_packed([P.REGISTER, 1, "named-before-the-bad-header", bystander_id]) + b"\xff\xff\xff\xff")
    time.sleep(30)


def test_frames_before_a_bad_header_are_handled_and_the_sender_ends_with_the_limit_in_its_reason():
    def main():
        bystander = occ.spawn(_echo)
        _, ref = occ.spawn_monitor(_register_then_bad_header, bystander.id)
        return _down(ref), occ.whereis("named-before-the-bad-header") == bystander

    why = f"its connection to central broke: peer announced a frame of 4294967295 bytes, over the limit of {P.MAX_CONTROL_FRAME} bytes"
    assert run(main) == (("killed", why), True)


# -- journal records --------------------------------------------------------------------

BAD_RECORDS = {
    "event-body-not-bytes": (D.D_EVENTS, [[1, "step", "x", {"not": "bytes"}]]),
    "event-seq-over-64-bits": (D.D_EVENTS, [[2**64 - 1, "step", "x", b""]]),
    "event-not-a-list": (D.D_EVENTS, [7]),
    "send-seq-over-64-bits": (D.D_SEND, "bad-record", codec.dumps(1), "bad-record", 2**64 - 1, []),
    "send-body-not-msgpack": (D.D_SEND, "bad-record", b"\xc1", None, 0, []),
    "finish-detail-not-bytes": (D.D_FINISH, [], ["ok", "not bytes"]),
    "sleep-until-infinity": (D.D_SLEEP, [], float("inf")),
}


def _writes_a_bad_record(op: int, *fields: Any) -> str:
    return _asks(op, *fields)


@pytest.mark.parametrize("record", sorted(BAD_RECORDS))
def test_a_journal_record_of_the_wrong_type_raises_in_the_durable_process_and_the_journal_goes_on(record, journal):
    # Accepted, each of these failed the whole group commit (the writer then
    # ends the runtime), or reached a process that could not decode it.
    def main():
        durable.spawn("bad-record", _writes_a_bad_record, *BAD_RECORDS[record])
        said = durable.result("bad-record", timeout=10)
        echo = durable.spawn("echo", _durable_echo)
        return said, _round_trip(echo, "committed")

    (kind, said), answer = run(main, journal=journal)
    assert kind == "ok"
    assert re.match(r"^central refused a malformed request: a D_[A-Z]+ request has \w+=", said), said
    assert answer == ("durable", "committed")


# -- what a process that does not read can make central hold -------------------------------


def _monitors_and_never_reads(main: occ.Pid, target: occ.Pid, n: int) -> None:
    for _ in range(n):
        occ.monitor(target)
    occ.send(main, "monitoring")
    time.sleep(60)  # never reads its central socket again


def _returns_a_megabyte() -> bytes:
    occ.receive()
    return b"x" * (1 << 20)


def test_a_process_that_never_reads_its_central_socket_is_killed_at_the_unread_limit_with_a_warning(capfd):
    n = P.MAX_UNREAD // (1 << 20) + 8  # DOWNs of one megabyte each: over the limit

    def main():
        target = occ.spawn(_returns_a_megabyte)
        _, ref = occ.spawn_monitor(_monitors_and_never_reads, occ.slf(), target, n)
        occ.receive("monitoring", timeout=10)
        occ.send(target, "go")
        return _down(ref)

    kind, why = run(main)
    assert kind == "killed"
    assert re.match(rf"^its central socket held over {P.MAX_UNREAD} bytes unread \(\d+ bytes\) for 1 s", why), why
    # Central's log (its stderr is this test's): the WARNING names the process and the limit.
    assert re.search(
        rf"(?m)^occasional: process <occ \d+> \(.*_monitors_and_never_reads\): its central socket held "
        rf"over {P.MAX_UNREAD} bytes unread .*; killing it$",
        capfd.readouterr().err,
    )


def _central_peak_rss() -> int:
    """Central's peak resident memory (VmHWM), in bytes: central is the
    forkserver's parent, and the forkserver is every process's parent."""
    with open(f"/proc/{os.getppid()}/stat") as f:
        central = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{central}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def _reads_after_the_gate_opens(gate: str, n: int) -> list[tuple[int, int]]:
    with open(gate, "rb") as f:  # blocks until main opens it for writing; no receive meanwhile
        f.read()
    return [(i, len(body)) for i, body in (occ.receive() for _ in range(n))]


def test_messages_to_a_durable_process_that_does_not_read_wait_in_the_journal_not_in_central(journal, tmp_path):
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    n, size = 80, 1 << 20  # 80 MiB in all, ten times the forwarding window

    def main():
        pid = durable.spawn("slow-reader", _reads_after_the_gate_opens, gate, n)
        before = _central_peak_rss()
        for i in range(n):
            occ.send(pid, (i, b"m" * size))
        grown = _central_peak_rss() - before
        with open(gate, "wb"):
            pass
        return grown, durable.result("slow-reader", timeout=30)

    grown, (kind, received) = run(main, journal=journal)
    assert (kind, received) == ("ok", [(i, size) for i in range(n)])
    assert grown < 40 << 20, f"central's peak memory grew by {grown} bytes"


# -- fuzz -------------------------------------------------------------------------------


def _frames() -> Any:
    """What the fuzz test throws: requests (some well-formed), then frames
    (random msgpack lists, random bytes inside a valid frame, mutated frames).

    Hypothesis is imported here, not at the top: every process that runs a
    function of this module imports the module, and importing Hypothesis
    costs each of them 0.2 s.
    """
    from hypothesis import strategies as st

    anything = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats()
        | st.text(max_size=8)
        | st.binary(max_size=16),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=8,
    )
    encoded = st.builds(
        codec.dumps, anything.filter(lambda v: not (isinstance(v, float) and math.isnan(v)))
    ) | st.binary(max_size=8)
    event = st.lists(st.integers(0, 99) | anything, min_size=4, max_size=4) | st.tuples(
        st.integers(0, 2**64 - 1), st.text(max_size=4), st.text(max_size=4), st.binary(max_size=8)
    ).map(list)
    reason = st.tuples(st.sampled_from(["ok", "error", "killed", "linked"]) | st.text(max_size=4), encoded).map(
        list
    ) | st.tuples(st.just("linked"), st.lists(st.integers(0, 9) | anything, min_size=3, max_size=3)).map(list)
    # Plausible values per field name (protocol.REQUESTS), so that requests
    # get past the shape check now and then and reach the handlers.
    plausible: dict[str, Any] = {
        "req": st.integers(0, 1000),
        "blob": st.binary(max_size=8),
        "name": st.text(max_size=6) | st.none(),
        "link": st.booleans(),
        "mon_owner": st.integers(-5, 50) | st.none(),
        "mon_n": st.integers(0, 50) | st.none(),
        "function": st.text(max_size=6),
        "sys_path": st.lists(st.text(max_size=4), max_size=2),
        "title": st.text(max_size=6),
        "meta": st.none() | st.dictionaries(st.sampled_from(["argv", "restarts", "child"]), anything, max_size=2),
        "target": st.integers(0, 60),
        "owner": st.integers(-5, 50),
        "n": st.integers(0, 50),
        "flag": st.booleans(),
        "why": encoded,
        "kind": st.sampled_from(["ok", "error", "exitcode", "linked"]),
        "detail": encoded,
        "summary": st.text(max_size=6),
        "reason": reason,
        "id": st.sampled_from(["fuzz-a", "fuzz-b"]) | st.text(max_size=4),
        "dest": st.sampled_from(["fuzz-a", "fuzz-b"]) | st.text(max_size=4),
        "body": encoded,
        "sender": st.none() | st.text(max_size=4),
        "send_seq": st.integers(0, 2**64 - 1),
        "events": st.lists(event, max_size=3),
        "wake_at": st.floats() | st.integers(-(2**63), 2**64 - 1),
        "resume": st.booleans(),
        "sock_id": st.lists(st.integers(0, 50), min_size=2, max_size=2),
    }
    ops = st.sampled_from(sorted(P.REQUESTS))

    @st.composite
    def request(draw: Any) -> list[Any]:
        op = draw(ops)
        msg = [op] + [draw(plausible[f.name] | anything) for f in P.REQUESTS[op][1]]
        if draw(st.booleans()):  # a field too many or too few
            msg = msg + [draw(anything)] if draw(st.booleans()) else msg[:-1] or [op]
        return msg

    op_list = st.tuples(ops | anything, st.lists(anything, max_size=11)).map(lambda t: [t[0], *t[1]])
    message = request() | op_list | st.lists(anything, min_size=1, max_size=12) | anything
    one_frame = (
        message.map(_packed)
        | st.binary(max_size=64).map(frame)
        | st.tuples(message.map(_packed), st.integers(0, 10**6), st.integers(0, 2), st.integers(0, 255)).map(
            lambda t: _mutate(*t)
        )
    )
    return st.tuples(st.lists(message, max_size=2), st.lists(one_frame, min_size=1, max_size=3))


def _mutate(data: bytes, at: int, how: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    at %= len(data)
    if how == 0:  # flip a byte
        return data[:at] + bytes([data[at] ^ (byte or 1)]) + data[at + 1 :]
    if how == 1:  # cut the rest
        return data[:at]
    return data[:at] + bytes([byte]) + data[at:]  # insert a byte


def _touches(msg: Any, protected_ids: set[int]) -> bool:
    """A well-formed KILL, SIGNAL, LINK or durable stop of a bystander ends it
    by design, not by a defect: such frames are not thrown."""
    if type(msg) is not list or len(msg) < 3:
        return False
    if msg[0] in (P.KILL, P.SIGNAL, P.LINK, P.MONITOR, P.CONNECT):
        return any(type(v) is int and v in protected_ids for v in msg[1:])
    if msg[0] in (D.D_STOP, D.D_FOLLOW, D.D_SEND, D.D_SPAWN):
        return "echo" in msg
    return False


def test_random_and_mutated_frames_from_a_process_never_stop_central_the_journal_or_a_bystander(journal):
    from hypothesis import HealthCheck, assume, given, settings

    def throws(data: bytes) -> None:
        # Defined here, so the process runs it without importing this module
        # (and pytest). It returns at once: a torn frame ends at its EOF, and
        # every frame written before that is handled first.
        current("fuzz").central.sendall(data)

    with occ.runtime(journal=journal):
        bystander = occ.spawn(_echo)
        echo = durable.spawn("echo", _durable_echo)
        protected = {occ.slf().id, bystander.id, echo.id}
        thrown = [0]

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(thrown_now=_frames())
        def throw(thrown_now: tuple[list[Any], list[bytes]]) -> None:
            messages, frames = thrown_now
            assume(not any(_touches(m, protected) for m in messages))
            for f in frames:
                try:
                    decoded = msgpack.unpackb(f[4:], strict_map_key=False)
                except (ValueError, TypeError):  # not one msgpack value: not a request of anyone
                    continue
                assume(not _touches(decoded, protected))
            thrown[0] += 1
            data = b"".join(_packed(m) for m in messages) + b"".join(frames)
            _, ref = occ.spawn_monitor(throws, data)
            occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
            assert _round_trip(bystander, thrown[0]) == thrown[0]
            assert _round_trip(echo, thrown[0]) == ("durable", thrown[0])
            assert bystander in occ.processes()

        throw()
        assert thrown[0] > 50
