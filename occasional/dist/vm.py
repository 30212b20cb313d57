"""The node's Erlang VM, as central runs it (API.md section 11, issue 13).

Central starts ``erl`` beside itself, in its own process group and dying with
central (its parent-death signal), running ``occ_dist`` (erlang/occ_dist.erl,
compiled with ``erlc`` on first use into a cache directory). The two talk over
a socket pair on the VM's fd 3: 4-byte length frames of Erlang's external term
format. Processes talk to the VM over a Unix socket of their own; central is
on that path only to answer what the VM asks of the process table:

* ``watch``: does this process live (a proxy was made for it)? Central says
  ``alive`` or ``gone``, and later ``ended`` with its reason;
* ``spawn``: a process for another node; ``connect_me``: a proxy holds
  messages for a process that has no connection to the VM yet;
* ``linked``, ``signal``, ``kill``: exit signals from other nodes, handled
  like local ones (central knows who traps exits).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgpack

from ..core import codec
from ..core.central import Central
from ..core.table import Proc
from ..sck.frame import HEADER, Decoder
from . import config as N, etf, protocol as D
from .etf import Atom
from .files import beam_directory, cookie
from .process import erlang_exit

log = logging.getLogger("occasional.dist")

_READY_WITHIN = 30.0  # seconds: a VM's start is about 0.3 s, plus EPMD's on a first start


def install(central: Central, options: dict[str, Any]) -> None:
    """Central's hook: start the node's Erlang VM and wait until it is ready."""
    if options.get("node") is not None:
        start(central, options)


def start(central: Central, options: dict[str, Any]) -> Node:
    node = Node(central, options)
    central.facts["node"] = N.NODE
    central.facts["vm"] = [N.SOCKET, N.TOKEN.decode()]
    central.add_exit_hook(node.on_exit)
    central.add_stop_hook(node.stop)
    central.table.name_hooks.append(node.on_name)
    return node


class Node:
    """The node's VM, supervised by central like a port: started with the
    runtime (a start that fails fails the runtime's start), started again
    when it ends while the runtime runs, with a backoff that doubles from
    one second to thirty. Its processes' connections end with it; they
    connect to the next one on their next use."""

    def __init__(self, central: Central, options: dict[str, Any]) -> None:
        self.central = central
        self.options = options
        self.backoff = 1.0
        self.vm = VM(central, options, self._ended, wait=True)

    def _ended(self) -> None:
        if self.central.stopping:
            return
        delay, self.backoff = self.backoff, min(self.backoff * 2, 30.0)
        log.error("node %s: starting its Erlang VM again in %g s", N.NODE, delay)
        self.central.loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        if self.central.stopping:
            return
        try:
            self.vm = VM(self.central, self.options, self._ended, wait=False)
        except Exception:
            log.exception("node %s: its Erlang VM could not be started", N.NODE)
            self._ended()
            return
        for name in self.central.table.registered():
            holder = self.central.table.holder(name)
            if holder is not None:
                self.vm.on_name(name, holder)

    def on_exit(self, p: Proc, reason: list[Any]) -> bool:
        return self.vm.on_exit(p, reason)

    def on_name(self, name: str, p: Proc | None) -> None:
        self.vm.on_name(name, p)

    def stop(self) -> None:
        self.vm.stop()
        if N.DIRECTORY is not None:
            shutil.rmtree(N.DIRECTORY, ignore_errors=True)


class VM:
    """Central's end of one incarnation of the node's Erlang VM."""

    def __init__(self, central: Central, options: dict[str, Any], on_ended: Any, wait: bool) -> None:
        assert N.NODE is not None and N.SOCKET is not None and N.DIRECTORY is not None
        self.central = central
        self.node = N.NODE
        self.watched: set[int] = set()  # processes the VM has a proxy for
        self.out: deque[bytes] = deque()
        self.writing = False
        self.stopping = False
        self.on_ended = on_ended
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = mine
        self.dec = Decoder()
        self.args = args = Path(N.DIRECTORY) / "vm.args"
        host = self.node.partition("@")[2]
        names = "-name" if "." in host or ":" in host else "-sname"
        ticktime = options.get("net_ticktime") or N.DEFAULT_TICKTIME
        # The cookie and token go in a file only this user reads, not on
        # the command line that `ps` shows to everyone.
        fd = os.open(args, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"{names} {self.node} -setcookie '{cookie(options)}' -kernel net_ticktime {ticktime} "
                f"-noshell -noinput -pa {beam_directory()} -occ_fd {theirs.fileno()} "
                f"-occ_sock {N.SOCKET} -occ_token {N.TOKEN.decode()} -s occ_dist start\n"
            )
        self.log_path = Path(N.DIRECTORY) / "erlang.log"
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                ["erl", "-args_file", str(args)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),),
                process_group=0,
                preexec_fn=_die_with_central,
            )
        theirs.close()
        if wait:
            try:
                self._wait_ready()
            except BaseException:
                self._kill()
                raise
            args.unlink()
        mine.setblocking(False)
        # Central reaps it (a pidfd tells when it ends, on_sigchld reaps it).
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.ended: int | None = None
        central.keep_child(self.proc.pid, self._vm_ended)
        loop = central.loop
        loop.add_reader(self.pidfd, central.on_sigchld)
        loop.add_reader(mine.fileno(), self._readable)

    # -- start and end ----------------------------------------------------------------

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_WITHIN
        self.sock.settimeout(1.0)
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the node's Erlang VM did not start within {_READY_WITHIN:g} s") from None
                continue
            if not data:
                self.proc.wait()
                raise RuntimeError(f"node {self.node!r} could not start: {self._log_tail()}")
            for frame in self.dec.feed(data):
                msg = etf.decode(frame)
                if type(msg) is tuple and msg[0] == "ready":
                    return

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        lines = [line for line in text.splitlines() if line.strip()][-6:]
        what = " / ".join(lines) or f"erl exited with status {self.proc.returncode}"
        if "duplicate_name" in text or "the name" in text and "seems to be in use" in text:
            return f"another node is named {self.node!r} on this host; pick another name ({what})"
        return what

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            self.proc.wait()

    def stop(self) -> None:
        """The runtime stops: so does its VM (its channel's end tells it to halt)."""
        if self.stopping:
            return  # it ended already
        self.stopping = True
        loop = self.central.loop
        loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self.ended is None:
            # It halts when it reads the end of its channel; it is waited for
            # here, so that a runtime leaves nothing behind when it returns.
            for sig, wait in ((None, 2.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, sig)
                if _ends_within(self.pidfd, wait):
                    break
            self.central.on_sigchld()
        loop.remove_reader(self.pidfd)
        os.close(self.pidfd)

    def _vm_ended(self, status: int) -> None:
        self.ended = status
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        loop = self.central.loop
        loop.remove_reader(self.pidfd)
        if self.stopping or self.central.stopping:
            return
        os.close(self.pidfd)
        loop.remove_reader(self.sock.fileno())
        if self.writing:
            loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.stopping = True
        log.error(
            "node %s: its Erlang VM ended (%s); other nodes see it as down. Its log: %s",
            self.node,
            self.proc.returncode,
            self._log_tail(),
        )
        self.on_ended()

    # -- the channel ----------------------------------------------------------------------

    def send(self, term: Any) -> None:
        data = etf.encode(term)
        self.out.append(HEADER.pack(len(data)) + data)
        self._flush()

    def _flush(self) -> None:
        out = self.out
        try:
            while out:
                sent = self.sock.send(out[0])
                if sent == len(out[0]):
                    out.popleft()
                else:
                    out[0] = out[0][sent:]
        except BlockingIOError:
            pass
        except OSError:
            out.clear()
        want = bool(out)
        if want != self.writing:
            self.writing = want
            if want:
                self.central.loop.add_writer(self.sock.fileno(), self._flush)
            else:
                self.central.loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.central.loop.remove_reader(self.sock.fileno())
            return
        for frame in self.dec.feed(data):
            try:
                self._handle(etf.decode(frame))
            except Exception:
                log.exception("node %s: a frame from the Erlang VM could not be handled", self.node)

    def _handle(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "ready":
            with contextlib.suppress(OSError):
                self.args.unlink()
        elif kind == "watch":
            self._watch(msg[1], msg[2])
        elif kind == "connect_me":
            p = self.central.lookup(msg[1])
            if p is not None and p.conn is not None:
                p.conn.send([D.DIST_CONNECT])
        elif kind == "spawn":
            self._spawn(*msg[1:])
        elif kind == "linked":
            self._linked(msg[1], msg[2], msg[3])
        elif kind == "signal":
            self._signal(msg[1], msg[2], msg[3])
        elif kind == "refused":
            text = _text(msg[1]) or ""
            log.warning(
                "node %s refused a connection, most likely from a node with another cookie (nodes connect only "
                "with the same cookie: cookie=, OCC_COOKIE or ~/.occasional.cookie): %s",
                self.node,
                " ".join(text.replace("*", "").split()),
            )
        elif kind == "kill":
            p = self.central.lookup(msg[1])
            why = msg[2]
            if p is not None:
                self.central.kill(p, ["killed", why if type(why) is bytes else codec.dumps(why[1])])

    # -- what the VM asks ------------------------------------------------------------------

    def _watch(self, pid_id: int, os_pid: Any) -> None:
        p = self.central.lookup(pid_id)
        if p is not None and p.os_pid == os_pid:
            self.watched.add(pid_id)
            self.send((Atom("alive"), pid_id))
        else:
            self.send((Atom("gone"), pid_id))

    def _spawn(self, tag: int, blob: bytes, options: dict[Any, Any], spawner: Any) -> None:
        c = self.central
        name = _text(options.get("name"))
        function = _text(options.get("function")) or "?"
        why = c.refusal()
        if why is None and name is not None and c.table.holder(name) is not None:
            why = f"the name {name!r} is taken on {self.node}"
        if why is not None:
            self.send((Atom("spawned"), tag, (Atom("error"), why)))
            return
        sys_path = [_text(p) or "" for p in options.get("sys_path") or []]
        title = _text(options.get("title")) or f"occasional: {function}"
        p = c.start_process(function, blob, sys_path, title)
        if name is not None:
            c.table.register_name(name, p)

        def forked(ok: bool) -> None:
            if ok and p.os_pid:
                self.watched.add(p.id)
                self.send((Atom("spawned"), tag, (Atom("ok"), p.id, p.os_pid)))
            else:
                self.send((Atom("spawned"), tag, (Atom("error"), p.fork_error or "the fork failed")))

        c.when_forked(p, forked)

    def _linked(self, pid_id: int, sender: Any, reason: Any) -> None:
        """A process linked to ``pid_id`` on another node ended (or its node is lost)."""
        p = self.central.lookup(pid_id)
        if p is None:
            return
        wire, origin = _wire_reason(reason, sender)
        if p.trapping:
            if p.conn is not None:
                p.conn.send([D.DIST_EXIT, codec.dumps(sender), wire, origin])
        elif wire[0] != "ok" and not p.owner:
            etf_bytes = getattr(sender, "etf", None)
            self.central.kill(p, ["linked", [sender.id, sender.os_pid, wire, sender.node, etf_bytes]])

    def _signal(self, pid_id: int, sender: Any, reason: Any) -> None:
        """``exit_signal`` (Erlang's exit/2) from another node: as core's op_signal."""
        p = self.central.lookup(pid_id)
        if p is None:
            return
        if reason[0] == "occasional":
            wire, origin = [_text(reason[1][0]), reason[1][1]], sender.node
        else:
            wire, origin = erlang_exit(reason[1]), None
        if p.trapping:
            if p.conn is not None:
                p.conn.send([D.DIST_EXIT, codec.dumps(sender), wire, origin])
        elif not p.owner:
            self.central.kill(p, wire)

    # -- what central tells the VM ------------------------------------------------------------

    def on_exit(self, p: Proc, reason: list[Any]) -> bool:
        if p.id in self.watched:
            self.watched.discard(p.id)
            self.send((Atom("ended"), p.id, _erlang_reason(reason, p.summary), msgpack.packb(reason)))
            # Another node may link to or monitor it: not an end nobody hears of.
            return True
        return False

    def on_name(self, name: str, p: Proc | None) -> None:
        if p is None:
            self.send((Atom("unregister"), name))
        elif p.os_pid is not None:
            self.send((Atom("register"), name, p.id, p.os_pid))
        else:

            def forked(ok: bool) -> None:
                if ok and p.name == name:
                    self.send((Atom("register"), name, p.id, p.os_pid))

            self.central.when_forked(p, forked)


def _ends_within(pidfd: int, seconds: float) -> bool:
    import select

    return bool(select.select([pidfd], [], [], seconds)[0])


def _die_with_central() -> None:
    import prctl

    prctl.set_pdeathsig(signal.SIGKILL)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if type(v) is bytes else str(v)


def _erlang_reason(reason: list[Any], summary: str) -> Any:
    """How Erlang sees an occasional process's end: ``normal`` for an ok one
    (links to it do not fire), ``killed``, ``noproc``, else {Kind, Summary}."""
    kind = reason[0]
    if kind == "ok":
        return Atom("normal")
    if kind in ("killed", "noproc", "noconnection"):
        return Atom(kind)
    return (Atom(kind), summary or kind)


def _wire_reason(reason: Any, sender: Any) -> tuple[list[Any], str | None]:
    """A reason from a proxy (occ_dist.erl, reason/3) as a wire reason, and the
    node its pids belong to."""
    if reason == "noproc":
        return ["noproc", codec.dumps(None)], None
    kind = reason[0]
    if kind == "occasional":
        return msgpack.unpackb(reason[2], raw=False), _text(reason[1])
    if kind == "noconnection":
        return ["noconnection", codec.dumps(_text(reason[1]))], None
    return erlang_exit(reason[1]), None
