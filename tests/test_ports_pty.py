"""Ports on a pseudo-terminal, resize and expect (API.md section 13, issue 14)."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import pytest

import occasional as occ
from occasional import ports
from occasional.testing import run

from conftest import frames_until_exit

PY = sys.executable


def python_repl() -> occ.Port:
    """An interactive Python on a terminal, at its first prompt."""
    port = ports.open_port([PY, "-i", "-q"], pty=True, env={**os.environ, "PYTHONSTARTUP": ""})
    ports.expect(port, b">>> ", timeout=10)
    return port


def fds_on_ptmx(pid: int) -> list[str]:
    """The fds of ``pid`` open on a pty master (/dev/ptmx)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/ptmx":
                found.append(fd)
        except OSError:
            pass
    return found


def test_the_executable_on_a_pty_sees_a_terminal_on_stdin_stdout_and_stderr():
    def main():
        port = ports.open_port(
            [PY, "-c", "import sys; print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())"], pty=True
        )
        return b"".join(d for tag, d in frames_until_exit(port) if tag == "data")

    assert run(main) == b"True True True\r\n"


def test_the_pty_is_the_controlling_terminal_of_the_executable():
    def main():
        port = ports.open_port([PY, "-c", "import os; os.open('/dev/tty', os.O_RDWR); print('has a tty')"], pty=True)
        got = frames_until_exit(port)
        # Raw chunks as read: the terminal may hand over "\r\n" in a read of its own.
        return b"".join(d for tag, d in got[:-1] if tag == "data"), got[-1]

    assert run(main) == (b"has a tty\r\n", ("exit_status", 0))


def test_expect_waits_for_a_prompt_then_for_the_reply_to_what_was_sent():
    def main():
        port = python_repl()
        occ.send(port, b"6 * 7\n")
        m = ports.expect(port, rb"(\d+)\r\n>>> ", timeout=10)
        return m.group(1)

    assert run(main) == b"42"


def test_expect_consumes_output_up_to_the_end_of_the_match_and_keeps_the_rest():
    def main():
        port = ports.open_port(["printf", "one two three"], pty=True)
        a = ports.expect(port, b"one ", timeout=10)
        b = ports.expect(port, b"t[a-z]+", timeout=10)
        c = ports.expect(port, b"t[a-z]+", timeout=10)
        return a.group(0), b.group(0), c.group(0), c.string[: c.start()]

    assert run(main) == (b"one ", b"two", b"three", b" ")


def test_a_str_pattern_matches_the_output_decoded_as_utf8_and_returns_a_str_match():
    def main():
        port = ports.open_port(["printf", "caf\\303\\251 \\377 ok"], pty=True)
        m = ports.expect(port, r"caf(.) (.) ok", timeout=10)
        return repr(m.groups())  # a lone surrogate cannot travel in a message (the codec refuses it)

    # A byte that is not UTF-8 is a lone surrogate, as os.fsdecode makes it.
    assert run(main) == repr(("é", "\udcff"))


def test_expect_leaves_other_messages_in_the_mailbox_in_order():
    def main():
        me = occ.slf()
        occ.send(me, "first")
        port = ports.open_port(["printf", "ready"], pty=True)
        occ.send(me, "second")
        ports.expect(port, b"ready", timeout=10)
        return occ.receive(timeout=1), occ.receive(timeout=1), occ.receive((port, occ.ANY), timeout=10)[1]

    assert run(main) == ("first", "second", ("exit_status", 0))


def test_expect_timeout_names_the_pattern_and_shows_the_last_output_seen():
    def main():
        port = python_repl()
        occ.send(port, b"print('x' * 300)\n")
        ports.expect(port, b"x\r\n(?=>>> )", timeout=10)  # the prompt came, and stays
        try:
            ports.expect(port, b"never", timeout=0.2)
        except TimeoutError as e:
            return str(e)

    text = run(main)
    assert re.match(
        r"^occasional\.ports\.expect\(<occ port \d+>, b'never', timeout=0\.2\): no match within 0\.2 s; "
        r"the last output seen: b'>>> '$",
        text,
    ), text


def test_expect_errors_show_only_the_last_200_bytes_of_output():
    def main():
        port = ports.open_port([PY, "-c", "print('a' * 300 + 'z', end='')"], pty=True)
        try:
            ports.expect(port, b"never", timeout=10)
        except EOFError as e:
            return str(e).rsplit("the last output seen: ", 1)[1]

    assert run(main) == repr(b"a" * 199 + b"z")


def test_expect_raises_eof_error_with_the_last_output_when_the_port_ends_first_and_leaves_its_exit_status():
    def main():
        port = ports.open_port(["printf", "bye"], pty=True)
        try:
            ports.expect(port, b"never", timeout=10)
        except EOFError as e:
            return str(e), occ.receive((port, occ.ANY), timeout=10)[1]

    text, status = run(main)
    assert re.match(
        r"^occasional\.ports\.expect\(<occ port \d+>, b'never'\): the port's output ended \(exit status 0\) "
        r"before a match; the last output seen: b'bye'$",
        text,
    ), text
    assert status == ("exit_status", 0)


