"""HTTP in and out of durable processes (API.md section 14, issue 16).

:func:`request`, an HTTP request as a journaled step; the gateway
(``occasional gateway``, :mod:`occasional.http.gateway`) delivering JSON
into durable mailboxes, once per ``Idempotency-Key``, and starting programs
registered with :func:`program`; :func:`webhook_url`, signed URLs whose
POSTs land once in the process that made them. Needs the ``http`` extra
(``pip install occasional[http]``: httpx, aiohttp).
"""

from __future__ import annotations

from .client import RequestError as RequestError, Response as Response, request as request
from .programs import program as program
from .webhooks import webhook_url as webhook_url

__all__ = ["request", "Response", "RequestError", "webhook_url", "program"]
