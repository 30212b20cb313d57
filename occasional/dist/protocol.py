"""Frames of a node: between central and a process (op codes claimed from
core's protocol, like durable's), and between a process and its proxy in the
node's Erlang VM (occasional/dist/erlang/occ_dist.erl, ``from_process``).
"""

from __future__ import annotations

from ..core import protocol as P

# central -> process
DIST_CONNECT = 80  # [DIST_CONNECT]: your proxy holds messages for you; connect to the VM
DIST_EXIT = 81  # [DIST_EXIT, from_pid_bytes, wire_reason, origin_node]: a trapped exit from another node

P.add_ops("dist", {}, (DIST_CONNECT, DIST_EXIT))

# process -> proxy: the first byte of a frame
TO_PID = 1  # node, id, os_pid, payload: to an occasional process on another node
TO_NAME = 2  # node, name, payload: to a registered name on an occasional node
TO_ERLANG = 3  # ETF {Dest, Term}: to an Erlang process (a pid, or {Name, Node})
REQUEST = 4  # ETF: monitor, link, spawn, ... (occ_dist.erl, request/2)
HELLO = 0  # token, id, os_pid: the first frame of a connection

# proxy -> process
FROM_OCC = 1  # node, payload: a message from an occasional process
FROM_ERLANG = 2  # ETF: a term from an Erlang process
CONTROL = 3  # ETF: {down, RefN, Reason}, {reply, ReqN, Value}, {nodedown, Node}

CHANNEL = -2  # the key of the VM's connection among a process's peer sockets
