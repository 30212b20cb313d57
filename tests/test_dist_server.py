"""A Server on another node answers calls, and its end ends a call in progress (API.md
sections 6 and 11, issue 13)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import occasional as occ
from occasional.testing.erlang import epmd_fixture  # noqa: F401  # registers the fixture "epmd" here

import dist_programs
from dist_programs import Node, serving_node

pytestmark = pytest.mark.timeout(30)
COOKIE = "occasional-server-tests"
HOST = "127.0.0.1"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def there(epmd: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with serving_node(f"srvthere@{HOST}", COOKIE, tmp_path_factory.mktemp("srvthere")) as node:
        yield node


def counter_on(node: str) -> occ.Pid:
    occ.spawn(dist_programs.start_counter, occ.slf(), node=node)
    return occ.receive(("counter", occ.ANY), timeout=15)[1]


def test_a_call_to_a_server_on_another_node_returns_its_replies_in_order(there):
    with occ.runtime(node=f"srv{next(_names)}@{HOST}", cookie=COOKIE):
        counter = counter_on(there.name)
        assert [occ.call(counter, "next") for _ in range(3)] == [0, 1, 2]


def test_a_call_to_a_server_on_another_node_that_fails_raises_process_exit_with_its_error(there):
    with occ.runtime(node=f"srv{next(_names)}@{HOST}", cookie=COOKIE):
        counter = counter_on(there.name)
        with pytest.raises(occ.ProcessExit) as info:
            occ.call(counter, "crash")
        assert (info.value.reason[0], str(info.value.reason[1])) == ("error", "asked to crash")
