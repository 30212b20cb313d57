"""Where the runtime's own log records go.

Every process of a runtime is a fork of the forkserver, not of the program
that started it, so it does not inherit that program's logging setup. Central
and the forkserver (and so every user process) send WARNING and above of the
``occasional`` loggers to stderr, as Erlang's logger reports crashes by
default; a program that wants more configures logging in its processes.
"""

from __future__ import annotations

import logging
import sys


def to_stderr() -> None:
    logger = logging.getLogger("occasional")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("occasional: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
