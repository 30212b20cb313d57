"""What a test leaves behind: the processes below pytest and pytest's fds, seen
through /proc, and the check after a test's teardown that fails it for any it
did not have before (occasional.testing.plugin, "Nothing left behind").

Generic: it knows nothing of occasional. A process is known by ``(pid, start
time)``, so a reused pid is never taken for the process it replaced.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

LEFTOVER_GRACE_S = 1.0  # how long descendants get to end on their own after teardown
KILL_DEADLINE_S = 5.0  # how long killing and reaping leftovers may take
_POLL_S = 0.02

ProcKey = tuple[int, int]  # (pid, start time in clock ticks): a pid may be reused, this may not
FdKey = tuple[int, int, int]  # (fd, st_dev, st_ino) of what it refers to


@dataclass(frozen=True)
class Proc:
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
class Resources:
    procs: frozenset[ProcKey] = frozenset()
    fds: frozenset[FdKey] = frozenset()

    def __or__(self, other: Resources) -> Resources:
        return Resources(self.procs | other.procs, self.fds | other.fds)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.procs - other.procs, self.fds - other.fds)


def union(resources: Iterable[Resources]) -> Resources:
    out = Resources()
    for r in resources:
        out = out | r
    return out


def _read_stat(pid: int) -> Proc | None:
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
    return Proc(
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
seen_as_grandchild: set[ProcKey] = set()

# Held while the tree is walked: the reaper thread and the hooks both note what they see.
tree_lock = threading.RLock()


def descendants() -> dict[int, Proc]:
    """Every process below pytest, by pid (zombies included)."""
    with tree_lock:
        found = _walk_descendants()
        me = os.getpid()
        # Forget only a process that is gone, not one this walk missed: a
        # process being reparented to pytest is, for an instant, in no
        # children list, and forgetting it then would take it for pytest's own.
        for key in [k for k in seen_as_grandchild if k[0] not in found]:
            current = _read_stat(key[0])
            if current is None or current.start != key[1]:
                seen_as_grandchild.discard(key)
        seen_as_grandchild.update(p.key for p in found.values() if p.ppid != me)
        return found


def _walk_descendants() -> dict[int, Proc]:
    me = os.getpid()
    found: dict[int, Proc] = {}
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
    by_parent: dict[int, list[Proc]] = {}
    for proc in every:
        by_parent.setdefault(proc.ppid, []).append(proc)
    todo_procs = list(by_parent.get(me, []))
    while todo_procs:
        proc = todo_procs.pop()
        found[proc.pid] = proc
        todo_procs.extend(by_parent.get(proc.pid, []))
    return found


def open_fds() -> dict[FdKey, str]:
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


def snapshot() -> Resources:
    return Resources(frozenset(p.key for p in descendants().values()), frozenset(open_fds()))


def is_allowed(proc: Proc, tree: dict[int, Proc], allowed: frozenset[ProcKey]) -> bool:
    """True if ``proc`` or one of its ancestors below pytest is allowed to exist."""
    seen: set[int] = set()
    current: Proc | None = proc
    while current is not None and current.pid not in seen:
        if current.key in allowed:
            return True
        seen.add(current.pid)
        current = tree.get(current.ppid)
    return False


def find_strays(allowed: frozenset[ProcKey]) -> list[Proc]:
    tree = descendants()
    strays = (p for p in tree.values() if not is_allowed(p, tree, allowed))
    return sorted(strays, key=lambda p: p.pid)


def describe_proc(proc: Proc) -> str:
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


def _sigkill(proc: Proc) -> None:
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


def kill_and_reap(allowed: frozenset[ProcKey]) -> list[Proc]:
    """SIGKILL every stray descendant, reap the zombies that are pytest's; return what resisted."""
    me = os.getpid()
    deadline = time.monotonic() + KILL_DEADLINE_S
    while True:
        strays = find_strays(allowed)
        if not strays or time.monotonic() >= deadline:
            return strays
        for proc in strays:
            if proc.state != "Z":
                _sigkill(proc)
            elif proc.ppid == me:  # ours, forked or reparented: nobody else will reap it
                reap(proc)
        time.sleep(0.005)


def _is_orphan_zombie(proc: Proc) -> bool:
    """True for a zombie that became pytest's child when its parent ended.

    Linux keeps no record of a process's first parent, so this goes by evidence: it was
    seen with another parent (the reaper thread of occasional/testing/reaper.py looks at
    the tree often, and reaps such zombies itself; the hooks look before and after each
    test's setup, after its call and while waiting after teardown), or it belongs to a process group or
    session that some other process made (a fork of pytest is in pytest's, or leads its
    own). Outside pytest, init reaps such a zombie at once; a zombie that pytest forked and
    nobody reaped stays in production too, and is reported. Killing a process group with
    children in it (a port, ``os.killpg``), or the interpreter that started a runtime,
    leaves the first kind. A grandchild that both started and was orphaned within one
    test call, in pytest's group and session, is taken for pytest's own.
    """
    if proc.state != "Z" or proc.ppid != os.getpid():
        return False
    if proc.key in seen_as_grandchild:
        return True
    return proc.pgid not in (proc.pid, os.getpgid(0)) or proc.sid not in (proc.pid, os.getsid(0))


def reap(proc: Proc) -> None:
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


def _anything_left(allowed: Resources) -> bool:
    """True if a stray process (reaping orphaned zombies as init would) or a new fd is there now."""
    left = False
    for proc in find_strays(allowed.procs):
        if _is_orphan_zombie(proc):
            reap(proc)
        else:
            left = True
    return left or any(key not in allowed.fds for key in open_fds())


def check_leftovers(allowed: Resources) -> str | None:
    """Wait for stray processes to end, kill what is left; return the failure message, if any."""
    # A collection only ever closes fds and reaps processes (a file or a Popen in a reference
    # cycle), it makes none: so when nothing is left now, nothing is left after one either, and
    # the full check, which collects first so that its verdict does not depend on when the
    # collector last ran, is not needed. It is what most tests get, and gc.collect() of pytest's
    # heap is tens of milliseconds, times every test of a suite.
    if not _anything_left(allowed):
        return None
    gc.collect()
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        strays = []
        for proc in find_strays(allowed.procs):
            if _is_orphan_zombie(proc):
                reap(proc)  # as init would, had pytest not been made their subreaper
            else:
                strays.append(proc)
        if not strays or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    lines = []
    if strays:
        named = "; ".join(describe_proc(p) for p in strays)
        lines.append(f"test left {_plural(len(strays), 'process', 'processes')} behind: {named}")
        resisted = kill_and_reap(allowed.procs)
        if resisted:
            named = "; ".join(describe_proc(p) for p in resisted)
            lines.append(f"and these survived SIGKILL for {KILL_DEADLINE_S} s: {named}")
    fds = sorted((key, target) for key, target in open_fds().items() if key not in allowed.fds)
    if fds:
        named = "; ".join(f"{key[0]} -> {target}" for key, target in fds)
        lines.append(f"test left {_plural(len(fds), 'fd', 'fds')} open: {named}")
    return "\n".join(lines) or None


def _after_fork_in_child() -> None:
    """A child forked by a test may have forked while another thread held the lock."""
    global tree_lock
    tree_lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)
