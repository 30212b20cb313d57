"""The kinds of child a Supervisor knows, in a registry that the layers above fill.

A child spec's ``function`` is what starts the child. A plain function runs in
a new process linked to the supervisor. Anything else is a *kind* of child
that says how it starts: a Server subclass (registered here), a port
(occasional/ports/supervised.py), a durable process
(occasional/durable/child_kind.py), a service of ``occasional up``
(occasional/up/serve.py), or a kind of the user's own. behaviours imports none
of those layers: each one registers its kind with :func:`add_child_kind`
(issue 11: "The Supervisor learns child kinds from a registry that ports and
durable fill").

Register a kind when the module that defines its start function is imported,
not later: a supervisor is a process of its own, and it learns the kinds that
the modules it imports (to unpickle its child specs) register.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.api import unwrap_partial
from .server import Server

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core.pid import Pid


class ChildKind(abc.ABC):
    """One kind of Supervisor child: which start functions it recognises, and how
    a supervisor starts one.

    Subclass it, define :meth:`recognises` and :meth:`start`, and register an
    instance with :func:`add_child_kind`. The supervisor stops such a child as
    any other: it unlinks it, sends it an exit signal (``("killed",
    "shutdown")``, or a kill for ``"brutal_kill"``) and waits for its end.
    """

    @abc.abstractmethod
    def recognises(self, function: Callable[..., Any]) -> bool:
        """True if the child spec's ``function`` starts a child of this kind."""

    def check(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Check a spec of this kind whole, in the caller, before any process starts
        (``ChildSpec``); raise ``TypeError`` or ``ValueError`` naming child ``id``.
        Accepts everything unless a kind says otherwise."""
        return None

    @abc.abstractmethod
    def start(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> Pid | None:
        """Start child ``id`` as ``function(*args)``, linked to the calling
        supervisor, and return its pid once it runs; ``None`` when it has nothing
        to run (OTP's ``ignore``: it stays in the supervisor with no pid).
        Raising ``ProcessExit`` says that it failed to start."""

    def ends_for_good(self, reason: Any) -> bool:
        """True if a child of this kind that ended with ``reason`` must never start
        again, whatever its restart type (a durable process that returned)."""
        return False


class FollowedChildKind(ChildKind):
    """A child that is more than one Linux process over its life: the runtime
    starts new *incarnations* of it (a durable process, occasional/durable/supervised.py).

    The supervisor knows it by a key (:meth:`key`). Each incarnation is linked
    to the supervisor; when one ends, the supervisor asks :meth:`follow` where
    the child is now, and only an :class:`Ended` answer is an end of the child.
    A pid whose ``id`` is 0 stands for a child with no process right now (a
    durable process asleep); any EXIT the supervisor cannot place may then be
    from its next incarnation, so it asks again. :meth:`stop` ends the child
    for good, whichever incarnation runs; the spec's ``shutdown`` time does not
    apply.
    """

    @abc.abstractmethod
    def key(self, function: Callable[..., Any], args: tuple[Any, ...]) -> str:
        """What the child started by ``function(*args)`` is followed by."""

    @abc.abstractmethod
    def follow(self, key: str) -> Pid | Ended:
        """Link the calling supervisor to the child's current incarnation and return
        its pid, or :class:`Ended` with its final reason once it has ended."""

    @abc.abstractmethod
    def stop(self, key: str) -> None:
        """End the child for good (``("killed", "shutdown")``) and forget the caller as
        its follower; return once it has ended."""


@dataclass(frozen=True)
class Ended:
    """What :meth:`FollowedChildKind.follow` returns for a child that has ended."""

    reason: Any


_kinds: list[ChildKind] = []


def add_child_kind(kind: ChildKind) -> None:
    """Teach every Supervisor of this interpreter a kind of child.

    Kinds are asked in the order they were added; the first that recognises a
    spec's function starts the child, and a function none recognises runs in a
    plain linked process. Adding a kind equal to one already added does nothing,
    so a module may register its kind at import.

    Raises:
        TypeError: ``kind`` is not an instance of a :class:`ChildKind` subclass.
    """
    if isinstance(kind, type) and issubclass(kind, ChildKind):
        raise TypeError(
            f"add_child_kind({kind.__qualname__}): that is a ChildKind class, not a kind; "
            f"pass an instance, add_child_kind({kind.__qualname__}())"
        )
    if not isinstance(kind, ChildKind):
        raise TypeError(
            f"add_child_kind({kind!r}): {kind!r} is not a ChildKind; pass an instance of a subclass of "
            "occasional.behaviours.child_kinds.ChildKind that defines recognises() and start()"
        )
    if kind not in _kinds:
        _kinds.append(kind)


def child_kind_of(function: Callable[..., Any]) -> ChildKind | None:
    """The registered kind that recognises ``function``; None for a plain function."""
    for kind in _kinds:
        if kind.recognises(function):
            return kind
    return None


@dataclass(frozen=True)
class ServerChildKind(ChildKind):
    """A Server subclass, its bound ``start`` (a Supervisor's: a subtree), or a
    partial of either: started by its own ``start(*args, link=True)``."""

    def recognises(self, function: Callable[..., Any]) -> bool:
        f = unwrap_partial(function)[0]
        if isinstance(f, type):
            return issubclass(f, Server)
        owner = getattr(f, "__self__", None)
        return isinstance(owner, type) and issubclass(owner, Server) and getattr(f, "__name__", None) == "start"

    def start(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> Pid:
        f: Any = function
        start = f.start if isinstance(f, type) and issubclass(f, Server) else f
        pid: Pid = start(*args, link=True)
        return pid


add_child_kind(ServerChildKind())
