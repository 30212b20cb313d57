"""Signed webhook URLs (API.md section 14, issue 16).

``webhook_url(tag)``, inside a durable process, makes the URL a remote
system calls back when its job is done: the gateway's address
(``OCC_GATEWAY_URL``), the process's durable id and the tag, signed with
HMAC-SHA256 under ``OCC_GATEWAY_SECRET``, which the gateway holds too. A
POST to it needs no token: the signature is the permission, and it covers
the id and the tag, so an altered URL is refused. The gateway delivers
``("webhook", tag, body)`` into that process's mailbox once per URL (and
per ``Idempotency-Key``, when the caller sends one).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import urllib.parse

from ..core.api import slf
from ..durable import api as durable
from ..durable.context import current as durable_process

URL_ENV = "OCC_GATEWAY_URL"
SECRET_ENV = "OCC_GATEWAY_SECRET"
MAX_TAG = 200


def secret() -> bytes | None:
    value = os.environ.get(SECRET_ENV, "")
    return value.encode() if value else None


def signature(key: bytes, id: str, tag: str) -> str:
    return hmac.new(key, f"{id}\n{tag}".encode(), hashlib.sha256).hexdigest()


def good_tag(tag: object) -> bool:
    return isinstance(tag, str) and 0 < len(tag) <= MAX_TAG and tag.isprintable()


def webhook_url(tag: str | None = None) -> str:
    """A signed URL whose POSTs land in this durable process's mailbox as
    ``("webhook", tag, body)``, once. ``tag`` (printable, at most 200
    characters) tells callbacks apart; None makes a new one (journaled, so a
    replay makes the same URL).

    Raises:
        RuntimeError: not in a durable process, or OCC_GATEWAY_URL / OCC_GATEWAY_SECRET unset.
        ValueError: a bad tag, named.
    """
    call = f"http.webhook_url({tag!r})"
    durable_process(call)
    base = os.environ.get(URL_ENV, "").rstrip("/")
    key = secret()
    if not base or key is None:
        raise RuntimeError(
            f"{call}: set {URL_ENV} (the gateway's URL as callers reach it) and {SECRET_ENV} "
            "(the key the gateway checks signatures with) in the runtime's environment"
        )
    if tag is None:
        tag = str(durable.uuid4())
    elif not good_tag(tag):
        raise ValueError(f"{call}: the tag is not 1 to {MAX_TAG} printable characters")
    id = slf().durable_id  # type: ignore[attr-defined]  # a durable process's own address is a DurablePid
    quote = urllib.parse.quote
    return f"{base}/webhooks/{quote(id, safe='')}/{quote(tag, safe='')}?sig={signature(key, id, tag)}"
