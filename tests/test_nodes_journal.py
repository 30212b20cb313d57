"""Nodes sharing a PostgreSQL journal: leases, fencing, takeover (API.md section 11, issue 12).

Each node is a runtime in an interpreter of its own (tests/node_programs.py),
or the test's own runtime; they share a real PostgreSQL server the test
starts. Effects outside the runtime go to files, so what ran twice shows.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import occasional as occ
from occasional import durable

from conftest import ROOT, descendants, reap_orphans, snapshot, wait_until_gone
from node_programs import effects

pytestmark = pytest.mark.timeout(90)
TESTS = Path(__file__).resolve().parent


class Node:
    """A runtime in an interpreter of its own, on the journal ``url``."""

    def __init__(self, url: str, lease: float, program: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import node_programs; node_programs.node()", url, str(lease), program, *args],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def signal(self, sig: int) -> None:
        """``sig`` to the node's interpreter and every process of its runtime."""
        for pid, _, _ in snapshot([self.proc.pid, *descendants(self.proc.pid)]):
            with contextlib.suppress(ProcessLookupError):  # ended by an earlier one's death signal
                os.kill(pid, sig)

    def kill(self) -> str:
        """SIGKILL the node's whole runtime and reap it; its stderr."""
        tree = snapshot([self.proc.pid, *descendants(self.proc.pid)])
        for pid, _, _ in tree:
            with contextlib.suppress(ProcessLookupError):  # ended by an earlier one's death signal
                os.kill(pid, signal.SIGKILL)
        _, err = self.proc.communicate()
        assert wait_until_gone(tree) == []
        reap_orphans(tree)
        return err

    def ended(self, timeout: float) -> tuple[int, str]:
        """Wait for the node to end by itself; (exit status, stderr)."""
        tree = snapshot([self.proc.pid, *descendants(self.proc.pid)])
        _, err = self.proc.communicate(timeout=timeout)
        assert wait_until_gone(tree, timeout=5) == []
        reap_orphans(tree)
        return self.proc.returncode, err


@pytest.fixture
def nodes() -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def start(*args: Any) -> Node:
        node = Node(*(str(a) for a in args))
        started.append(node)
        return node

    yield start
    for node in started:
        if node.proc.poll() is None:
            node.signal(signal.SIGCONT)
            node.kill()


