"""occasional gateway: HTTP into durable mailboxes (API.md section 14, issue 16).

Each test puts a durable collector in a journal (a runtime that spawns it
and ends; the next runtime on the journal resumes it), starts the real
``occasional gateway`` command on that journal, and talks to it with a real
HTTP client over loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import occasional as occ

import http_programs
from conftest import descendants, reap_orphans, snapshot, wait_until_gone

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")
TOKEN = "s3cret-token"
SECRET = "webhook-signing-key"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TESTS = str(Path(__file__).resolve().parent)


def put_collector(journal: str, id: str, n: int) -> None:
    """A durable process ``id`` that receives ``n`` messages and returns them, in ``journal``."""
    occ.run(http_programs.spawn_collector, id, n, journal=journal)


class Gateway:
    """``occasional gateway`` in an interpreter of its own, on ``journal``."""

    def __init__(self, journal: str, *extra: str, listen: str = "127.0.0.1:0") -> None:
        env = dict(os.environ, OCC_GATEWAY_TOKEN=TOKEN, OCC_GATEWAY_SECRET=SECRET, PYTHONPATH=TESTS)
        argv = [OCCASIONAL, "gateway", "--journal", journal, "--listen", listen, *extra]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("occasional gateway: listening on "):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"the gateway did not start: {line!r} {err}")
        self.url = line.split()[-1]
        self.tree = snapshot([self.proc.pid, *descendants(self.proc.pid)])

    def post(self, id: str, body: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/processes/{id}/messages", content=body, headers=AUTH if headers is None else headers
        )

    def get(self, id: str) -> httpx.Response:
        return httpx.get(f"{self.url}/processes/{id}", headers=AUTH)

    def finished(self, id: str, timeout: float = 20.0) -> dict[str, object]:
        end = time.monotonic() + timeout
        while True:
            got = self.get(id).json()
            if got["state"] == "finished" or time.monotonic() > end:
                return got
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=20)
        assert wait_until_gone(self.tree, 5.0) == []
        reap_orphans(self.tree)
        return self.proc.returncode

    def sigkill_everything(self) -> None:
        """SIGKILL the gateway's interpreter and every process of its runtime at once."""
        self.tree = snapshot([self.proc.pid, *descendants(self.proc.pid)])
        for pid, _, _ in self.tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# The HTTP-level checks run on an SQLite journal; what depends on the store
# (a commit before the 202, keys across restarts and nodes, many clients'
# order, a webhook delivered once) runs on both stores (the `journal` fixture).
@pytest.fixture
def gateway(sqlite_journal: str) -> Iterator[Gateway]:
    put_collector(sqlite_journal, "inbox", 2)
    gw = Gateway(sqlite_journal)
    try:
        yield gw
    finally:
        gw.stop()


def test_a_posted_json_body_lands_in_the_durable_processs_mailbox(gateway):
    first = gateway.post("inbox", '{"order": 17, "items": ["a", "b"]}')
    second = gateway.post("inbox", "[1, 2.5, null, true]")
    assert (first.status_code, first.json(), second.status_code) == (202, {"id": "inbox", "delivered": True}, 202)
    assert gateway.finished("inbox") == {
        "id": "inbox",
        "state": "finished",
        "reason": "ok",
        "result": [{"order": 17, "items": ["a", "b"]}, [1, 2.5, None, True]],
    }


def test_a_running_process_reports_running(gateway):
    assert (gateway.get("inbox").status_code, gateway.get("inbox").json()) == (200, {"id": "inbox", "state": "running"})


def test_a_request_without_a_valid_token_is_refused_and_delivers_nothing(gateway):
    none = gateway.post("inbox", '"no token"', headers={})
    wrong = gateway.post("inbox", '"wrong token"', headers={"Authorization": "Bearer not-it"})
    basic = gateway.post("inbox", '"basic"', headers={"Authorization": "Basic czNjcmV0"})
    assert [r.status_code for r in (none, wrong, basic)] == [401, 401, 401]
    assert none.json() == {"error": "no valid bearer token: send Authorization: Bearer TOKEN"}
    assert none.headers["WWW-Authenticate"] == "Bearer"
    gateway.post("inbox", '"one"')
    gateway.post("inbox", '"two"')
    assert gateway.finished("inbox")["result"] == ["one", "two"]


