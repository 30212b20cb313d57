"""A pipeline's stages before the last (API.md section 13, issue 14): started by
the port process with no shell, each stage's stdout the next one's stdin, all
in the first stage's process group, so that one signal reaches them all."""

from __future__ import annotations

import subprocess
import time
from typing import Any


def start_stages(spec: Any) -> list[subprocess.Popen[bytes]]:
    """Every stage but the last (the driver starts that one, as a plain port's
    executable, on the last of these stdouts). The first reads the port's stdin."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for executable, argv in spec.stages[:-1]:
            before = started[-1] if started else None
            started.append(
                subprocess.Popen(
                    list(argv),
                    executable=executable,
                    stdin=subprocess.PIPE if before is None else before.stdout,
                    stdout=subprocess.PIPE,
                    cwd=spec.cwd,
                    env=spec.env,
                    process_group=started[0].pid if started else 0,
                    bufsize=0,
                )
            )
            if before is not None and before.stdout is not None:
                before.stdout.close()  # the new stage holds it now
    except BaseException:
        for stage in started:
            stage.kill()
            stage.wait()
        raise
    return started


def statuses(first: list[subprocess.Popen[bytes]], last: int, grace: float = 1.0) -> list[int | None]:
    """Each stage's status once the last one ended with ``last``: a stage still
    running gets ``grace`` seconds to end on its own (it reads EOF, or its next
    write fails with SIGPIPE, as in a shell); after that, ``None``, and the
    driver kills the group."""
    deadline = time.monotonic() + grace
    found: list[Any] = []
    for stage in first:
        try:
            found.append(stage.wait(timeout=max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            found.append(None)
    return [*found, last]
