"""The control socket of a runtime, which ``occasional ps`` reads (API.md section 9).

Central listens on ``<runtime dir>/<central's pid>.sock``; the runtime dir is
``$XDG_RUNTIME_DIR/occasional`` (or ``/tmp/occasional-<uid>``), private to the
user. A client connects and central writes one msgpack map describing the
runtime and its process table, then closes. A runtime that was SIGKILLed
leaves its socket behind; clients find it refuses connections and remove it
(crash-only: nothing needs cleaning up for correctness).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Callable

import msgpack

from ..sck.frame import HEADER, Decoder

if TYPE_CHECKING:
    import asyncio

_STATES = {"R": "running", "S": "waiting", "D": "waiting", "T": "stopped", "t": "stopped", "Z": "ended", "X": "ended"}


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        return os.path.join(base, "occasional")
    return f"/tmp/occasional-{os.getuid()}"


def socket_path(central_pid: int) -> str:
    return os.path.join(runtime_dir(), f"{central_pid}.sock")


def listen(central_pid: int) -> socket.socket | None:
    """The listening socket of a runtime, or None if the runtime dir is unusable."""
    path = socket_path(central_pid)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        st = os.stat(os.path.dirname(path))
        if st.st_uid != os.getuid():
            return None  # someone else's directory: never talk through it
        try:
            os.unlink(path)  # a stale socket of a runtime that had our pid
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(16)
        sock.setblocking(False)
        return sock
    except OSError:
        return None


class Server:
    """Central's side: answers each connection with one frame, the table."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lsock: socket.socket, table: Callable[[], dict[str, Any]]) -> None:
        self.loop = loop
        self.lsock = lsock
        self.table = table
        self.path = lsock.getsockname()
        loop.add_reader(lsock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        try:
            conn, _ = self.lsock.accept()
        except OSError:
            return
        conn.setblocking(False)
        payload = msgpack.packb(self.table())
        self.loop.create_task(self._send(conn, HEADER.pack(len(payload)) + payload))

    async def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            await self.loop.sock_sendall(conn, data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.loop.remove_reader(self.lsock.fileno())
        self.lsock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def proc_state(os_pid: int) -> str:
    try:
        with open(f"/proc/{os_pid}/stat", "rb") as f:
            stat = f.read()
        letter = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3].decode()
    except (OSError, ValueError):
        return "ended"
    return _STATES.get(letter, letter)


def first_child(os_pid: int) -> int | None:
    """The oldest child of a process (a port's executable), if any."""
    try:
        with open(f"/proc/{os_pid}/task/{os_pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def cmdline(os_pid: int) -> list[str]:
    try:
        with open(f"/proc/{os_pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def read_runtime(path: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The table of one runtime; None if nothing answers there (the stale
    socket is then removed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        return None
    except OSError:
        sock.close()
        return None
    dec = Decoder()
    try:
        with sock:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    return None
                for frame in dec.feed(data):
                    table: dict[str, Any] = msgpack.unpackb(frame, raw=False)
                    return table
    except OSError:
        return None


def runtimes() -> list[dict[str, Any]]:
    """Every running runtime of this user, oldest first."""
    d = runtime_dir()
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".sock"))
    except OSError:
        return []
    found = []
    for n in names:
        table = read_runtime(os.path.join(d, n))
        if table is not None:
            found.append(table)
    found.sort(key=lambda t: t.get("started_at", 0))
    return found