def test_a_body_that_is_not_json_is_refused_naming_the_problem_and_delivers_nothing(gateway):
    bad = gateway.post("inbox", "{bad")
    assert (bad.status_code, bad.json()["error"]) == (
        400,
        "the body is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    )
    gateway.post("inbox", '"one"')
    gateway.post("inbox", '"two"')
    assert gateway.finished("inbox")["result"] == ["one", "two"]


def test_an_unknown_id_is_answered_404_naming_it(gateway):
    posted = gateway.post("nobody", '"hello"')
    asked = gateway.get("nobody")
    assert (posted.status_code, posted.json(), asked.status_code) == (
        404,
        {"error": "no durable process 'nobody' in this journal"},
        404,
    )


def test_a_body_over_the_limit_is_answered_413_and_delivers_nothing(sqlite_journal):
    put_collector(sqlite_journal, "inbox", 1)
    gw = Gateway(sqlite_journal, "--max-body", "64")
    try:
        big = gw.post("inbox", '"' + "x" * 100 + '"')
        assert (big.status_code, big.json()) == (413, {"error": "the body is 102 bytes, over the limit of 64"})
        gw.post("inbox", '"small"')
        assert gw.finished("inbox")["result"] == ["small"]
    finally:
        assert gw.stop() == 0


def test_a_message_answered_202_is_there_after_the_whole_runtime_is_sigkilled(journal):
    put_collector(journal, "inbox", 2)
    gw = Gateway(journal)
    try:
        assert gw.post("inbox", '"before the kill"').status_code == 202
        gw.sigkill_everything()
    finally:
        gw.stop()
    again = Gateway(journal)
    try:
        assert again.post("inbox", '"after the kill"').status_code == 202
        assert again.finished("inbox")["result"] == ["before the kill", "after the kill"]
    finally:
        assert again.stop() == 0


def test_twenty_concurrent_clients_each_keep_their_order(journal):
    clients, each = 20, 10
    put_collector(journal, "inbox", clients * each)
    gw = Gateway(journal)
    statuses: list[int] = []

    def client(k: int) -> None:
        with httpx.Client(headers=AUTH) as http:
            for i in range(each):
                r = http.post(f"{gw.url}/processes/inbox/messages", content=f"[{k}, {i}]")
                statuses.append(r.status_code)

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = gw.finished("inbox")["result"]
    finally:
        assert gw.stop() == 0
    assert statuses == [202] * (clients * each)
    assert isinstance(got, list) and len(got) == clients * each
    assert {k: [i for c, i in got if c == k] for k in range(clients)} == {k: list(range(each)) for k in range(clients)}


def test_a_retried_post_with_the_same_idempotency_key_is_delivered_once(gateway):
    first = gateway.post("inbox", '"paid"', headers={**AUTH, "Idempotency-Key": "order-17"})
    retry = gateway.post("inbox", '"paid"', headers={**AUTH, "Idempotency-Key": "order-17"})
    other = gateway.post("inbox", '"shipped"', headers={**AUTH, "Idempotency-Key": "order-18"})
    assert [r.status_code for r in (first, retry, other)] == [202, 202, 202]
    assert gateway.finished("inbox")["result"] == ["paid", "shipped"]


def test_an_idempotency_key_is_remembered_across_a_restart_of_the_gateway(journal):
    put_collector(journal, "inbox", 2)
    keyed = {**AUTH, "Idempotency-Key": "job-1-done"}
    gw = Gateway(journal)
    try:
        assert gw.post("inbox", '"done"', headers=keyed).status_code == 202
    finally:
        assert gw.stop() == 0
    again = Gateway(journal)
    try:
        assert again.post("inbox", '"done"', headers=keyed).status_code == 202  # the caller's retry
        assert again.post("inbox", '"next"').status_code == 202
        assert again.finished("inbox")["result"] == ["done", "next"]
    finally:
        assert again.stop() == 0


def test_a_retry_sent_to_another_nodes_gateway_on_a_shared_journal_is_delivered_once(postgres_url):
    put_collector(postgres_url, "inbox", 2)
    first, second = Gateway(postgres_url), Gateway(postgres_url)  # two nodes of one PostgreSQL journal
    try:
        keyed = {**AUTH, "Idempotency-Key": "invoice-9"}
        assert first.post("inbox", '"paid"', headers=keyed).status_code == 202
        assert second.post("inbox", '"paid"', headers=keyed).status_code == 202  # the client's retry, elsewhere
        assert second.post("inbox", '"closed"').status_code == 202
        assert first.finished("inbox")["result"] == ["paid", "closed"]
    finally:
        assert (second.stop(), first.stop()) == (0, 0)


def test_an_idempotency_key_that_is_too_long_is_refused_and_delivers_nothing(gateway):
    bad = gateway.post("inbox", '"x"', headers={**AUTH, "Idempotency-Key": "k" * 201})
    assert (bad.status_code, bad.json()["error"].endswith("is not 1 to 200 printable characters")) == (400, True)
    gateway.post("inbox", '"one"')
    gateway.post("inbox", '"two"')
    assert gateway.finished("inbox")["result"] == ["one", "two"]


def test_a_durable_id_with_a_control_character_is_refused_naming_it(sqlite_journal):
    def main():
        from occasional import durable

        try:
            durable.spawn("inbox\x1fkey", http_programs.collect, 1)
        except ValueError as e:
            return str(e)

    assert occ.run(main, journal=sqlite_journal) == (
        "durable.spawn('inbox\\x1fkey', ...): id='inbox\\x1fkey' holds a control character; use printable text"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook_gateway(journal: str, tmp_path: Path, tags: list[str]) -> tuple[Gateway, list[str]]:
    """A gateway on a known port, and the URLs of a durable process waiting for ``tags``."""
    urls_file = str(tmp_path / "urls")
    env = dict(os.environ, OCC_GATEWAY_SECRET=SECRET)
    program = (
        "import sys, occasional as occ, http_programs as h; "
        "occ.run(h.spawn_webhook_waiter, 'waiter', sys.argv[1], sys.argv[3:], journal=sys.argv[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, urls_file, journal, *tags],
        env=dict(env, PYTHONPATH=TESTS),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    gw = Gateway(journal, listen=f"127.0.0.1:{free_port()}")
    end = time.monotonic() + 20
    while not os.path.exists(urls_file) and time.monotonic() < end:
        time.sleep(0.02)  # the resumed process writes its URLs as it starts
    with open(urls_file) as f:
        return gw, f.read().split()


def test_a_post_to_a_webhook_url_lands_in_the_mailbox_once(journal, tmp_path):
    gw, (done_url, failed_url) = webhook_gateway(journal, tmp_path, ["done", "failed"])
    try:
        assert done_url.startswith(f"{gw.url}/webhooks/waiter/done?sig=")
        first = httpx.post(done_url, json={"job": 7, "ok": True})  # no token: the signature is the permission
        again = httpx.post(done_url, json={"job": 7, "ok": True})  # the job service's retry
        other = httpx.post(failed_url, content=b"plain text")
        assert [r.status_code for r in (first, again, other)] == [202, 202, 202]
        assert gw.finished("waiter")["result"] == [
            ["webhook", "done", {"job": 7, "ok": True}],
            ["webhook", "failed", "b'plain text'"],
        ]
    finally:
        assert gw.stop() == 0


def test_a_forged_or_altered_webhook_url_is_refused_and_delivers_nothing(sqlite_journal, tmp_path):
    gw, (url,) = webhook_gateway(sqlite_journal, tmp_path, ["done"])
    try:
        base, sig = url.split("?sig=")
        forged = base + "?sig=" + ("0" if sig[0] != "0" else "1") + sig[1:]
        other_tag = base.replace("/done", "/cancelled") + "?sig=" + sig
        unsigned = base
        answers = [httpx.post(u, json={"x": 1}) for u in (forged, other_tag, unsigned)]
        assert [(r.status_code, r.json()["error"]) for r in answers] == [
            (403, "the webhook URL's signature does not match its id and tag")
        ] * 3
        assert httpx.post(url, json="real").status_code == 202
        assert gw.finished("waiter")["result"] == [["webhook", "done", "real"]]
    finally:
        assert gw.stop() == 0


def test_a_webhook_url_without_the_gateways_settings_says_what_to_set(sqlite_journal):
    def main():
        from occasional import durable

        durable.spawn("no-gateway", http_programs.url_without_gateway)
        return durable.result("no-gateway", timeout=20)

    os.environ.pop("OCC_GATEWAY_URL", None)
    assert occ.run(main, journal=sqlite_journal) == (
        "ok",
        "http.webhook_url('x'): set OCC_GATEWAY_URL (the gateway's URL as callers reach it) and "
        "OCC_GATEWAY_SECRET (the key the gateway checks signatures with) in the runtime's environment",
    )


@pytest.fixture
def programs_gateway(sqlite_journal: str) -> Iterator[Gateway]:
    gw = Gateway(sqlite_journal, "--programs", "http_registered")
    try:
        yield gw
    finally:
        assert gw.stop() == 0


def start(gw: Gateway, body: object) -> httpx.Response:
    return httpx.post(f"{gw.url}/processes", json=body, headers=AUTH)


def test_post_processes_starts_a_registered_program_as_a_durable_process(programs_gateway):
    started = start(programs_gateway, {"id": "hello-1", "program": "greet", "args": ["ada", 2]})
    assert (started.status_code, started.json()) == (201, {"id": "hello-1", "started": True})
    assert programs_gateway.finished("hello-1") == {
        "id": "hello-1",
        "state": "finished",
        "reason": "ok",
        "result": "hello ada hello ada",
    }


def test_post_processes_with_an_id_already_there_starts_nothing(programs_gateway):
    assert start(programs_gateway, {"id": "box", "program": "collect", "args": [1]}).status_code == 201
    again = start(programs_gateway, {"id": "box", "program": "greet", "args": ["x", 1]})
    assert (again.status_code, again.json()) == (200, {"id": "box", "started": False})
    programs_gateway.post("box", '"only"')
    assert programs_gateway.finished("box")["result"] == ["only"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"id": "x", "program": "rm -rf"}, "program 'rm -rf' is not registered with @occasional.http.program; known: "
         "collect, greet"),
        ({"id": "", "program": "greet"}, "id '' is not a non-empty string of printable characters"),
        ({"id": "x", "program": "greet", "args": "ada"}, "args 'ada' is not a JSON array"),
        ({"id": "x", "program": "greet", "code": "..."}, 'give {"id": ..., "program": ..., "args": [...]} and '
         "nothing else"),
    ],
)  # fmt: skip
def test_post_processes_refuses_what_it_cannot_start_naming_it(programs_gateway, body, says):
    refused = start(programs_gateway, body)
    assert (refused.status_code, refused.json()) == (400, {"error": says})
    assert programs_gateway.get("x").status_code == 404  # nothing was started


