"""A node's Erlang VM is supervised by its central services (issue 13): killed, it is
started again; the processes that talked through it see their remote monitors and links fire
with noconnection, and reach other nodes again through the new one."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import occasional as occ
from occasional.core import runtime as _runtime
from occasional.testing.erlang import epmd_fixture  # noqa: F401  # registers the fixture "epmd" here

import dist_programs
from conftest import descendants, poll
from dist_programs import Node, serving_node

pytestmark = pytest.mark.timeout(40)
COOKIE = "occasional-vm-tests"
HOST = "127.0.0.1"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def there(epmd: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with serving_node(f"vmthere@{HOST}", COOKIE, tmp_path_factory.mktemp("vmthere")) as node:
        yield node


def vm_of_this_runtime() -> int:
    """The Linux pid of the Erlang VM of the runtime this interpreter started."""
    beams = _vms()
    assert len(beams) == 1, beams
    return beams[0]


def _vms() -> list[int]:
    rt = _runtime._runtime
    assert rt is not None
    return [pid for pid in descendants(rt.central.pid) if _command(pid).endswith("/beam.smp")]


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return ""


def test_a_monitor_of_a_process_on_another_node_fires_with_noconnection_when_this_nodes_vm_is_killed(there):
    with occ.runtime(node=f"vm{next(_names)}@{HOST}", cookie=COOKIE):
        remote = occ.spawn(dist_programs.wait_forever, node=there.name)
        ref = occ.monitor(remote)
        os.kill(vm_of_this_runtime(), signal.SIGKILL)
        assert occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=15) == (
            "DOWN",
            ref,
            remote,
            ("noconnection", there.name),
        )


def test_a_node_whose_vm_was_killed_starts_it_again_and_reaches_other_nodes_again(there):
    with occ.runtime(node=f"vm{next(_names)}@{HOST}", cookie=COOKIE):
        occ.send(("echo", there.name), ("echo", occ.slf(), "before"))
        assert occ.receive(("echo", occ.ANY), timeout=15) == ("echo", "before")
        old = vm_of_this_runtime()
        os.kill(old, signal.SIGKILL)
        poll(lambda: _vms() not in ([], [old]), lambda started: started, timeout=15)

        def echoed() -> bool:
            occ.send(("echo", there.name), ("echo", occ.slf(), "after"))
            try:
                return occ.receive(("echo", "after"), timeout=0.5) == ("echo", "after")
            except (TimeoutError, RuntimeError):
                return False

        assert poll(echoed, lambda ok: ok, timeout=15) is True


def test_a_runtime_named_as_a_running_node_is_refused_naming_the_name(there):
    named = rf"^node '{there.name}' could not start: another node is named "
    with pytest.raises(RuntimeError, match=named), occ.runtime(node=there.name, cookie=COOKIE):
        pass


def test_a_node_name_without_a_host_is_refused_in_the_caller():
    with pytest.raises(ValueError, match=r"^run\(\): node='lonely' is not a node name; give NAME@HOST"):
        occ.run(lambda: None, node="lonely")
