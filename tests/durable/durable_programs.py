"""The durable processes whose journals are recorded in ``journals/`` (STYLE.md, "Tests").

``tests/test_durable_journals.py`` replays each recorded journal against this
code with ``occasional journal replay`` on every run, so a change to these
functions, to replay or to the journal's format that would strand a journal
already on disk fails a test. ``record_journals.py`` made the journals; run it
again only on purpose, when the format changes by decision (and say so in the
CHANGELOG).

Together the programs use every kind of journal entry: receive (selective,
and one that timed out), step (a result, a journaled exception, a retry after
a failure), now, random, uuid4, sleep and send.
"""

from __future__ import annotations

from typing import Any

import occasional as occ
from occasional import durable


def reserve(items: list[str]) -> list[str]:
    return sorted(items)


def charge(amount: int) -> str:
    if amount > 100:
        raise ValueError(f"amount {amount} is over the limit", amount)
    return f"charged {amount}"


def flaky_ship(order: str) -> str:
    if durable.attempt() == 1:
        raise ConnectionError("the carrier did not answer")
    return f"shipped {order} at attempt {durable.attempt()}"


def checkout(order: str, customer: Any) -> dict[str, Any]:
    try:
        occ.receive(("cancel", order), timeout=0)
        return {"order": order, "cancelled": True}
    except TimeoutError:
        pass
    _, items = occ.receive(("items", list))
    _, amount = occ.receive(("amount", int))
    reserved = durable.step(reserve, items)
    try:
        paid = durable.step(charge, amount)
    except ValueError as exc:
        paid = f"refused: {exc.args[0]}"
        paid = durable.step(charge, 100)
    shipped = durable.step(flaky_ship, order, retry=durable.Retry(attempts=3, backoff=0.01, max_delay=0.01))
    stamped = (durable.now() > 0, 0 <= durable.random() < 1, len(str(durable.uuid4())))
    durable.sleep(0.01)
    occ.send(customer, ("receipt", order, paid))
    return {"order": order, "reserved": reserved, "paid": paid, "shipped": shipped, "stamped": stamped}


def hold_stock(item: str) -> str:
    return f"held {item}"


def release_stock(item: str) -> str:
    return f"released {item}"


def restock(item: str) -> str:
    """Recorded while it called ``release_stock`` first: its journal must raise NonDeterminism."""
    held = durable.step(hold_stock, item)
    return held


def wait_for_more(n: int, customer: Any) -> list[Any]:
    """Recorded unfinished: the journal ends where a live run would wait for more messages."""
    got = [occ.receive() for _ in range(n)]
    got.append(durable.step(reserve, ["b", "a"]))
    occ.send(customer, ("waiting", n))
    got.append(occ.receive(("more",)))
    return got
