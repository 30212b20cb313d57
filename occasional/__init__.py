"""occasional: Erlang-style processes for Python, where every process is a real
Linux process.

The contract is API.md; this module only re-exports it. Map of the package,
top layer first; imports flow one way, down (``cli``, ``up`` -> ``ports``,
``durable`` -> ``behaviours`` -> ``core`` -> ``sck``), and a lower layer that
needs an upper one offers a hook or a registry for it to fill
(tests/test_architecture.py checks the graph):

- ``occasional.cli``: the ``occasional`` command.
- ``occasional.up``: ``occasional up`` and its services file, a tree of
  supervised ports and function services.
- ``occasional.ports``: native executables as processes (public).
- ``occasional.durable``: journaled processes that replay after a crash (public).
- ``occasional.behaviours``: Server (gen_server) and Supervisor, on the core;
  the Supervisor's kinds of child come from a registry that ports and durable
  fill (``behaviours.child_kinds``).
- ``occasional.core``: central services: dispatch and exit propagation
  (``central``), the process table, the only writer of processes, names,
  links and monitors (``table``), core's request handlers (``requests``),
  the transport (``transport``), reaping with pidfds (``reaping``), the
  control socket (``control``), boot (``boot``); the forkserver; a process's
  side: its context (``context``), mailbox (``mailbox``) and peer sockets
  (``peers``); matching, reasons, the checks of seconds and counts
  (``checks``), the wire codec and the op codes (``protocol``). Internal, but for the surface extensions use (``Central``'s
  public methods, ``Context``'s, ``protocol.add_ops``).
- ``occasional.sck``: length-prefixed frames and fd passing. Internal.
- ``occasional.testing``: our pytest plugin, opt-in (``-p occasional.testing.plugin``),
  and ``run`` for tests. Not imported here.

This facade stands above the libraries it re-exports: none of them imports it.
"""

import logging as _logging

from . import (  # public subpackages: occasional.durable (API.md section 7), occasional.net (section 12)
    durable as durable,
    net as net,
)
from .behaviours.server import Server as Server, call as call, cast as cast, noreply as noreply, reply as reply
from .behaviours.supervisor import Supervisor as Supervisor, TooManyRestarts as TooManyRestarts
from .core import forkserver as _forkserver
from .core.api import (
    demonitor as demonitor,
    kill as kill,
    link as link,
    monitor as monitor,
    process_info as process_info,
    processes as processes,
    receive as receive,
    register as register,
    registered as registered,
    send as send,
    slf as slf,
    spawn as spawn,
    spawn_link as spawn_link,
    spawn_monitor as spawn_monitor,
    trap_exits as trap_exits,
    unlink as unlink,
    unregister as unregister,
    whereis as whereis,
)
from .core.errors import NameTaken as NameTaken, NoProcess as NoProcess, ProcessExit as ProcessExit
from .core.match import ANY as ANY
from .core.pid import Pid as Pid, Port as Port, Ref as Ref
from .core.reasons import format_reason as format_reason
from .core.runtime import run as run, runtime as runtime, start as start, stop as stop
from .dist import (  # nodes on Erlang's distribution (API.md section 11)
    Atom as Atom,
    connect as connect,
    monitor_node as monitor_node,
    node as node,
    nodes as nodes,
    register_global as register_global,
    unregister_global as unregister_global,
    whereis_global as whereis_global,
)

_logging.getLogger("occasional").addHandler(_logging.NullHandler())

# Every port process runs the port driver: the forkserver imports it once, for
# all of them to share, instead of each importing it after its fork (issue 15).
_forkserver.PRELOAD.append("occasional.ports.driver")

__all__ = [
    "run", "start", "stop", "runtime",
    "spawn", "spawn_link", "spawn_monitor", "slf", "Pid", "Ref", "Port",
    "send", "receive", "ANY",
    "monitor", "demonitor", "link", "unlink", "trap_exits", "kill", "format_reason",
    "register", "unregister", "whereis", "registered", "processes", "process_info",
    "ProcessExit", "NoProcess", "NameTaken",
    "Server", "call", "cast", "reply", "noreply", "Supervisor", "TooManyRestarts",
    "node", "nodes", "connect", "monitor_node", "register_global", "whereis_global", "unregister_global", "Atom",
]  # fmt: skip
