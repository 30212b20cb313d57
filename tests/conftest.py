"""Helpers shared by the contract tests (API.md, sections 1-5 and 10).

Two kinds of helpers live here:

* helpers that run inside a process of a runtime (``drain_mailbox``,
  ``wait_until_in_mailbox``, ``ask_a_new_process``); they reach spawned
  processes by reference as ``conftest.<name>``, like any module-level function;
* helpers that look at Linux processes through ``/proc`` (``descendants``,
  ``title``, ``snapshot``, ``survivors``, ``wait_until_gone``), used to check
  that no OS process outlives its runtime.

A process is identified by ``(pid, start time)`` so that a pid reused by an
unrelated process after the original ended is never mistaken for it; its
parent when seen tells a zombie nobody reaped from an orphan handed to a
subreaper.

``occasional`` is imported inside the helpers that use it. (Loading the plugin,
below, imports the package anyway: it is ``occasional.testing.plugin``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import occasional as occ

# Our own tests opt in to occasional's pytest plugin: a timeout per test, and a test
# that leaves a process or fd behind fails. Installing occasional loads it for nobody
# else (issue 11). The second is the real PostgreSQL server the journal tests start
# (fixtures postgres_server, postgres_url; issue 12); psycopg is imported only when a
# test asks for a database.
pytest_plugins = ["occasional.testing.plugin", "occasional.testing.postgres"]

ROOT = Path(__file__).resolve().parents[1]


# --- error messages ---------------------------------------------------------


def naming(value: object) -> str:
    """A ``match=`` pattern for an error message that names ``value``.

    Anchored at the start of the message, it only asks that ``repr(value)``
    appears somewhere in it (STYLE.md, "Errors": name the offending value),
    without fixing the rest of the wording.
    """
    return r"(?s)^.*" + re.escape(repr(value))


# --- inside a runtime -------------------------------------------------------


def frames_until_exit(port: occ.Port, timeout: float = 10.0) -> list[Any]:
    """Every message from ``port`` up to and including its exit_status."""
    import occasional as occ

    got = []
    while True:
        _, what = occ.receive((port, occ.ANY), timeout=timeout)
        got.append(what)
        if what[0] == "exit_status":
            return got


def drain_mailbox() -> list[Any]:
    """Remove and return every message already in the mailbox, oldest first."""
    import occasional as occ

    drained = []
    while True:
        try:
            drained.append(occ.receive(timeout=0))
        except TimeoutError:
            return drained


def wait_until_in_mailbox(accepts: Callable[[Any], bool], timeout: float = 10.0) -> None:
    """Wait until a message that ``accepts`` is in the mailbox, without removing it.

    ``receive`` only ever removes what its match accepts, so a predicate that
    notes what it sees and accepts nothing lets us look without touching.
    """
    import occasional as occ

    seen = False

    def peek(msg: Any) -> bool:
        nonlocal seen
        if accepts(msg):
            seen = True
        return False

    deadline = time.monotonic() + timeout
    while not seen:
        if time.monotonic() >= deadline:
            raise AssertionError(f"no matching message arrived within {timeout} s")
        try:
            occ.receive(peek, timeout=0.02)
        except TimeoutError:
            pass


def _answer(asker: occ.Pid, question: object) -> None:
    import occasional as occ

    occ.send(asker, ("answer", question, os.getpid()))


def ask_a_new_process(question: object = "are you there?", timeout: float = 10.0) -> object:
    """Spawn a fresh process, have it answer, and return the answered question.

    Called after an error to show that the runtime still spawns processes and
    delivers messages (API.md, section 10: errors leave the runtime running).
    """
    import occasional as occ

    pid = occ.spawn(_answer, occ.slf(), question)
    _, echoed, os_pid = occ.receive(("answer", question, int), timeout=timeout)
    assert os_pid == pid.os_pid
    return echoed


# --- Linux processes, seen from outside -------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def children(pid: int) -> list[int]:
    """Direct children of ``pid``.

    Uses /proc/<pid>/task/*/children where the kernel has it
    (CONFIG_PROC_CHILDREN), and a scan of every /proc/<n>/stat otherwise.
    """
    task_dir = Path(f"/proc/{pid}/task")
    try:
        files = [t / "children" for t in task_dir.iterdir()]
    except FileNotFoundError:
        return []
    if files and all(f.exists() for f in files):
        found: set[int] = set()
        for f in files:
            try:
                found.update(int(n) for n in f.read_text().split())
            except FileNotFoundError:
                continue
        return sorted(found)
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid:
                kids.append(int(entry))
    return sorted(kids)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for kid in children(todo.pop()):
            if kid not in found:
                found.append(kid)
                todo.append(kid)
    return sorted(found)


def title(pid: int) -> str:
    """What ``ps`` shows for ``pid``: /proc/<pid>/cmdline, NULs read as spaces."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    parts = [p for p in raw.split(b"\0") if p]
    return b" ".join(parts).decode("utf-8", "replace").strip()


Snapshot = list[tuple[int, int, int]]  # (pid, start time, parent pid when seen)


def snapshot(pids: Iterable[int]) -> Snapshot:
    """(pid, start time, parent pid) of each pid that exists now."""
    taken = []
    for pid in sorted(set(pids)):
        stat = _stat(pid)
        if stat is not None:
            taken.append((pid, stat[2], stat[1]))
    return taken


def still_there(pid: int, started: int, parent: int) -> bool:
    """True if the process is still running, or is a zombie its own parent has not reaped.

    A zombie counts only if it is still the child of the parent it had when it
    was seen. An orphan reparented to a subreaper (pytest is one, see
    occasional.testing.plugin) or to init runs no code and holds nothing of the
    runtime; init would reap it at once.
    """
    stat = _stat(pid)
    if stat is None or stat[2] != started:
        return False
    state, ppid, _ = stat
    if state in ("Z", "X", "x"):
        return ppid == parent
    return True


def survivors(taken: Snapshot) -> list[str]:
    """The processes of ``taken`` still there, as 'pid (title)' for the failure message."""
    return [f"{pid} ({title(pid)!r})" for pid, started, parent in taken if still_there(pid, started, parent)]


def wait_until_gone(taken: Snapshot, timeout: float = 2.0) -> list[str]:
    """Poll until no process of ``taken`` is left or ``timeout`` passed; return the survivors.

    Used where nothing in the runtime can tell us (its starter was SIGKILLed),
    so polling /proc with a deadline is the only way to wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = survivors(taken)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)


def kill_survivors(taken: Snapshot) -> None:
    """SIGKILL whatever of ``taken`` is still there, so a failed test does not leak into the next."""
    for pid, started, parent in taken:
        if still_there(pid, started, parent):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def reap_orphans(taken: Snapshot) -> None:
    """Reap the zombies of ``taken`` that were handed to this interpreter when their parent died.

    pytest is a child subreaper (occasional.testing.plugin), so when a test SIGKILLs
    the interpreter that started a runtime, the orphans end as pytest's
    zombies; init would reap them at once, so the test does it.
    """
    me = os.getpid()
    for pid, started, parent in taken:
        stat = _stat(pid)
        if stat is None or stat[2] != started or parent == me:
            continue
        state, ppid, _ = stat
        if state == "Z" and ppid == me:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


# --- supervision (API.md, section 6) ---------------------------------------


def poll(get: Callable[[], Any], accepts: Callable[[Any], bool], timeout: float = 2.0) -> Any:
    """Call ``get()`` until ``accepts`` its value or ``timeout`` passed; return the last value.

    For state only a supervisor knows (``which_children``): nothing tells us
    when it changed, so asking again with a deadline is the way to wait. The
    caller asserts on the value returned, so a deadline that passed shows up
    as a wrong value, not as a timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if accepts(value) or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)


def children_of(sup: Any) -> dict[Any, Any]:
    """``{id: pid or None}`` from ``occ.Supervisor.which_children(sup)``."""
    import occasional as occ

    return {cid: pid for cid, pid, _ in occ.Supervisor.which_children(sup)}


def worker(cid: str, recorder: Any = None) -> str:
    """A supervised child: reports ``("started", cid, pid, time)`` to ``recorder``, then ends as told.

    The message ``"return"`` makes it return, ``"raise"`` raise ValueError,
    ``"exit"`` call ``sys.exit(3)``; it ignores anything else. Times are
    ``time.monotonic()``, one clock for every process of the machine, so
    reports from different processes can be put in order.
    """
    import sys

    import occasional as occ

    if recorder is not None:
        occ.send(recorder, ("started", cid, occ.slf(), time.monotonic()))
    while True:
        msg = occ.receive()
        if msg == "return":
            return "returned"
        if msg == "raise":
            raise ValueError(f"{cid} was told to raise")
        if msg == "exit":
            sys.exit(3)


# --- durable processes (API.md, section 7) ------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A journal of this test's own, in each store in turn: an SQLite file, then a PostgreSQL database.

    One store interface, two implementations (issue 12): a durable test that takes ``journal``
    runs against both, so nothing is proved on one store only. The PostgreSQL server is asked
    for by name (``getfixturevalue``), so a run of the SQLite variants alone (``-k sqlite``)
    starts none. A test about the SQLite file itself (its modes, WAL, lock file, a damaged
    file) takes ``sqlite_journal`` instead.
    """
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "journal.sqlite")


@pytest.fixture
def sqlite_journal(tmp_path: Path) -> str:
    """A journal file of this test's own: for tests about the SQLite file itself (its path, file
    modes, WAL, -shm and lock files, a damaged or foreign file, its application_id), and for
    what only an SQLite journal does, such as refusing a second runtime (issue 12: several
    nodes may share a PostgreSQL journal)."""
    return str(tmp_path / "journal.sqlite")


def note(path: str, *values: Any) -> None:
    """Append one line to ``path``: an effect outside the runtime, which replay cannot undo."""
    with open(path, "a") as f:
        f.write(json.dumps(list(values)) + "\n")


def effects(path: str | Path) -> list[Any]:
    """The lines ``note`` appended to ``path``, oldest first."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def holding(journal: str, tmp_path: Path, script: str) -> Iterator[subprocess.Popen[str]]:
    """A runtime in a child interpreter with ``journal`` open, until the block ends.

    ``script`` is the child's program: it starts a runtime on ``sys.argv[1]``,
    prints "holding", waits for a line on stdin, stops and prints "stopped"."""
    (tmp_path / "holder.py").write_text(script)
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "holder.py"), journal],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "holding\n", child.stderr.read()  # type: ignore[union-attr]  # stderr=PIPE: never None
        yield child
    finally:
        out, err = child.communicate("\n", timeout=30)
        assert (child.returncode, out) == (0, "stopped\n"), err
