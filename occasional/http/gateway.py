"""The HTTP gateway into durable mailboxes (API.md section 14, issue 16).

``serve`` runs in a process of the runtime (``occasional gateway`` runs it
in its own interpreter, made a process with ``occ.runtime``): an aiohttp
server on a uvloop event loop, beside the process's context, whose epoll fd
the loop watches (``Context.fileno``) so that central's answers reach it.

- ``POST /processes/{id}/messages``: the JSON body, decoded, is appended to
  the mailbox of the durable process ``id``; ``202`` only once central's
  journal writer committed it (a durable send's ack). Many requests are in
  flight at once, so one commit carries many (the writer's group commit).
- ``GET /processes/{id}``: ``{"id", "state": "running"}``, or ``"finished"``
  with the ``reason`` and the ``result``.
- ``Idempotency-Key``: see below.
- Every request carries ``Authorization: Bearer TOKEN`` with a token of the
  gateway's; without one, ``401``. Unknown ids ``404``, bad JSON ``400``, a
  body over the limit ``413``: each with ``{"error": ...}`` naming the
  problem, and nothing journaled.

An ``Idempotency-Key`` header makes a retried POST deliver once: the key
rides on the send as its sender (``durable.protocol.KEY_SENDER``), which the
journal's mailbox dedupes as it does a restarted durable sender's sends, and
which it keeps across restarts. On a PostgreSQL journal shared by nodes the
mailbox's unique (process, sender, send_seq) drops a retry that another
node's gateway takes, as it does a restarted sender's repeat.

- ``POST /webhooks/{id}/{tag}?sig=...``: a URL ``webhook_url`` signed
  (:mod:`occasional.http.webhooks`); no token, the signature is checked
  (``403`` when it does not match), and ``("webhook", tag, body)`` is
  delivered once per URL and Idempotency-Key.

- ``POST /processes`` with ``{"id", "program", "args"}`` starts a program
  registered with ``@occasional.http.program`` as a durable process:
  ``201``, or ``200`` with ``"started": false`` when the id is there already
  (as ``durable.spawn``); an unregistered program ``400``, naming the known ones.

In ``occasional up`` the gateway is a function service: :func:`service`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import msgpack

from ..core import codec
from ..core.api import describe_function, short_name
from ..core.context import current, reason_from_wire
from ..durable import protocol as D, replay
from . import webhooks
from .programs import PROGRAMS

DEFAULT_MAX_BODY = 1 << 20  # bytes of one request's body
MAX_KEY = 200  # characters of an Idempotency-Key
TOKEN_ENV = "OCC_GATEWAY_TOKEN"


class GatewayError(Exception):
    """The gateway cannot start as asked (named in the message)."""


def load_tokens(path: str | None) -> frozenset[str]:
    """The tokens a request may carry: one per non-empty line of ``path``,
    else ``OCC_GATEWAY_TOKEN``. Raises GatewayError when there are none."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                tokens = frozenset(line.strip() for line in f if line.strip())
        except OSError as e:
            raise GatewayError(f"cannot read the tokens file {path!r}: {e.strerror or e}") from None
        if not tokens:
            raise GatewayError(f"the tokens file {path!r} holds no token; write one per line")
        return tokens
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise GatewayError(f"no token: set {TOKEN_ENV}, or pass --tokens FILE (one token per line)")
    return frozenset({token})


def import_programs(names: list[str]) -> None:
    """Import the modules whose ``@occasional.http.program`` functions
    ``POST /processes`` may start (from the current directory too, as
    ``python -m`` does). Raises GatewayError naming one that does not import."""
    import importlib

    for name in names:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise GatewayError(f"--programs: cannot import module {name!r}: {e}") from None


def service(
    listen: str = "127.0.0.1:8080",
    tokens: str | None = None,
    programs: list[str] | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> None:
    """The gateway as a service of ``occasional up``: ``function =
    "occasional.http.gateway:service"``, ``args = [LISTEN, TOKENS_FILE or "",
    [MODULE, ...]]``, in a services file with a ``journal``. Tokens come from
    the file, else from OCC_GATEWAY_TOKEN; webhook URLs need OCC_GATEWAY_URL
    and OCC_GATEWAY_SECRET in ``up``'s environment (every process of the
    runtime makes or checks them). Raises GatewayError on a bad argument, and
    the service's supervisor sees it end."""
    import logging

    host, port = parse_listen(listen)
    keys = load_tokens(tokens or None)
    import_programs(list(programs or []))
    log = logging.getLogger("occasional.http")
    serve(host, port, keys, max_body, lambda url: log.warning("occasional gateway: listening on %s", url))


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free one); raises GatewayError naming it."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise GatewayError(f"--listen {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)")
    return host.strip("[]"), int(port)


