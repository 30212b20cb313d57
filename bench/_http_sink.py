"""The durable process bench/http_gateway.py delivers to: it leaves its
mailbox alone (it waits for a message nobody sends), so the figure is the
delivery path alone, as in bench/durable_send.py. A module of its own, so the
gateway's runtime resumes it by name."""

from __future__ import annotations

import occasional as occ


def hold() -> None:
    occ.receive(("never sent",))


def put_sink(id: str) -> None:
    from occasional import durable

    durable.spawn(id, hold)
