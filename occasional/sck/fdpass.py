"""Passing file descriptors over Unix sockets (SCM_RIGHTS).

On a stream socket the kernel delivers passed descriptors together with the
first byte of the ``sendmsg`` that carried them, never later. A reader keeps
every descriptor it receives in a FIFO and each frame that announces one takes
the oldest: since frames are processed in order, the descriptor is always
there when its frame is.
"""

from __future__ import annotations

import array
import socket
from collections import deque

MAX_FDS_PER_READ = 64
_ANC_SPACE = socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize)


def send_with_fds(sock: socket.socket, data: bytes | memoryview, fds: list[int]) -> int:
    """``sendmsg`` ``data`` with ``fds`` attached; returns the bytes sent."""
    return sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def recv_with_fds(sock: socket.socket, bufsize: int, fifo: deque[int], flags: int = 0) -> bytes:
    """``recvmsg`` up to ``bufsize`` bytes, appending received fds to ``fifo``.

    Received fds are close-on-exec (MSG_CMSG_CLOEXEC), like every fd Python
    opens, so an executable started later does not inherit a peer's socket.
    """
    data, ancdata, _flags, _addr = sock.recvmsg(bufsize, _ANC_SPACE, flags | socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            fifo.extend(fds)
    return data
