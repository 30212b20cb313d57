"""Ports: native executables as processes of the runtime (API.md section 8, issue 5)."""

from __future__ import annotations

import functools
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import occasional as occ
from occasional import ports
from occasional.testing import run

from conftest import ROOT, descendants, frames_until_exit, reap_orphans, snapshot, wait_until_gone


def down_reason(port: occ.Port, ref: occ.Ref) -> Any:
    return occ.receive(("DOWN", ref, port, occ.ANY), timeout=10)[3]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} was not written")


# --- framing ----------------------------------------------------------------------------------


def test_line_framing_delivers_each_line_without_its_newline_and_send_appends_one():
    def main():
        port = ports.open_port(["cat"])
        occ.send(port, b"hello")
        occ.send(port, b"two words")
        a = occ.receive((port, occ.ANY), timeout=10)
        b = occ.receive((port, occ.ANY), timeout=10)
        return a == (port, ("data", b"hello")), b[1]

    assert run(main) == (True, ("data", b"two words"))


def test_line_framing_splits_output_written_in_one_go_into_lines():
    def main():
        port = ports.open_port(["printf", "a\\nbb\\n\\nccc\\n"])
        return frames_until_exit(port)

    assert run(main) == [("data", b"a"), ("data", b"bb"), ("data", b""), ("data", b"ccc"), ("exit_status", 0)]


def test_packet_framing_uses_a_four_byte_big_endian_length_both_ways():
    def main():
        port = ports.open_port(["cat"], framing="packet")
        occ.send(port, b"\x00\x01binary\n\xff")
        occ.send(port, b"")
        return occ.receive((port, occ.ANY), timeout=10)[1], occ.receive((port, occ.ANY), timeout=10)[1]

    assert run(main) == (("data", b"\x00\x01binary\n\xff"), ("data", b""))


def test_a_packet_over_max_frame_ends_the_port_with_an_error_instead_of_allocating_it():
    def main():
        # Announces 2**31 bytes; the limit is 1 KiB.
        port = ports.open_port(
            ["sh", "-c", "read go; printf '\\200\\000\\000\\000abc'"], framing="packet", max_frame=1024
        )
        ref = occ.monitor(port)
        ports.close(port)  # EOF ends the read
        kind, err = down_reason(port, ref)
        return kind, type(err), str(err)

    kind, cls, text = run(main)
    assert (kind, cls) == ("error", ports.FrameError)
    assert "2147483648" in text and "1024" in text


def test_raw_framing_delivers_the_bytes_as_read():
    def main():
        port = ports.open_port(["printf", "no newline here"], framing="raw")
        got = frames_until_exit(port)
        return b"".join(d for tag, d in got if tag == "data"), got[-1]

    assert run(main) == (b"no newline here", ("exit_status", 0))


def test_output_that_ends_mid_line_delivers_no_partial_frame_and_says_how_many_bytes_were_left():
    def main():
        port = ports.open_port(["sh", "-c", "read go; printf 'whole\\npart'"])
        ref = occ.monitor(port)
        occ.send(port, b"go")
        got = frames_until_exit(port)
        kind, err = down_reason(port, ref)
        return got, kind, str(err)

    got, kind, text = run(main)
    assert got == [("data", b"whole"), ("exit_status", 0)]
    assert kind == "error"
    assert "4 bytes" in text


def test_output_that_ends_mid_packet_says_how_many_bytes_were_left():
    def main():
        port = ports.open_port(["sh", "-c", "read go; printf '\\000\\000\\000\\012abc'"], framing="packet")
        ref = occ.monitor(port)
        ports.close(port)  # EOF ends the read
        frames_until_exit(port)
        return down_reason(port, ref)

    kind, err = run(main)
    assert kind == "error" and "7 bytes" in str(err)


# --- stderr, exit status, close ---------------------------------------------------------------


def test_stderr_message_arrives_as_stderr_frames():
    def main():
        port = ports.open_port(["sh", "-c", "echo out; echo err >&2"], stderr="message")
        return sorted(frames_until_exit(port)[:-1])

    assert run(main) == [("data", b"out"), ("stderr", b"err")]


