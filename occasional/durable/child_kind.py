"""A durable process as a kind of Supervisor child (API.md section 6: "a child
may be a process, a port, a durable process or a supervisor").

behaviours imports nothing of durable (issue 11): this module teaches the
Supervisor the kind when occasional.durable is imported, as any process that
unpickles a partial of ``durable.spawn`` does. What the supervisor sees of a
durable child, and the calls it makes, are in occasional/durable/supervised.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..behaviours.child_kinds import Ended, FollowedChildKind, add_child_kind
from ..core.api import unwrap_partial
from . import supervised

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core.pid import Pid


def _spawn_args(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments a partial of durable.spawn passes it: (id, f, *args)."""
    return unwrap_partial(function, args)[1]


@dataclass(frozen=True)
class DurableChildKind(FollowedChildKind):
    """``functools.partial(durable.spawn, id, f, *args)``: the durable process ``id``,
    followed across its incarnations by its id."""

    def recognises(self, function: Callable[..., Any]) -> bool:
        return supervised.is_spawn(function)

    def check(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        full = _spawn_args(function, args)
        if (full and (not isinstance(full[0], str) or not full[0])) or (len(full) > 1 and not callable(full[1])):
            raise TypeError(
                f"child {id!r}: {function!r} does not start a durable process; "
                "use functools.partial(durable.spawn, id, f, *args) with a non-empty string id and a callable f"
            )

    def start(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> Pid | None:
        # Spawned, or resumed if it ended abnormally; None when it has returned
        # already (as OTP's ``ignore``).
        state, value = supervised.start(function, args)
        return None if state == "done" else value

    def key(self, function: Callable[..., Any], args: tuple[Any, ...]) -> str:
        durable_id: str = _spawn_args(function, args)[0]
        return durable_id

    def follow(self, key: str) -> Pid | Ended:
        state, value = supervised.follow(key)
        return Ended(value) if state == "done" else value

    def stop(self, key: str) -> None:
        supervised.stop(key)

    def ends_for_good(self, reason: Any) -> bool:
        # A durable process that returned keeps its result and never runs
        # again (API.md section 7), so not even 'permanent' restarts it.
        return bool(reason[0] == "ok")


add_child_kind(DurableChildKind())
