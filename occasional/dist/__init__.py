"""Nodes: runtimes on one machine or many that spawn, send, link and monitor
across each other on Erlang/OTP's own distribution (API.md section 11).

A runtime started with ``node="NAME@HOST"`` runs one Erlang VM beside its
central services; see occasional/dist/vm.py for how, and
docs/architecture.md for why.
"""

from __future__ import annotations

from ..core import runtime as _runtime
from ..core.api import check_name, check_pid
from ..core.context import EXTENSION_FRAMES
from ..core.pid import Pid, set_remote_ops, this_node
from . import config as _config, protocol as _protocol
from .etf import Atom as Atom
from .process import REMOTE as _REMOTE

set_remote_ops(_REMOTE)
EXTENSION_FRAMES[_protocol.DIST_CONNECT] = _REMOTE.on_connect
EXTENSION_FRAMES[_protocol.DIST_EXIT] = _REMOTE.on_exit
_runtime.add_central_hook(
    "occasional.dist.vm:install",
    ("node", "cookie", "net_ticktime"),
    _config.check,
    before_fork="occasional.dist.config:before_fork",
)


def _check_node(call: str, node: object) -> str:
    if type(node) is not str or "@" not in node:
        raise TypeError(f"{call}: {node!r} is not a node name; pass a string such as 'name@host'")
    return node


def node() -> str:
    """This node's name; ``"nonode@nohost"`` when the runtime is not a node."""
    return this_node()


def nodes() -> list[str]:
    """The nodes this one is connected to now."""
    if this_node() == "nonode@nohost":
        return []
    return _REMOTE.nodes()


def connect(node: str) -> bool:
    """Connect to ``node`` now (sending connects too); whether it worked.
    False for a node that is not running or has another cookie."""
    _check_node(f"connect({node!r})", node)
    if node == this_node():
        return True
    return _REMOTE.connect(node)


def monitor_node(node: str, flag: bool = True) -> None:
    """Deliver ``("nodedown", node)`` once when the connection to ``node`` is
    lost, at once if it cannot be reached. ``flag=False`` stops one such watch."""
    _check_node(f"monitor_node({node!r})", node)
    if not isinstance(flag, bool):
        raise TypeError(f"monitor_node({node!r}, {flag!r}): the flag is True or False")
    _REMOTE.monitor_node(node, flag)


def register_global(name: str, pid: Pid) -> None:
    """Register ``pid`` as ``name`` across every connected node (Erlang's
    ``global``); the name is freed when the process or its node goes.

    Raises:
        occasional.NameTaken: the name is held.
    """
    check_name(f"register_global({name!r})", name)
    check_pid(f"register_global({name!r}, {pid!r})", pid)
    _REMOTE.register_global(name, pid)


def whereis_global(name: str) -> Pid | None:
    """The process registered globally as ``name``, or None."""
    check_name(f"whereis_global({name!r})", name)
    return _REMOTE.whereis_global(name)


def unregister_global(name: str) -> None:
    """Free the global ``name`` (nothing if no process holds it)."""
    check_name(f"unregister_global({name!r})", name)
    _REMOTE.unregister_global(name)
