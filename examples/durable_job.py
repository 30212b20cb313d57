"""Await a remote job, durably: survives kill -9 of the whole program.

A durable process creates a job on a (simulated) remote service through a
step with retry and backoff, polls it with durable sleeps, and fetches its
result. Kill the program with -9 at any moment and run it again on the same
journal: it resumes where it was. The job is created once (the step's
idempotency key makes even a repeated attempt harmless), and nothing the
process already did is done again.

    python examples/durable_job.py run JOURNAL   # run (or resume) the job
    python examples/durable_job.py               # the demo: run, kill -9, run again

The "remote service" is a directory next to the journal: a job is a file,
ready a few seconds after it was created; the first call to create one fails,
as networks do.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import occasional as occ
from occasional import durable

JOB_SECONDS = 2.0


# --- the remote service -------------------------------------------------------


def create_job(service, spec):
    """Create a job; idempotent by the step's key, like a real API's Idempotency-Key."""
    key = durable.step_key()
    say(f"creating the job (attempt {durable.attempt()}, key {key})")
    failures = os.path.join(service, "failures")
    if not os.path.exists(failures):
        open(failures, "w").close()
        raise ConnectionError("the service did not answer")
    path = os.path.join(service, key.replace(":", "_") + ".job")
    if not os.path.exists(path):
        with open(path, "w") as f:
            json.dump({"spec": spec, "ready_at": time.time() + JOB_SECONDS}, f)
    return os.path.basename(path)


def job_status(service, job):
    with open(os.path.join(service, job)) as f:
        return "done" if time.time() >= json.load(f)["ready_at"] else "running"


def job_result(service, job):
    with open(os.path.join(service, job)) as f:
        return f"result of {json.load(f)['spec']}"


def say(text):
    print(text, flush=True)


# --- the durable process -------------------------------------------------------


def await_job(service, spec):
    job = durable.step(create_job, service, spec, retry=durable.Retry(attempts=5, backoff=0.2, max_delay=2.0))
    durable.step(say, f"job {job} created; polling it")
    while durable.step(job_status, service, job) != "done":
        durable.step(say, "still running")
        durable.sleep(0.5)
    return durable.step(job_result, service, job)


def main(service):
    durable.spawn("await-job", await_job, service, "render the report")
    return durable.result("await-job")


def run(journal):
    service = os.path.join(os.path.dirname(os.path.abspath(journal)), "service")
    os.makedirs(service, exist_ok=True)
    print(occ.run(main, service, journal=journal), flush=True)


# --- the demo: run, kill -9, run again -------------------------------------------------


def demo():
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "journal.sqlite")
        command = [sys.executable, os.path.abspath(__file__), "run", journal]
        print(f"$ python {os.path.basename(__file__)} run journal.sqlite", flush=True)
        first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for line in first.stdout:  # type: ignore[union-attr]  # stdout=PIPE: never None
            print("  " + line, end="", flush=True)
            if line.startswith("still running"):
                break
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        first.stdout.close()  # type: ignore[union-attr]  # stdout=PIPE: never None
        print(f"$ kill -9 {first.pid}     # the whole program: its runtime dies with it", flush=True)
        print(f"$ python {os.path.basename(__file__)} run journal.sqlite   # again, on the same journal", flush=True)
        second = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        for line in second.stdout.splitlines():
            print("  " + line, flush=True)
        jobs = [name for name in os.listdir(os.path.join(tmp, "service")) if name.endswith(".job")]
        print(f"jobs created on the service: {len(jobs)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) == 3:
        run(sys.argv[2])
    elif len(sys.argv) == 1:
        demo()
    else:
        sys.exit(__doc__)