def test_close_sends_the_terminal_eof_so_the_repl_ends():
    def main():
        port = python_repl()
        ports.close(port)
        return occ.receive((port, ("exit_status", occ.ANY)), timeout=10)[1]

    assert run(main) == ("exit_status", 0)


def test_resize_sets_the_size_stty_reports_and_the_executable_gets_sigwinch():
    def main():
        port = ports.open_port(["sh", "-c", "stty size; read go; stty size"], pty=True)
        before = ports.expect(port, rb"(\d+ \d+)\r\n", timeout=10).group(1)
        ports.resize(port, 30, 100)
        occ.send(port, b"go\n")
        after = ports.expect(port, rb"(\d+ \d+)\r\n", timeout=10).group(1)
        return before, after

    assert run(main) == (b"24 80", b"30 100")


def test_resize_delivers_sigwinch_to_the_executable():
    script = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGWINCH, lambda *a: print('size', *os.get_terminal_size(), flush=True))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )

    def main():
        port = ports.open_port([PY, "-c", script], pty=True)
        ports.expect(port, b"ready\r\n", timeout=10)
        ports.resize(port, 40, 120)
        return ports.expect(port, rb"size \d+ \d+", timeout=10).group(0)

    assert run(main) == b"size 120 40"


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((0, 80), ValueError, r"rows=0 is not a terminal size; use an int from 1 to 65535$"),
        ((24, 70000), ValueError, r"cols=70000 is not a terminal size; use an int from 1 to 65535$"),
        ((24.0, 80), TypeError, r"rows=24\.0 is not an int; "),
        ((24, "80"), TypeError, r"cols='80' is not an int; "),
        ((True, 80), TypeError, r"rows=True is not an int; "),
    ],
)
def test_resize_with_a_bad_size_raises_naming_the_value(args: Any, error: type, words: str):
    def main():
        port = ports.open_port(["cat"], pty=True)
        try:
            ports.resize(port, *args)
        except error as e:
            return str(e)

    assert re.match(r"^occasional\.ports\.resize\(<occ port \d+>, .*\): " + words, run(main))


def test_resize_of_a_port_not_on_a_pty_raises_type_error_saying_how_to_open_one():
    def main():
        port = ports.open_port(["cat"])
        try:
            ports.resize(port, 24, 80)
        except TypeError as e:
            return str(e)

    assert re.match(
        r"^occasional\.ports\.resize\(<occ port \d+>, 24, 80\): <occ port \d+> is not on a pseudo-terminal; "
        r"open it with open_port\(argv, pty=True\)$",
        run(main),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"pty": 1}, TypeError, r"^open_port: pty=1 is not a bool"),
        ({"pty": True, "stderr": "message"}, ValueError, r"^open_port: pty=True with stderr='message'"),
        ({"pty": True, "stdout": "inherit"}, ValueError, r"^open_port: pty=True with stdout='inherit'"),
    ],
)
def test_bad_pty_options_raise_in_the_caller_naming_the_value(kwargs: dict[str, Any], error: type, words: str):
    def main():
        try:
            ports.open_port(["cat"], **kwargs)
        except error as e:
            return str(e)

    assert re.match(words, run(main))


def test_a_bad_expect_pattern_raises_naming_it():
    def main():
        port = ports.open_port(["cat"], pty=True)
        out = []
        for pattern in (42, "(unclosed"):
            try:
                ports.expect(port, pattern, timeout=0)
            except (TypeError, ValueError) as e:
                out.append((type(e).__name__, str(e).split(";")[0]))
        return out

    assert run(main) == [
        ("TypeError", "occasional.ports.expect(): pattern=42 is not a regular expression"),
        (
            "ValueError",
            "occasional.ports.expect(): pattern='(unclosed' is not a regular expression "
            "(missing ), unterminated subpattern at position 0)",
        ),
    ]


def test_only_the_port_process_holds_the_pty_master_and_it_is_closed_when_the_port_ends():
    def main():
        port = python_repl()
        occ.send(port, b"import os; os.getpid()\n")
        child = int(ports.expect(port, rb"(\d+)\r\n>>> ", timeout=10).group(1))
        seen = (len(fds_on_ptmx(port.os_pid)), fds_on_ptmx(child), fds_on_ptmx(os.getpid()))
        ref = occ.monitor(port)
        ports.close(port)
        occ.receive(("DOWN", ref, port, occ.ANY), timeout=10)
        return seen, fds_on_ptmx(os.getpid())

    # The executable's own fds are the slave (/dev/pts/N), never the master.
    assert run(main) == ((2, [], []), [])
