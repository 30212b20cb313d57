"""occasional's pytest plugin: a timeout per test, and nothing may be left behind.

Opt-in: installing occasional registers no ``pytest11`` entry point, so a pytest run
that does not ask for the plugin gets none of this (issue 11). Ask for it with
``pytest -p occasional.testing.plugin``, or with one line in a top-level
``conftest.py``::

    pytest_plugins = ["occasional.testing.plugin"]

Either way it is registered under its module name, so asking twice (``-p`` and a
conftest) loads it once.

What a test gets:

Timeout
    Each phase of a test (setup, call, teardown) may take ``occ_timeout``
    seconds (ini option, default 60; ``-o occ_timeout=0`` switches timeouts
    off, e.g. to debug). ``@pytest.mark.timeout(seconds)`` sets it for one
    test. When the time is up, SIGALRM raises :class:`TimeoutExceeded` in the
    main thread, wherever the test is: the phase fails with "test exceeded its
    5.0 s timeout; raise it with @pytest.mark.timeout(N)", and ``finally:``
    blocks and fixture finalizers still run, which is how a runtime started
    by the test cleans up. If that cannot interrupt the test (a C call that
    never returns, SIGALRM blocked, the exception swallowed), faulthandler
    dumps every thread's stack to stderr ``occ_timeout_grace`` seconds later
    (default 5) and ends pytest with status 1. The plugin owns SIGALRM and
    faulthandler's one "dump later" slot while a phase runs, so tests must not
    use ``signal.alarm``/``setitimer(ITIMER_REAL)``, and pytest's
    ``faulthandler_timeout`` is not combined with it. Once a debugger is
    entered (``breakpoint()``, ``--trace``, ``--pdb``), timeouts stay off for
    the rest of the run.

Nothing left behind
    After a test's teardown, every process descending from pytest (alive or
    zombie) and every file descriptor of pytest that was not there before its
    setup fails the teardown, naming each one: "test left 2 processes behind:
    1234 (S) sleep 30; 1235 (Z) [python] <zombie>" (pid, state, command line)
    and "test left 1 fd open: 12 -> /tmp/x". Pytest is made a child subreaper for the session, so an
    orphan (a daemon that double-forked, the grandchild of a process the test
    killed) is reparented to pytest and caught like any other descendant;
    processes get up to 1 s to go away first. Leftover processes are then
    SIGKILLed and reaped, so they do not poison later tests; leftover fds are
    reported but not closed (a Python object may still own the number).

    A subreaper reaps what it adopts, as init does: while the session runs, a
    thread reaps every zombie that was reparented to pytest (the processes of a
    runtime whose interpreter a test SIGKILLed, the child of a process group
    killed with ``os.killpg``), so neither this plugin's check nor a test's own
    finds them. It reaps only a process it once saw with another parent, so
    the exit status of a child that pytest forked (a ``subprocess.Popen``)
    stays for whoever waits for it, and it reads /proc through a table of fds
    of its own, so a test's listing of /proc/self/fd never shows its files.
    A zombie that pytest forked and nobody reaped is reported (it would stay
    in production too); one that was orphaned too fast for the thread to see
    its first parent is told apart by ``_is_orphan_zombie`` after the test.

    Resources made by a fixture of a broader scope (class, module, package,
    session) during its setup belong to that fixture, with the descendants of
    its processes, until it is finalized; after that they count again. Such
    a fixture must open its fds in its setup, not lazily during later tests.
    ``gc.collect()`` runs before the fd check, so the result does not depend
    on when the collector last ran. A failing test keeps its frames (and the
    files in their locals) alive through ``sys.last_traceback``; close files
    with ``with`` and such a test will not also report them.

The plugin imports nothing of occasional's runtime: its checks hold for any test.
``occasional.testing.run`` (remote assertions) needs no plugin.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import faulthandler
import gc
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.outcomes import Failed  # pytest.fail.Exception, spelled so that it can be a base class

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator

LEFTOVER_GRACE_S = 1.0  # how long descendants get to end on their own after teardown
KILL_DEADLINE_S = 5.0  # how long killing and reaping leftovers may take
_POLL_S = 0.02
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class TimeoutExceeded(Failed):
    """Raised in the main thread when a test phase outlives its timeout.

    A ``pytest.fail.Exception``, not an ``Exception``: ``except Exception`` in a test
    does not swallow it, and pytest still runs the other finalizers after it.
    """


# ---------------------------------------------------------------- processes and fds

ProcKey = tuple[int, int]  # (pid, start time in clock ticks): a pid may be reused, this may not
FdKey = tuple[int, int, int]  # (fd, st_dev, st_ino) of what it refers to


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    state: str
    start: int
    comm: str
    pgid: int
    sid: int

    @property
    def key(self) -> ProcKey:
        return (self.pid, self.start)


@dataclass(frozen=True)
class _Resources:
    procs: frozenset[ProcKey] = frozenset()
    fds: frozenset[FdKey] = frozenset()

    def __or__(self, other: _Resources) -> _Resources:
        return _Resources(self.procs | other.procs, self.fds | other.fds)

    def __sub__(self, other: _Resources) -> _Resources:
        return _Resources(self.procs - other.procs, self.fds - other.fds)


def _union(resources: Iterable[_Resources]) -> _Resources:
    out = _Resources()
    for r in resources:
        out = out | r
    return out


def _read_stat(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces and parentheses; it ends at the last ')' (proc(5))
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state), rest[1..3] fields 4-6 (ppid, pgrp, session), rest[19] field 22
    # (starttime)
    return _Proc(
        pid=pid,
        ppid=int(rest[1]),
        state=rest[0],
        start=int(rest[19]),
        comm=comm,
        pgid=int(rest[2]),
        sid=int(rest[3]),
    )


def _have_children_files() -> bool:
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(child) for child in f.read().split())
        except OSError:
            pass
    return out


# Processes seen with a parent other than pytest: if they end up as pytest's zombies, they
# were reparented to it, not forked by it.
_seen_as_grandchild: set[ProcKey] = set()

# Held while the tree is walked: the reaper thread and the hooks both note what they see.
_lock = threading.RLock()


def _descendants() -> dict[int, _Proc]:
    """Every process below pytest, by pid (zombies included)."""
    with _lock:
        found = _walk_descendants()
        me = os.getpid()
        # Forget only a process that is gone, not one this walk missed: a
        # process being reparented to pytest is, for an instant, in no
        # children list, and forgetting it then would take it for pytest's own.
        for key in [k for k in _seen_as_grandchild if k[0] not in found]:
            current = _read_stat(key[0])
            if current is None or current.start != key[1]:
                _seen_as_grandchild.discard(key)
        _seen_as_grandchild.update(p.key for p in found.values() if p.ppid != me)
        return found


def _walk_descendants() -> dict[int, _Proc]:
    me = os.getpid()
    found: dict[int, _Proc] = {}
    if _have_children_files():
        todo = _children(me)
        while todo:
            pid = todo.pop()
            if pid in found:
                continue
            proc = _read_stat(pid)
            if proc is not None:
                found[pid] = proc
                todo.extend(_children(pid))
        return found
    # Kernels without CONFIG_PROC_CHILDREN: build the tree from every process's ppid.
    every = [p for p in map(_read_stat, (int(n) for n in os.listdir("/proc") if n.isdigit())) if p]
    by_parent: dict[int, list[_Proc]] = {}
    for proc in every:
        by_parent.setdefault(proc.ppid, []).append(proc)
    todo_procs = list(by_parent.get(me, []))
    while todo_procs:
        proc = todo_procs.pop()
        found[proc.pid] = proc
        todo_procs.extend(by_parent.get(proc.pid, []))
    return found


def _open_fds() -> dict[FdKey, str]:
    """pytest's open fds, each with what it refers to."""
    out: dict[FdKey, str] = {}
    for name in os.listdir("/proc/self/fd"):
        path = f"/proc/self/fd/{name}"
        try:
            target = os.readlink(path)
            st = os.stat(path)  # follows the magic link: the identity of the open file itself
        except OSError:  # the fd of the listdir itself, or closed meanwhile
            continue
        out[(int(name), st.st_dev, st.st_ino)] = target
    return out