def wait_for(path: Path, node: Node, timeout: float = 30) -> None:
    """Until ``path`` exists: a node's process made it (nothing else can tell us)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if node.proc.poll() is not None:
            raise AssertionError(f"the node ended: {node.proc.stderr.read() if node.proc.stderr else ''}")
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)


def owner(url: str, id: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT owner FROM processes WHERE id = %s", (id,)).fetchone()
    return None if row is None else row[0]


def alive(url: str, node: str | None) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status FROM nodes WHERE node = %s", (node,)).fetchone()
    return row == ("alive",)


# -- sharing -----------------------------------------------------------------------


def test_a_durable_process_spawned_on_one_node_takes_messages_and_gives_its_result_on_another(
    postgres_url, tmp_path, nodes
):
    fx, ready = tmp_path / "effects", tmp_path / "ready"
    a = nodes(postgres_url, 10, "spawn_and_wait", "two_steps", fx, ready, "job")
    wait_for(Path(f"{ready}.job"), a)
    with occ.runtime(journal=postgres_url):
        occ.send(durable.whereis("job"), "go")
        assert durable.result("job", timeout=20) == ("ok", "done")
    assert effects(fx) == [["one"], ["two"]]


def test_messages_from_another_node_arrive_once_each_in_the_order_they_were_sent(postgres_url, nodes):
    from node_programs import collecting

    with occ.runtime(journal=postgres_url):
        durable.spawn("collector", collecting, 200)
        sender = nodes(postgres_url, 10, "send_numbers", "collector", 200)
        assert sender.ended(timeout=30)[0] == 0
        assert durable.result("collector", timeout=30) == ("ok", list(range(200)))


def test_two_nodes_spawning_the_same_id_start_one_process(postgres_url, tmp_path, nodes):
    fx, ready = tmp_path / "effects", tmp_path / "ready"
    a = nodes(postgres_url, 10, "spawn_and_wait", "started", fx, ready, "once")
    wait_for(Path(f"{ready}.once"), a)
    from node_programs import started

    with occ.runtime(journal=postgres_url):
        pid = durable.spawn("once", started, str(fx), str(tmp_path / "mine"))
        occ.send(pid, "go")
        assert durable.result("once", timeout=20) == ("ok", "done")
    assert [e[0] for e in effects(fx)] == ["started"]
    assert not (tmp_path / "mine").exists()


def test_a_supervisor_refuses_a_durable_child_another_node_runs_naming_that_node(postgres_url, tmp_path, nodes):
    from node_programs import started

    fx, ready = tmp_path / "effects", tmp_path / "ready"
    a = nodes(postgres_url, 10, "spawn_and_wait", "started", fx, ready, "job")
    wait_for(Path(f"{ready}.job"), a)
    there = owner(postgres_url, "job")
    child = {"id": "job", "function": functools.partial(durable.spawn, "job", started, str(fx), str(ready))}
    with occ.runtime(journal=postgres_url), pytest.raises(occ.ProcessExit) as failed:
        occ.Supervisor.start([child])
    assert (
        f"durable process 'job' runs on the node {there}; a Supervisor follows a durable process from the node that runs it"
        in str(failed.value)
    )


# -- takeover ----------------------------------------------------------------------


def test_a_node_killed_with_its_whole_runtime_has_its_process_finished_by_another_without_a_step_run_twice(
    postgres_url, tmp_path, nodes
):
    fx, ready = tmp_path / "effects", tmp_path / "ready"
    with occ.runtime(journal=postgres_url, lease=2):
        a = nodes(postgres_url, 2, "spawn_and_wait", "two_steps", fx, ready, "job")
        wait_for(Path(f"{ready}.job"), a)
        first = owner(postgres_url, "job")
        a.kill()
        occ.send(durable.whereis("job"), "go")
        assert durable.result("job", timeout=20) == ("ok", "done")
        now = owner(postgres_url, "job")
        assert (now != first, alive(postgres_url, first), alive(postgres_url, now)) == (True, False, True)
    assert effects(fx) == [["one"], ["two"]]


def test_a_node_that_stopped_cleanly_has_its_unfinished_processes_taken_over_without_waiting_out_its_lease(
    postgres_url, tmp_path, nodes
):
    fx, ready = tmp_path / "effects", tmp_path / "ready"
    with occ.runtime(journal=postgres_url):  # the default lease, 10 s
        a = nodes(postgres_url, 10, "spawn_and_stop", "two_steps", fx, ready, "job")
        assert a.ended(timeout=30)[0] == 0
        left = time.monotonic()
        occ.send(durable.whereis("job"), "go")
        assert durable.result("job", timeout=20) == ("ok", "done")
        assert time.monotonic() - left < 10
    assert effects(fx) == [["one"], ["two"]]


def test_the_processes_of_a_dead_node_are_spread_over_the_nodes_left(postgres_url, tmp_path, nodes):
    fx, ready = tmp_path / "effects", tmp_path / "ready"
    ids = [f"job{i}" for i in range(6)]
    with occ.runtime(journal=postgres_url, lease=2):
        b = nodes(postgres_url, 2, "wait", tmp_path / "b-ready")
        wait_for(tmp_path / "b-ready", b)
        a = nodes(postgres_url, 2, "spawn_and_wait", "started", fx, ready, *ids)
        for id in ids:
            wait_for(Path(f"{ready}.{id}"), a)
        a.kill()
        for id in ids:
            occ.send(durable.whereis(id), "go")
        for id in ids:
            assert durable.result(id, timeout=20) == ("ok", "done")
    with psycopg.connect(postgres_url) as conn:
        owners = dict(conn.execute("SELECT id, owner FROM processes").fetchall())
    assert set(owners) == set(ids)
    assert len(set(owners.values())) == 2, owners  # both survivors run some


def test_a_durable_sender_moved_by_a_takeover_mid_stream_delivers_each_message_once_in_order(
    postgres_url, tmp_path, nodes
):
    from node_programs import collecting

    ready = tmp_path / "ready"
    with occ.runtime(journal=postgres_url, lease=2):
        durable.spawn("collector", collecting, 300)
        a = nodes(postgres_url, 2, "spawn_and_wait", "sending", "collector", ready, "sender")
        wait_for(Path(f"{ready}.sender"), a)
        a.kill()
        with psycopg.connect(postgres_url) as conn:
            (sent,) = conn.execute("SELECT count(*) FROM mailbox WHERE process = 'collector'").fetchone()
        assert 100 < sent < 300  # killed mid-stream
        assert durable.result("sender", timeout=30) == ("ok", 300)
        assert durable.result("collector", timeout=30) == ("ok", list(range(300)))


# -- fencing -----------------------------------------------------------------------


def test_a_node_stopped_past_its_lease_ends_when_it_wakes_and_none_of_its_steps_after_the_takeover_counts(
    postgres_url, tmp_path, nodes
):
    fx, ready = tmp_path / "effects", tmp_path / "ready"
    with occ.runtime(journal=postgres_url, lease=1):
        a = nodes(postgres_url, 1, "spawn_and_wait", "counting", fx, ready, "counter")
        wait_for(Path(f"{ready}.counter"), a)
        first = owner(postgres_url, "counter")
        a.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 20
        while owner(postgres_url, "counter") == first:
            assert time.monotonic() < deadline, "the stopped node's process was not taken over"
            time.sleep(0.05)
        here = len(effects(fx))
        while len(effects(fx)) < here + 5:  # it goes on here
            time.sleep(0.01)
        a.signal(signal.SIGCONT)
        status, err = a.ended(timeout=30)
        assert status != 0
        assert "lost its lease on the journal" in err
        occ.send(durable.whereis("counter"), "stop")
        kind, last = durable.result("counter", timeout=20)
    assert kind == "ok"
    notes = effects(fx)
    theirs = [n for pid, n in notes if pid == notes[0][0]]
    ours = [n for pid, n in notes if pid != notes[0][0]]
    # Ours go on from the last step the journal has from the first node, one by one, to the result.
    assert ours == list(range(ours[0], last + 1))
    # The first node's steps were 1, 2, ...; any it made after the takeover (at most the one
    # it was in when stopped, at least once) did not reach the journal: ours start after its last committed one.
    assert theirs == list(range(1, len(theirs) + 1))
    assert ours[0] in (len(theirs), len(theirs) + 1)


# -- a server that goes away -------------------------------------------------------


def test_a_node_keeps_its_durable_processes_and_their_messages_across_a_restart_of_the_server():
    from occasional.testing.postgres import postgres_server

    from node_programs import collecting

    with postgres_server() as server:
        url = server.create_database()
        with occ.runtime(journal=url):
            collector = durable.spawn("collector", collecting, 2)
            occ.send(collector, "before")
            server.restart()
            occ.send(collector, "after")
            assert durable.result("collector", timeout=30) == ("ok", ["before", "after"])


# -- options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease", "error", "message"),
    [
        (0, ValueError, r"^run\(\): lease=0 is not a lease; give a finite number of seconds > 0, e\.g\. 10$"),
        (float("inf"), ValueError, r"^run\(\): lease=inf is not a lease; give a finite number of seconds > 0"),
        ("10", TypeError, r"^run\(\): lease='10' is not a number; give the node's lease in seconds, e\.g\. 10$"),
    ],
    ids=["zero", "infinite", "text"],
)
def test_a_lease_that_is_not_a_positive_number_of_seconds_is_refused_naming_it(postgres_url, lease, error, message):
    with pytest.raises(error, match=message):
        occ.run(print, journal=postgres_url, lease=lease)


def test_a_lease_on_an_sqlite_journal_is_refused_as_it_has_no_nodes(tmp_path):
    journal = str(tmp_path / "journal.sqlite")
    with pytest.raises(ValueError, match=r"^run\(\): lease=5 is the lease of a node on a journal shared by nodes"):
        occ.run(print, journal=journal, lease=5)