def test_stderr_stdout_merges_stderr_into_the_data_frames():
    def main():
        port = ports.open_port(["sh", "-c", "echo err >&2; echo out"], stderr="stdout")
        return frames_until_exit(port)

    assert run(main) == [("data", b"err"), ("data", b"out"), ("exit_status", 0)]


def test_exit_status_is_the_last_message_and_carries_the_status():
    def main():
        port = ports.open_port(["sh", "-c", "echo a; echo b; exit 3"])
        return frames_until_exit(port)

    assert run(main) == [("data", b"a"), ("data", b"b"), ("exit_status", 3)]


def test_exit_status_is_negative_for_a_signal():
    def main():
        port = ports.open_port(["sh", "-c", "kill -TERM $$"])
        return frames_until_exit(port)

    assert run(main) == [("exit_status", -signal.SIGTERM)]


def test_close_closes_stdin_so_the_executable_sees_eof_after_what_was_sent():
    def main():
        port = ports.open_port(["wc", "-l"])
        for _ in range(3):
            occ.send(port, b"line")
        ports.close(port)
        return frames_until_exit(port)

    assert run(main) == [("data", b"3"), ("exit_status", 0)]


def test_a_large_amount_of_output_arrives_whole_and_in_order():
    def main():
        port = ports.open_port(["seq", "1", "100000"])
        got = frames_until_exit(port, timeout=30)
        return got[-1], [int(d) for _, d in got[:-1]] == list(range(1, 100001))

    assert run(main) == (("exit_status", 0), True)


def test_cwd_and_env_are_those_given():
    def main(cwd):
        port = ports.open_port(
            ["sh", "-c", "pwd; echo $ONLY"], cwd=cwd, env={"ONLY": "this", "PATH": os.environ["PATH"]}
        )
        return frames_until_exit(port)

    assert run(main, "/tmp") == [("data", b"/tmp"), ("data", b"this"), ("exit_status", 0)]


def test_an_executable_starts_with_the_default_sigpipe_disposition():
    def main():
        port = ports.open_port(["sh", "-c", "grep SigIgn /proc/self/status"])
        return frames_until_exit(port)[0]

    _, line = run(main)
    ignored = int(line.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


# --- bad input, in the caller ---------------------------------------------------------------


def test_a_missing_executable_raises_file_not_found_naming_it_and_starts_nothing():
    def main():
        # Others than main itself: main may run before central has its Linux
        # pid, and processes() lists only processes whose pid it has.
        others = lambda: set(occ.processes()) - {occ.slf()}  # noqa: E731
        before = others()
        try:
            ports.open_port(["no-such-program-xyz", "arg"])
        except FileNotFoundError as e:
            return str(e), others() == before
        return "no error", False

    text, nothing_started = run(main)
    assert "no-such-program-xyz" in text and "PATH" in text
    assert nothing_started


def test_a_file_that_is_not_executable_raises_permission_error_naming_it(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")

    def main(path):
        try:
            ports.open_port([path])
        except PermissionError as e:
            return str(e)
        return "no error"

    assert str(script) in run(main, str(script))


def test_a_relative_path_is_looked_up_in_cwd_not_on_path(tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from cwd\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def main(cwd):
        return frames_until_exit(ports.open_port(["./hello.sh"], cwd=cwd))

    assert run(main, str(tmp_path)) == [("data", b"hello from cwd"), ("exit_status", 0)]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"argv": "cat -n"}, TypeError, ["string", "['cat', '-n']"]),
        ({"argv": []}, TypeError, ["non-empty list"]),
        ({"argv": ["cat", 3]}, TypeError, ["3", "str"]),
        ({"argv": ["cat"], "framing": "json"}, ValueError, ["'json'", "'line'"]),
        ({"argv": ["cat"], "stderr": "devnull"}, ValueError, ["'devnull'", "LogFile"]),
        ({"argv": ["cat"], "stdout": 1}, ValueError, ["stdout=1"]),
        ({"argv": ["cat"], "max_frame": 0}, ValueError, ["max_frame=0"]),
        ({"argv": ["cat"], "env": {"A": 1}}, TypeError, ["env=", "str"]),
        ({"argv": ["cat"], "cwd": "/no/such/dir"}, FileNotFoundError, ["/no/such/dir"]),
    ],
    ids=["argv string", "argv empty", "argv int", "framing", "stderr", "stdout", "max_frame", "env", "cwd"],
)
def test_bad_arguments_raise_in_the_caller_naming_the_value(kwargs, error, words):
    def main():
        argv = kwargs.pop("argv")
        try:
            ports.open_port(argv, **kwargs)
        except error as e:
            return str(e), ports.open_port(["true"]) is not None  # the runtime still works
        return "no error", False

    text, still_works = run(main)
    assert all(w in text for w in words), text
    assert still_works


