"""Tests of occasional.testing.plugin, the pytest plugin, each in a pytest of its own (pytester).

Each inner pytest runs in a subprocess: the plugin's timeouts raise SIGALRM and its
backstop ends the process, and its leak checks must see a process of their own. The
plugin is opt-in (issue 11), so each inner pytest asks for it with ``-p``, as a user
would, except those that check what a pytest that does not ask gets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import traceback
import types
from collections.abc import Callable
from typing import Any

import pytest

import occasional.testing

pytest_plugins = ["pytester"]

PLUGIN = "occasional.testing.plugin"

RunPytest = Callable[..., pytest.RunResult]


@pytest.fixture
def run_pytest(pytester: pytest.Pytester) -> RunPytest:
    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:cacheprovider", *args, timeout=30)

    return run


def _is_running(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


# ---------------------------------------------------------------- opting in


def _kill_adopted(pid: int) -> None:
    """SIGKILL a process that an inner pytest left running, and reap it.

    When the inner pytest ended, its orphan was handed to this pytest (a subreaper), so
    it is ours to reap; the plugin's reaper thread may reap it first, as it was seen with
    another parent.
    """
    pidfd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    finally:
        os.close(pidfd)


def test_a_pytest_that_does_not_opt_in_lets_a_test_leave_a_process_running(
    pytester: pytest.Pytester,
) -> None:
    # Installing occasional registers no pytest11 entry point (issue 11): a user's own
    # pytest run in an environment with occasional installed behaves as without it.
    pytester.makepyfile(
        """
        import pathlib, subprocess

        def test_starts_sleep():
            proc = subprocess.Popen(["sleep", "33"])
            pathlib.Path("pid").write_text(str(proc.pid))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=30)
    pid = int((pytester.path / "pid").read_text())
    try:
        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("plugins:*occasional*")
    finally:
        _kill_adopted(pid)
    assert not _is_running(pid)


def test_a_pytest_that_does_not_opt_in_gets_no_alarm_and_is_no_subreaper(pytester: pytest.Pytester) -> None:
    # With the plugin, SIGALRM is its handler and the interval timer runs while a test
    # does, and pytest is a child subreaper; neither is inherited across fork and exec.
    pytester.makepyfile(
        """
        import signal, prctl

        def test_looks_at_its_process():
            assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
            assert prctl.get_child_subreaper() == 0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=30)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("also_p", [False, True], ids=["conftest", "conftest and -p"])
def test_one_line_in_conftest_opts_in_once_even_when_p_asks_too(pytester: pytest.Pytester, also_p: bool) -> None:
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]\n")
    pytester.makepyfile(
        """
        import pathlib, subprocess

        def test_starts_sleep():
            proc = subprocess.Popen(["sleep", "34"])
            pathlib.Path("pid").write_text(str(proc.pid))
        """
    )
    args = ["-p", PLUGIN] if also_p else []
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=30)
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"test left 1 process behind: {pid} (S) sleep 34"])
    assert not _is_running(pid)


# ---------------------------------------------------------------- timeouts


def test_a_test_that_sleeps_past_its_marker_timeout_fails_and_its_finally_block_runs(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.mark.timeout(1)
        def test_sleeps():
            try:
                time.sleep(30)
            finally:
                print("finally ran")
        """
    )
    result = run_pytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *occasional.testing.plugin.TimeoutExceeded: test exceeded its 1.0 s timeout; "
            "raise it with @pytest.mark.timeout(N)",
            "*- Captured stdout call -*",
            "finally ran",
        ]
    )


def test_the_ini_timeout_applies_to_a_test_without_a_marker(pytester: pytest.Pytester, run_pytest: RunPytest) -> None:
    pytester.makeini("[pytest]\nocc_timeout = 1\n")
    pytester.makepyfile("import time\ndef test_sleeps():\n    time.sleep(30)\n")
    result = run_pytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *occasional.testing.plugin.TimeoutExceeded: test exceeded its 1.0 s timeout; *"])


@pytest.mark.parametrize(("phase", "outcomes"), [("setup", {"errors": 1}), ("teardown", {"passed": 1, "errors": 1})])
def test_a_fixture_that_hangs_fails_the_phase_it_hangs_in(
    pytester: pytest.Pytester, run_pytest: RunPytest, phase: str, outcomes: dict[str, int]
) -> None:
    pytester.makepyfile(
        f"""
        import time, pytest

        @pytest.fixture
        def hangs():
            if {phase!r} == "setup":
                time.sleep(30)
            yield
            if {phase!r} == "teardown":
                time.sleep(30)

        @pytest.mark.timeout(1)
        def test_uses_it(hangs):
            pass
        """
    )
    result = run_pytest()
    result.assert_outcomes(**outcomes)
    result.stdout.fnmatch_lines(
        [
            f"*ERROR at {phase} of test_uses_it*",
            "E *occasional.testing.plugin.TimeoutExceeded: test exceeded its 1.0 s timeout; *",
        ]
    )


