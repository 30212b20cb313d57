"""HTTP in and out of durable processes (API.md section 14, issue 16).

Built so far: :func:`request`, an HTTP request as a journaled step, and the
gateway (``occasional gateway``, :mod:`occasional.http.gateway`) delivering
JSON into durable mailboxes. Still to come: ``Idempotency-Key`` at the
gateway, signed webhook URLs, ``POST /processes`` with ``@program``, the
gateway as a service kind of ``occasional up``. Needs the ``http`` extra
(``pip install occasional[http]``: httpx, aiohttp).
"""

from __future__ import annotations

from .client import RequestError as RequestError, Response as Response, request as request
from .programs import program as program
from .webhooks import webhook_url as webhook_url

__all__ = ["request", "Response", "RequestError", "webhook_url", "program"]
