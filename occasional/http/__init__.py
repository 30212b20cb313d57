"""HTTP in and out of durable processes (API.md section 14, issue 16).

Built so far: :func:`request`, an HTTP request as a journaled step. The
gateway (``occasional gateway``) and signed webhook URLs are still to come.
Needs the ``http`` extra (``pip install occasional[http]``: httpx).
"""

from __future__ import annotations

from .client import RequestError as RequestError, Response as Response, request as request

__all__ = ["request", "Response", "RequestError"]
