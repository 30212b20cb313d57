"""Nodes talking to nodes: spawn, send, links, monitors, lost nodes, cookies, global names (API.md section 11, issue 13).

The test's own runtime is a node (``here()``), started per test; the nodes it talks to are
runtimes in interpreters of their own (tests/dist_programs.py). ``there`` serves the whole
module; a test that kills or stops a node starts its own (``nodes``). Every VM registers with
the module's private EPMD (the ``epmd`` fixture, occasional.testing.erlang).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import occasional as occ
from occasional.testing.erlang import epmd_fixture  # noqa: F401  # registers the fixture "epmd" here

import dist_programs
from conftest import poll, wait_until_in_mailbox
from dist_programs import Node, serving_node

pytestmark = pytest.mark.timeout(30)
COOKIE = "occasional-dist-tests"
HOST = "127.0.0.1"
TICKTIME = 2  # seconds: a stopped node is noticed within about this (Erlang's net_ticktime)
_names = itertools.count(1)


@contextlib.contextmanager
def here(**options: Any) -> Iterator[str]:
    """This interpreter as a process of a new runtime that is a node of a name of its own."""
    name = f"t{next(_names)}@{HOST}"
    with occ.runtime(node=name, **{"cookie": COOKIE, **options}):
        yield name


@pytest.fixture(scope="module")
def there(epmd: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node serving the whole module: ``"echo"`` is registered on it (dist_programs.serve)."""
    with serving_node(f"there@{HOST}", COOKIE, tmp_path_factory.mktemp("there")) as node:
        yield node


@pytest.fixture
def nodes(epmd: Any, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start nodes of this test's own (``nodes("k", net_ticktime=2)``); killed at its end."""
    started: list[Node] = []

    def start(name: str, program: str = "serve", net_ticktime: int | None = None) -> Node:
        node = Node(f"{name}@{HOST}", COOKIE, tmp_path / name, program, net_ticktime=net_ticktime)
        started.append(node)
        return node.wait_ready()

    yield start
    for node in started:
        node.kill()


def until_down(ref: occ.Ref, timeout: float = 15) -> list[Any]:
    """Every message received, oldest first, up to and including the DOWN of ``ref``."""
    got = []
    while not (got and isinstance(got[-1], tuple) and got[-1][:2] == ("DOWN", ref)):
        got.append(occ.receive(timeout=timeout))
    return got


def spawn_link_then_wait(to: occ.Pid, node: str) -> None:
    """Spawn a process linked to this one on ``node``, tell ``to`` its pid, wait forever."""
    occ.send(to, ("spawned", occ.spawn_link(dist_programs.exit_when_told, node=node)))
    occ.receive("never sent")


# -- names ----------------------------------------------------------------------------------


def test_a_node_is_named_by_the_name_it_was_given(epmd):
    assert occ.run(occ.node, node=f"named@{HOST}", cookie=COOKIE) == f"named@{HOST}"


def test_a_runtime_started_without_node_is_named_nonode_at_nohost():
    assert occ.run(occ.node) == "nonode@nohost"


def test_connect_to_a_node_returns_true_and_lists_it_among_the_nodes(there):
    with here():
        assert (occ.connect(there.name), there.name in occ.nodes()) == (True, True)


# -- spawn and send -------------------------------------------------------------------------


def test_a_function_spawned_on_another_node_runs_there_and_its_down_carries_its_result(there):
    with here():
        pid, ref = occ.spawn_monitor(dist_programs.where_am_i, node=there.name)
        down = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15)
        assert (pid.node, down) == (there.name, ("DOWN", ref, pid, ("ok", there.name)))


def test_a_thousand_messages_to_another_node_arrive_in_the_order_sent(there):
    with here():
        collector = occ.spawn(dist_programs.collect, occ.slf(), 1000, node=there.name)
        for n in range(1000):
            occ.send(collector, n)
        assert occ.receive(("collected", occ.ANY), timeout=15) == ("collected", list(range(1000)))


def test_send_to_a_name_on_another_node_reaches_the_process_registered_there(there):
    with here():
        occ.send(("echo", there.name), ("echo", occ.slf(), "hello"))
        assert occ.receive(("echo", occ.ANY), timeout=15) == ("echo", "hello")


def test_a_pid_sent_to_another_node_comes_back_equal_to_itself_and_of_this_node(there):
    with here() as name:
        me = occ.slf()
        occ.send(("echo", there.name), ("echo", me, me))
        _, back = occ.receive(("echo", occ.ANY), timeout=15)
        assert (back, back.node) == (me, name)


def test_a_pid_from_another_node_names_that_node_and_reaches_its_process(there):
    with here():
        pid = occ.spawn(dist_programs.introduce, occ.slf(), node=there.name)
        _, sent = occ.receive(("me", occ.ANY), timeout=15)
        occ.send(sent, (occ.slf(), "hi"))
        assert (sent, sent.node, occ.receive(("got", occ.ANY), timeout=15)) == (pid, there.name, ("got", "hi"))


