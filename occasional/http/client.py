"""HTTP requests as journaled steps (API.md section 14, issue 16).

``request`` runs one request as a ``durable.step``: the response (status,
headers, body) is journaled, and on replay it is returned without a second
network call. A failure worth trying again (no connection, a timeout, a
408, 429 or 5xx answer) is retried with the step's durable backoff, and
every attempt carries the step's key as ``Idempotency-Key``, so a server
that honours the header acts once however often the request is sent
(at least once: a crash after the server acted and before the response was
committed sends it again, with the same key).

The client is httpx: a synchronous API (a step runs in the process's own
thread), separate connect and read timeouts, and connections kept alive
between the steps of one process.
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any

from ..core.checks import is_number, is_seconds
from ..durable import api as durable
from ..durable.context import current as durable_process

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Answers that say "try again later" rather than "this request is wrong".
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY = durable.Retry(attempts=3, backoff=1.0, max_delay=60.0)


@dataclass(frozen=True)
class Response:
    """What a server answered: journaled as it is, returned as it was on replay."""

    status: int
    headers: tuple[tuple[str, str], ...]  # in the order sent, names lower-case
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; raises ValueError naming the URL when it is not."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise ValueError(f"the response of {self.url} is not JSON ({e}): {self.body[:80]!r}") from None


class RequestError(Exception):
    """No answer: the connection failed or timed out, on every attempt."""


class _Retryable(Exception):
    """An answer worth trying again; the last one is returned (see request)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response)
        self.response = response


def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry: durable.Retry | None = DEFAULT_RETRY,
) -> Response:
    """Send an HTTP request as a step of the calling durable process.

    ``json`` is sent as the body (``Content-Type: application/json``).
    Returns the :class:`Response` whatever its status; when every attempt
    got a 408, 429 or 5xx, the last such response. On replay the recorded
    response is returned and nothing is sent.

    Raises, in the caller, before anything is sent:
        TypeError / ValueError: a bad argument, named.
        RuntimeError: not inside a durable process.
    Raises after the attempts:
        RequestError: no answer (refused, unreachable, timed out), naming the URL.
    """
    call = f"http.request({method!r}, {url!r})"
    durable_process(call)
    verb = _check(call, method, url, headers, timeout, retry)
    body = None
    if json is not None:
        try:
            body = _json.dumps(json, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{call}: json={json!r} cannot be sent as JSON ({e}); pass dicts, lists, str, numbers"
            ) from None
    sent = dict(headers or {})
    if body is not None and not any(k.lower() == "content-type" for k in sent):
        sent["Content-Type"] = "application/json"
    try:
        return durable.step(_perform, verb, url, body, sent, float(timeout), retry=retry)
    except _Retryable as e:
        return e.response


def _check(call: str, method: Any, url: Any, headers: Any, timeout: Any, retry: Any) -> str:
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError(f"{call}: method {method!r} is not one of {', '.join(METHODS)}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{call}: url {url!r} is not an http:// or https:// URL")
    if headers is not None and (
        not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise TypeError(f"{call}: headers={headers!r}; pass a dict of str names to str values")
    if not is_number(timeout) or not is_seconds(timeout) or timeout <= 0:
        raise ValueError(f"{call}: timeout={timeout!r}; give seconds as a finite number > 0")
    if retry is not None and not isinstance(retry, durable.Retry):
        raise TypeError(f"{call}: retry={retry!r}; pass a durable.Retry(attempts, backoff, max_delay) or None")
    return method.upper()


_client: Any = None  # this process's httpx.Client, made on its first request


def _perform(method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float) -> Response:
    """The step: one attempt."""
    global _client
    import httpx

    if _client is None:
        _client = httpx.Client(follow_redirects=False)
    sent = dict(headers)
    if not any(k.lower() == "idempotency-key" for k in sent):
        sent["Idempotency-Key"] = durable.step_key()
    try:
        answer = _client.request(method, url, content=body, headers=sent, timeout=timeout)
    except httpx.TransportError as e:
        raise RequestError(f"{method} {url}: no answer ({type(e).__name__}: {e})") from None
    response = Response(
        status=answer.status_code,
        headers=tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in answer.headers.raw),
        body=answer.content,
        url=url,
    )
    if response.status in RETRIED_STATUSES:
        raise _Retryable(response)
    return response
