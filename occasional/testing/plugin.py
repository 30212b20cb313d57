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
    ``gc.collect()`` runs before anything left is reported (a collection closes fds and
    reaps processes, it makes none), so the result does not depend on when the
    collector last ran. A failing test keeps its frames (and the
    files in their locals) alive through ``sys.last_traceback``; close files
    with ``with`` and such a test will not also report them.

The plugin imports nothing of occasional's runtime: its checks hold for any test.
This module holds its pytest hooks; the checks live in modules of their own
(issue 11): ``timeouts`` (generic), ``leaks`` (generic: processes and fds left
behind) and ``reaper`` (the part that exists for occasional: pytest as a
subreaper, and the thread that reaps the orphans of a killed runtime).
``occasional.testing.run`` (remote assertions) needs no plugin.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from . import leaks, reaper, timeouts
from .reaper import REAP_POLL_S as REAP_POLL_S
from .timeouts import TimeoutExceeded as TimeoutExceeded

if TYPE_CHECKING:
    from collections.abc import Generator


@dataclass
class _Session:
    timeout: float
    grace: float
    stderr_fd: int
    held: dict[object, leaks.Resources] = field(default_factory=dict)  # by FixtureDef
    released: leaks.Resources = field(default_factory=leaks.Resources)
    session_baseline: leaks.Resources = field(default_factory=leaks.Resources)
    subreaper_before: int | None = None


_SESSION = pytest.StashKey[_Session]()
_BASELINE = pytest.StashKey[leaks.Resources]()
_TIMEOUT = pytest.StashKey[float]()


def _time_limit(item: pytest.Item, state: _Session) -> contextlib.AbstractContextManager[None]:
    """The timeout of one phase of ``item``: its marker's, else the ini option's."""
    return timeouts.time_limit(item.stash.get(_TIMEOUT, state.timeout), state.grace, state.stderr_fd)


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timeout(seconds): fail the test if a phase of it (setup, call, teardown) takes "
        "longer than this; overrides the occ_timeout ini option",
    )
    timeout = timeouts.seconds_ini(config, "occ_timeout")
    grace = timeouts.seconds_ini(config, "occ_timeout_grace")
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
    state.subreaper_before = reaper.get_subreaper()
    reaper.set_subreaper(1)
    reaper.start_reaper()
    state.session_baseline = leaks.snapshot()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # trylast: after pytest's own sessionfinish has torn down what fixtures were still up
    # (an interrupted run), so that only true strays are killed here.
    state = session.config.stash[_SESSION]
    allowed = leaks.union([state.session_baseline, *state.held.values()]).procs
    strays = leaks.find_strays(allowed)
    if strays:
        named = "; ".join(leaks.describe_proc(p) for p in strays)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"occasional.testing.plugin: killing processes left at session end: {named}")
        leaks.kill_and_reap(allowed)
    reaper.stop_reaper()
    if state.subreaper_before is not None:
        reaper.set_subreaper(state.subreaper_before)


def _baseline(state: _Session) -> leaks.Resources:
    """What exists before a test; processes that a broader fixture's processes started since
    its setup join what that fixture holds, so that they count again once it is finalized."""
    tree = leaks.descendants()
    for fixturedef, held in state.held.items():
        covered = frozenset(p.key for p in tree.values() if leaks.is_allowed(p, tree, held.procs))
        state.held[fixturedef] = leaks.Resources(held.procs | covered, held.fds)
    return leaks.Resources(frozenset(p.key for p in tree.values()), frozenset(leaks.open_fds()))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_SESSION]
    item.stash[_BASELINE] = _baseline(state)
    item.stash[_TIMEOUT], bad_marker = timeouts.marker_timeout(item, state.timeout)
    try:
        with _time_limit(item, state):
            result = yield
    finally:
        leaks.descendants()  # note each process's parent while it has it (leaks._is_orphan_zombie)
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
        leaks.descendants()  # note each process's parent while it has it (leaks._is_orphan_zombie)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_SESSION]
    try:
        with _time_limit(item, state):
            return (yield)
    finally:
        baseline = item.stash.get(_BASELINE, state.session_baseline)
        allowed = leaks.union([baseline - state.released, *state.held.values()])
        state.released = leaks.Resources()
        message = leaks.check_leftovers(allowed)
        if message is not None:
            pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    if fixturedef.scope == "function":
        return (yield)
    state = request.config.stash[_SESSION]
    before = leaks.snapshot()
    try:
        return (yield)
    finally:
        state.held[fixturedef] = leaks.snapshot() - before


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    state = request.config.stash.get(_SESSION, None)
    if state is not None and fixturedef in state.held:
        state.released |= state.held.pop(fixturedef)


def pytest_enter_pdb(config: pytest.Config) -> None:
    timeouts.enter_debugger()
