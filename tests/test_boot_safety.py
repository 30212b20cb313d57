"""How a runtime boots: what it imports, what environment it passes on, and
what a failed start leaves (API.md sections 1 and 10, issue 10).

Central, the forkserver and every process of a runtime import nothing from the
current directory unless the program that started the runtime had it on its
sys.path; they pass on the caller's environment unchanged; a runtime started
from a thread outlives that thread; and a start that fails raises in the
caller and leaves no process and no file descriptor behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import occasional as occ
from occasional import ports
from occasional.core import runtime as _runtime

from conftest import ROOT, ask_a_new_process, naming, title

GONE_WITHIN = 2.0

# --- a program run from a directory holding modules named like our dependencies ---------------

POISON = textwrap.dedent(
    """\
    import os
    with open(os.path.join({marks!r}, __name__ + "-" + str(os.getpid())), "w") as f:
        f.write(open("/proc/self/cmdline").read().replace("\\0", " "))
    raise ImportError(__name__ + " was imported from the current directory")
    """
)

PROGRAM = textwrap.dedent(
    """\
    import json

    import occasional as occ


    def echo(parent):
        import helpers  # beside this program: found through the program's own sys.path

        occ.send(parent, ("echo", occ.slf(), helpers.VALUE))


    def main():
        child = occ.spawn(echo, occ.slf())
        return occ.receive(("echo", child, occ.ANY), timeout=10)[2]


    if __name__ == "__main__":
        print(json.dumps(occ.run(main)))
    """
)


def write_program(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A program in ``prog/`` with a module of its own, and ``cwd/`` holding poisoned
    uvloop, msgpack, dill and prctl that leave a mark in ``marks/`` when imported."""
    prog, cwd, marks = tmp_path / "prog", tmp_path / "cwd", tmp_path / "marks"
    for d in (prog, cwd, marks):
        d.mkdir()
    (prog / "program.py").write_text(PROGRAM)
    (prog / "helpers.py").write_text('VALUE = "from the program\'s own directory"\n')
    for name in ("uvloop", "msgpack", "dill", "prctl"):
        (cwd / f"{name}.py").write_text(POISON.format(marks=str(marks)))
    return prog, cwd, marks


# How a user may start a program whose sys.path does not hold the current directory.
STARTS = {
    "python /abs/path/program.py": lambda prog: ([str(prog / "program.py")], [str(ROOT)]),
    "python -P -m program": lambda prog: (["-P", "-m", "program"], [str(prog), str(ROOT)]),
}


def run_program(tmp_path: Path, start: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the program from ``cwd/``; return how it ended and the marks the poisoned modules left."""
    prog, cwd, marks = write_program(tmp_path)
    args, path = STARTS[start](prog)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return done, sorted(os.listdir(marks))


@pytest.mark.parametrize("start", sorted(STARTS))
def test_no_process_of_the_runtime_imports_a_module_from_the_current_directory(tmp_path, start):
    done, marks = run_program(tmp_path, start)
    assert marks == [], "imported from the current directory:\n" + "\n".join(
        f"{m}: {(tmp_path / 'marks' / m).read_text()}" for m in marks
    )
    assert done.stderr == ""
    assert done.returncode == 0


@pytest.mark.parametrize("start", sorted(STARTS))
def test_a_process_imports_a_module_from_the_programs_own_sys_path(tmp_path, start):
    done, _marks = run_program(tmp_path, start)
    assert done.stderr == ""
    assert json.loads(done.stdout) == "from the program's own directory"


# --- the environment is the caller's ---------------------------------------------------------


def pythonpath_of_a_port() -> str | None:
    """PYTHONPATH as /usr/bin/env, run as a port given no env, prints it (None if unset)."""
    port = ports.open_port(["/usr/bin/env"])
    found = None
    while True:
        _, what = occ.receive((port, occ.ANY), timeout=10)
        if what[0] == "exit_status":
            return found
        if what[0] == "data" and what[1].startswith(b"PYTHONPATH="):
            found = what[1].split(b"=", 1)[1].decode()


def pythonpath_of_a_process() -> str | None:
    return os.environ.get("PYTHONPATH")


CALLER_PYTHONPATHS = {"unset": None, "set": "/somewhere/of/the/callers:/and/another"}


@pytest.fixture(params=sorted(CALLER_PYTHONPATHS))
def callers_pythonpath(request, monkeypatch) -> str | None:
    value = CALLER_PYTHONPATHS[request.param]
    if value is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", value)
    return value


def test_a_process_sees_the_callers_pythonpath_unchanged(callers_pythonpath):
    assert occ.run(pythonpath_of_a_process) == callers_pythonpath


def test_a_port_given_no_env_sees_the_callers_pythonpath_unchanged(callers_pythonpath):
    assert occ.run(pythonpath_of_a_port) == callers_pythonpath


# --- a runtime started from a thread ---------------------------------------------------------


def wait_until_thread_gone(native_id: int, timeout: float = 5.0) -> None:
    """Wait until the kernel let go of the thread: ``join`` returns a little before that,
    and the parent-death signal goes out only then. Nothing can tell us, so poll /proc."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/self/task/{native_id}"):
        if time.monotonic() >= deadline:
            raise AssertionError(f"thread {native_id} did not end within {timeout} s")
        time.sleep(0.01)


def test_a_runtime_started_from_a_thread_keeps_running_after_that_thread_ended():
    started: list[Any] = []
    thread = threading.Thread(target=lambda: started.append(occ.start()))
    thread.start()
    thread.join()
    try:
        assert thread.native_id is not None and len(started) == 1
        wait_until_thread_gone(thread.native_id)
        assert ask_a_new_process() == "are you there?"
    finally:
        occ.stop()


# --- a start that fails ----------------------------------------------------------------------