def _snapshot() -> _Resources:
    return _Resources(frozenset(p.key for p in _descendants().values()), frozenset(_open_fds()))


def _is_allowed(proc: _Proc, tree: dict[int, _Proc], allowed: frozenset[ProcKey]) -> bool:
    """True if ``proc`` or one of its ancestors below pytest is allowed to exist."""
    seen: set[int] = set()
    current: _Proc | None = proc
    while current is not None and current.pid not in seen:
        if current.key in allowed:
            return True
        seen.add(current.pid)
        current = tree.get(current.ppid)
    return False


def _strays(allowed: frozenset[ProcKey]) -> list[_Proc]:
    tree = _descendants()
    strays = (p for p in tree.values() if not _is_allowed(p, tree, allowed))
    return sorted(strays, key=lambda p: p.pid)


def _describe_proc(proc: _Proc) -> str:
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        argv = []
    cmd = " ".join(a for a in argv if a)
    if len(cmd) > 200:
        cmd = cmd[:197] + "..."
    if not cmd:
        cmd = f"[{proc.comm}] <zombie>" if proc.state == "Z" else f"[{proc.comm}]"
    return f"{proc.pid} ({proc.state}) {cmd}"


def _sigkill(proc: _Proc) -> None:
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    except OSError:  # kernels before 5.3: no pidfd; the start time check still guards reuse
        current = _read_stat(proc.pid)
        if current is not None and current.start == proc.start:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return
    try:
        # The pidfd pins the process; the start time says it is still the one we found.
        current = _read_stat(proc.pid)
        if current is not None and current.start == proc.start:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def _kill_and_reap(allowed: frozenset[ProcKey]) -> list[_Proc]:
    """SIGKILL every stray descendant, reap the zombies that are pytest's; return what resisted."""
    me = os.getpid()
    deadline = time.monotonic() + KILL_DEADLINE_S
    while True:
        strays = _strays(allowed)
        if not strays or time.monotonic() >= deadline:
            return strays
        for proc in strays:
            if proc.state != "Z":
                _sigkill(proc)
            elif proc.ppid == me:  # ours, forked or reparented: nobody else will reap it
                _reap(proc)
        time.sleep(0.005)