def test_sending_a_non_bytes_message_to_a_port_raises_type_error_in_the_sender():
    def main():
        port = ports.open_port(["cat"])
        try:
            occ.send(port, "text")
        except TypeError as e:
            return str(e)

    assert "encode" in run(main)


# --- ports are processes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "script, reason",
    [
        ("exit 0", ("ok", None)),
        ("exit 7", ("exitcode", 7)),
        ("kill -KILL $$", ("signal", "SIGKILL")),
    ],
    ids=["status 0", "status 7", "signal"],
)
def test_a_monitor_sees_the_port_end_with_the_reason_of_its_status(script, reason):
    def main():
        port = ports.open_port(["sh", "-c", "read go; " + script])
        ref = occ.monitor(port)
        occ.send(port, b"go")
        return down_reason(port, ref)

    assert run(main) == reason


def test_kill_of_a_port_is_reason_killed_and_kills_the_executable():
    def main():
        port = ports.open_port(["sh", "-c", "echo $$; exec sleep 100"])
        _, (_, line) = occ.receive((port, occ.ANY), timeout=10)
        ref = occ.monitor(port)
        occ.kill(port, "enough")
        return down_reason(port, ref), int(line)

    reason, exe = run(main)
    assert reason == ("killed", "enough")
    assert wait_until_gone(snapshot([exe])) == []


def test_a_linked_port_that_fails_kills_its_partner_with_a_linked_reason():
    def partner(parent):
        ports.open_port(["sh", "-c", "exit 5"], link=True)
        occ.receive("never sent")

    def main():
        pid, ref = occ.spawn_monitor(partner, occ.slf())
        kind, (port, inner) = down_reason(pid, ref)
        return kind, type(port).__name__, inner

    assert run(main) == ("linked", "Pid", ("exitcode", 5))


def test_a_port_can_be_registered_and_sent_to_by_name():
    def main():
        port = ports.open_port(["cat"], name="echo")
        occ.send("echo", b"by name")
        return occ.whereis("echo") == port, occ.receive((port, occ.ANY), timeout=10)[1]

    assert run(main) == (True, ("data", b"by name"))


def test_any_process_may_write_to_a_port_and_the_owner_gets_the_output():
    def writer(port):
        occ.send(port, b"from another process")

    def main():
        port = ports.open_port(["cat"])
        occ.spawn(writer, port)
        return occ.receive((port, occ.ANY), timeout=10)[1]

    assert run(main) == ("data", b"from another process")


def test_a_supervisor_restarts_a_port_whose_executable_was_sigkilled():
    def main():
        child = {"id": "echo", "function": functools.partial(ports.open_port, ["sh", "-c", "echo $$; exec cat"])}
        sup = occ.Supervisor.start([child], intensity=3, period=5)
        ((_, first, _),) = occ.Supervisor.which_children(sup)
        os.kill(first.os_pid, signal.SIGKILL)  # the driver process: the executable dies with it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ((_, now, _),) = occ.Supervisor.which_children(sup)
            if now is not None and now != first:
                return type(now).__name__, occ.process_info(now)["function"]
            time.sleep(0.01)
        return None

    assert run(main) == ("Port", "sh -c 'echo $$; exec cat'")


