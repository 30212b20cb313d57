"""Talking to a real Erlang node: ping, messages both ways, terms mapped as the contract's table says
(API.md section 11, "Talking to Erlang"; issue 13).

The Erlang node is a real ``erl`` (occasional.testing.erlang.ErlangNode) serving the whole
module, with two registered processes: ``echo`` answers ``{From, Msg}`` with
``{echoed, self(), Msg}``, ``keep`` keeps the last ``{From, Term}`` it got (answering ``From``
with ``kept``) and gives it to ``{get, From}``, so the test reads what Erlang saw, as Erlang
prints it. The test's own runtime is a node of a name of its own (``here()``), per test.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import occasional as occ
from occasional.testing.erlang import (
    ErlangNode,
    epmd_fixture,  # noqa: F401  # registers the fixture "epmd" here
    quote_atom,
)

from conftest import naming

pytestmark = pytest.mark.timeout(30)
COOKIE = "occasional-erlang-tests"
HOST = "127.0.0.1"
_names = itertools.count(1)

ECHO = "register(echo, spawn(fun Loop() -> receive {From, Msg} -> From ! {echoed, self(), Msg}, Loop() end end))."
KEEP = (
    "register(keep, spawn(fun() -> (fun Loop(Last) -> receive "
    "{get, From} -> From ! {kept, Last}, Loop(Last); "
    "{From, Term} -> From ! kept, Loop(Term) "
    "end end)(nothing) end))."
)


@contextlib.contextmanager
def here(**options: Any) -> Iterator[str]:
    """This interpreter as a process of a new runtime that is a node of a name of its own."""
    name = f"occ{next(_names)}@{HOST}"
    with occ.runtime(node=name, **{"cookie": COOKIE, **options}):
        yield name


@pytest.fixture(scope="module")
def erl(epmd: Any) -> Iterator[ErlangNode]:
    with ErlangNode(f"erl@{HOST}", COOKIE) as node:
        assert (node.eval(ECHO), node.eval(KEEP)) == ("true", "true")
        yield node


def chat(test: occ.Pid) -> None:
    """Registered as "chat": answer one ``(frm, term)`` with ``(reply, term)`` and tell ``test`` what it saw."""
    frm, term = occ.receive((occ.ANY, occ.ANY))
    occ.send(test, ("saw", frm, term))
    occ.send(frm, (occ.Atom("reply"), term))


def tell(erl: ErlangNode, node: str, term: str) -> None:
    """In ``erl``: send ``{self(), term}`` to "chat" on ``node``."""
    assert erl.eval(f"{{chat, {quote_atom(node)}}} ! {{self(), {term}}}, ok.") == "ok"


def ask(erl: ErlangNode, node: str, term: str) -> str:
    """In ``erl``: send ``{self(), term}`` to "chat" on ``node`` and return the term of its reply.

    The evaluating process's mailbox is emptied first: a reply that came too late for an
    earlier test is not taken for this one's."""
    flush = "(fun Flush() -> receive _ -> Flush() after 0 -> ok end end)()"
    return erl.eval(
        f"{flush}, {{chat, {quote_atom(node)}}} ! {{self(), {term}}}, "
        "receive {reply, X} -> X after 10000 -> timeout end.",
        timeout=15,
    )


# -- connecting -------------------------------------------------------------------------------


def test_an_erlang_node_pings_an_occasional_node(erl):
    with here() as name:
        assert erl.eval(f"net_adm:ping({quote_atom(name)}).") == "pong"


def test_an_erlang_node_that_pinged_an_occasional_node_is_among_its_nodes(erl):
    with here() as name:
        erl.eval(f"net_adm:ping({quote_atom(name)}).")
        assert erl.name in occ.nodes()


def test_an_erlang_node_with_another_cookie_is_refused(epmd):
    with here() as name, ErlangNode(f"stranger@{HOST}", "not-" + COOKIE) as stranger:
        assert stranger.eval(f"net_adm:ping({quote_atom(name)}).") == "pang"


def test_an_occasional_node_connects_to_an_erlang_node(erl):
    with here():
        assert (occ.connect(erl.name), erl.name in occ.nodes()) == (True, True)


