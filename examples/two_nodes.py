"""A durable job outlives its machine: two nodes on one PostgreSQL journal.

Two runtimes given the same ``journal="postgresql://..."`` are two nodes
sharing the durable processes in it (API.md section 11). Node 1 spawns a job
of five steps; while the third runs, node 1 is killed with -9, its whole
runtime at once, as when a machine is lost. Node 2 finds node 1 gone (its
lease runs out; on the same machine, its central's pid is gone), takes the
job over, replays the two finished steps from the journal (they do not run
again), runs the third again (a step is at least once: it never finished)
and finishes the job.

    python examples/two_nodes.py                # the demo: PostgreSQL, node 1, kill -9, node 2
    python examples/two_nodes.py node URL NAME  # a node on the journal URL, until killed

The demo starts a PostgreSQL server of its own in a temporary directory (the
``postgresql`` package of Debian; ``./setup.sh`` installs it) and stops it at
the end. On your own server, run ``python examples/two_nodes.py node URL 1``
and ``... node URL 2`` in two terminals, on one machine or two.
"""

import os
import signal
import subprocess
import sys
import time

import occasional as occ
from occasional import durable

LEASE = 2.0  # seconds: how soon a dead node's processes move (the default is 10)


def work(n):
    """One step of the job: it runs once, whichever node runs the job."""
    say(f"step {n} runs on node {os.environ['NODE']}")
    time.sleep(0.3)
    return n * n


def job():
    total = 0
    for n in range(1, 6):
        total += durable.step(work, n)
    say(f"the job is done on node {os.environ['NODE']}: {total}")
    return total


def say(text):
    print(text, flush=True)


def node(name):
    """Be a node: spawn the job if the journal does not have it yet, then
    wait for its result, wherever it runs."""
    if name == "1":
        durable.spawn("report", job)
    while durable.whereis("report") is None:
        time.sleep(0.05)
    return durable.result("report")


def start_node(url, name):
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "node", url, name],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: kill -9 takes its whole runtime
    )


def demo():
    from occasional.testing.postgres import postgres_server

    with postgres_server() as server:
        url = server.create_database("two_nodes")
        say(f"PostgreSQL is up: {url}")
        first = start_node(url, "1")
        second = start_node(url, "2")
        for line in first.stdout:
            print(f"  node 1: {line}", end="", flush=True)
            if line.startswith("step 3 "):
                break
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        say("kill -9 node 1 (its whole runtime)")
        for line in second.stdout:
            if line.startswith("step") and killed:
                say(f"node 2 took the job over {time.monotonic() - killed:.1f} s later")
                killed = 0.0
            print(f"  node 2: {line}", end="", flush=True)
        second.wait()
        first.stdout.close()
        if second.returncode != 0:
            sys.exit(f"node 2 ended with status {second.returncode}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["node"]:
        url, name = sys.argv[2], sys.argv[3]
        os.environ["NODE"] = name  # before the runtime starts: its processes inherit it
        kind, value = occ.run(node, name, journal=url, lease=LEASE)
        say(f"node {name} sees the job's result: {kind} {value}")
    else:
        demo()
