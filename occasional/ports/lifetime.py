"""How a port process ends, and makes sure what its executable started ends
with it (split from driver.py, which runs the executable)."""

from __future__ import annotations

import os
import signal
from typing import Any, NoReturn

from ..core import context
from ..core.reaping import kill_children


def kill_everything_started(pgid: int) -> None:
    """Kill the executable's process group and every process the driver
    adopted as subreaper (a double fork that left the group), then reap them."""
    if pgid > 0:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    kill_children(timeout=2.0)


def die_with_the_runtime(driver: Any) -> None:
    """When the forkserver dies (the runtime is ending, perhaps all of it
    SIGKILLed at once), kill what the executable started before dying.

    With SIGKILL as the parent-death signal, as every other process has,
    the driver would die first and whatever it had adopted (a double-forked
    daemon) would be reparented past a central that is gone too, and
    escape. SIGTERM is caught instead: the driver kills the executable's
    group and every adopted process while they are still its children.
    """
    import prctl

    parent = os.getppid()

    def on_term(signum: int, frame: Any) -> None:
        kill_everything_started(driver.pgid if driver.proc else 0)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)
    prctl.set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent:  # it died before the signal was set
        os.kill(os.getpid(), signal.SIGTERM)


def end(ctx: context.Context, reason: tuple[str, Any]) -> NoReturn:
    try:
        ctx.flush_all()
        ctx.exit(reason)
    finally:
        os._exit(0)
