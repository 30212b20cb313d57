"""Durable programs the HTTP gateway's tests deliver to (tests/test_http_gateway.py).

A module of their own, so that a runtime resuming the journal in another
interpreter (the gateway's) imports them by name.
"""

from __future__ import annotations

from typing import Any

import occasional as occ


def collect(n: int) -> list[Any]:
    """Receive ``n`` messages and return them, in the order they came."""
    return [occ.receive() for _ in range(n)]


def spawn_collector(id: str, n: int) -> None:
    """The main of a runtime that only puts ``collect(n)`` in the journal as ``id``."""
    from occasional import durable

    durable.spawn(id, collect, n)
