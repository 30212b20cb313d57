"""A process's view of the runtime: its mailbox, its peers and central.

One :class:`Context` per process, and which one is the calling process's
(:func:`current`). It multiplexes the socket to central, every peer socket
(:mod:`.peers`) and the fds an upper layer watches with epoll; ``receive``
(:mod:`.mailbox`) drains whatever is readable into the in-memory mailbox,
then scans it with the match (ARCHITECTURE.md, "Mailbox").
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

from ..sck.fdpass import recv_with_fds, send_with_fds
from ..sck.frame import HEADER, Decoder
from . import codec, protocol as P
from .errors import NameTaken, NoProcess, no_runtime
from .peers import PeerSockets
from .pid import Pid, Ref, _make_remote_address, remote_ops
from .reasons import format_reason

_RECV = 1 << 18
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_NOWAIT = socket.MSG_DONTWAIT
_pack_frame = HEADER.pack
_packb = msgpack.packb
_unpackb = msgpack.unpackb
_now = time.monotonic
_clock = time.perf_counter
_ERRORS: dict[str, Callable[..., BaseException]] = {
    "NameTaken": NameTaken,
    "NoProcess": NoProcess,
    "TypeError": TypeError,
    "ValueError": ValueError,
    "RuntimeError": RuntimeError,
}


def reason_from_wire(wire: list[Any], origin: str | None = None) -> tuple[str, Any]:
    """A reason as central sends it; ``origin``: the node it came from, whose
    pids it names (API.md section 11). A linked reason's pid is a process of
    this node, ``[id, os_pid, inner]``, or of another, ``[id, os_pid, inner,
    node, etf]`` (etf: an Erlang pid's bytes, or None)."""
    kind, detail = wire
    if kind == "linked":
        pid_id, os_pid, inner, *where = detail
        if where:
            node, etf = where
            return ("linked", (_make_remote_address(node, pid_id, os_pid, etf), reason_from_wire(inner, node)))
        if origin is not None:
            return ("linked", (_make_remote_address(origin, pid_id, os_pid, None), reason_from_wire(inner, origin)))
        return ("linked", (Pid._make(pid_id, os_pid), reason_from_wire(inner)))
    try:
        return (kind, codec.loads(detail) if origin is None else codec.loads_from(detail, origin))
    except Exception as e:
        # Central checks a reason's shape but cannot check the pickles in it
        # without running them: an exception class this process cannot
        # import must not break the watcher that receives the DOWN (issue 10).
        return (
            kind,
            RuntimeError(f"the detail of a {kind!r} reason ({len(detail)} bytes) could not be decoded here: {e}"),
        )


# Handlers of control frames that extensions send through central to a
# process (op code -> handler(ctx, frame)): occasional.dist's wake-ups.
EXTENSION_FRAMES: dict[int, Callable[[Context, list[Any]], None]] = {}


def busy_wait_from(environ: dict[str, str] | os._Environ[str]) -> float:
    """Seconds a waiting process busy-waits before it sleeps: ``OCC_BUSY_WAIT_US``
    (microseconds, 0 turns it off), else 50 µs."""
    text = environ.get("OCC_BUSY_WAIT_US")
    if text is None:
        return 50e-6
    try:
        us = int(text)
    except ValueError:
        us = -1
    if not 0 <= us <= 1_000_000:
        raise ValueError(
            f"OCC_BUSY_WAIT_US={text!r} is not a number of microseconds from 0 to 1000000; "
            "set it to, say, 50, or to 0 to let a waiting process sleep at once"
        )
    return us / 1e6


# Seconds a process that waits in receive busy-waits before it sleeps (see Context.pump).
BUSY_WAIT = busy_wait_from(os.environ)


class Context(PeerSockets):
    """Everything the calling process knows of its runtime.

    The surface the layers above core use (behaviours, ports, durable; issue 11):

    * who: ``pid``; ``closed`` once the runtime ended; ``trapping``, the
      trap_exits flag; ``spawn_meta``, extra facts sent with every spawn (a
      supervisor's restart count); ``journaled``.
    * central: ``call(op, *args)`` waits for the answer; ``request(op, *args)``
      sends and returns the request number, ``wait_reply(req, deadline)``
      waits for its answer; ``tell(frame)`` sends a frame nobody answers.
    * messages: ``send_bytes``, ``send_framed``, ``queued_bytes`` (flow
      control); ``receive(pred, timeout)``, ``post``, ``discard_message``,
      ``drop_on_arrival``; ``mailbox``, to read (take with receive).
    * monitors and calls: ``new_ref``, ``add_monitor``, ``drop_monitor``,
      ``watch``, ``call_process``.
    * other fds, waited on with the mailbox (a port's pipes): ``watch_fd``,
      ``modify_fd``, ``unwatch_fd``; ``pump(timeout)`` waits once and handles
      what happened.
    * the end: ``flush_all``, ``exit``, ``close``, ``handover``.

    Extension points for a subclass (a durable process's context,
    occasional.durable.context): it may override ``receive``,
    ``send_bytes``, ``new_ref`` and ``on_extension_frame``, take from
    ``mailbox``, and read or set ``calling`` and ``call_down`` (the process a
    call waits on, and that process's reason once it ended).
    """

    # A durable process's context (occasional.durable) sets this: every receive
    # goes through its journal, so api.receive takes no shortcut past it.
    journaled = False

    def __init__(self, sock: socket.socket, pid: Pid) -> None:
        self.pid = pid
        self.central = sock
        self._central_fd = sock.fileno()
        self._central_dec = Decoder()
        self._central_fds: deque[int] = deque()
        self._ep = select.epoll()
        self._ep.register(self._central_fd, _EPOLLIN)
        self._init_mailbox()
        self._init_peers()
        # Kept by these names for durable/supervised.py until it uses request/wait_reply.
        self._replies: dict[int, tuple[bool, Any]] = {}
        self._next_req = 0
        self._next_ref = 0
        self._monitors: dict[Ref, Pid | None] = {}
        self._watches: dict[Any, Ref] = {}  # pid id (a RemotePid) -> the monitor calls use (see watch)
        self.trapping = False
        self.calling: Any = None  # pid id (a RemotePid) of the process a call waits on
        self.call_down: tuple[str, Any] | None = None  # its reason, if it ended
        self.closed = False
        # fd -> handler(events), run inside pump (see watch_fd).
        self._fd_handlers: dict[int, Callable[[int], None]] = {}
        self.spawn_meta: dict[str, Any] | None = None
        self._spin_misses = 0  # busy-waits in a row that nothing answered (see pump)
        self._spin_skip = 0  # waits left to sleep through at once before the next busy-wait

    # -- central ---------------------------------------------------------------

    def request_with_fd(self, fd: int, op: int, *args: Any) -> int:
        """As :meth:`request`, with ``fd`` attached (SCM_RIGHTS): a socket handed
        to another process through central (occasional.net). The fd stays open here."""
        self._next_req += 1
        req = self._next_req
        payload = _packb([op, req, *args])
        data = _pack_frame(len(payload)) + payload
        try:
            sent = send_with_fds(self.central, data, [fd])
            if sent < len(data):
                self.central.sendall(data[sent:])
        except OSError as e:
            raise RuntimeError(f"the runtime's central services are gone ({e}); the runtime has ended") from e
        return req

    def take_fd(self) -> int:
        """The oldest fd central sent that nobody took yet (an extension's frame carried it)."""
        return self._central_fds.popleft()

    def tell(self, frame: list[Any]) -> None:
        """Send a control frame to central (blocking: central always reads).

        Raises ValueError, sending nothing, for a frame central's Decoder
        would refuse (a spawn whose arguments are over the limit): sent, it
        would cost this process its connection to central.
        """
        payload = _packb(frame)
        if len(payload) > P.MAX_CONTROL_FRAME:
            raise ValueError(
                f"a request to the runtime's central services of {len(payload)} bytes (encoded) is over the limit "
                f"of {P.MAX_CONTROL_FRAME} bytes; nothing was sent. Pass large data to a process in parts, or write it "
                "to a file and pass the file's path"
            )
        try:
            self.central.sendall(_pack_frame(len(payload)) + payload)
        except OSError as e:
            raise RuntimeError(f"the runtime's central services are gone ({e}); the runtime has ended") from e

    def request(self, op: int, *args: Any) -> int:
        """Send ``[op, req, *args]`` to central without waiting; returns ``req``
        for :meth:`wait_reply`."""
        self._next_req += 1
        req = self._next_req
        self.tell([op, req, *args])
        return req

    def wait_reply(self, req: int, deadline: float | None) -> tuple[bool, Any] | None:
        """Central's answer ``(ok, value)`` to request ``req``, waiting until
        ``deadline`` (a ``time.monotonic()`` value; None: for as long as it
        takes). None at the deadline; the answer may still come later, and
        is then kept until asked for. Messages and DOWNs that arrive
        meanwhile go to the mailbox."""
        replies = self._replies
        while req not in replies:
            if deadline is None:
                self._read_central(blocking=True)
                continue
            left = deadline - _now()
            if left <= 0:
                return None
            self.pump(left)
        return replies.pop(req)

    def call(self, op: int, *args: Any) -> Any:
        """A synchronous request to central; raises the error it answers with."""
        answer = self.wait_reply(self.request(op, *args), None)
        assert answer is not None  # with no deadline, it waits for the answer
        ok, value = answer
        if ok:
            return value
        name, *err_args = value
        raise _ERRORS.get(name, RuntimeError)(*err_args)

    def _read_central(self, blocking: bool = False) -> None:
        try:
            data = recv_with_fds(self.central, _RECV, self._central_fds, 0 if blocking else _NOWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            raise RuntimeError("the runtime's central services are gone; the runtime has ended")
        dec = self._central_dec
        for frame in dec.feed(data):
            self._on_central(_unpackb(frame, raw=False, strict_map_key=False))
        if dec.error is not None:
            raise dec.error

    def _on_central(self, msg: list[Any]) -> None:
        op = msg[0]
        if op == P.REPLY:
            self._replies[msg[1]] = (msg[2], msg[3])
        elif op == P.PEER:
            self._add_peer(msg[1], self._central_fds.popleft())
        elif op == P.PEER_DEAD:
            if msg[1] == self._connecting:
                self._refused = True
        elif op == P.DOWN:
            self._on_down(msg)
        elif op == P.EXIT_SIGNAL:
            if msg[4]:  # the sender has ended: what it sent comes first
                self._drain_from(msg[1])
            self.mailbox.append(("EXIT", Pid._make(msg[1], msg[2]), reason_from_wire(msg[3])))
        else:
            self.on_extension_frame(msg)

    def _on_down(self, msg: list[Any]) -> None:
        ref = Ref._make(msg[1], msg[2])
        # Drain B's sockets before queuing the DOWN, so every message B sent
        # arrives first (API.md section 4, "Ordering").
        self.down(msg[3], ref, lambda: Pid._make(msg[3], msg[4]), lambda: reason_from_wire(msg[5]), self._drain_from)

    def down(
        self,
        key: Any,
        ref: Ref,
        pid: Callable[[], Pid],
        reason: Callable[[], tuple[str, Any]],
        drain: Callable[[Any], None],
    ) -> None:
        """A DOWN for monitor ``ref`` on the process ``key`` (its id here, a
        RemotePid for one on another node): the end of a call in progress to
        it, or ``("DOWN", ref, pid, reason)`` in the mailbox; ``drain(key)``
        first reads whatever that process sent."""
        if self._watches.get(key) == ref:
            del self._watches[key]
            if self.calling == key:
                drain(key)  # a reply sent before the end comes first
                self.call_down = reason()
        elif ref in self._monitors:
            del self._monitors[ref]
            drain(key)
            self.mailbox.append(("DOWN", ref, pid(), reason()))

    def on_extension_frame(self, msg: list[Any]) -> None:
        """A control frame of an extension (a durable process's journaled
        messages; occasional.dist's, through EXTENSION_FRAMES)."""
        handler = EXTENSION_FRAMES.get(msg[0])
        if handler is not None:
            handler(self, msg)

    # -- waiting -----------------------------------------------------------------

    def pump(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for anything to happen, and handle it.

        Before it sleeps in epoll it busy-waits (polls) for up to
        ``BUSY_WAIT`` seconds, as the BEAM's schedulers do: an answer that
        comes within that time costs no wake-up of a sleeping CPU, which on a
        VM is most of a round trip (bench/RESULTS.md, issue 15). A process
        whose busy-waits go unanswered stops trying for a while (1, 3, 7 ...
        up to 63 waits), so one with sparse traffic sleeps at once.
        """
        poll = self._ep.poll
        events = poll(0)
        if not events and timeout != 0:
            if self._spin_skip:
                self._spin_skip -= 1
            elif BUSY_WAIT > 0:
                events, timeout = self._busy_wait(timeout)
            if not events:
                events = poll(-1 if timeout is None else max(timeout, 0))
        for fd, ev in events:
            if fd == self._central_fd:
                self._read_central()
                continue
            peer = self._peers_by_fd.get(fd)
            if peer is None:
                handler = self._fd_handlers.get(fd)
                if handler is not None:
                    handler(ev)
                continue
            if ev & _EPOLLOUT:
                self._flush(peer)
            if ev & ~_EPOLLOUT and peer.fd in self._peers_by_fd:
                self._read_peer(peer)

    def _busy_wait(self, timeout: float | None) -> tuple[list[tuple[int, int]], float | None]:
        """Poll for up to BUSY_WAIT (at most ``timeout``) seconds: what came,
        and what is left of ``timeout``. A miss makes the next waits sleep at once."""
        poll = self._ep.poll
        start = _clock()
        end = start + (BUSY_WAIT if timeout is None else min(BUSY_WAIT, timeout))
        while True:
            events = poll(0)
            if events:
                self._spin_misses = 0
                return events, timeout
            now = _clock()
            if now >= end:
                misses = self._spin_misses = min(self._spin_misses + 1, 6)
                self._spin_skip = (1 << misses) - 1
                return events, None if timeout is None else timeout - (now - start)

    def fileno(self) -> int:
        """An fd that is readable whenever ``pump(0)`` has something to
        handle: for a process that runs an event loop of its own (the HTTP
        gateway, issue 16) to call ``pump(0)`` from it."""
        return self._ep.fileno()

    def watch_fd(self, fd: int, events: int, handler: Callable[[int], None]) -> None:
        """Wait on ``fd`` for ``events`` (``select.EPOLL*``) along with the
        mailbox: whenever epoll reports it, ``pump`` (so ``receive``) runs
        ``handler(events)``. The fd must not be watched already."""
        self._ep.register(fd, events)
        self._fd_handlers[fd] = handler

    def modify_fd(self, fd: int, events: int) -> None:
        """Wait on a watched ``fd`` for other ``events``; 0 pauses it."""
        self._ep.modify(fd, events)

    def unwatch_fd(self, fd: int) -> None:
        """Stop waiting on ``fd`` (before closing it); nothing if it is not watched."""
        if self._fd_handlers.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- refs, monitors and calls -------------------------------------------------

    def new_ref(self) -> Ref:
        self._next_ref += 1
        return Ref._make(self.pid.id, self._next_ref)

    def add_monitor(self, ref: Ref, pid: Pid | None) -> None:
        """Expect a DOWN for ``ref`` (central is told by the caller). ``pid``
        is None while a spawn_monitor waits for its pid: the DOWN can come first."""
        self._monitors[ref] = pid

    def monitored(self, ref: Ref) -> Pid | None:
        """The process monitor ``ref`` watches, while it is active."""
        return self._monitors.get(ref)

    def drop_monitor(self, ref: Ref) -> bool:
        """Forget monitor ``ref``; whether it was active (a pid known, no DOWN yet)."""
        return self._monitors.pop(ref, None) is not None

    def watch(self, pid: Pid) -> None:
        """Keep one monitor on ``pid`` for calls, for as long as it lives.

        occ.call used to monitor and demonitor per call: two requests to
        central and two wake-ups of it per call (bench/RESULTS.md, call).
        The watch's DOWN never reaches the mailbox; it ends the call in
        progress, if it is to that process (``self.calling``).
        """
        key = pid.id if pid._remote is None else pid
        if key not in self._watches:
            # Always a plain ref, never a subclass's: whether this monitor is
            # made depends on when a DOWN arrived, so it must not move the
            # count of a durable process's own refs (issue 6).
            ref = Context.new_ref(self)
            self._watches[key] = ref
            if pid._remote is None:
                self.tell(P.monitor(ref.owner, ref.n, pid.id))
            else:
                remote_ops().monitor(pid, ref)

    def call_process(
        self, pid: Pid, payload: bytes, match: Callable[[Any], bool], timeout: float | None
    ) -> tuple[Any, tuple[str, Any] | None]:
        """Send ``payload`` (an encoded message) to ``pid`` and wait for the
        message ``match`` accepts, or for ``pid``'s end.

        Returns ``(message, None)``, or ``(None, reason)`` when ``pid`` ended
        first; whatever ``pid`` sent before it ended is in the mailbox then.
        Raises TimeoutError after ``timeout`` seconds (None: no limit).
        """
        self.watch(pid)
        self.calling = pid.id if pid._remote is None else pid
        self.call_down = None
        try:
            if pid._remote is None:
                self.send_bytes(pid.id, payload)
            else:
                remote_ops().send_bytes(pid, payload)
            msg = self.receive(match, timeout)
            return msg, self.call_down
        finally:
            self.calling = None
            self.call_down = None

    # -- the end -----------------------------------------------------------------

    def exit(self, reason: tuple[str, Any]) -> None:
        """Report the final reason to central (the last thing a process says)."""
        kind, detail = reason
        try:
            self._tell_exit(kind, detail)
        except (TypeError, ValueError) as e:
            # Not serialisable, or over the limit (tell sent nothing then).
            err = type(e)(f"the process returned {codec.short_repr(detail)}, which cannot be sent as a value: {e}")
            self._tell_exit("error", err)

    def _tell_exit(self, kind: str, detail: Any) -> None:
        detail_bytes = codec.dumps(detail)
        # A text summary rides along, so central can report a crash that no
        # process watches without unpickling anything.
        summary = "" if kind == "ok" else format_reason((kind, detail))
        self.tell([P.EXIT, kind, detail_bytes, summary])

    def handover(self) -> socket.socket:
        """Give up the socket to central, for a context that replaces this
        one in the same process (a durable process's). Call it before this
        context has read anything: what it read stays here."""
        self._ep.close()
        self.closed = True
        return self.central

    def close(self) -> None:
        self._close_peers()
        self._ep.close()
        self.central.close()
        for fd in self._central_fds:
            os.close(fd)
        self._central_fds.clear()


# -- the calling process's context -------------------------------------------------

_current: Context | None = None


def set_current(ctx: Context | None) -> None:
    global _current
    _current = ctx


def current(call: str) -> Context:
    """The calling process's context, or the contract's error outside a runtime."""
    ctx = _current
    if ctx is None or ctx.closed:
        raise no_runtime(call)
    return ctx


def peek() -> Context | None:
    return _current
