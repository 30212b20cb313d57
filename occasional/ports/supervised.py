"""A port as a kind of Supervisor child (API.md section 6: "a child may be a
process, a port, a durable process or a supervisor").

A child spec starts a port with a partial of ``open_port``; the supervisor
starts it with ``link=True`` and stops it as any child: the exit signal ends
the executable with SIGTERM, then SIGKILL after the spec's ``shutdown``
(occasional/ports/driver.py).

behaviours imports nothing of ports (issue 11): occasional.ports registers
this kind when it is imported, as any process that unpickles a partial of
``open_port`` does. It passes ``open_port`` in, so that this module does not
import the package that imports it (tests/test_architecture.py: no cycles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..behaviours.child_kinds import ChildKind, add_child_kind
from ..core.api import unwrap_partial

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core.pid import Pid


@dataclass(frozen=True)
class PortChildKind(ChildKind):
    """``open_port`` or a partial of it."""

    open_port: Callable[..., Pid]

    def recognises(self, function: Callable[..., Any]) -> bool:
        return unwrap_partial(function)[0] is self.open_port

    def start(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> Pid:
        port: Pid = function(*args, link=True)
        return port


def register(open_port: Callable[..., Pid]) -> None:
    """Teach the Supervisor that a partial of ``open_port`` starts a port."""
    add_child_kind(PortChildKind(open_port))
