"""Reaping children without blocking (central, the forkserver and a port's
process reap), and killing every child a subreaper has."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator


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


def kill_children(timeout: float = 2.0) -> None:
    """SIGKILL every child and reap it, again until none is left (a dying
    child's children are adopted meanwhile) or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        kids = children()
        if not kids:
            return
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in kids:
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.001)
        if time.monotonic() >= deadline:
            return
