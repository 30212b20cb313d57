"""A small supervision tree that survives kill -9 of any of its processes.

    root  (one_for_one)
    ├── kv     a key-value Server, registered as "kv"
    ├── pool   a simple_one_for_one supervisor of squaring workers
    └── flaky  a worker that crashes now and then, restarted with backoff

Run it with `python examples/supervision_tree.py`: it starts the tree, then
SIGKILLs one process of each kind and shows each coming back. With
`--forever` it keeps running and prints the tree every two seconds, so you
can `kill -9` any pid it shows from another terminal and watch it return.
"""

import functools
import os
import random
import signal
import sys
import time

import occasional as occ


class KeyValue(occ.Server):
    def init(self):
        occ.register("kv")
        return {}

    def handle_call(self, request, frm, table):
        match request:
            case ("put", key, value):
                table[key] = value
                return "ok", table
            case ("get", key):
                return table.get(key), table
        raise ValueError(f"unknown request {request!r}")


def square_worker(n):
    while True:
        frm, x = occ.receive()
        occ.send(frm, (n, x * x))


def flaky():
    time.sleep(random.uniform(0.5, 3.0))
    raise RuntimeError("flaky child crashed, as it does")


def tree():
    pool = functools.partial(
        occ.Supervisor.start,
        [{"id": "square", "function": square_worker}],
        strategy="simple_one_for_one",
        intensity=100,
        name="pool",
    )
    return occ.Supervisor.start(
        [
            {"id": "kv", "function": KeyValue},
            {"id": "pool", "function": pool, "shutdown": 10.0},
            {"id": "flaky", "function": flaky, "restart": "permanent"},
        ],
        strategy="one_for_one",
        intensity=100,
        period=10.0,
        backoff=(0.1, 2.0),
        name="root",
    )


def show(root):
    for child_id, pid, restart in occ.Supervisor.which_children(root):
        print(f"  {child_id:6} {pid!r:14} {restart}")
    for _, pid, _ in occ.Supervisor.which_children("pool"):
        print(f"    square {pid!r}")


def wait_for_new(root, child_id, old):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pid = dict((i, p) for i, p, _ in occ.Supervisor.which_children(root))[child_id]
        if pid is not None and pid != old:
            return pid
        time.sleep(0.01)
    raise RuntimeError(f"{child_id} did not come back")


def kill9(pid):
    os.kill(pid.os_pid, signal.SIGKILL)


def main(forever=False):
    root = tree()
    workers = [occ.Supervisor.start_child("pool", (n,)) for n in range(3)]
    occ.call("kv", ("put", "answer", 42))
    print("started:")
    show(root)
    if forever:
        while True:
            time.sleep(2)
            print("tree:")
            show(root)

    kv = occ.whereis("kv")
    kill9(kv)
    wait_for_new(root, "kv", kv)
    print(
        f"kill -9 kv {kv!r}: back as {occ.whereis('kv')!r}; the new kv starts empty: get -> {occ.call('kv', ('get', 'answer'))}"
    )

    worker = workers[0]
    ref = occ.monitor(worker)
    kill9(worker)
    occ.receive(("DOWN", ref, occ.ANY, occ.ANY))
    deadline = time.monotonic() + 5
    while (
        worker in [p for _, p, _ in occ.Supervisor.which_children("pool")]
        or len(occ.Supervisor.which_children("pool")) < 3
    ):
        assert time.monotonic() < deadline, "the pool did not replace its worker"
        time.sleep(0.01)
    replacement = [p for _, p, _ in occ.Supervisor.which_children("pool") if p not in workers][0]
    occ.send(replacement, (occ.slf(), 7))
    print(f"kill -9 square worker {worker!r}: replaced by {replacement!r}, which answers {occ.receive(timeout=5)}")

    pool = occ.whereis("pool")
    kill9(pool)
    wait_for_new(root, "pool", pool)
    print(f"kill -9 the pool supervisor {pool!r}: back as {occ.whereis('pool')!r} (its workers went with it)")

    flaky_pid = dict((i, p) for i, p, _ in occ.Supervisor.which_children(root))["flaky"]
    if flaky_pid is not None:
        kill9(flaky_pid)
    print(f"kill -9 flaky {flaky_pid!r}: back as {wait_for_new(root, 'flaky', flaky_pid)!r}")
    print("the tree now:")
    show(root)
    return "survived"


if __name__ == "__main__":
    print(occ.run(main, "--forever" in sys.argv))
