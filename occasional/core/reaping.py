"""Signalling and reaping processes without blocking: central, the forkserver
and a port's process reap here, and a subreaper kills every child it has.

A process is signalled through a pidfd where central holds one, never through
a pid that may have been reused (issue 10). Central learns that a process
ended from a pidfd becoming readable (``ended``), registered with its event
loop, never from a loop that sleeps and polls (issue 11).
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


def reap_ended() -> Iterator[tuple[int, int]]:
    """Yield ``(pid, wait status)`` for every child that has ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def children() -> list[int]:
    """The pids of this process's children (its own and those it adopted)."""
    pids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return pids


def open_pidfd(os_pid: int | None) -> int:
    """A pidfd for ``os_pid``, or -1 when it was reaped already (ESRCH) or is unknown.

    Central takes one as soon as a process's pid is known (FORKED). Why a
    signal through it cannot reach a stranger: a pid is free for reuse only
    once its process was reaped, and a pidfd refers to the process, not to
    the number (ESRCH once it was reaped). The forkserver reports FORKED
    before it can reap that child (it reaps on a later turn of its loop,
    after sending FORKED), so the pid is still the child's unless, in the
    moment the FORKED frame spends in the socket, the child ended, was
    reaped and the kernel handed its number out again after cycling through
    every other pid (pid_max). The owner is central's parent (central dies
    with it). A process central finalized has its pidfd closed and is never
    signalled again (Central.kill returns at once for it).
    """
    if not os_pid:
        return -1
    try:
        return os.pidfd_open(os_pid)
    except OSError:
        return -1  # it was reaped already: there is nothing left to signal


def signal_process(pidfd: int, os_pid: int, sig: int, group: bool) -> bool:
    """Send ``sig`` through ``pidfd`` (and to the process group it leads); False when it is gone."""
    if pidfd < 0:
        return False
    if group:
        # The group's id is the leader's pid. Probing the leader through its
        # pidfd first shows it is not reaped, so that number is still its own
        # and killpg reaches our group, not a group that reused the number.
        try:
            signal.pidfd_send_signal(pidfd, 0)
            os.killpg(os_pid, sig)
        except OSError:
            pass
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except OSError:  # ProcessLookupError: it has ended and was reaped
        return False
    return True


def sigkill(os_pid: int) -> None:
    """SIGKILL by pid: only for a child of the caller's own that it has not
    reaped (its pid cannot have been reused); others go through signal_process."""
    if os_pid <= 0:
        return
    try:
        os.kill(os_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def ended(loop: asyncio.AbstractEventLoop, pidfds: list[int], timeout: float) -> bool:
    """Wait, on the event loop, until every process behind ``pidfds`` has
    ended (each pidfd readable); False when ``timeout`` seconds passed first."""
    import asyncio

    left = set(pidfds)
    if not left:
        return True
    done: asyncio.Future[None] = loop.create_future()

    def on_readable(fd: int) -> None:
        loop.remove_reader(fd)
        left.discard(fd)
        if not left and not done.done():
            done.set_result(None)

    for fd in pidfds:
        loop.add_reader(fd, on_readable, fd)
    try:
        await asyncio.wait_for(done, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        for fd in left:
            loop.remove_reader(fd)


def _kill_all(kids: list[int]) -> list[int]:
    """SIGKILL each child through a pidfd; the pidfds of those still there."""
    fds = []
    for pid in kids:
        fd = open_pidfd(pid)
        if fd >= 0:
            signal_process(fd, pid, signal.SIGKILL, False)
            fds.append(fd)
    return fds


def _reap_and_close(fds: list[int]) -> None:
    for _pid, _status in reap_ended():
        pass
    for fd in fds:
        os.close(fd)


def kill_children(timeout: float = 2.0) -> None:
    """SIGKILL every child and reap it, again until none is left (a dying
    child's children are adopted meanwhile) or ``timeout`` passed. Blocks:
    for a process with no event loop (a port's, a failed boot)."""
    deadline = time.monotonic() + timeout
    while kids := children():
        fds = _kill_all(kids)
        poll = select.poll()
        for fd in fds:
            poll.register(fd, select.POLLIN)
        waiting = len(fds)
        while waiting and (left := deadline - time.monotonic()) > 0:
            for fd, _event in poll.poll(left * 1000):
                poll.unregister(fd)
                waiting -= 1
        _reap_and_close(fds)
        if time.monotonic() >= deadline:
            return


async def kill_children_soon(loop: asyncio.AbstractEventLoop, timeout: float = 2.0) -> None:
    """kill_children on an event loop: the same rounds, each awaiting the pidfds."""
    deadline = time.monotonic() + timeout
    while kids := children():
        fds = _kill_all(kids)
        await ended(loop, fds, max(0.0, deadline - time.monotonic()))
        _reap_and_close(fds)
        if time.monotonic() >= deadline:
            return