def _is_orphan_zombie(proc: _Proc) -> bool:
    """True for a zombie that became pytest's child when its parent ended.

    Linux keeps no record of a process's first parent, so this goes by evidence: it was
    seen with another parent (the reaper thread looks at the tree every ``REAP_POLL_S``, and
    reaps such zombies itself; the hooks look before and after each test's setup, after its
    call and while waiting after teardown), or it belongs to a process group or
    session that some other process made (a fork of pytest is in pytest's, or leads its
    own). Outside pytest, init reaps such a zombie at once; a zombie that pytest forked and
    nobody reaped stays in production too, and is reported. Killing a process group with
    children in it (a port, ``os.killpg``), or the interpreter that started a runtime,
    leaves the first kind. A grandchild that both started and was orphaned within one
    test call, in pytest's group and session, is taken for pytest's own.
    """
    if proc.state != "Z" or proc.ppid != os.getpid():
        return False
    if proc.key in _seen_as_grandchild:
        return True
    return proc.pgid not in (proc.pid, os.getpgid(0)) or proc.sid not in (proc.pid, os.getsid(0))


def _reap(proc: _Proc) -> None:
    """Reap ``proc`` if it is still the zombie found: a pidfd pins the process, and its start
    time says the pid was not reaped by someone else and reused meanwhile."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    except OSError:  # kernels before 5.3: no pidfd; the start time check still guards reuse
        pidfd = -1
    try:
        current = _read_stat(proc.pid)
        if current is None or current.start != proc.start:
            return
        if pidfd >= 0:
            try:
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
                return
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: kernel 5.3, pidfds but no P_PIDFD
                    raise
        os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:  # reaped meanwhile by whoever else waits for it
        pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _check_leftovers(allowed: _Resources) -> str | None:
    """Wait for stray processes to end, kill what is left; return the failure message, if any."""
    gc.collect()
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        strays = []
        for proc in _strays(allowed.procs):
            if _is_orphan_zombie(proc):
                _reap(proc)  # as init would, had pytest not been made their subreaper
            else:
                strays.append(proc)
        if not strays or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    lines = []
    if strays:
        named = "; ".join(_describe_proc(p) for p in strays)
        lines.append(f"test left {_plural(len(strays), 'process', 'processes')} behind: {named}")
        resisted = _kill_and_reap(allowed.procs)
        if resisted:
            named = "; ".join(_describe_proc(p) for p in resisted)
            lines.append(f"and these survived SIGKILL for {KILL_DEADLINE_S} s: {named}")
    fds = sorted((key, target) for key, target in _open_fds().items() if key not in allowed.fds)
    if fds:
        named = "; ".join(f"{key[0]} -> {target}" for key, target in fds)
        lines.append(f"test left {_plural(len(fds), 'fd', 'fds')} open: {named}")
    return "\n".join(lines) or None


# ---------------------------------------------------------------- subreaper


def _libc_prctl(option: int, arg: int | ctypes.c_int) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if isinstance(arg, ctypes.c_int):
        result = int(libc.prctl(option, ctypes.byref(arg), 0, 0, 0))
    else:
        result = int(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def _get_subreaper() -> int:
    try:
        import prctl

        return int(prctl.get_child_subreaper())
    except ImportError:
        flag = ctypes.c_int(0)
        _libc_prctl(_PR_GET_CHILD_SUBREAPER, flag)
        return flag.value


def _set_subreaper(flag: int) -> None:
    try:
        import prctl

        prctl.set_child_subreaper(flag)
    except ImportError:
        _libc_prctl(_PR_SET_CHILD_SUBREAPER, flag)


# ---------------------------------------------------------------- the reaper
#
# A subreaper must reap what it adopts, as init does: when a test SIGKILLs the interpreter
# that started a runtime, the runtime's processes end as pytest's zombies, and every leak
# check (ours, a user's) would count them (issue 10). A thread reaps them while tests run.
#
# It must never reap a child that pytest itself forked: a ``subprocess.Popen`` (of a test,
# of the code under test) would lose its exit status. Linux keeps no record of a process's
# first parent, so the thread reaps only on evidence: a zombie child of pytest that was
# once seen with another parent (``_seen_as_grandchild``). A process pytest forked has pytest
# as its parent from birth until it is reaped, so it is never seen with another; the
# evidence cannot be wrong, only missing. The thread walks the tree every ``REAP_POLL_S``
# (more seldom when the tree is large, to keep its share of a CPU under a tenth) to gather
# it; a process born and orphaned between two walks gives none, and is left to the checks
# after the test (``_is_orphan_zombie``).
#
# Walking /proc opens files. In pytest's fd table they would show, for a moment, in every
# listing of /proc/self/fd that a test makes to check that it closed what it opened; so the
# thread first takes an fd table of its own (unshare(CLONE_FILES)), and empties it.

REAP_POLL_S = 0.05  # a runtime lives for a test, far longer than this; more often costs CPU on CI
_REAP_MAX_SHARE = 0.1  # of one CPU, at most, for walking the tree
_CLONE_FILES = 0x400


def _own_fd_table() -> None:
    """Give the calling thread an fd table of its own, with nothing in it.

    /proc/self/fd lists the table of pytest's main thread: what this thread opens is not
    there. The copy unshare makes would keep every file pytest had open alive until this
    thread ended, so each is closed here (in this thread's table only). Where unshare is
    refused (a seccomp filter), the thread shares pytest's table, as any thread does.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.unshare(_CLONE_FILES) != 0:
        return
    for name in os.listdir("/proc/thread-self/fd"):
        try:
            os.close(int(name))
        except OSError:  # the fd of the listdir itself, closed already
            pass


def _reap_adopted() -> None:
    """Reap every zombie child of pytest that was seen with another parent."""
    me = os.getpid()
    with _lock:
        for proc in _descendants().values():
            if proc.state == "Z" and proc.ppid == me and proc.key in _seen_as_grandchild:
                _reap(proc)


def _reaper_loop(stop: threading.Event) -> None:
    _own_fd_table()
    interval = REAP_POLL_S
    while not stop.wait(interval):
        began = time.monotonic()
        _reap_adopted()
        interval = max(REAP_POLL_S, (time.monotonic() - began) / _REAP_MAX_SHARE)


@dataclass
class _Reaper:
    users: int = 0  # sessions that run now: an in-process pytester session nests in another
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


_reaper = _Reaper()


def _start_reaper() -> None:
    _reaper.users += 1
    if _reaper.thread is None:
        _reaper.stop = threading.Event()
        _reaper.thread = threading.Thread(
            target=_reaper_loop, args=(_reaper.stop,), name="occasional.testing reaper", daemon=True
        )
        _reaper.thread.start()


def _stop_reaper() -> None:
    _reaper.users = max(0, _reaper.users - 1)
    if _reaper.users == 0 and _reaper.thread is not None:
        _reaper.stop.set()
        _reaper.thread.join()
        _reaper.thread = None


def _after_fork_in_child() -> None:
    """A child forked by a test has no reaper thread, and the lock may have been held."""
    global _lock, _reaper
    _lock = threading.RLock()
    _reaper = _Reaper()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- timeouts


@dataclass
class _Armed:
    timeout: float
    soft_deadline: float
    hard_deadline: float
    stderr_fd: int
    previous_handler: Any = None


# Module level, not per session: SIGALRM, the interval timer and faulthandler's
# dump-later slot belong to the process, which an in-process pytester run shares
# with the session around it. The innermost armed phase owns them; disarming it
# re-arms the one around it with what is left of its time.
_armed: list[_Armed] = []
_debugging = False


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_alarm(signum: int, frame: object) -> None:
    __tracebackhide__ = True
    if not _armed or _debugging:
        return
    timeout = _armed[-1].timeout
    raise TimeoutExceeded(f"test exceeded its {timeout} s timeout; raise it with @pytest.mark.timeout(N)")


def _start_timers(entry: _Armed) -> None:
    now = time.monotonic()
    if _on_main_thread():
        signal.setitimer(signal.ITIMER_REAL, max(entry.soft_deadline - now, 0.001))
    faulthandler.dump_traceback_later(max(entry.hard_deadline - now, 0.001), exit=True, file=entry.stderr_fd)


def _stop_timers() -> None:
    if _on_main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)
    faulthandler.cancel_dump_traceback_later()


