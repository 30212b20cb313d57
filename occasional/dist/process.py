"""A process's side of a node (API.md section 11): its connection to its
proxy in the node's Erlang VM, and the verbs of core applied to a RemotePid.

The connection is made on first use (a send, monitor or link to another
node), or when central says the proxy holds messages for this process
(DIST_CONNECT). It is one of the process's peer sockets (Context.add_channel),
so sends never block and a finished process flushes it before it reports its
end. Everything from other nodes arrives on it, DOWNs and node downs after
the messages before them: Erlang orders what one proxy sends another, and
the proxy writes it here in that order.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from ..core import codec, context as _context, protocol as P
from ..core.context import Context, reason_from_wire
from ..core.errors import NameTaken
from ..core.pid import Pid, Ref, RemoteOps, RemotePid
from ..sck.frame import HEADER
from . import config as N, etf, protocol as D
from .etf import Atom

_ID = struct.Struct(">QI")  # an occasional pid on the wire: its id and Linux pid


class Remote(RemoteOps):
    """The verbs of core on a RemotePid, for the calling process."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Nothing of another process (or an earlier runtime) carries over."""
        self.ctx: Context | None = None
        self.replies: dict[int, Any] = {}
        self.next_req = 0
        self.monitors: dict[int, Pid] = {}  # ref number -> the process it watches
        self.links: set[Pid] = set()
        self.kinds: dict[str, str] = {}  # node -> "occasional" | "erlang" | "unreachable"
        self.unreachable_until: dict[str, float] = {}
        self.closed = False

    # -- the connection ----------------------------------------------------------------

    def connected(self, call: str = "this call") -> Context:
        """The calling process's context, connected to its proxy."""
        ctx = _context.current(call)
        if self.ctx is ctx and not self.closed:
            return ctx
        where = N.vm_socket()
        if where is None:
            raise RuntimeError(
                f"{call}: this runtime is not a node, so it cannot reach other nodes; "
                'start it with node="name@host" (API.md section 11)'
            )
        self._reset()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path, token = where
        try:
            sock.connect(path)
            hello = bytes([D.HELLO, len(token)]) + token + _ID.pack(ctx.pid.id, ctx.pid.os_pid)
            sock.sendall(HEADER.pack(len(hello)) + hello)
        except OSError as e:
            sock.close()
            raise RuntimeError(f"{call}: the node's Erlang VM cannot be reached ({e}); the node is down") from e
        ctx.add_channel(D.CHANNEL, sock, self._on_frames)
        self.ctx = ctx
        return ctx

    def _put(self, ctx: Context, frame: bytes) -> None:
        ctx.send_bytes(D.CHANNEL, frame)

    def _request(self, call: str, *fields: Any) -> Any:
        ctx = self.connected(call)
        self.next_req += 1
        req = self.next_req
        self._put(ctx, bytes([D.REQUEST]) + etf.encode((Atom(fields[0]), req, *fields[1:])))
        while req not in self.replies:
            if self.closed:
                raise RuntimeError(f"{call}: the node's Erlang VM is gone; the node is down")
            ctx.pump(None)
        return self.replies.pop(req)

    def _control(self, call: str, *fields: Any) -> None:
        ctx = self.connected(call)
        self._put(ctx, bytes([D.REQUEST]) + etf.encode((Atom(fields[0]), *fields[1:])))

    def _on_frames(self, frames: list[bytes] | None) -> None:
        ctx = self.ctx
        assert ctx is not None
        if frames is None:
            self._lost()
            return
        for frame in frames:
            tag = frame[0]
            if tag == D.FROM_OCC:
                n = frame[1]
                origin = frame[2 : 2 + n].decode()
                ctx.post(codec.loads_from(frame[2 + n :], origin))
            elif tag == D.FROM_ERLANG:
                ctx.post(etf.decode(frame[1:]))
            elif tag == D.CONTROL:
                self._on_control(ctx, etf.decode(frame[1:]))

    def _on_control(self, ctx: Context, msg: Any) -> None:
        kind = msg[0]
        if kind == "reply":
            self.replies[msg[1]] = msg[2]
        elif kind == "down":
            pid = self.monitors.pop(msg[1], None)
            if pid is not None:
                reason = _reason(msg[2])
                ctx.down(pid, Ref._make(ctx.pid.id, msg[1]), lambda: pid, lambda: reason, _no_drain)
        elif kind == "nodedown":
            ctx.post(("nodedown", str(msg[1])))

    def _lost(self) -> None:
        """The VM is gone: every remote monitor and link fires with noconnection."""
        self.closed = True
        ctx = self.ctx
        assert ctx is not None
        for n, pid in list(self.monitors.items()):
            reason = ("noconnection", pid.node)
            ctx.down(pid, Ref._make(ctx.pid.id, n), lambda p=pid: p, lambda r=reason: r, _no_drain)  # type: ignore[misc]
        self.monitors.clear()
        for pid in self.links:
            if ctx.trapping:
                ctx.post(("EXIT", pid, ("noconnection", pid.node)))
            else:
                # Ended by central, as a linked process is (not answered: the request is its last word).
                inner = ["noconnection", codec.dumps(pid.node)]
                where = [pid.id, pid.os_pid, inner, pid.node, getattr(pid, "etf", None)]
                ctx.request(P.SIGNAL, ctx.pid.id, ["linked", where])
                break
        self.links.clear()

    # -- the verbs ------------------------------------------------------------------------

    def send(self, pid: Pid, msg: Any) -> None:
        if type(pid) is RemotePid and pid.etf is not None:
            self._to_erlang("send()", pid, msg)
            return
        try:
            payload = codec.dumps(msg)
        except TypeError as e:
            raise TypeError(f"send(): {e}; nothing was sent") from e.__cause__
        self.send_bytes(pid, payload)

    def send_bytes(self, pid: Pid, payload: bytes) -> None:
        if type(pid) is RemotePid and pid.etf is not None:
            self._to_erlang("send()", pid, codec.loads(payload))
            return
        ctx = self.connected("send()")
        node = pid.node.encode()
        self._put(ctx, bytes([D.TO_PID, len(node)]) + node + _ID.pack(pid.id, pid.os_pid) + payload)

    def send_named(self, name: str, node: str, msg: Any) -> None:
        if self.kind(node) == "erlang":
            self._to_erlang("send()", (Atom(name), Atom(node)), msg)
            return
        try:
            payload = codec.dumps(msg)
        except TypeError as e:
            raise TypeError(f"send(): {e}; nothing was sent") from e.__cause__
        ctx = self.connected("send()")
        node_b, name_b = node.encode(), name.encode()
        frame = bytes([D.TO_NAME, len(node_b)]) + node_b + len(name_b).to_bytes(2, "big") + name_b + payload
        self._put(ctx, frame)

    def _to_erlang(self, call: str, dest: Any, msg: Any) -> None:
        try:
            data = etf.encode((dest, msg))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{call}: {e}; nothing was sent") from e
        self._put(self.connected(call), bytes([D.TO_ERLANG]) + data)

    def kind(self, node: str) -> str:
        """Whether ``node`` is an occasional node or an Erlang one (asked once)."""
        known = self.kinds.get(node)
        if known is None or (known == "unreachable" and time.monotonic() >= self.unreachable_until.get(node, 0)):
            known = str(self._request("send()", "node_kind", Atom(node)))
            self.kinds[node] = known
            if known == "unreachable":
                # Asked again a second later, not on every send: each asking
                # waits for a connection attempt, and a send must not.
                self.unreachable_until[node] = time.monotonic() + 1.0
        return known

    def monitor(self, pid: Pid, ref: Ref) -> None:
        self._control("monitor()", "monitor", ref.n, pid)
        self.monitors[ref.n] = pid

    def demonitor(self, ref: Ref) -> None:
        if self.monitors.pop(ref.n, None) is not None:
            self._control("demonitor()", "demonitor", ref.n)

    def link(self, pid: Pid) -> tuple[str, Any] | None:
        answer = self._request("link()", "link", pid)
        if answer == "ok":
            self.links.add(pid)
            return None
        return _reason(answer)

    def unlink(self, pid: Pid) -> None:
        self.links.discard(pid)
        self._control("unlink()", "unlink", pid)

    def kill(self, pid: Pid, why: bytes) -> None:
        self._control("kill()", "kill", pid, why)

    def exit_signal(self, pid: Pid, kind: str, detail: bytes) -> None:
        self._control("exit_signal()", "exit_signal", pid, kind, detail)

    def spawn(self, call: str, node: str, prepared: Any, name: str | None, link: bool, ref: Ref | None) -> Pid:
        import sys

        ctx = self.connected(call)
        options = {
            Atom("link"): link,
            Atom("monitor"): None if ref is None else ref.n,
            Atom("name"): name,
            Atom("function"): prepared.function,
            Atom("title"): f"occasional: {name if name is not None else prepared.title}",
            Atom("sys_path"): [p for p in sys.path if isinstance(p, str)],
        }
        if ref is not None:
            ctx.add_monitor(ref, None)
        try:
            answer = self._request(call, "spawn", Atom(node), prepared.blob, options)
        except BaseException:
            if ref is not None:
                ctx.drop_monitor(ref)
            raise
        if answer[0] != "ok":
            if ref is not None:
                ctx.drop_monitor(ref)
            raise _spawn_error(call, node, answer)
        pid = RemotePid._make_remote(node, answer[1], answer[2])
        if ref is not None:
            ctx.add_monitor(ref, pid)
            self.monitors[ref.n] = pid
        if link:
            self.links.add(pid)
        return pid

    # -- node verbs -------------------------------------------------------------------------

    def nodes(self) -> list[str]:
        return [n.decode() if type(n) is bytes else str(n) for n in self._request("nodes()", "nodes")]

    def connect(self, node: str) -> bool:
        return self._request(f"connect({node!r})", "connect", Atom(node)) is True

    def monitor_node(self, node: str, flag: bool) -> None:
        self._control("monitor_node()", "monitor_node", Atom(node), flag)

    def register_global(self, name: str, pid: Pid) -> None:
        answer = self._request("register_global()", "register_global", Atom(name), pid)
        if answer == "no":
            raise NameTaken(name)
        if answer == "noproc":
            raise ValueError(f"register_global({name!r}, {pid!r}): that process has ended")

    def whereis_global(self, name: str) -> Pid | None:
        found: Pid | None = self._request("whereis_global()", "whereis_global", Atom(name))
        return found

    def unregister_global(self, name: str) -> None:
        self._request("unregister_global()", "unregister_global", Atom(name))

    # -- frames from central -------------------------------------------------------------------

    def on_connect(self, ctx: Context, msg: list[Any]) -> None:
        """DIST_CONNECT: the proxy holds messages for this process."""
        self.connected("receive()")

    def on_exit(self, ctx: Context, msg: list[Any]) -> None:
        """DIST_EXIT: a trapped exit from a process on another node, after
        whatever that process sent (it came through the VM's connection)."""
        _, sender, wire, origin = msg
        if self.ctx is ctx and not self.closed:
            ctx.read_channel(D.CHANNEL)
        pid = codec.loads(sender)
        self.links.discard(pid)
        ctx.post(("EXIT", pid, reason_from_wire(wire, origin)))


