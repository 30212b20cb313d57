"""Start a remote job, wait for its callback, survive kill -9 while waiting.

The Flowmetal "await a job" story, done with real HTTP:

- a **job service** (a small HTTP server here, a real API in life) takes
  ``POST /jobs {"work", "callback"}`` and, when the job is done a few seconds
  later, POSTs the result to the callback URL, retrying until it gets a 2xx;
  ``GET /jobs/ID`` tells its state (for a fallback poll);
- ``occasional gateway`` runs the durable process ``render-1``: it makes a
  signed webhook URL, starts the job with a journaled ``http.request`` (its
  step key is the ``Idempotency-Key``, so the service creates one job however
  often the request is sent), then waits in ``receive`` for the callback,
  polling the job every few seconds in case the callback is lost;
- the demo SIGKILLs the whole gateway runtime while the process waits, starts
  the gateway again on the same journal, and the process finishes when the
  callback arrives: once, with one job created.

    python examples/await_job.py             # the demo
    python examples/await_job.py jobs PORT   # only the job service

Needs the ``http`` extra (httpx, aiohttp).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import occasional as occ
from occasional import http

JOB_SECONDS = 3.0
TOKEN = "example-token"
HERE = os.path.dirname(os.path.abspath(__file__))


# --- the durable program -------------------------------------------------------


@http.program
def await_job(jobs_url: str, work: str) -> str:
    callback = http.webhook_url("job-done")
    created = http.request("POST", f"{jobs_url}/jobs", json={"work": work, "callback": callback})
    job = created.json()["job"]
    while True:
        try:
            _, _, body = occ.receive(("webhook", "job-done", occ.ANY), timeout=5.0)
            return f"{body['result']} (by callback)"
        except TimeoutError:
            state = http.request("GET", f"{jobs_url}/jobs/{job}").json()  # the fallback poll
            if state["state"] == "done":
                return f"{state['result']} (by poll)"


# --- the job service -------------------------------------------------------------


def job_service(port: int) -> None:
    """Serve jobs on 127.0.0.1:PORT until killed; print each job it creates."""
    jobs: dict[str, dict[str, str]] = {}
    by_key: dict[str, str] = {}
    lock = threading.Lock()

    def finish(job: str) -> None:
        time.sleep(JOB_SECONDS)
        with lock:
            jobs[job]["state"] = "done"
            body = json.dumps({"job": job, "result": jobs[job]["result"]}).encode()
        while True:  # call back until the caller's gateway takes it
            try:
                req = urllib.request.Request(jobs[job]["callback"], data=body, method="POST")
                req.add_header("Content-Type", "application/json")
                with urllib.request.urlopen(req, timeout=5) as r:
                    if 200 <= r.status < 300:
                        print(f"job service: called back for {job}: {r.status}", flush=True)
                        return
            except OSError:
                pass
            time.sleep(0.3)

    class Handler(BaseHTTPRequestHandler):
        def reply(self, status: int, value: object) -> None:
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            spec = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                job = by_key.get(key)
                if job is None:  # a new job; a retry with the same key gets the same one
                    job = by_key[key] = f"job-{len(jobs) + 1}"
                    result = f"{spec['work']}: done"
                    jobs[job] = {"state": "running", "callback": spec["callback"], "result": result}
                    print(f"job service: created {job} for {spec['work']!r}", flush=True)
                    threading.Thread(target=finish, args=(job,), daemon=True).start()
            self.reply(201, {"job": job})

        def do_GET(self) -> None:
            job = jobs.get(self.path.rsplit("/", 1)[-1])
            self.reply(200, {"state": job["state"], "result": job["result"]} if job else {"state": "unknown"})

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# --- the demo ----------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: object | None = None) -> dict[str, object]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)  # type: ignore[no-any-return]


def gateway(journal: str, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ, OCC_GATEWAY_TOKEN=TOKEN, OCC_GATEWAY_SECRET="example-secret", PYTHONPATH=HERE)
    argv = [os.path.join(os.path.dirname(sys.executable), "occasional"), "gateway", "--journal", journal,
            "--listen", f"127.0.0.1:{port}", "--programs", "await_job"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    return proc


def main() -> None:
    jobs_port, gw_port = free_port(), free_port()
    jobs_url, gw_url = f"http://127.0.0.1:{jobs_port}", f"http://127.0.0.1:{gw_port}"
    service = subprocess.Popen([sys.executable, __file__, "jobs", str(jobs_port)])
    with tempfile.TemporaryDirectory() as d:
        journal = os.path.join(d, "journal.sqlite")
        gw = gateway(journal, gw_port)
        try:
            started = call(f"{gw_url}/processes", {"id": "render-1", "program": "await_job",
                                                   "args": [jobs_url, "render the report"]})  # fmt: skip
            print(f"started render-1: {started}", flush=True)
            time.sleep(1.0)  # it has created the job and waits for the callback
            os.killpg(gw.pid, signal.SIGKILL)  # the whole runtime, as a power cut would
            gw.wait()
            print("kill -9 of the whole gateway runtime while render-1 waits", flush=True)
            gw = gateway(journal, gw_port)
            print("the gateway is back on the same journal", flush=True)
            while (state := call(f"{gw_url}/processes/render-1"))["state"] != "finished":
                time.sleep(0.2)
            print(f"render-1 finished: {state['result']}", flush=True)
        finally:
            os.killpg(gw.pid, signal.SIGTERM)
            gw.wait()
            service.kill()
            service.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["jobs"]:
        job_service(int(sys.argv[2]))
    else:
        main()
