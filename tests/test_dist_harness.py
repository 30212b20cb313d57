"""The harness for the tests of nodes: a private EPMD and real Erlang nodes (occasional.testing.erlang, issue 13).

The tests of API.md section 11 talk to real ``erl`` nodes through this harness and rely on it
to leave no VM and no EPMD behind, so it is proved here on its own, with Erlang alone.
"""

from __future__ import annotations

import os

import pytest

from occasional.testing.erlang import (
    ERL_EPMD_PORT,
    ErlangError,
    ErlangNode,
    epmd_environment,
    epmd_fixture,  # noqa: F401  # registers the fixture "epmd" here
    epmd_server,
    free_port,
    quote_atom,
)

from conftest import descendants, snapshot, survivors, title

pytestmark = pytest.mark.timeout(30)
COOKIE = "harness-cookie"
ECHO = "register(echo, spawn(fun Loop() -> receive {From, M} -> From ! {echo, M}, Loop() end end))."


def test_the_epmd_fixture_names_its_port_in_erl_epmd_port_and_its_nodes_register_there(epmd):
    assert os.environ[ERL_EPMD_PORT] == str(epmd.port)
    with ErlangNode("reg@127.0.0.1", COOKIE):
        assert "name reg at port " in epmd.names()


def test_two_erlang_nodes_ping_each_other(epmd):
    with ErlangNode("a@127.0.0.1", COOKIE) as a, ErlangNode("b@127.0.0.1", COOKIE) as b:
        assert a.eval(f"net_adm:ping({quote_atom(b.name)}).") == "pong"
        assert b.eval(f"net_adm:ping({quote_atom(a.name)}).") == "pong"
        assert b.eval("nodes().") == "['a@127.0.0.1']"


def test_a_registered_echo_process_on_one_node_answers_a_process_on_the_other(epmd):
    with ErlangNode("a@127.0.0.1", COOKIE) as a, ErlangNode("b@127.0.0.1", COOKIE) as b:
        assert b.eval(ECHO) == "true"
        asked = "{echo, 'b@127.0.0.1'} ! {self(), <<\"hi\">>}, receive {echo, X} -> X after 5000 -> timeout end."
        assert a.eval(asked) == '<<"hi">>'


def test_a_node_with_another_cookie_is_refused(epmd):
    with ErlangNode("a@127.0.0.1", COOKIE) as a, ErlangNode("b@127.0.0.1", "another") as b:
        assert a.eval(f"net_adm:ping({quote_atom(b.name)}).") == "pang"


def test_a_variable_bound_by_one_expression_is_unbound_in_the_next(epmd):
    # Unlike the shell: on a node shared by a module's tests, a reply bound to X by one test
    # must not make the next test's "receive {reply, X}" wait for that same reply.
    with ErlangNode("a@127.0.0.1", COOKIE) as a:
        assert a.eval("X = [1, 2, 3], lists:sum(X).") == "6"
        assert a.eval("X = 4.") == "4"


def test_an_expression_that_raises_raises_erlang_error_with_its_class_and_reason(epmd):
    with ErlangNode("a@127.0.0.1", COOKIE) as a:
        with pytest.raises(ErlangError, match=r"^'1 / 0\.': raised \{error,badarith\}$"):
            a.eval("1 / 0.")
        assert a.eval("ok.") == "ok"


def test_an_expression_without_an_answer_in_time_raises_erlang_error_and_stop_still_ends_the_node(epmd):
    a = ErlangNode("a@127.0.0.1", COOKIE).start()
    pid = a.os_pid
    with pytest.raises(ErlangError, match=r"^'receive never -> ok end\.': no answer within the timeout"):
        a.eval("receive never -> ok end.", timeout=0.2)
    taken = snapshot([pid, *descendants(pid)])
    a.stop()
    assert survivors(taken) == []


def test_a_node_name_without_a_host_is_refused_naming_it(epmd):
    with pytest.raises(ValueError, match=r"^node name 'a' has no host; write it NAME@HOST"):
        ErlangNode("a", COOKIE)


def test_a_node_without_an_epmd_fails_to_start_and_starts_no_epmd_of_its_own(epmd):
    port = free_port()
    with pytest.raises(ErlangError, match=r"^'node\(\)\.': the VM of 'a@127.0.0.1' closed its output"):
        ErlangNode("a@127.0.0.1", COOKIE, epmd_port=port).start()
    started = [title(p) for p in descendants(os.getpid()) if "epmd" in title(p) and p != epmd.process.pid]
    assert started == []


def test_after_stop_no_vm_and_no_epmd_of_the_harness_is_left():
    with (
        epmd_server() as server,
        epmd_environment(server.port),
        ErlangNode("a@127.0.0.1", COOKIE) as a,
        ErlangNode("b@127.0.0.1", COOKIE) as b,
    ):
        assert a.eval(f"net_adm:ping({quote_atom(b.name)}).") == "pong"
        vms = [a.os_pid, *descendants(a.os_pid), b.os_pid, *descendants(b.os_pid)]
        taken = snapshot([server.process.pid, *vms])
        assert [title(p).split()[0].rsplit("/", 1)[-1] for p in (a.os_pid, b.os_pid)] == ["beam.smp", "beam.smp"]
    assert survivors(taken) == []
