"""occasional.http.request: an HTTP request as a journaled step (API.md section 14, issue 16).

A real HTTP server on loopback, in a thread of the test process, answers
the durable processes' requests from a script of statuses and counts every
request it gets, so a test sees how many times the network was used.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import occasional as occ
from occasional import durable, http
from occasional.testing import run

FAST = durable.Retry(attempts=3, backoff=0.01, max_delay=0.01)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once they run out
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            with lock:
                state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else 200
                count = len(state.seen)
            reply = json.dumps({"path": self.path, "call": count}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Call", str(count))
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def fetch(url: str, retry: durable.Retry | None = FAST) -> tuple[int, str | None, object]:
    r = http.request("GET", url, retry=retry)
    return r.status, r.header("x-call"), r.json()


def test_a_request_returns_the_servers_status_headers_and_body(server, sqlite_journal):
    def main():
        durable.spawn("get", fetch, server.url + "/jobs/7")
        return durable.result("get", timeout=20)

    assert run(main, journal=sqlite_journal) == ("ok", (200, "1", {"path": "/jobs/7", "call": 1}))


def post_json(url: str) -> int:
    return http.request("POST", url, json={"job": "render", "pages": [1, 2]}).status


def test_json_is_sent_as_the_body_with_its_content_type(server, sqlite_journal):
    def main():
        durable.spawn("post", post_json, server.url + "/jobs")
        return durable.result("post", timeout=20)

    assert run(main, journal=sqlite_journal) == ("ok", 200)
    (seen,) = server.seen
    assert (seen.method, seen.headers["Content-Type"], json.loads(seen.body)) == (
        "POST",
        "application/json",
        {"job": "render", "pages": [1, 2]},
    )


def test_every_attempt_carries_the_steps_key_as_idempotency_key(server, sqlite_journal):
    server.statuses = [503, 502]

    def main():
        durable.spawn("retried", fetch, server.url + "/flaky")
        return durable.result("retried", timeout=20)

    assert run(main, journal=sqlite_journal) == ("ok", (200, "3", {"path": "/flaky", "call": 3}))
    assert [s.headers["Idempotency-Key"] for s in server.seen] == ["retried:1"] * 3


def test_a_server_error_on_every_attempt_returns_the_last_answer(server, sqlite_journal):
    server.statuses = [500, 503, 503]

    def main():
        durable.spawn("down", fetch, server.url + "/down")
        return durable.result("down", timeout=20)

    assert run(main, journal=sqlite_journal) == ("ok", (503, "3", {"path": "/down", "call": 3}))


def test_a_client_error_is_returned_at_once_not_retried(server, sqlite_journal):
    server.statuses = [404]

    def main():
        durable.spawn("missing", fetch, server.url + "/nothing")
        return durable.result("missing", timeout=20)

    assert run(main, journal=sqlite_journal) == ("ok", (404, "1", {"path": "/nothing", "call": 1}))
    assert len(server.seen) == 1


def fetch_then_wait(main: occ.Pid, url: str) -> tuple[int, object]:
    r = http.request("GET", url, retry=FAST)
    occ.send(main, ("fetched", occ.slf()))
    occ.receive(("go",))
    return r.status, r.json()


def test_a_replayed_request_returns_the_recorded_response_without_a_second_call(server, journal):
    def main():
        me = occ.slf()
        pid = durable.spawn("once", fetch_then_wait, me, server.url + "/once")
        _, pid = occ.receive(("fetched", occ.ANY), timeout=20)
        os.kill(pid.os_pid, signal.SIGKILL)  # the restarted process replays the request
        occ.send(pid, ("go",))
        return durable.result("once", timeout=20)

    assert run(main, journal=journal) == ("ok", (200, {"path": "/once", "call": 1}))
    assert len(server.seen) == 1


def fetch_unreachable(url: str) -> str:
    try:
        http.request("GET", url, retry=FAST)
    except http.RequestError as e:
        return str(e)
    return "answered"


def test_no_answer_on_every_attempt_raises_request_error_naming_the_url(sqlite_journal):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}/gone"  # a port nobody listens on once closed

    def main():
        durable.spawn("unreachable", fetch_unreachable, url)
        return durable.result("unreachable", timeout=20)

    kind, message = run(main, journal=sqlite_journal)
    assert kind == "ok"
    assert message.startswith(f"GET {url}: no answer (ConnectError")


def bad_call(method: str, url: str, kwargs: dict[str, object]) -> str:
    try:
        http.request(method, url, **kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return "sent"


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "says"),
    [
        ("FETCH", "http://x/", {}, "ValueError: http.request('FETCH', 'http://x/'): method 'FETCH' is not one of GET"),
        ("GET", "ftp://x/", {}, "ValueError: http.request('GET', 'ftp://x/'): url 'ftp://x/' is not an http:// or"),
        ("POST", "http://x/", {"json": {1, 2}}, "TypeError: http.request('POST', 'http://x/'): json={1, 2} cannot be"),
        ("GET", "http://x/", {"timeout": 0}, "ValueError: http.request('GET', 'http://x/'): timeout=0; give seconds"),
        ("GET", "http://x/", {"headers": {"A": 1}}, "TypeError: http.request('GET', 'http://x/'): headers={'A': 1}"),
        (
            "GET",
            "http://x/",
            {"retry": 3},
            "TypeError: http.request('GET', 'http://x/'): retry=3; pass a durable.Retry",
        ),
    ],
)
def test_a_bad_argument_is_refused_in_the_caller_naming_it_and_nothing_is_sent(
    sqlite_journal, method, url, kwargs, says
):
    def main():
        durable.spawn("bad", bad_call, method, url, kwargs)
        return durable.result("bad", timeout=20)

    kind, message = run(main, journal=sqlite_journal)
    assert (kind, message[: len(says)]) == ("ok", says)


def test_a_request_outside_a_durable_process_is_refused():
    def main():
        try:
            http.request("GET", "http://127.0.0.1:9/")
        except RuntimeError as e:
            return str(e)

    assert run(main) == (
        "http.request('GET', 'http://127.0.0.1:9/') works only inside a durable process; "
        "start one with durable.spawn(id, f, *args)"
    )
