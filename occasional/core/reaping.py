"""Reaping children without blocking (central and the forkserver both reap)."""

from __future__ import annotations

import os
from typing import Iterator


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