# -- Erlang to occasional ---------------------------------------------------------------------


def test_an_erlang_process_sends_to_a_registered_occasional_process_and_gets_its_reply(erl):
    with here() as name:
        occ.spawn(chat, occ.slf(), name="chat")
        assert ask(erl, name, "hello") == "hello"


def test_an_erlang_pid_arrives_as_a_pid_of_the_erlang_node(erl):
    with here() as name:
        occ.spawn(chat, occ.slf(), name="chat")
        tell(erl, name, "hello")
        _, frm, _ = occ.receive(("saw", occ.ANY, occ.ANY), timeout=15)
        assert (isinstance(frm, occ.Pid), frm.node) == (True, erl.name)


def test_terms_from_erlang_arrive_as_the_contract_maps_them(erl):
    term = (
        '{hello, <<"bytes">>, 42, -7, 123456789012345678901234567890, 1.5, true, false, undefined, [1, 2], {}, '
        '#{<<"k">> => 1, a => [b]}}'
    )
    with here() as name:
        occ.spawn(chat, occ.slf(), name="chat")
        tell(erl, name, term)
        _, _, saw = occ.receive(("saw", occ.ANY, occ.ANY), timeout=15)
        atom = occ.Atom
        assert saw == (
            atom("hello"),
            b"bytes",
            42,
            -7,
            123456789012345678901234567890,
            1.5,
            True,
            False,
            None,
            [1, 2],
            (),
            {b"k": 1, atom("a"): [atom("b")]},
        )


def test_an_atom_from_erlang_goes_back_to_erlang_as_the_same_atom(erl):
    with here() as name:
        occ.spawn(chat, occ.slf(), name="chat")
        assert ask(erl, name, "{'Quoted atom', ok}") == "{'Quoted atom',ok}"


# -- occasional to Erlang ---------------------------------------------------------------------


def test_an_occasional_process_sends_to_a_registered_erlang_process_and_gets_its_reply(erl):
    with here():
        occ.send(("echo", erl.name), (occ.slf(), b"hi"))
        tag, echo, msg = occ.receive((occ.Atom("echoed"), occ.ANY, occ.ANY), timeout=15)
        assert (tag, echo.node, msg) == (occ.Atom("echoed"), erl.name, b"hi")


def test_values_sent_to_erlang_arrive_as_the_contract_maps_them(erl):
    value = (None, True, False, 42, -7, 2**70, 1.5, "héllo", b"raw", occ.Atom("x"), [1, 2], {"k": 1}, (1,), ())
    with here():
        occ.send(("keep", erl.name), (occ.slf(), value))
        occ.receive(occ.Atom("kept"), timeout=15)
        assert erl.eval("keep ! {get, self()}, receive {kept, T} -> T after 10000 -> timeout end.") == (
            '{undefined,true,false,42,-7,1180591620717411303424,1.5,<<"héllo"/utf8>>,<<"raw">>,x,[1,2],'
            '#{<<"k">> => 1},{1},{}}'
        )


def test_a_pid_sent_to_erlang_reaches_its_process_from_there(erl):
    with here():
        occ.send(("echo", erl.name), (occ.slf(), occ.slf()))
        _, _, back = occ.receive((occ.Atom("echoed"), occ.ANY, occ.ANY), timeout=15)
        assert back == occ.slf()


def test_a_value_with_no_erlang_mapping_sent_to_an_erlang_pid_raises_type_error_naming_it(erl):
    with here():
        occ.send(("echo", erl.name), (occ.slf(), b"hi"))
        _, echo, _ = occ.receive((occ.Atom("echoed"), occ.ANY, occ.ANY), timeout=15)
        with pytest.raises(TypeError, match=naming({1, 2})):
            occ.send(echo, (occ.slf(), {1, 2}))


def test_a_value_with_no_erlang_mapping_sent_to_a_name_on_an_erlang_node_raises_type_error_naming_it(erl):
    with here(), pytest.raises(TypeError, match=naming(frozenset({3}))):
        occ.send(("echo", erl.name), (occ.slf(), frozenset({3})))
