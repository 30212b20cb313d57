"""Adopting orphans: pytest as a child subreaper, and the thread that reaps the
zombies it adopts (occasional.testing.plugin, "Nothing left behind").

The part of the plugin that exists for occasional: a runtime is a tree of
processes, and when a test SIGKILLs the interpreter that started one, its
processes die of their death signals and are reparented to the nearest
subreaper (issue 10). Made one, pytest catches an orphan as any other
descendant (leaks.py); as init does, it must then reap what it adopts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from dataclasses import dataclass, field

from . import leaks

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


# ---------------------------------------------------------------- pytest as a subreaper


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


def get_subreaper() -> int:
    """1 if this process is a child subreaper, else 0 (prctl(2))."""
    try:
        import prctl

        return int(prctl.get_child_subreaper())
    except ImportError:
        flag = ctypes.c_int(0)
        _libc_prctl(_PR_GET_CHILD_SUBREAPER, flag)
        return flag.value


def set_subreaper(flag: int) -> None:
    """Make this process a child subreaper (1), or no longer one (0)."""
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
# once seen with another parent (``leaks.seen_as_grandchild``). A process pytest forked has
# pytest as its parent from birth until it is reaped, so it is never seen with another; the
# evidence cannot be wrong, only missing. The thread walks the tree every ``REAP_POLL_S``
# (more seldom when the tree is large, to keep its share of a CPU under a tenth) to gather
# it; a process born and orphaned between two walks gives none, and is left to the checks
# after the test (``leaks._is_orphan_zombie``).
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
    with leaks.tree_lock:
        for proc in leaks.descendants().values():
            if proc.state == "Z" and proc.ppid == me and proc.key in leaks.seen_as_grandchild:
                leaks.reap(proc)


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


def start_reaper() -> None:
    """Start the reaper thread, or count one more session that uses it."""
    _reaper.users += 1
    if _reaper.thread is None:
        _reaper.stop = threading.Event()
        _reaper.thread = threading.Thread(
            target=_reaper_loop, args=(_reaper.stop,), name="occasional.testing reaper", daemon=True
        )
        _reaper.thread.start()


def stop_reaper() -> None:
    """Count one session less; stop the thread when none uses it."""
    _reaper.users = max(0, _reaper.users - 1)
    if _reaper.users == 0 and _reaper.thread is not None:
        _reaper.stop.set()
        _reaper.thread.join()
        _reaper.thread = None


def _after_fork_in_child() -> None:
    """A child forked by a test has no reaper thread."""
    global _reaper
    _reaper = _Reaper()


os.register_at_fork(after_in_child=_after_fork_in_child)