def test_sending_to_a_node_that_cannot_be_reached_drops_the_message(epmd):
    with here():
        assert occ.send(("echo", f"nobody@{HOST}"), "lost") is None


# -- links, monitors, kill --------------------------------------------------------------------


def test_an_abnormal_end_on_another_node_kills_a_linked_process_that_does_not_trap_exits(there):
    with here():
        local, ref = occ.spawn_monitor(spawn_link_then_wait, occ.slf(), there.name)
        _, remote = occ.receive(("spawned", occ.ANY), timeout=15)
        occ.send(remote, "exit")
        down = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15)
        assert down == ("DOWN", ref, local, ("linked", (remote, ("exitcode", 3))))


def test_an_abnormal_end_on_another_node_reaches_a_linked_process_that_traps_exits_as_a_message(there):
    with here():
        occ.trap_exits(True)
        remote = occ.spawn_link(dist_programs.exit_when_told, node=there.name)
        occ.send(remote, "exit")
        assert occ.receive(("EXIT", remote, occ.ANY), timeout=15) == ("EXIT", remote, ("exitcode", 3))


def test_an_abnormal_end_here_kills_a_linked_process_on_another_node(there):
    with here():
        local = occ.spawn(dist_programs.exit_when_told)
        remote, ref = occ.spawn_monitor(dist_programs.link_and_tell, local, node=there.name)
        down = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15)
        assert down == ("DOWN", ref, remote, ("linked", (local, ("exitcode", 3))))


def test_a_monitor_of_a_process_on_another_node_delivers_its_down_with_its_reason(there):
    with here():
        remote = occ.spawn(dist_programs.exit_when_told, node=there.name)
        ref = occ.monitor(remote)
        occ.send(remote, "exit")
        assert occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15) == ("DOWN", ref, remote, ("exitcode", 3))


def test_demonitor_of_a_process_on_another_node_stops_its_down(there):
    with here():
        remote = occ.spawn(dist_programs.exit_when_told, node=there.name)
        ref = occ.monitor(remote)
        occ.demonitor(ref)
        later = occ.monitor(remote)
        occ.send(remote, "exit")
        occ.receive(("DOWN", later, occ.ANY, occ.ANY), timeout=15)
        with pytest.raises(TimeoutError):
            occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=0)


def test_a_monitor_of_a_process_that_ended_on_another_node_delivers_noproc(there):
    with here():
        remote, ref = occ.spawn_monitor(dist_programs.where_am_i, node=there.name)
        occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15)
        again = occ.monitor(remote)
        assert occ.receive(("DOWN", again, occ.ANY, occ.ANY), timeout=15) == ("DOWN", again, remote, ("noproc", None))


def test_kill_of_a_process_on_another_node_ends_it_with_killed_and_the_reason_given(there):
    with here():
        remote, ref = occ.spawn_monitor(dist_programs.wait_forever, node=there.name)
        occ.kill(remote, "enough")
        assert occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15) == ("DOWN", ref, remote, ("killed", "enough"))


# -- lost nodes -------------------------------------------------------------------------------


def test_a_node_killed_with_its_whole_runtime_gives_noconnection_downs_after_the_messages_it_sent(nodes):
    lost = nodes("killed1")
    with here():
        remote, ref = occ.spawn_monitor(dist_programs.send_numbers_then_wait, occ.slf(), 1000, node=lost.name)
        wait_until_in_mailbox(lambda m: m == "sent", timeout=15)
        lost.kill()
        assert until_down(ref) == [
            *(("n", n) for n in range(1000)),
            "sent",
            ("DOWN", ref, remote, ("noconnection", lost.name)),
        ]


def test_a_node_killed_with_its_whole_runtime_is_reported_once_as_nodedown_to_a_monitor_of_it(nodes):
    lost = nodes("killed2")
    with here():
        assert occ.connect(lost.name) is True
        occ.monitor_node(lost.name)
        lost.kill()
        first = occ.receive(("nodedown", occ.ANY), timeout=15)
        occ.monitor_node(lost.name)  # unreachable now: its nodedown comes at once, and only it
        second = occ.receive(("nodedown", occ.ANY), timeout=15)
        with pytest.raises(TimeoutError):
            occ.receive(("nodedown", occ.ANY), timeout=0)
        assert (first, second) == (("nodedown", lost.name), ("nodedown", lost.name))


def test_a_node_killed_with_its_whole_runtime_ends_a_link_from_a_trapping_process_with_noconnection(nodes):
    lost = nodes("killed3")
    with here():
        occ.trap_exits(True)
        remote = occ.spawn_link(dist_programs.send_numbers_then_wait, occ.slf(), 0, node=lost.name)
        occ.receive("sent", timeout=15)
        lost.kill()
        assert occ.receive(("EXIT", remote, occ.ANY), timeout=15) == ("EXIT", remote, ("noconnection", lost.name))


