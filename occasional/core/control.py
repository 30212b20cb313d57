"""The control socket of a runtime, which ``occasional ps`` reads (API.md section 9).

Central listens on ``<runtime dir>/<central's pid>.sock``; the runtime dir is
``$XDG_RUNTIME_DIR/occasional`` (or ``/tmp/occasional-<uid>``), private to the
user. A client connects and central writes one msgpack map describing the
runtime and its process table, then closes. A runtime that was SIGKILLed
leaves its socket behind; clients find it refuses connections and remove it
(crash-only: nothing needs cleaning up for correctness).

Trust (API.md section 10, issue 10): a runtime answers only its own user.
The directory is opened without following a symlink and used only if this
user owns it and nobody else can write to it; both ends then work through
that open directory (``/proc/self/fd/N/...``), so it cannot be swapped for
another after the check, and both ends check the other's uid (SO_PEERCRED).
A neighbour who planted ``/tmp/occasional-<uid>`` before us gets a warning
naming it, not our table; the runtime runs on without a control socket.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from ..sck.frame import HEADER, Decoder, FrameError

if TYPE_CHECKING:
    import asyncio

    from .table import Proc

log = logging.getLogger("occasional.core")

_STATES = {"R": "running", "S": "waiting", "D": "waiting", "T": "stopped", "t": "stopped", "Z": "ended", "X": "ended"}

# `occasional ps` gives up on what has not answered after PS_DEADLINE seconds,
# all sockets together (a runtime answers from its event loop in well under a
# millisecond; one that does not is hung or not a runtime).
PS_DEADLINE = 5.0
# The largest table `occasional ps` accepts from one socket: a row is about 150
# bytes of msgpack (measured: a supervisor's children), so 16 MiB is 100,000
# processes, each a Linux process of 10 MiB or more (1 TB of RSS), far past any
# runtime, and still 16,000 with a 1 KiB argv each; a larger frame header is
# garbage or hostile, and the socket is skipped, its frame never buffered.
PS_MAX_FRAME = 16 * 2**20

_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid, uid_t uid, gid_t gid


class UnsafeDirectory(Exception):
    """The runtime dir is not private to this user; ``str()`` says why and what to do."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(path, problem, fix)
        self.path = path
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"the control socket directory {self.path!r} {self.problem}; {self.fix}"


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        return os.path.join(base, "occasional")
    return f"/tmp/occasional-{os.getuid()}"


def open_dir(path: str, *, create: bool) -> int | None:
    """An fd of ``path`` if it is a directory that only this user can change;
    None if it does not exist and ``create`` is false.

    Raises:
        UnsafeDirectory: a symlink, not a directory, another user's, or
            writable by group or others.
    """
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # checked below, like one we did not make
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as e:  # ENOTDIR for a symlink, given O_NOFOLLOW with O_DIRECTORY
        if os.path.islink(path):
            raise UnsafeDirectory(
                path, "is a symbolic link", "remove it; occasional makes the directory itself, 0700"
            ) from None
        if isinstance(e, NotADirectoryError):
            raise UnsafeDirectory(
                path, "is not a directory", "remove it; occasional makes the directory itself, 0700"
            ) from None
        raise
    st = os.fstat(fd)
    me = os.geteuid()
    if st.st_uid != me:
        os.close(fd)
        raise UnsafeDirectory(
            path,
            f"belongs to uid {st.st_uid}, not to this user (uid {me})",
            "have it removed (its owner or root can), or set XDG_RUNTIME_DIR to a directory of your own",
        )
    if st.st_mode & 0o022:
        os.close(fd)
        raise UnsafeDirectory(
            path,
            f"can be written by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"make it private with chmod 700 {path!r}",
        )
    return fd


def peer_uid(sock: socket.socket) -> int:
    """The effective uid of the process at the other end of a Unix socket."""
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid


class _Listening(socket.socket):
    """A listening socket that remembers the directory it was bound in, by fd."""

    __slots__ = ("dir_fd", "name")

    dir_fd: int
    name: str


