"""Node programs, and the functions spawned on nodes, for the tests of nodes (API.md section 11, issue 13).

A node is a runtime in an interpreter of its own, started as::

    python -c "import dist_programs; dist_programs.main()" NAME COOKIE TICKTIME HOME PROGRAM ARGS...

which runs ``occ.run(PROGRAM, HOME, *ARGS, node=NAME, cookie=COOKIE, net_ticktime=TICKTIME)``
(TICKTIME ``-``: the runtime's default). HOME is the node's directory: the program touches
``HOME/ready`` once it serves, appends what it reports to ``HOME/report`` (a JSON list a line,
:func:`report`), and the node's stdout and stderr go to ``HOME/stdout`` and ``HOME/stderr``. It is
told things by messages from other nodes: ``serve`` registers ``"echo"`` and obeys what is sent
to it.

The functions spawned on another node live in this module, not in the test modules, so that
every node finds them by reference (dill sends a module's function by name) without importing
pytest. :class:`Node` is the test's side: it starts a node, waits for it, signals or kills its
whole runtime; it imports conftest only when used, in the test's interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import occasional as occ
from occasional.dist.config import sweep

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
READY_TIMEOUT_S = 30.0


def report(home: str | Path, *values: Any) -> None:
    """Append one line to ``home/report``, for the test to read with :meth:`Node.reports`."""
    with open(Path(home) / "report", "a") as f:
        f.write(json.dumps(list(values)) + "\n")


def main() -> None:
    """What a node's interpreter runs (see the module's docstring)."""
    name, cookie, ticktime, home, program, *args = sys.argv[1:]
    options: dict[str, Any] = {"node": name, "cookie": cookie}
    if ticktime != "-":
        options["net_ticktime"] = int(ticktime)
    occ.run(globals()[program], home, *args, **options)


# -- programs: the first process of a node --------------------------------------------------


def serve(home: str) -> None:
    """Register ``"echo"``, say so in ``home/ready``, then obey messages until ``"stop"``:
    ``("echo", frm, x)`` sends ``("echo", x)`` back to ``frm``; anything else is reported."""
    occ.register("echo")
    report(home, "serving", occ.node())
    Path(home, "ready").touch()
    while True:
        msg = occ.receive()
        if msg == "stop":
            return
        if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "echo":
            occ.send(msg[1], ("echo", msg[2]))
        else:
            report(home, "got", repr(msg))


# -- functions spawned on another node --------------------------------------------------------


def where_am_i() -> str:
    """The node this process runs on: its DOWN's reason says where it ran."""
    return occ.node()


def collect(to: occ.Pid, count: int) -> None:
    """Receive ``count`` messages and send them to ``to`` as ``("collected", [...])``, in the order received."""
    occ.send(to, ("collected", [occ.receive() for _ in range(count)]))


def exit_when_told() -> None:
    """Wait for ``"exit"``, then end abnormally with ``("exitcode", 3)`` (a reason that compares
    equal after a trip between nodes, unlike an exception)."""
    occ.receive("exit")
    sys.exit(3)


def wait_forever() -> None:
    occ.receive("never sent")


def send_numbers_then_wait(to: occ.Pid, count: int) -> None:
    """Send ``("n", 0)`` ... ``("n", count - 1)`` and ``"sent"`` to ``to``, then wait forever."""
    for n in range(count):
        occ.send(to, ("n", n))
    occ.send(to, "sent")
    occ.receive("never sent")


def introduce(to: occ.Pid) -> None:
    """Send ``("me", slf())`` to ``to``; then answer one ``(frm, x)`` with ``("got", x)``."""
    occ.send(to, ("me", occ.slf()))
    frm, x = occ.receive((occ.ANY, occ.ANY))
    occ.send(frm, ("got", x))