MARK = "OCCASIONAL_TEST_BOOT_MARK"


@pytest.fixture
def mark(monkeypatch) -> str:
    """A value every process of a runtime started now inherits in its environment,
    so the test finds them anywhere on the machine, whoever adopted them."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK, value)
    return value


def processes_marked(value: str) -> list[str]:
    """'pid (title)' of every live process but this one whose environment holds MARK=value."""
    needle = f"{MARK}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                held = f.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours
        if needle in held:  # a zombie's environment reads empty
            found.append(f"{entry} ({title(int(entry))!r})")
    return found


def left_behind(value: str) -> list[str]:
    """The processes of the runtime marked ``value`` still there after ``GONE_WITHIN`` s."""
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        left = processes_marked(value)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


DYING_HOOK = "occasional_test_dying_hook:install"
DYING_HOOK_MODULE = textwrap.dedent(
    """\
    import os
    import signal


    def install(central, options):
        with open({where!r}, "w") as f:
            f.write(str(central.fs_pid))
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def reap_adopted(pid: int, timeout: float = 5.0) -> None:
    """Reap ``pid`` once it is a zombie handed to this interpreter (a subreaper, see
    occasional.testing.plugin), as init would; return at once if someone else reaped it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except OSError:
            return
        if state == "Z" and int(ppid) == os.getpid():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return
        time.sleep(0.01)


@pytest.fixture
def central_that_dies_while_booting(tmp_path, monkeypatch) -> Iterator[None]:
    """Central SIGKILLs itself while it boots: after it forked the forkserver, before READY.

    Central imports the hook through the caller's PYTHONPATH, which it inherits.
    Its forkserver, orphaned, ends as a zombie of pytest: reaped here, as init
    would, once the hook told us its pid.
    """
    where = tmp_path / "forkserver.pid"
    (tmp_path / "occasional_test_dying_hook.py").write_text(DYING_HOOK_MODULE.format(where=str(where)))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    _runtime.add_central_hook(DYING_HOOK, (), lambda call, options: None)
    try:
        yield
    finally:
        del _runtime.CENTRAL_HOOKS[DYING_HOOK]
        if where.exists():
            reap_adopted(int(where.read_text()))


UNOPENABLE_JOURNALS = {
    "a URL of an unknown store": lambda tmp: "sqlite+bad://x",
    "a path in a directory that does not exist": lambda tmp: str(tmp / "no such directory" / "journal.sqlite"),
}


@pytest.mark.parametrize("case", sorted(UNOPENABLE_JOURNALS))
def test_a_run_whose_journal_cannot_be_opened_raises_an_error_naming_the_journal(tmp_path, case):
    journal = UNOPENABLE_JOURNALS[case](tmp_path)
    with pytest.raises((ValueError, OSError, RuntimeError), match=naming(journal)):
        occ.run(print, journal=journal)


@pytest.mark.parametrize("case", sorted(UNOPENABLE_JOURNALS))
def test_a_run_whose_journal_cannot_be_opened_leaves_no_process_behind(tmp_path, mark, case):
    with pytest.raises((ValueError, OSError, RuntimeError)):
        occ.run(print, journal=UNOPENABLE_JOURNALS[case](tmp_path))
    assert left_behind(mark) == []


@pytest.mark.parametrize("case", sorted(UNOPENABLE_JOURNALS))
def test_a_start_whose_journal_cannot_be_opened_leaves_no_fd_open(tmp_path, case):
    before = open_fds()
    with pytest.raises((ValueError, OSError, RuntimeError)) as error:
        occ.start(journal=UNOPENABLE_JOURNALS[case](tmp_path))
    # Checked while the error, and so its traceback, is still held, as a REPL holds it
    # in sys.last_traceback: what the start opened must not hang on its frames.
    assert open_fds() == before, error.value


def test_a_run_whose_central_dies_while_booting_raises_saying_how_it_ended(central_that_dies_while_booting):
    with pytest.raises(
        RuntimeError, match=r"^the runtime's central services ended before they were ready \(killed by SIGKILL\)"
    ):
        occ.run(print)


def test_a_run_whose_central_dies_while_booting_leaves_no_process_behind(central_that_dies_while_booting, mark):
    with pytest.raises(RuntimeError):
        occ.run(print)
    assert left_behind(mark) == []


def test_a_start_whose_central_dies_while_booting_leaves_no_fd_open(central_that_dies_while_booting):
    before = open_fds()
    with pytest.raises(RuntimeError) as error:
        occ.start()
    assert open_fds() == before, error.value  # the error still held, as in the test above


@pytest.fixture
def hook_that_fails_without_naming_its_option(tmp_path, monkeypatch) -> Iterator[None]:
    """A central hook given the journal option that fails with an error naming nothing,
    as sqlite3's "unable to open database file" does."""
    (tmp_path / "occasional_test_failing_hook.py").write_text(
        "def install(central, options):\n    raise OSError('unable to open database file')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    entry = "occasional_test_failing_hook:install"
    _runtime.add_central_hook(entry, ("journal",), lambda call, options: None)
    try:
        yield
    finally:
        del _runtime.CENTRAL_HOOKS[entry]


def test_an_error_of_a_central_hook_is_led_by_the_options_it_was_given(
    tmp_path, hook_that_fails_without_naming_its_option
):
    journal = str(tmp_path / "journal.sqlite")
    with pytest.raises(OSError, match=rf"^journal={re.escape(repr(journal))}: unable to open database file$"):
        occ.run(print, journal=journal)


def test_after_a_failed_start_a_new_runtime_starts_and_works(tmp_path):
    with pytest.raises((OSError, RuntimeError)):
        occ.start(journal=str(tmp_path / "no such directory" / "journal.sqlite"))
    assert occ.run(ask_a_new_process) == "are you there?"
