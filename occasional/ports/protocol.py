"""The in-band messages of ports: what a port's process and the process that
opened it send one another as ordinary messages (issue 11: one home for each
layout)."""

from __future__ import annotations

STARTED = "$port_started"  # (STARTED, token, error_or_None): to the caller of open_port
CLOSE = ("$port", "close")  # sent by occasional.ports.close