def listen(central_pid: int) -> socket.socket | None:
    """The listening socket of a runtime, or None (with a WARNING saying why)
    if the runtime dir is unusable: the runtime then runs without one."""
    path = runtime_dir()
    try:
        dir_fd = open_dir(path, create=True)
    except UnsafeDirectory as e:
        log.warning("%s. This runtime runs without a control socket: `occasional ps` will not list it", e)
        return None
    except OSError as e:
        log.warning(
            "cannot make the control socket directory %r (%s); this runtime runs without a control socket", path, e
        )
        return None
    assert dir_fd is not None
    name = f"{central_pid}.sock"
    sock = _Listening(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.dir_fd, sock.name = dir_fd, name
    try:
        try:
            os.unlink(name, dir_fd=dir_fd)  # a stale socket of a runtime that had our pid
        except FileNotFoundError:
            pass
        # Bound through the fd checked above, never through the path again.
        sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
        sock.listen(16)
        sock.setblocking(False)
        return sock
    except OSError as e:
        log.warning("cannot listen on %r (%s); this runtime runs without a control socket", os.path.join(path, name), e)
        sock.close()
        os.close(dir_fd)
        return None


class Server:
    """Central's side: answers each connection of its own user with one frame, the table."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, lsock: socket.socket, table: Callable[[], dict[str, Any]]
    ) -> None:
        self.loop = loop
        self.lsock = lsock
        self.table = table
        self.uid = os.geteuid()
        loop.add_reader(lsock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        try:
            conn, _ = self.lsock.accept()
        except OSError:
            return
        try:
            uid = peer_uid(conn)
        except OSError:
            uid = -1
        if uid != self.uid:
            # Only root can reach into our 0700 directory; it still gets nothing
            # (API.md section 10: no socket accepts a peer of another user).
            log.warning(
                "refused a connection to the control socket from uid %d: a runtime answers only its own user (uid %d)",
                uid,
                self.uid,
            )
            conn.close()
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
        if isinstance(self.lsock, _Listening):
            try:
                os.unlink(self.lsock.name, dir_fd=self.lsock.dir_fd)
            except OSError:
                pass
            os.close(self.lsock.dir_fd)


def proc_state(os_pid: int) -> str:
    try:
        with open(f"/proc/{os_pid}/stat", "rb") as f:
            data = f.read()
        letter = data[data.rindex(b")") + 2 : data.rindex(b")") + 3].decode()
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


def rss(os_pid: int) -> int | None:
    """Resident memory of a Linux process, in bytes (None when it cannot be read)."""
    try:
        with open(f"/proc/{os_pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def snapshot(procs: Iterable[Proc], started_at: float) -> dict[str, Any]:
    """What ``occasional ps`` shows of a runtime: central's process table ``procs``."""
    now = time.monotonic()
    owner = None
    rows = []
    for p in procs:
        if p.owner:
            owner = p
        if p.finalized or (p.hidden and not p.owner):
            continue
        port = p.argv is not None
        rows.append(
            {
                "id": p.id,
                "os_pid": p.os_pid,
                "name": p.name,
                "child_id": p.child_id,
                "kind": "owner" if p.owner else "port" if port else "process",
                "function": None if port else p.function,
                "argv": p.argv if port else (cmdline(p.os_pid) if p.owner and p.os_pid else None),
                "state": "starting" if p.os_pid is None else proc_state(p.os_pid),
                "restarts": p.restarts,
                "uptime_s": round(now - p.started_mono, 3),
                "rss_bytes": rss(p.os_pid) if p.os_pid else None,
                "exe_pid": first_child(p.os_pid) if port and p.os_pid else None,
            }
        )
    return {
        "central": os.getpid(),
        "owner": owner.os_pid if owner is not None else None,
        "command": cmdline(owner.os_pid) if owner is not None and owner.os_pid else [],
        "started_at": started_at,
        "processes": rows,
    }


@dataclass
class Scan:
    """What ``occasional ps`` found: the tables of the runtimes that answered,
    oldest first, and a line for each socket it skipped, saying why."""

    tables: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def runtimes(deadline: float = PS_DEADLINE, max_frame: int = PS_MAX_FRAME) -> Scan:
    """Every running runtime of this user, read all at once within ``deadline``
    seconds: one that never answers costs the deadline once, not per socket.

    Raises:
        UnsafeDirectory: the runtime dir is not private to this user; nothing
            in it was read.
    """
    dir_fd = open_dir(runtime_dir(), create=False)
    scan = Scan()
    if dir_fd is None:
        return scan
    try:
        _read_all(dir_fd, sorted(n for n in os.listdir(dir_fd) if n.endswith(".sock")), deadline, max_frame, scan)
    finally:
        os.close(dir_fd)
    scan.tables.sort(key=lambda t: t.get("started_at") or 0)
    return scan


class _Reader:
    """One socket being read: a Decoder that keeps at most ``max_frame`` bytes."""

    def __init__(self, name: str, sock: socket.socket, max_frame: int) -> None:
        self.name = name
        self.sock = sock
        self.decoder = Decoder(max_frame=max_frame)


def _read_all(dir_fd: int, names: list[str], deadline: float, max_frame: int, scan: Scan) -> None:
    end = time.monotonic() + deadline
    sel = selectors.DefaultSelector()
    try:
        for name in names:
            connected = _connect(dir_fd, name, max_frame, scan)
            if connected is not None:
                sel.register(connected.sock, selectors.EVENT_READ, connected)
        while sel.get_map():
            left = end - time.monotonic()
            ready = sel.select(left) if left > 0 else []
            if not ready:
                for key in list(sel.get_map().values()):
                    scan.skipped.append(f"{key.data.name}: no answer within {deadline:g} s")
                    sel.unregister(key.fileobj)
                    key.data.sock.close()  # the registered fileobj: a _Reader's socket
                return
            for key, _ in ready:
                reader: _Reader = key.data
                done = _read_some(reader, scan)
                if done:
                    sel.unregister(reader.sock)
                    reader.sock.close()
    finally:
        for key in list(sel.get_map().values()):
            key.data.sock.close()
        sel.close()


def _connect(dir_fd: int, name: str, max_frame: int, scan: Scan) -> _Reader | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        # Through the directory fd checked by open_dir, never through the path again.
        sock.connect(f"/proc/self/fd/{dir_fd}/{name}")
        uid = peer_uid(sock)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        try:
            os.unlink(name, dir_fd=dir_fd)  # a runtime that was SIGKILLed left it
        except OSError:
            pass
        return None
    except BlockingIOError:
        sock.close()
        scan.skipped.append(f"{name}: busy (its queue of connections is full)")
        return None
    except OSError as e:
        sock.close()
        scan.skipped.append(f"{name}: cannot connect ({e.strerror or e})")
        return None
    me = os.geteuid()
    if uid != me:
        sock.close()
        scan.skipped.append(f"{name}: refused, it is served by uid {uid}, not by this user (uid {me})")
        return None
    return _Reader(name, sock, max_frame)


def _read_some(reader: _Reader, scan: Scan) -> bool:
    """Read what the socket holds; True once this socket is done with."""
    try:
        data = reader.sock.recv(1 << 16)
    except BlockingIOError:
        return False
    except OSError as e:
        scan.skipped.append(f"{reader.name}: {e.strerror or e}")
        return True
    try:
        if not data:
            reader.decoder.close()
            scan.skipped.append(f"{reader.name}: closed without an answer")
            return True
        frames = reader.decoder.feed(data)
    except FrameError as e:
        scan.skipped.append(f"{reader.name}: {e}")
        return True
    if not frames:
        # A header over max_frame: skipped now, its frame never awaited nor buffered.
        error = getattr(reader.decoder, "error", None)
        if error is not None:
            scan.skipped.append(f"{reader.name}: {error}")
            return True
        return False
    try:
        table = msgpack.unpackb(frames[0], raw=False)
    except Exception as e:  # msgpack raises several types for bad bytes
        scan.skipped.append(f"{reader.name}: its answer is not msgpack ({type(e).__name__})")
        return True
    if not isinstance(table, dict) or not isinstance(table.get("processes"), list):
        scan.skipped.append(f"{reader.name}: its answer is not a runtime's table")
        return True
    scan.tables.append(table)
    return True
