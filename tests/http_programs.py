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


def write_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


def await_webhooks(path: str, tags: list[str]) -> list[Any]:
    """Make a webhook URL per tag, write them to ``path`` (a step: once), and
    return the webhooks as they come, one per tag."""
    from occasional import durable, http

    urls = [http.webhook_url(tag) for tag in tags]
    durable.step(write_line, path, " ".join(urls))
    return [occ.receive(("webhook", occ.ANY, occ.ANY)) for _ in tags]


def spawn_webhook_waiter(id: str, path: str, tags: list[str]) -> None:
    from occasional import durable

    durable.spawn(id, await_webhooks, path, tags)


def url_without_gateway() -> str:
    from occasional import http

    try:
        return http.webhook_url("x")
    except RuntimeError as e:
        return str(e)


def register_programs() -> None:
    """What a module of the user's does at import: ``@occasional.http.program``."""
    from occasional import http

    http.program(collect)
    http.program(name="greet")(greet)


def greet(who: str, times: int) -> str:
    return " ".join([f"hello {who}"] * times)
