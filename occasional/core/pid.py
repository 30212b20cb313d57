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
    # process's address routes through the journal (occasional.durable), a
    # process on another node through this node's Erlang VM (occasional.dist).
    _occ_route: Any = None
    # None for a process of this runtime; a RemotePid's identity on its node.
    _remote: Any = None

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
        if _this_node != "nonode@nohost" and type(self) is Pid:
            # Pickled (a spawn's arguments) on a node: a pid of this node there.
            return (_make_remote_address, (_this_node, self.id, self.os_pid, None))
        return (_make_address, (type(self).__name__, self.id, self.os_pid))

    @property
    def node(self) -> str:
        """The node this process lives on (API.md section 11)."""
        return _this_node

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pid) and other.id == self.id and other._remote == self._remote

    def __ne__(self, other: object) -> bool:
        return not (isinstance(other, Pid) and other.id == self.id and other._remote == self._remote)

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


class RemotePid(Pid):
    """A process on another node (API.md section 11): an occasional process
    there (``etf`` None), or an Erlang process, whose pid travels as the bytes
    of its external term format (``etf``) and whose ``id`` is then -1.

    Made by decoding a message that came from another node; sent back there,
    it is that node's own Pid again."""

    __slots__ = ("node", "etf", "_remote")
    __module__ = "occasional"
    node: str  # a slot here, a property on Pid
    etf: bytes | None

    @classmethod
    def _make_remote(cls, node: str, id: int, os_pid: int, etf: bytes | None = None) -> RemotePid:
        self = _new(cls)
        _set_id(self, id)
        _set_os_pid(self, os_pid)
        _set_node(self, node)
        _set_etf(self, etf)
        _set_remote(self, (node, etf))
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_remote_address, (self.node, self.id, self.os_pid, self.etf))

    def __hash__(self) -> int:
        return hash(("occ-pid", self.id, self.node))

    def _occ_route(self, msg: Any) -> None:
        remote_ops().send(self, msg)

    def __repr__(self) -> str:
        if self.etf is not None:
            return f"<erlang pid on {self.node}>"
        return f"<occ {self.os_pid} on {self.node}>"


class RemoteOps:
    """What the verbs of core do with a RemotePid: filled by occasional.dist
    (core never imports it, docs/architecture.md). Until then, every verb
    says that this runtime is not a node."""

    def _not_a_node(self, *args: Any) -> Any:
        raise RuntimeError(
            "this runtime is not a node, so it cannot reach other nodes; "
            'start it with node="name@host" (API.md section 11)'
        )

    send = send_bytes = send_named = spawn = monitor = demonitor = link = unlink = kill = exit_signal = _not_a_node


_remote_ops: list[RemoteOps] = [RemoteOps()]


def remote_ops() -> RemoteOps:
    return _remote_ops[0]


def set_remote_ops(ops: RemoteOps) -> None:
    _remote_ops[0] = ops


# This runtime's node name: "nonode@nohost" until it is a node (API.md section 11).
_this_node = "nonode@nohost"


def this_node() -> str:
    return _this_node


def set_this_node(name: str) -> None:
    global _this_node
    _this_node = name


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
_set_node = RemotePid.__dict__["node"].__set__
_set_etf = RemotePid.__dict__["etf"].__set__
_set_remote = RemotePid.__dict__["_remote"].__set__


def _make_remote_address(node: str, id: int, os_pid: int, etf: bytes | None) -> Pid:
    if node == _this_node and etf is None:
        return Pid._make(id, os_pid)
    return RemotePid._make_remote(node, id, os_pid, etf)


def _make_address(kind: str, a: int, b: int) -> Pid | Ref:
    if kind == "Ref":
        return Ref._make(a, b)
    return (Port if kind == "Port" else Pid)._make(a, b)
