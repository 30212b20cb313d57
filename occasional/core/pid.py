"""Addresses the runtime makes: Pid, Port and Ref.

They have no public constructor (STYLE.md, "Public API and names"): a Pid
comes from ``spawn``, ``slf`` or ``whereis``, a Ref from ``monitor``. Each is
identified by a number that is unique within its runtime, so a Pid stays equal
to itself after a round trip through messages, and two processes that
happened to get the same Linux pid are still different Pids.
"""

from __future__ import annotations

from typing import Any, Self


class Pid:
    """A process of the runtime. ``pid.os_pid`` is its Linux pid."""

    __slots__ = ("id", "os_pid")
    __module__ = "occasional"
    id: int
    os_pid: int
    # How send() reaches a Pid that is not a plain socket peer: a durable
    # process's address routes through the journal (occasional.durable).
    _occ_route: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Pid:
        raise TypeError(
            f"occasional.{cls.__name__} has no public constructor; get pids from spawn(), slf() or whereis()"
        )

    @classmethod
    def _make(cls, id: int, os_pid: int) -> Self:
        self = _new(cls)
        _set_id(self, id)
        _set_os_pid(self, os_pid)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_address, (type(self).__name__, self.id, self.os_pid))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pid) and other.id == self.id

    def __ne__(self, other: object) -> bool:
        return not (isinstance(other, Pid) and other.id == self.id)

    def __hash__(self) -> int:
        return hash(("occ-pid", self.id))

    def __lt__(self, other: Pid) -> bool:
        if not isinstance(other, Pid):
            return NotImplemented
        return self.id < other.id

    def __le__(self, other: Pid) -> bool:
        if not isinstance(other, Pid):
            return NotImplemented
        return self.id <= other.id

    def __gt__(self, other: Pid) -> bool:
        if not isinstance(other, Pid):
            return NotImplemented
        return self.id > other.id

    def __ge__(self, other: Pid) -> bool:
        if not isinstance(other, Pid):
            return NotImplemented
        return self.id >= other.id

    def __repr__(self) -> str:
        return f"<occ {self.os_pid}>"


class Port(Pid):
    """A native executable run as a process of the runtime (occasional.ports)."""

    __slots__ = ()
    __module__ = "occasional"

    def __new__(cls, *args: Any, **kwargs: Any) -> Port:
        raise TypeError("occasional.Port has no public constructor; get ports from occasional.ports.open_port()")

    def __repr__(self) -> str:
        return f"<occ port {self.os_pid}>"


class Ref:
    """A unique reference, as made by ``monitor``."""

    __slots__ = ("owner", "n")
    __module__ = "occasional"
    owner: int
    n: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Ref:
        raise TypeError("occasional.Ref has no public constructor; get refs from monitor() or spawn_monitor()")

    @classmethod
    def _make(cls, owner: int, n: int) -> Ref:
        self = _new(cls)
        _set_owner(self, owner)
        _set_n(self, n)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Ref is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_address, ("Ref", self.owner, self.n))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.owner == self.owner and other.n == self.n

    def __hash__(self) -> int:
        return hash(("occ-ref", self.owner, self.n))

    def __lt__(self, other: Ref) -> bool:
        if not isinstance(other, Ref):
            return NotImplemented
        return (self.owner, self.n) < (other.owner, other.n)

    def __repr__(self) -> str:
        return f"<occ ref {self.owner}.{self.n}>"


# Slot setters, bypassing the __setattr__ that makes these values immutable
# (a Pid is decoded for every message that carries one).
_new = object.__new__
_set_id = Pid.__dict__["id"].__set__
_set_os_pid = Pid.__dict__["os_pid"].__set__
_set_owner = Ref.__dict__["owner"].__set__
_set_n = Ref.__dict__["n"].__set__


def _make_address(kind: str, a: int, b: int) -> Pid | Ref:
    if kind == "Ref":
        return Ref._make(a, b)
    return (Port if kind == "Port" else Pid)._make(a, b)