def _arm(timeout: float, grace: float, stderr_fd: int) -> bool:
    if timeout <= 0 or _debugging:
        return False
    now = time.monotonic()
    entry = _Armed(timeout, now + timeout, now + timeout + grace, stderr_fd)
    if _on_main_thread():
        entry.previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    _armed.append(entry)
    _start_timers(entry)
    return True


@contextlib.contextmanager
def _time_limit(item: pytest.Item, state: Any) -> Iterator[None]:
    """The timeout of one phase of a test (setup, call or teardown)."""
    armed = _arm(item.stash.get(_TIMEOUT, state.timeout), state.grace, state.stderr_fd)
    try:
        yield
    finally:
        if armed:
            _disarm()


def _disarm() -> None:
    entry = _armed.pop()
    _stop_timers()
    if _on_main_thread():
        previous = entry.previous_handler
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
    if _armed and not _debugging:
        _start_timers(_armed[-1])


# ---------------------------------------------------------------- pytest hooks


@dataclass
class _Session:
    timeout: float
    grace: float
    stderr_fd: int
    held: dict[object, _Resources] = field(default_factory=dict)  # by FixtureDef
    released: _Resources = field(default_factory=_Resources)
    session_baseline: _Resources = field(default_factory=_Resources)
    subreaper_before: int | None = None