def test_monitor_node_of_a_node_that_cannot_be_reached_delivers_nodedown_at_once(epmd):
    with here():
        occ.monitor_node(f"nobody@{HOST}")
        assert occ.receive(("nodedown", occ.ANY), timeout=15) == ("nodedown", f"nobody@{HOST}")


def test_a_node_stopped_past_the_tick_time_gives_noconnection_downs_after_its_messages_and_nodedown(nodes):
    stopped = nodes("stopped1", net_ticktime=TICKTIME)
    with here(net_ticktime=TICKTIME):
        remote, ref = occ.spawn_monitor(dist_programs.send_numbers_then_wait, occ.slf(), 100, node=stopped.name)
        occ.monitor_node(stopped.name)
        wait_until_in_mailbox(lambda m: m == "sent", timeout=15)
        stopped.signal(signal.SIGSTOP)
        got = until_down(ref, timeout=5 * TICKTIME)
        if ("nodedown", stopped.name) not in got:
            got.append(occ.receive(("nodedown", occ.ANY), timeout=5 * TICKTIME))
        assert [m for m in got if m != ("nodedown", stopped.name)] == [
            *(("n", n) for n in range(100)),
            "sent",
            ("DOWN", ref, remote, ("noconnection", stopped.name)),
        ]
        assert got.count(("nodedown", stopped.name)) == 1


def test_a_node_stopped_past_the_tick_time_takes_a_new_message_after_it_continues(nodes):
    stopped = nodes("stopped2", net_ticktime=TICKTIME)
    with here(net_ticktime=TICKTIME):
        occ.send(("echo", stopped.name), ("echo", occ.slf(), "before"))
        occ.receive(("echo", "before"), timeout=15)
        occ.monitor_node(stopped.name)
        stopped.signal(signal.SIGSTOP)
        occ.receive(("nodedown", stopped.name), timeout=5 * TICKTIME)
        stopped.signal(signal.SIGCONT)
        occ.send(("echo", stopped.name), ("echo", occ.slf(), "after"))
        assert occ.receive(("echo", occ.ANY), timeout=15) == ("echo", "after")


# -- cookies ----------------------------------------------------------------------------------


def test_connect_with_a_wrong_cookie_returns_false_and_connects_nothing(there):
    with here(cookie="not-" + COOKIE):
        assert (occ.connect(there.name), occ.nodes()) == (False, [])


def test_a_node_refusing_a_wrong_cookie_names_the_node_that_tried_and_the_cookie_in_its_error(there):
    # Erlang's handshake tells only the refusing side why (the challenge reply did not match
    # its cookie); the connecting side sees a closed connection. API.md section 11: "a wrong
    # cookie is refused and named in the error".
    with here(cookie="not-" + COOKIE) as name:
        assert occ.connect(there.name) is False
    said = poll(there.stderr, lambda err: _refusal(err, name) != [], timeout=10)
    assert _refusal(said, name) != [], said


def _refusal(stderr: str, node: str) -> list[str]:
    """The lines of ``stderr`` that name ``node`` and a cookie."""
    return [line for line in stderr.splitlines() if node in line and re.search(r"(?i)\bcookie\b", line)]


# -- global names -----------------------------------------------------------------------------


def test_a_global_name_registered_on_one_node_is_found_from_another(there):
    with here():
        holder = occ.spawn(dist_programs.hold_global, occ.slf(), "g-found", node=there.name)
        occ.receive(("registered", "g-found"), timeout=15)
        try:
            # Two nodes that just connected exchange their global names in the background
            # (Erlang's global): nothing tells us when they have, so ask until the deadline.
            assert poll(lambda: occ.whereis_global("g-found"), lambda pid: pid is not None, timeout=10) == holder
        finally:
            occ.send(holder, "exit")


def test_a_global_name_registered_here_is_found_by_a_process_on_another_node(there):
    with here():
        occ.register_global("g-here", occ.slf())
        occ.spawn(dist_programs.find_global, occ.slf(), "g-here", node=there.name)
        assert occ.receive(("found", occ.ANY), timeout=15) == ("found", occ.slf())


def test_a_global_name_is_freed_when_its_process_ends(there):
    with here():
        holder = occ.spawn(dist_programs.hold_global, occ.slf(), "g-freed", node=there.name)
        occ.receive(("registered", "g-freed"), timeout=15)
        assert poll(lambda: occ.whereis_global("g-freed"), lambda pid: pid is not None, timeout=10) == holder
        ref = occ.monitor(holder)
        occ.send(holder, "exit")
        occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15)
        # Erlang's global learns of the end by a monitor of its own, not ordered with ours:
        # nothing tells us when it has, so ask again until the deadline.
        assert poll(lambda: occ.whereis_global("g-freed"), lambda pid: pid is None, timeout=10) is None


def test_unregister_global_frees_the_name(epmd):
    with here():
        occ.register_global("g-unregistered", occ.slf())
        found = occ.whereis_global("g-unregistered")
        occ.unregister_global("g-unregistered")
        assert (found, occ.whereis_global("g-unregistered")) == (occ.slf(), None)