def test_a_test_the_timeout_cannot_interrupt_is_ended_by_the_backstop_with_its_stack(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import signal, time, pytest

        @pytest.mark.timeout(1)
        def test_blocks_the_alarm():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(30)
        """
    )
    result = run_pytest("-o", "occ_timeout_grace=0.5")
    assert result.ret == 1
    result.stderr.fnmatch_lines(["Timeout (0:00:01.*)!", "*line 6 in test_blocks_the_alarm"])


def test_a_timeout_marker_without_a_positive_number_errors_naming_it(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.timeout(0)
        def test_marked():
            pass
        """
    )
    result = run_pytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.timeout(0) on test_a_timeout_marker_*.py::test_marked: "
            "give one positive number of seconds, e.g. @pytest.mark.timeout(10)"
        ]
    )


# ---------------------------------------------------------------- nothing left behind


def test_a_test_that_leaves_a_process_running_fails_naming_it_and_the_process_is_killed(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import pathlib, subprocess

        def test_starts_sleep():
            proc = subprocess.Popen(["sleep", "30"])
            pathlib.Path("pid").write_text(str(proc.pid))
        """
    )
    result = run_pytest()
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_starts_sleep*",
            f"test left 1 process behind: {pid} (S) sleep 30",
        ]
    )
    assert not _is_running(pid)


def test_a_test_that_leaves_a_zombie_fails_naming_it(pytester: pytest.Pytester, run_pytest: RunPytest) -> None:
    pytester.makepyfile(
        """
        import os, pathlib

        def test_forks_and_never_waits():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            pathlib.Path("pid").write_text(str(pid))
        """
    )
    result = run_pytest()
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"test left 1 process behind: {pid} (Z) *<zombie>"])
    assert not _is_running(pid)


def test_a_test_that_double_forks_an_orphan_fails_naming_it_and_the_orphan_is_killed(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import os, pathlib

        def test_double_forks():
            r, w = os.pipe()
            middle = os.fork()
            if middle == 0:
                try:
                    if os.fork() == 0:
                        os.write(w, str(os.getpid()).encode())
                        os.close(w)
                        os.execvp("sleep", ["sleep", "31"])
                finally:
                    os._exit(0)
            os.close(w)
            os.waitpid(middle, 0)
            with open(r, "rb") as pipe:
                pathlib.Path("pid").write_bytes(pipe.read())
        """
    )
    result = run_pytest()
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"test left 1 process behind: {pid} (S) sleep 31"])
    assert not _is_running(pid)