_SESSION = pytest.StashKey[_Session]()
_BASELINE = pytest.StashKey[_Resources]()
_TIMEOUT = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "occ_timeout",
        "seconds each phase (setup, call, teardown) of a test may take; 0: no timeout (occasional.testing.plugin)",
        default="60",
    )
    parser.addini(
        "occ_timeout_grace",
        "seconds after a timeout before faulthandler dumps all stacks and ends pytest, "
        "if the timeout could not interrupt the test (occasional.testing.plugin)",
        default="5",
    )


def _seconds_ini(config: pytest.Config, name: str) -> float:
    raw = config.getini(name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise pytest.UsageError(f"{name} = {raw!r} is not a number of seconds; use a number >= 0, e.g. {name} = 60")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timeout(seconds): fail the test if a phase of it (setup, call, teardown) takes "
        "longer than this; overrides the occ_timeout ini option",
    )
    timeout = _seconds_ini(config, "occ_timeout")
    grace = _seconds_ini(config, "occ_timeout_grace")
    if float(config.getini("faulthandler_timeout") or 0) > 0:
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                "faulthandler_timeout is set, but occasional.testing.plugin's hard timeout uses the same "
                "faulthandler slot and replaces it; unset faulthandler_timeout and use "
                "occ_timeout / @pytest.mark.timeout"
            ),
            stacklevel=2,
        )
    # The real stderr, duplicated now: while a test runs, fd 2 is pytest's capture file,
    # and a dump there would be lost when pytest exits.
    stderr_fd = os.dup(2)
    config.stash[_SESSION] = _Session(timeout=timeout, grace=grace, stderr_fd=stderr_fd)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        os.close(session.stderr_fd)
        del config.stash[_SESSION]


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash[_SESSION]
    state.subreaper_before = _get_subreaper()
    _set_subreaper(1)
    _start_reaper()
    state.session_baseline = _snapshot()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # trylast: after pytest's own sessionfinish has torn down what fixtures were still up
    # (an interrupted run), so that only true strays are killed here.
    state = session.config.stash[_SESSION]
    allowed = _union([state.session_baseline, *state.held.values()]).procs
    strays = _strays(allowed)
    if strays:
        named = "; ".join(_describe_proc(p) for p in strays)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"occasional.testing.plugin: killing processes left at session end: {named}")
        _kill_and_reap(allowed)
    _stop_reaper()
    if state.subreaper_before is not None:
        _set_subreaper(state.subreaper_before)


