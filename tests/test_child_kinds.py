"""Kinds of Supervisor child: the registry that ports, durable and a user fill
(occasional/behaviours/child_kinds.py; issue 11).

The kind below is registered when this module is imported: in pytest, and in
the supervisor's process, which imports the module to unpickle its child spec.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import occasional as occ
from occasional.behaviours.supervisor import ChildKind, add_child_kind
from occasional.testing import run


def greet(recorder: occ.Pid, child_id: str) -> None:
    occ.send(recorder, ("hello", child_id, occ.slf()))
    occ.receive()


def open_greeter(recorder: occ.Pid, *, child_id: str, link: bool = False) -> occ.Pid:
    """A user's own start function, as open_port is one: it starts the process
    and returns its pid, linked to the caller when asked."""
    return occ.spawn_link(greet, recorder, child_id) if link else occ.spawn(greet, recorder, child_id)


@dataclass(frozen=True)
class GreeterKind(ChildKind):
    """``open_greeter`` or a partial of it, started with the child's id and linked."""

    def recognises(self, function: Callable[..., Any]) -> bool:
        while isinstance(function, functools.partial):
            function = function.func
        return function is open_greeter

    def start(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> occ.Pid:
        pid: occ.Pid = function(*args, child_id=id, link=True)
        return pid


add_child_kind(GreeterKind())


def test_a_supervisor_starts_a_child_of_a_kind_the_user_registered_through_that_kind():
    def main() -> tuple[Any, Any]:
        sup = occ.Supervisor.start([{"id": "greeter", "function": functools.partial(open_greeter, occ.slf())}])
        hello = occ.receive(("hello", occ.ANY, occ.ANY), timeout=10)
        ((_, pid, _),) = occ.Supervisor.which_children(sup)
        return hello, ("hello", "greeter", pid)

    hello, expected = run(main)
    assert hello == expected


def test_registering_something_that_is_not_a_child_kind_raises_type_error_naming_it():
    with pytest.raises(
        TypeError,
        match=r"^add_child_kind\(42\): 42 is not a ChildKind; pass an instance of a subclass of "
        r"occasional\.behaviours\.child_kinds\.ChildKind that defines recognises\(\) and start\(\)$",
    ):
        add_child_kind(42)  # type: ignore[arg-type]  # the wrong type is what the test is about


def test_registering_a_child_kind_class_instead_of_an_instance_raises_type_error_saying_to_instantiate_it():
    with pytest.raises(
        TypeError,
        match=r"^add_child_kind\(GreeterKind\): that is a ChildKind class, not a kind; "
        r"pass an instance, add_child_kind\(GreeterKind\(\)\)$",
    ):
        add_child_kind(GreeterKind)  # type: ignore[arg-type]  # the wrong type is what the test is about
