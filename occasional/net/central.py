"""Central's side of sockets (issue 14): relay a socket's fd from its owner to
the process it hands it to."""

from __future__ import annotations

import os
from typing import Any

from ..core.central import Central
from ..core.table import Proc
from . import protocol as N


def install(central: Central, options: dict[str, Any]) -> None:
    def op_handover(p: Proc, msg: list[Any]) -> None:
        _, req, target_id, sock_id, meta = msg
        if p.conn is None or not p.conn.fds:
            central.error(p, req, "ValueError", "controlling_process(): no socket came with the request")
            return
        fd = p.conn.fds.popleft()
        target = central.lookup(target_id)
        if target is None or target.conn is None:
            os.close(fd)
            central.error(p, req, "NoProcess", f"process {target_id}")
            return
        target.conn.send([N.N_SOCKET, sock_id, meta], [fd])  # closes our copy once sent
        central.reply(p, req, None)

    central.add_ops("net", {N.N_HANDOVER: op_handover})