class _Central:
    """Requests to central from an asyncio loop: many in flight, each
    answered through a future when the context has read its reply."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = current("the gateway")
        self.loop = loop
        self.waiting: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        loop.add_reader(self.ctx.fileno(), self._readable)

    def close(self) -> None:
        self.loop.remove_reader(self.ctx.fileno())

    def ask(self, op: int, *args: Any) -> asyncio.Future[tuple[bool, Any]]:
        fut: asyncio.Future[tuple[bool, Any]] = self.loop.create_future()
        self.waiting[self.ctx.request(op, *args)] = fut
        return fut

    def cancel(self, op: int, req_of: asyncio.Future[tuple[bool, Any]]) -> None:
        for req, fut in list(self.waiting.items()):
            if fut is req_of:
                del self.waiting[req]
                self.ctx.tell([op, req])

    def _readable(self) -> None:
        ctx = self.ctx
        ctx.pump(0)
        for req in list(self.waiting):
            answer = ctx.wait_reply(req, 0.0)  # a deadline passed: takes an answer read, waits for none
            if answer is not None:
                fut = self.waiting.pop(req)
                if not fut.done():
                    fut.set_result(answer)


class _Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``; nothing was journaled."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def make_app(central: _Central, tokens: frozenset[str], max_body: int) -> Any:
    from aiohttp import web

    def authorized(request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and any(hmac.compare_digest(token.encode(), t.encode()) for t in tokens)

    @web.middleware
    async def answer(request: web.Request, handler: Callable[[web.Request], Any]) -> Any:
        """Bearer tokens (a webhook URL's signature is its own permission), and refusals as JSON."""
        try:
            if not request.path.startswith("/webhooks/") and not authorized(request):
                raise _Refused(
                    401, "no valid bearer token: send Authorization: Bearer TOKEN", **{"WWW-Authenticate": "Bearer"}
                )
            return await handler(request)
        except _Refused as e:
            return web.json_response({"error": e.message}, status=e.status, headers=e.headers or None)

    async def body_of(request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > max_body:
            raise _Refused(413, f"the body is {request.content_length} bytes, over the limit of {max_body}")
        raw = await request.content.read(max_body + 1)
        if len(raw) > max_body:
            raise _Refused(413, f"the body is over the limit of {max_body} bytes")
        return raw

    async def json_of(request: web.Request) -> Any:
        try:
            return json.loads(await body_of(request))
        except ValueError as e:
            raise _Refused(400, f"the body is not JSON: {e}") from None

    def key_of(request: web.Request) -> str | None:
        """The Idempotency-Key, None without one."""
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= MAX_KEY and key.isprintable()):
            raise _Refused(400, f"Idempotency-Key {key[:80]!r} is not 1 to {MAX_KEY} printable characters")
        return key

    known: set[str] = set()  # ids found in the journal: an id, once there, stays

    async def exists(id: str) -> bool:
        if id not in known:
            ok, where = await central.ask(D.D_WHEREIS, id)
            if not ok or where is None:
                return False
            if len(known) < 100_000:
                known.add(id)
        return True

    async def send(id: str, message: Any, key: str | None) -> Any:
        """Append ``message`` to ``id``'s mailbox: 202 once committed."""
        if not await exists(id):
            raise _Refused(404, f"no durable process {id!r} in this journal")
        # With a key, the journal's dedupe of (sender, send_seq) takes it once:
        # a retry is answered 202 again and delivers nothing more.
        sender, seq = (D.KEY_SENDER + key, 1) if key is not None else (None, 0)
        ok, answer = await central.ask(D.D_SEND, id, codec.dumps(message), sender, seq, [])
        if not ok:
            raise _Refused(500, f"the journal did not take the message: {answer!r}")
        return web.json_response({"id": id, "delivered": True}, status=202)

    async def deliver(request: web.Request) -> Any:
        value = await json_of(request)
        return await send(request.match_info["id"], value, key_of(request))

    async def webhook(request: web.Request) -> Any:
        id, tag = request.match_info["id"], request.match_info["tag"]
        secret = webhooks.secret()
        if secret is None:
            raise _Refused(404, f"webhooks are off: start the gateway with {webhooks.SECRET_ENV} set")
        given = request.query.get("sig", "")
        if not hmac.compare_digest(given.encode(), webhooks.signature(secret, id, tag).encode()):
            raise _Refused(403, "the webhook URL's signature does not match its id and tag")
        raw = await body_of(request)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw  # not JSON: the bytes as sent
        header = key_of(request)
        # Once per URL, and per Idempotency-Key when the caller sends one.
        once = f"webhook\x1f{tag}" + ("" if header is None else f"\x1f{header}")
        return await send(id, ("webhook", tag, body), once)

    async def state(request: web.Request) -> Any:
        id = request.match_info["id"]
        # Central answers in order: a finished process's result comes before
        # the answer to the lookup sent after it; a running one's never does.
        result = central.ask(D.D_RESULT, id)
        ok, where = await central.ask(D.D_WHEREIS, id)
        if not result.done():
            central.cancel(D.D_CANCEL, result)
            if not ok or where is None:
                raise _Refused(404, f"no durable process {id!r} in this journal")
            return web.json_response({"id": id, "state": "running"})
        ok, wire = result.result()
        if not ok:
            raise _Refused(404, f"no durable process {id!r} in this journal")
        kind, detail = reason_from_wire(wire)
        try:  # as JSON, with what JSON has no form for (bytes, an exception, an object) as its repr
            shown = json.loads(json.dumps(detail, default=repr))
        except ValueError:  # a float JSON cannot hold (nan, inf), or a circular value
            shown = repr(detail)
        return web.json_response({"id": id, "state": "finished", "reason": kind, "result": shown})

    async def start(request: web.Request) -> Any:
        spec = await json_of(request)
        if not isinstance(spec, dict) or set(spec) - {"id", "program", "args"}:
            raise _Refused(400, 'give {"id": ..., "program": ..., "args": [...]} and nothing else')
        id, name, args = spec.get("id"), spec.get("program"), spec.get("args", [])
        if not isinstance(id, str) or not D.is_durable_id(id):
            raise _Refused(400, f"id {id!r} is not a non-empty string of printable characters")
        f = PROGRAMS.get(name) if isinstance(name, str) else None
        if f is None:
            names = ", ".join(sorted(PROGRAMS)) or "none (start the gateway with --programs MODULE)"
            raise _Refused(400, f"program {name!r} is not registered with @occasional.http.program; known: {names}")
        if not isinstance(args, list):
            raise _Refused(400, f"args {args!r} is not a JSON array")
        if await exists(id):
            return web.json_response({"id": id, "started": False})  # as durable.spawn: the one there stays
        blob = codec.dump_function(replay.run, (id, f, tuple(args)))
        ok, answer = await central.ask(
            D.D_SPAWN, id, blob, describe_function(f), msgpack.packb(sys.path), f"occasional: {id} ({short_name(f)})"
        )
        if not ok:
            raise _Refused(500, f"the journal did not start it: {answer!r}")
        return web.json_response({"id": id, "started": True}, status=201)

    app = web.Application(middlewares=[answer], client_max_size=max_body + 1)
    app.router.add_post("/processes", start)
    app.router.add_post("/processes/{id}/messages", deliver)
    app.router.add_get("/processes/{id}", state)
    app.router.add_post("/webhooks/{id}/{tag}", webhook)
    return app


def serve(
    host: str,
    port: int,
    tokens: frozenset[str],
    max_body: int = DEFAULT_MAX_BODY,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the gateway in the calling process until SIGTERM or SIGINT;
    ``ready(url)`` once it listens."""
    import uvloop
    from aiohttp import web

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    central = _Central(loop)
    runner = web.AppRunner(make_app(central, tokens, max_body), access_log=None)
    stop = asyncio.Event()

    async def main() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        if ready is not None:
            ready(f"http://{bound[0]}:{bound[1]}")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        loop.run_until_complete(main())
    finally:
        central.close()
        loop.close()
        asyncio.set_event_loop(None)