def test_a_supervisor_shutdown_sends_sigterm_to_the_executable_and_waits_for_it(tmp_path):
    mark = tmp_path / "terminated"
    script = f"trap 'echo bye > {mark}; exit 0' TERM; echo up; while :; do sleep 0.05; done"

    def main():
        child = {"id": "svc", "function": functools.partial(ports.open_port, ["sh", "-c", script]), "shutdown": 5.0}
        sup = occ.Supervisor.start([child])
        ((_, port, _),) = occ.Supervisor.which_children(sup)
        ref = occ.monitor(port)
        time.sleep(0.2)  # the trap is set once the shell runs its loop
        occ.Supervisor.terminate_child(sup, "svc")
        return down_reason(port, ref)

    assert run(main) == ("killed", "shutdown")
    assert mark.read_text() == "bye\n"


# --- no orphans ------------------------------------------------------------------------------

# Starts a grandchild that leaves the executable's process group and session
# (double fork + setsid) and prints its pid, then waits.
ESCAPER = textwrap.dedent(
    """\
    import os, sys, time
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, f"{os.getpid()}\\n".encode())
            time.sleep(100)
        os._exit(0)
    os.wait()
    print(os.getpid(), os.read(r, 100).decode().strip(), flush=True)
    time.sleep(100)
    """
)


def start_escaper() -> tuple[occ.Port, int, int]:
    port = ports.open_port([sys.executable, "-c", ESCAPER])
    _, (_, line) = occ.receive((port, occ.ANY), timeout=10)
    exe, grandchild = (int(x) for x in line.split())
    return port, exe, grandchild


def _escaper_owner(parent: occ.Pid, how: str) -> None:
    port, exe, grandchild = start_escaper()
    occ.send(parent, ("started", exe, grandchild))
    if how == "raises":
        raise RuntimeError("owner crashed")
    if how == "returns":
        return
    occ.receive()


@pytest.mark.parametrize("how", ["returns", "raises", "killed", "sigkilled"])
def test_when_the_owner_ends_the_executable_and_a_double_forked_grandchild_are_killed(how):
    def main():
        owner, ref = occ.spawn_monitor(_escaper_owner, occ.slf(), how)
        _, exe, grandchild = occ.receive(("started", int, int), timeout=10)
        if how == "killed":
            occ.kill(owner)
        elif how == "sigkilled":
            os.kill(owner.os_pid, signal.SIGKILL)
        occ.receive(("DOWN", ref, owner, occ.ANY), timeout=10)
        return exe, grandchild

    exe, grandchild = run(main)
    assert pid_alive(exe) is False or wait_until_gone(snapshot([exe])) == []
    assert wait_until_gone(snapshot([exe, grandchild])) == []


def test_a_sigkilled_port_process_leaves_neither_its_executable_nor_a_double_forked_grandchild():
    def main():
        port, exe, grandchild = start_escaper()
        ref = occ.monitor(port)
        os.kill(port.os_pid, signal.SIGKILL)
        reason = down_reason(port, ref)
        return reason, wait_until_gone(snapshot([exe, grandchild]))

    reason, left = run(main)
    assert reason == ("signal", "SIGKILL")
    assert left == []


def test_when_the_runtime_ends_every_executable_and_grandchild_is_killed():
    def main():
        _, exe, grandchild = start_escaper()
        return exe, grandchild

    exe, grandchild = run(main)
    assert wait_until_gone(snapshot([exe, grandchild])) == []


def test_sigkill_of_the_interpreter_that_started_the_runtime_leaves_no_executable(tmp_path):
    report = tmp_path / "pids"
    program = textwrap.dedent(
        f"""\
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import occasional as occ
        from test_ports import start_escaper

        def main():
            _, exe, grandchild = start_escaper()
            with open({str(report)!r} + ".tmp", "w") as f:
                f.write(f"{{exe}} {{grandchild}}\\n")
            import os
            os.rename({str(report)!r} + ".tmp", {str(report)!r})
            occ.receive()

        occ.run(main)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT)
    try:
        exe, grandchild = (int(x) for x in wait_file(report).split())
        tree = snapshot([*descendants(child.pid), exe, grandchild])
        child.kill()
        child.wait()
        left = wait_until_gone(tree)
        reap_orphans(tree)
        assert left == []
    finally:
        child.kill()
        child.wait()
