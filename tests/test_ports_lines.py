"""framing="lines": every whole line of one read in one message (API.md section 8, issue 15)."""

from __future__ import annotations

import functools
import os
import re
import sys

import pytest

import occasional as occ
from occasional import ports
from occasional.testing import run

from conftest import frames_until_exit

PY = sys.executable


def writes_then_waits(*writes: bytes) -> list[str]:
    """argv of an executable that makes each of ``writes`` one write(2), reading
    a line of stdin before each one after the first, then waits for stdin to
    close: the owner decides when each write happens."""
    code = (
        "import os, sys\n"
        f"for i, data in enumerate({list(writes)!r}):\n"
        "    if i:\n"
        "        sys.stdin.buffer.readline()\n"
        "    os.write(1, data)\n"
        "sys.stdin.buffer.read()\n"
    )
    return [PY, "-c", code]


def test_the_lines_of_one_read_arrive_in_one_message_in_order_without_newlines():
    def main():
        port = ports.open_port(writes_then_waits(b"one\ntwo\n\nfour\n"), framing="lines")
        first = occ.receive((port, occ.ANY), timeout=10)
        ports.close(port)
        return first, frames_until_exit(port)

    port_msg, rest = run(main)
    assert port_msg[1] == ("lines", [b"one", b"two", b"", b"four"])
    assert rest == [("exit_status", 0)]


def test_a_line_split_across_reads_arrives_whole_with_the_lines_of_the_read_that_ends_it():
    def main():
        port = ports.open_port(writes_then_waits(b"one\ntw", b"o\nthree\n"), framing="lines")
        _, first = occ.receive((port, occ.ANY), timeout=10)
        occ.send(port, b"go")  # the second write happens only now, after the first was read
        _, second = occ.receive((port, occ.ANY), timeout=10)
        ports.close(port)
        return first, second, frames_until_exit(port)

    assert run(main) == (("lines", [b"one"]), ("lines", [b"two", b"three"]), [("exit_status", 0)])


def test_send_to_a_lines_port_writes_the_bytes_and_a_newline_as_for_line():
    def main():
        port = ports.open_port(["cat"], framing="lines")
        occ.send(port, b"hello")
        _, got = occ.receive((port, occ.ANY), timeout=10)
        ports.close(port)
        return got, frames_until_exit(port)

    assert run(main) == (("lines", [b"hello"]), [("exit_status", 0)])


def test_exit_status_arrives_after_the_lines_and_carries_the_status():
    def main():
        return frames_until_exit(ports.open_port(["sh", "-c", "printf 'a\\nb\\n'; exit 3"], framing="lines"))

    assert run(main) == [("lines", [b"a", b"b"]), ("exit_status", 3)]


def test_a_last_line_without_newline_is_not_delivered_and_ends_the_port_with_an_error_as_for_line():
    def main():
        port = ports.open_port(writes_then_waits(b"a\nb\nlast"), framing="lines")
        ref = occ.monitor(port)
        first = occ.receive((port, occ.ANY), timeout=10)[1]
        ports.close(port)
        rest = frames_until_exit(port)
        kind, err = occ.receive(("DOWN", ref, port, occ.ANY), timeout=10)[3]
        return first, rest, kind, type(err).__name__, str(err)

    first, rest, kind, error_class, text = run(main)
    assert (first, rest, kind, error_class) == (("lines", [b"a", b"b"]), [("exit_status", 0)], "error", "FrameError")
    assert re.match(
        r"^port .+: its stdout ended with 4 bytes of an unfinished line, which were not delivered$", text, re.S
    )


def test_a_bad_framing_is_refused_in_the_caller_naming_it_and_every_choice():
    def main():
        with pytest.raises(ValueError) as e:
            ports.open_port(["cat"], framing="linez")
        return str(e.value)

    assert run(main) == "open_port: framing='linez' is not a framing; use one of 'line', 'lines', 'packet', 'raw'"


def test_a_burst_of_100000_lines_through_cat_arrives_each_line_once_in_order_in_lines_messages():
    n = 100_000

    def main():
        port = ports.open_port(["cat"], framing="lines")
        for i in range(0, n, 1000):
            occ.send(port, b"\n".join(b"%d" % j for j in range(i, i + 1000)))
        ports.close(port)
        got = frames_until_exit(port)
        tags = {tag for tag, _ in got[:-1]}
        return tags, [line for _, batch in got[:-1] for line in batch], got[-1]

    tags, lines, last = run(main)
    assert tags == {"lines"}
    assert last == ("exit_status", 0)
    assert lines == [b"%d" % j for j in range(n)]


def test_stderr_lines_of_a_lines_port_still_arrive_one_message_each():
    def main():
        port = ports.open_port(
            ["sh", "-c", "printf 'e1\\ne2\\n' >&2; printf 'o1\\no2\\n'"], framing="lines", stderr="message"
        )
        got = frames_until_exit(port)
        return [m for m in got if m[0] == "stderr"], [m for m in got if m[0] == "lines"], got[-1]

    assert run(main) == ([("stderr", b"e1"), ("stderr", b"e2")], [("lines", [b"o1", b"o2"])], ("exit_status", 0))


def test_a_supervisor_starts_a_port_child_with_framing_lines():
    def main():
        child = {"id": "cat", "function": functools.partial(ports.open_port, ["cat"], framing="lines")}
        sup = occ.Supervisor.start([child])
        ((_, port, _),) = occ.Supervisor.which_children(sup)
        return type(port).__name__, occ.process_info(port)["function"]

    assert run(main) == ("Port", "cat")


def test_expect_sees_the_lines_of_a_lines_port_on_a_pty_with_their_newlines():
    def main():
        port = ports.open_port(["printf", "one\ntwo\nthree\n"], pty=True, framing="lines", env=dict(os.environ))
        m = ports.expect(port, rb"two\r\n(\w+)", timeout=10)
        return m.group(1), m.string[: m.start()]

    assert run(main) == (b"three", b"one\r\n")