def _baseline(state: _Session) -> _Resources:
    """What exists before a test; processes that a broader fixture's processes started since
    its setup join what that fixture holds, so that they count again once it is finalized."""
    tree = _descendants()
    for fixturedef, held in state.held.items():
        covered = frozenset(p.key for p in tree.values() if _is_allowed(p, tree, held.procs))
        state.held[fixturedef] = _Resources(held.procs | covered, held.fds)
    return _Resources(frozenset(p.key for p in tree.values()), frozenset(_open_fds()))


def _marker_timeout(item: pytest.Item, default: float) -> tuple[float, str | None]:
    """The test's timeout, and what is wrong with its marker, if anything."""
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return default, None
    args = list(marker.args)
    kwargs = dict(marker.kwargs)
    if "seconds" in kwargs:
        args.append(kwargs.pop("seconds"))
    value = args[0] if len(args) == 1 and not kwargs else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        given = [*map(repr, marker.args), *(f"{k}={v!r}" for k, v in marker.kwargs.items())]
        shown = ", ".join(given)
        return default, (
            f"@pytest.mark.timeout({shown}) on {item.nodeid}: give one positive number of "
            f"seconds, e.g. @pytest.mark.timeout(10)"
        )
    return float(value), None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_SESSION]
    item.stash[_BASELINE] = _baseline(state)
    item.stash[_TIMEOUT], bad_marker = _marker_timeout(item, state.timeout)
    try:
        with _time_limit(item, state):
            result = yield
    finally:
        _descendants()  # note each process's parent while it has it (_is_orphan_zombie)
    # Failed after the setup, not before: the other plugins' setup wrappers must have run
    # for their teardown to work.
    if bad_marker is not None:
        pytest.fail(bad_marker, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_SESSION]
    try:
        with _time_limit(item, state):
            return (yield)
    finally:
        _descendants()  # note each process's parent while it has it (_is_orphan_zombie)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_SESSION]
    try:
        with _time_limit(item, state):
            return (yield)
    finally:
        baseline = item.stash.get(_BASELINE, state.session_baseline)
        allowed = _union([baseline - state.released, *state.held.values()])
        state.released = _Resources()
        message = _check_leftovers(allowed)
        if message is not None:
            pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    if fixturedef.scope == "function":
        return (yield)
    state = request.config.stash[_SESSION]
    before = _snapshot()
    try:
        return (yield)
    finally:
        state.held[fixturedef] = _snapshot() - before


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    state = request.config.stash.get(_SESSION, None)
    if state is not None and fixturedef in state.held:
        state.released |= state.held.pop(fixturedef)


def pytest_enter_pdb(config: pytest.Config) -> None:
    global _debugging
    _debugging = True
    if _armed:
        _stop_timers()