def test_the_children_of_a_killed_process_group_are_reaped_without_a_report(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    # Killing the group kills sh and its children at once; a child that outlives sh
    # by a moment is reparented to pytest as a zombie, which init would reap outside pytest.
    pytester.makepyfile(
        """
        import os, signal, subprocess

        def test_kills_a_group():
            sh = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 31 & echo started; wait"],
                                  start_new_session=True, stdout=subprocess.PIPE)
            assert sh.stdout.readline() == b"started\\n"
            os.killpg(sh.pid, signal.SIGKILL)
            sh.wait()
            sh.stdout.close()
        """
    )
    result = run_pytest()
    result.assert_outcomes(passed=1)


def test_the_zombie_of_a_process_whose_parent_was_killed_first_is_reaped_without_a_report(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    # sh is stopped, so it cannot reap sleep; once sh is killed, sleep is pytest's zombie,
    # in pytest's process group and session: only its parent when last seen tells it apart.
    pytester.makepyfile(
        """
        import os, pathlib, signal, subprocess, pytest

        @pytest.fixture
        def shell():
            sh = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE)
            sleep_pid = int(sh.stdout.readline())
            sh.stdout.close()
            pathlib.Path("pid").write_text(str(sleep_pid))
            yield sh, sleep_pid

        def test_kills_the_parent_first(shell):
            sh, sleep_pid = shell
            os.kill(sh.pid, signal.SIGSTOP)
            os.kill(sleep_pid, signal.SIGKILL)
            os.kill(sh.pid, signal.SIGKILL)
            sh.wait()
        """
    )
    result = run_pytest()
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=1)
    assert not _is_running(pid)


# For the inner tests below: start a runtime in a child interpreter, note its processes
# (pid, start time), SIGKILL the interpreter, and wait with a deadline for every one of those
# processes to be gone from /proc. A zombie is listed there until it is reaped, and once the
# interpreter is dead only pytest (a subreaper) can reap them: gone means pytest reaped them.
_KILLED_RUNTIME = """
    import os, signal, subprocess, sys, time

    from occasional.testing import plugin

    RUNTIME = "import sys, occasional as occ; occ.start(); print('ready', flush=True); sys.stdin.read()"

    def stat(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return fields[0], int(fields[19])  # state, start time

    def descendants(pid):
        found, todo = [], [pid]
        while todo:
            parent = todo.pop()
            for tid in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(kid) for kid in f.read().split()]
                found += kids
                todo += kids
        return found

    def left(processes):
        now = {pid: stat(pid) for pid, _ in processes}
        return [f"{pid} ({now[pid][0]})" for pid, start in processes if now[pid] and now[pid][1] == start]

    def kill_a_runtimes_interpreter():
        interp = subprocess.Popen([sys.executable, "-c", RUNTIME], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        with interp:
            assert interp.stdout.readline() == b"ready\\n"
            runtime = [(pid, stat(pid)[1]) for pid in descendants(interp.pid)]
            # The reaper takes a process for adopted once it has seen it with another
            # parent; one orphaned within a walk of being born gives no evidence (the
            # plugin's docstring). A runtime lives for a test: let it be seen.
            time.sleep(4 * plugin.REAP_POLL_S)
            os.kill(interp.pid, signal.SIGKILL)
        assert interp.returncode == -signal.SIGKILL
        assert len(runtime) >= 2  # central and the forkserver
        deadline = time.monotonic() + 5
        while left(runtime) and time.monotonic() < deadline:
            time.sleep(0.01)
        return left(runtime)
"""


def test_the_processes_of_a_runtime_whose_interpreter_was_sigkilled_are_reaped_without_a_report(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    # The runtime's processes die of their death signals and are reparented to pytest: a
    # subreaper reaps them while the test runs, as init would (issue 10).
    pytester.makepyfile(
        _KILLED_RUNTIME
        + """
    def test_kills_the_interpreter_of_a_runtime():
        assert kill_a_runtimes_interpreter() == []
    """
    )
    result = run_pytest()
    result.assert_outcomes(passed=1)


def test_a_child_that_pytest_forked_keeps_its_exit_status_while_orphans_around_it_are_reaped(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    # sh is a zombie before the runtime's processes are; reaping them, the plugin passed over
    # sh, and Popen.wait still gets its status.
    pytester.makepyfile(
        _KILLED_RUNTIME
        + """
    def test_waits_for_its_child_last():
        child = subprocess.Popen(["sh", "-c", "exit 7"])
        deadline = time.monotonic() + 5
        while stat(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stat(child.pid)[0] == "Z"
        assert kill_a_runtimes_interpreter() == []
        assert child.wait() == 7
    """
    )
    result = run_pytest()
    result.assert_outcomes(passed=1)


def test_the_fds_that_the_reaper_opens_never_show_in_a_tests_listing_of_pytests_fds(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    # The reaper walks /proc from a fd table of its own: a test comparing listings of
    # /proc/self/fd (its own leak check) sees none of its files, however busy it is.
    pytester.makepyfile(
        """
        import os, signal, subprocess

        def test_lists_its_fds_while_the_reaper_walks_a_tree():
            shells = [subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & sleep 30 & echo started; wait"],
                                       start_new_session=True, stdout=subprocess.PIPE) for _ in range(10)]
            try:
                for sh in shells:
                    assert sh.stdout.readline() == b"started\\n"
                before = sorted(os.listdir("/proc/self/fd"))
                listings = [sorted(os.listdir("/proc/self/fd")) for _ in range(5000)]
            finally:
                for sh in shells:
                    os.killpg(sh.pid, signal.SIGKILL)
                    sh.wait()
                    sh.stdout.close()
            assert [listing for listing in listings if listing != before][:1] == []
        """
    )
    result = run_pytest()
    result.assert_outcomes(passed=1)


def test_a_test_that_leaves_an_fd_open_fails_naming_it(pytester: pytest.Pytester, run_pytest: RunPytest) -> None:
    pytester.makepyfile(
        """
        import os, pathlib

        def test_opens():
            fd = os.open("leaked.txt", os.O_WRONLY | os.O_CREAT)
            pathlib.Path("fd").write_text(str(fd))
        """
    )
    result = run_pytest()
    fd = int((pytester.path / "fd").read_text())
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"test left 1 fd open: {fd} -> {os.path.realpath(pytester.path / 'leaked.txt')}"])


def test_a_clean_test_passes(pytester: pytest.Pytester, run_pytest: RunPytest) -> None:
    pytester.makepyfile(
        """
        import subprocess

        def test_cleans_up(tmp_path, capfd):
            subprocess.run(["true"], check=True)
            with open(tmp_path / "f", "w") as f:
                f.write("x")
            print("out")
            assert capfd.readouterr().out == "out\\n"
        """
    )
    result = run_pytest()
    result.assert_outcomes(passed=1)


def test_what_a_session_fixture_holds_is_not_blamed_on_the_tests_using_it(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import os, signal, subprocess, pytest

        @pytest.fixture(scope="session")
        def server():
            proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
            r, w = os.pipe()
            yield proc
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            os.close(r)
            os.close(w)

        def test_one(server):
            pass

        def test_two(server):
            pass
        """
    )
    result = run_pytest()
    result.assert_outcomes(passed=2)


def test_a_session_fixture_that_leaves_its_process_behind_fails_the_teardown_that_ends_it(
    pytester: pytest.Pytester, run_pytest: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import pathlib, subprocess, pytest

        @pytest.fixture(scope="session")
        def server():
            proc = subprocess.Popen(["sleep", "32"])
            pathlib.Path("pid").write_text(str(proc.pid))
            yield proc

        def test_one(server):
            pass

        def test_two(server):
            pass
        """
    )
    result = run_pytest()
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_two*", f"test left 1 process behind: {pid} (S) sleep 32"])


# ---------------------------------------------------------------- run()


def _fake_occasional() -> types.ModuleType:
    """An in-process stand-in for the runtime: main runs here, an exception ends it as
    ``ProcessExit(("error", exc))`` chained from it, with its traceback text kept."""
    fake = types.ModuleType("occasional")

    class ProcessExit(Exception):
        def __init__(self, reason: tuple[str, Any]) -> None:
            super().__init__(reason)
            self.reason = reason

    def run(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
        try:
            return main(*args)
        except Exception as exc:
            text = "".join(traceback.format_exception(exc))
            exc.occ_traceback = text  # type: ignore[attr-defined]  # read back by this stand-in's format_reason
            raise ProcessExit(("error", exc)) from exc

    def format_reason(reason: tuple[str, Any]) -> str:
        return f"process ended with an error:\n{reason[1].occ_traceback}"

    vars(fake).update(ProcessExit=ProcessExit, run=run, format_reason=format_reason)
    return fake


@pytest.fixture
def fake_occasional(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = _fake_occasional()
    # occasional.testing.remote runs the runtime through these names (issue 11: no facade import).
    monkeypatch.setattr(occasional.testing.remote, "runtime", fake)
    monkeypatch.setattr(occasional.testing.remote, "ProcessExit", fake.ProcessExit)
    monkeypatch.setattr(occasional.testing.remote, "format_reason", fake.format_reason)
    return fake


def test_run_fails_a_remote_assertion_as_an_assertion_error_with_the_remote_traceback(
    fake_occasional: types.ModuleType,
) -> None:
    def main(x: int) -> None:
        assert x == 2, "x should be 2"

    with pytest.raises(AssertionError) as caught:
        occasional.testing.run(main, 1)
    message = str(caught.value)
    assert message.startswith("an assertion failed in a process of the runtime:\nprocess ended with an error:\n")
    assert "in main\n    assert x == 2" in message
    assert message.endswith("AssertionError: x should be 2\nassert 1 == 2")
    assert type(caught.value.__cause__) is fake_occasional.ProcessExit


def test_run_lets_any_other_process_exit_through(fake_occasional: types.ModuleType) -> None:
    def main() -> None:
        raise KeyError("k")

    with pytest.raises(fake_occasional.ProcessExit) as caught:
        occasional.testing.run(main)
    assert caught.value.reason[0] == "error"
    assert type(caught.value.reason[1]) is KeyError


def test_run_returns_what_main_returns(fake_occasional: types.ModuleType) -> None:
    assert occasional.testing.run(lambda a, b: a + b, 2, 3) == 5
