"""Frames of sockets (issue 14): a socket handed to another process goes
through central with its fd attached (SCM_RIGHTS), like a peer socket."""

from __future__ import annotations

from typing import Any

from ..core import protocol as P

N_HANDOVER = 90  # [N_HANDOVER, req, target_id, sock_id, meta] + the fd -> None, or NoProcess
N_SOCKET = 91  # central -> process: [N_SOCKET, sock_id, meta] + the fd: a socket it now owns


def _sock_id(v: Any) -> bool:
    return type(v) is list and len(v) == 2 and all(type(x) is int for x in v)


P.add_ops(
    "net",
    {
        N_HANDOVER: (
            "N_HANDOVER",
            (
                P.REQ,
                P.field("target", "a pid id (int)", lambda v: type(v) is int),
                P.field("sock_id", "[int, int]", _sock_id),
                P.field("meta", "a dict", lambda v: type(v) is dict),
            ),
        )
    },
    (N_SOCKET,),
)