def link_and_tell(partner: occ.Pid) -> None:
    """Link to ``partner``, then tell it ``"exit"``: one sender, so the link reaches it first
    (signals between a pair stay in order, API.md section 11); then wait forever."""
    occ.link(partner)
    occ.send(partner, "exit")
    occ.receive("never sent")


def hold_global(to: occ.Pid, name: str) -> None:
    """Register ``name`` globally as this process, tell ``to`` ``("registered", name)``, end on ``"exit"``."""
    occ.register_global(name, occ.slf())
    occ.send(to, ("registered", name))
    occ.receive("exit")


def find_global(to: occ.Pid, name: str, timeout: float = 10.0) -> None:
    """Send ``("found", whereis_global(name))`` to ``to`` once it is not None, or at ``timeout``.

    Two nodes that just connected exchange their global names in the background (Erlang's
    global): nothing tells us when they have, so it asks again until the deadline."""
    deadline = time.monotonic() + timeout
    found = occ.whereis_global(name)
    while found is None and time.monotonic() < deadline:
        time.sleep(0.01)
        found = occ.whereis_global(name)
    occ.send(to, ("found", found))


class Counter(occ.Server):
    """A Server for calls across nodes: ``"next"`` answers the count and adds one; ``"crash"`` fails."""

    def init(self, start: int) -> int:
        return start

    def handle_call(self, request: Any, frm: Any, n: int) -> Any:
        if request == "crash":
            raise ValueError("asked to crash")
        return n, n + 1


def start_counter(to: occ.Pid) -> None:
    """Start a Counter on this node, tell ``to`` ``("counter", pid)``, wait forever."""
    occ.send(to, ("counter", Counter.start(0)))
    occ.receive("never sent")


# -- the test's side -------------------------------------------------------------------------


class Node:
    """A node: a runtime in an interpreter of its own, running ``program`` (a function above)."""

    def __init__(
        self, name: str, cookie: str, home: Path, program: str, *args: str, net_ticktime: int | None = None
    ) -> None:
        self.name = name
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        ticktime = "-" if net_ticktime is None else str(net_ticktime)
        with open(home / "stdout", "wb") as out, open(home / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import dist_programs; dist_programs.main()"]
                + [name, cookie, ticktime, str(home), program, *args],
                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> Node:
        """Until the program said it serves (nothing else can tell us: poll its file)."""
        deadline = time.monotonic() + timeout
        while not (self.home / "ready").exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} ended with status {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"node {self.name} was not ready within {timeout} s: {self.stderr()}")
            time.sleep(0.01)
        return self

    def reports(self) -> list[Any]:
        try:
            with open(self.home / "report") as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def stderr(self) -> str:
        return (self.home / "stderr").read_text(errors="replace")

    def tree(self) -> list[tuple[int, int, int]]:
        """(pid, start time, parent) of the interpreter and every process of its runtime (its VM too)."""
        from conftest import descendants, snapshot

        return snapshot([self.proc.pid, *descendants(self.proc.pid)])

    def signal(self, sig: int) -> None:
        """``sig`` to the node's interpreter and every process of its runtime."""
        for pid, _, _ in self.tree():
            with contextlib.suppress(ProcessLookupError):  # ended by an earlier one's death signal
                os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL the node's whole runtime and reap it; nothing of it is left when this returns."""
        from conftest import reap_orphans, wait_until_gone

        tree = self.tree()
        for pid, _, _ in tree:
            with contextlib.suppress(ProcessLookupError):  # ended by an earlier one's death signal
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        left = wait_until_gone(tree, timeout=5)
        reap_orphans(tree)
        sweep()  # its directory, which a SIGKILLed runtime cannot remove
        assert left == [], f"node {self.name} left {left}"


@contextlib.contextmanager
def serving_node(name: str, cookie: str, home: Path) -> Iterator[Node]:
    """A node running ``serve`` for the block (a module's ``there``), killed at its end."""
    node = Node(name, cookie, home, "serve")
    try:
        yield node.wait_ready()
    finally:
        node.kill()