def test_the_gateway_runs_as_a_service_of_occasional_up(tmp_path):
    journal = str(tmp_path / "journal.sqlite")
    put_collector(journal, "inbox", 1)
    port = free_port()
    (tmp_path / "services.toml").write_text(
        'journal = "journal.sqlite"\n'
        "[services.gateway]\n"
        'function = "occasional.http.gateway:service"\n'
        f'args = ["127.0.0.1:{port}", "", ["http_registered"]]\n'
        f'env = {{ OCC_GATEWAY_TOKEN = "{TOKEN}" }}\n'
    )
    env = dict(os.environ, PYTHONPATH=TESTS)
    up = subprocess.Popen([OCCASIONAL, "up", str(tmp_path / "services.toml")], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 20
        while True:
            try:
                posted = httpx.post(f"{url}/processes/inbox/messages", content='"via up"', headers=AUTH)
                break
            except httpx.TransportError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        started = httpx.post(f"{url}/processes", json={"id": "g", "program": "greet", "args": ["up", 1]}, headers=AUTH)
        assert (posted.status_code, started.status_code) == (202, 201)
        while (got := httpx.get(f"{url}/processes/inbox", headers=AUTH).json())["state"] != "finished":
            time.sleep(0.02)
        assert got["result"] == ["via up"]
    finally:
        tree = snapshot([up.pid, *descendants(up.pid)])
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=30)
        assert wait_until_gone(tree, 5.0) == []
        reap_orphans(tree)
    assert up.returncode == 0, err.decode()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--listen", "localhost"], {"OCC_GATEWAY_TOKEN": TOKEN}, "--listen 'localhost' is not HOST:PORT"),
        ([], {"OCC_GATEWAY_TOKEN": ""}, "no token: set OCC_GATEWAY_TOKEN, or pass --tokens FILE"),
        (["--tokens", "/nonexistent/tokens"], {}, "cannot read the tokens file '/nonexistent/tokens'"),
        (["--programs", "no_such_module"], {"OCC_GATEWAY_TOKEN": TOKEN}, "--programs: cannot import module"),
    ],
)
def test_a_gateway_that_cannot_start_as_asked_says_why_and_exits_2(tmp_path, args, env, says):
    argv = [OCCASIONAL, "gateway", "--journal", str(tmp_path / "j.sqlite"), *args]
    done = subprocess.run(argv, env=dict(os.environ, **env), capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr.startswith(f"occasional gateway: {says}")) == (2, True)