def _no_drain(key: Any) -> None:
    """A DOWN from another node came after that process's messages, on one socket."""


def _reason(term: Any) -> tuple[str, Any]:
    """A reason as a proxy reports it (occ_dist.erl, reason/3)."""
    import msgpack

    if term == "noproc":
        return ("noproc", None)
    kind = term[0]
    if kind == "occasional":
        return reason_from_wire(msgpack.unpackb(term[2], raw=False), str(term[1]))
    if kind == "noconnection":
        return ("noconnection", str(term[1]))
    return reason_from_wire(erlang_exit(term[1]))


def erlang_exit(term: Any) -> list[Any]:
    """An Erlang process's exit reason as a wire reason: ``normal`` is an ok
    end, ``killed`` a kill, anything else ``("exit", term)``."""
    if term == "normal" and type(term) is Atom:
        return ["ok", codec.dumps(None)]
    if term == "killed" and type(term) is Atom:
        return ["killed", codec.dumps("killed")]
    return ["exit", codec.dumps(term)]


def _spawn_error(call: str, node: str, answer: Any) -> Exception:
    kind = answer[0]
    if kind == "noconnection":
        return RuntimeError(
            f"{call}: node {node!r} cannot be reached: it is not running, or its cookie is not this node's "
            "(nodes connect only with the same cookie: cookie=, OCC_COOKIE or ~/.occasional.cookie)"
        )
    if kind == "not_occasional":
        return ValueError(
            f"{call}: node {node!r} is an Erlang node, not an occasional one; spawn Python there with occasional"
        )
    detail = answer[1].decode() if type(answer[1]) is bytes else str(answer[1])
    if detail.startswith("the name "):
        return ValueError(f"{call}: {detail}; pick another name or unregister it there")
    return RuntimeError(f"{call}: node {node!r} did not start the process: {detail}")


REMOTE = Remote()
