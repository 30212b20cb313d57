"""Central services: the process table, names, links, monitors, the
connection broker and exit detection, on one uvloop event loop.

Started by the interpreter that starts a runtime (``occasional.core.boot``,
which forks the forkserver before anything else, so that one is a clean
interpreter). Every process holds one Unix socket to
central. A process has ended when central has its wait status, or has seen
EOF on its socket after it reported its reason (ARCHITECTURE.md, "Central
services"). Central never unpickles user data: user values cross it as bytes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from . import control, protocol as P
from .reaping import children, kill_children, reap_ended
from .reasons import reason_from_status
from .transport import Conn

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("occasional.core")

_packb = msgpack.packb
_unpackb = msgpack.unpackb
_STOP_REASON = ["killed", _packb("runtime stopped")]
# Ends worth a warning when no process watches: not a normal return, not a
# kill the runtime was asked for, not the echo of a linked partner's end.
_UNWATCHED_KINDS = ("error", "exitcode", "signal")


class Proc:
    """One row of the process table."""

    __slots__ = (
        "id",
        "os_pid",
        "conn",
        "name",
        "function",
        "links",
        "monitored_by",
        "monitoring",
        "trapping",
        "started_at",
        "reported",
        "kill_reason",
        "status",
        "hidden",
        "own_group",
        "owner",
        "forked_waiters",
        "finalized",
        "summary",
        "argv",
        "restarts",
        "started_mono",
        "child_id",
        "pidfd",
    )

    def __init__(self, id: int, function: str) -> None:
        self.id = id
        self.os_pid: int | None = None
        self.conn: Conn | None = None
        self.name: str | None = None
        self.function = function
        self.links: set[int] = set()
        self.monitored_by: dict[tuple[int, int], int] = {}  # ref -> watcher id
        self.monitoring: dict[tuple[int, int], int] = {}  # ref -> watched id
        self.trapping = False
        self.started_at = time.time()
        self.reported: list[Any] | None = None
        self.kill_reason: list[Any] | None = None
        self.status: int | None = None
        self.hidden = False
        self.own_group = True
        self.owner = False
        # Run once the forkserver reports the fork (True) or its failure (False):
        # answers that need the Linux pid wait here (spawn, whereis, connect).
        self.forked_waiters: list[Callable[[bool], None]] = []
        self.finalized = False
        self.summary = ""
        self.argv: list[str] | None = None  # a port's executable and arguments
        self.restarts = 0  # as its supervisor counted them
        self.child_id: str | None = None  # its id in its supervisor's children
        self.started_mono = time.monotonic()
        # A pidfd for its Linux process while central knows it alive: every
        # signal goes through it, never through a pid that may have been
        # reused by then (issue 10; see _open_pidfd).
        self.pidfd = -1


class Central:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        owner_sock: socket.socket,
        owner_pid: int,
        hidden_owner: bool,
        fs_sock: socket.socket,
        fs_pid: int,
    ) -> None:
        self.loop = loop
        self.procs: dict[int, Proc] = {}
        self.by_os_pid: dict[int, Proc] = {}
        self.names: dict[str, int] = {}
        self.next_id = 0
        self.fs_pid = fs_pid
        self.fs_lost: str | None = None
        self.stopping = False
        self.stopped = loop.create_future()
        self.fs = Conn(loop, fs_sock, self._on_forkserver, self._on_forkserver_eof)
        self.fs_pidfd = -1
        # Run after a process is finalized, with its wire reason: hooks that
        # extensions install (the durable journal restarts its processes).
        # A hook returns True when it takes care of that end (the durable
        # journal starts the process again), so it is not an end nobody watches.
        self.exit_hooks: list[Callable[[Proc, list[Any]], bool]] = []
        self.control: control.Server | None = None  # what `occasional ps` reads
        self.started_at = time.time()
        owner = self._new_proc("<owner>")
        owner.os_pid = owner_pid
        owner.own_group = False
        owner.owner = True
        owner.hidden = hidden_owner
        self.by_os_pid[owner_pid] = owner
        _open_pidfd(owner)
        self._attach(owner, owner_sock)
        self.ops: dict[int, Callable[[Proc, list[Any]], None]] = {
            P.SPAWN: self.op_spawn, P.CONNECT: self.op_connect, P.MONITOR: self.op_monitor,
            P.DEMONITOR: self.op_demonitor, P.LINK: self.op_link, P.UNLINK: self.op_unlink,
            P.TRAP: self.op_trap, P.KILL: self.op_kill, P.REGISTER: self.op_register,
            P.UNREGISTER: self.op_unregister, P.WHEREIS: self.op_whereis,
            P.REGISTERED: self.op_registered, P.PROCESSES: self.op_processes, P.INFO: self.op_info,
            P.EXIT: self.op_exit, P.STOP: self.op_stop, P.SIGNAL: self.op_signal,
        }  # fmt: skip

    # -- table -------------------------------------------------------------------

    def _new_proc(self, function: str) -> Proc:
        self.next_id += 1
        p = Proc(self.next_id, function)
        self.procs[p.id] = p
        return p

    def _attach(self, p: Proc, sock: socket.socket) -> None:
        def on_frame(msg: list[Any]) -> None:
            op = msg[0]
            # An op code that is not an int (unhashable, or a float equal to
            # one) is unknown: it must not reach the dict lookup (issue 10).
            handler = self.ops.get(op) if type(op) is int else None
            if handler is None:
                self._refuse(p, msg, f"a control frame with an unknown op code {P.short_repr(op)}")
                return
            problem = P.check(msg)
            if problem is not None:
                self._refuse(p, msg, f"a malformed request: {problem}")
                return
            try:
                handler(p, msg)
            except Exception as e:  # a handler's bug ends that process, never central
                log.exception("bad request from process %s: %s", p.id, P.short_repr(msg[:2]))
                self._refuse(p, msg, f"a request central could not handle ({e!r})")

        def on_bad(problem: str) -> None:
            self._refuse(p, None, problem)

        def on_eof(error: str | None) -> None:
            if error:
                # Bad bytes end that connection, and a process that cannot talk
                # to central cannot be part of the runtime (API.md section 10).
                log.warning("process %s broke its connection to central: %s", p.id, error)
                if not p.owner:
                    self._kill(p, ["killed", _packb(f"its connection to central broke: {error}")])
            self._maybe_finalize(p)

        def on_overflow(held: int) -> None:
            why = (
                f"its central socket held over {P.MAX_UNREAD} bytes unread ({held} bytes) for "
                f"{P.OUT_STALL_S:g} s; a process must receive to read what central sends it"
            )
            log.warning("process <occ %s> (%s): %s; killing it", p.os_pid, p.function, why)
            self._kill(p, ["killed", _packb(why)])

        p.conn = Conn(self.loop, sock, on_frame, on_eof, on_bad)
        if not p.owner:
            # The interpreter that started the runtime is the user's own: it is
            # never killed for what it leaves unread (see README, trust).
            p.conn.on_overflow = on_overflow

    def _refuse(self, p: Proc, msg: list[Any] | None, problem: str) -> None:
        """A malformed frame: an error reply when it has a request number
        (the caller raises TypeError), otherwise its sender ends with a
        reason that names the problem (issue 10); central, and every other
        process, go on, and so do the other frames of the same read."""
        req = P.request_number(msg) if msg is not None else 0
        if req:
            log.debug("process %s sent %s", p.id, problem)
            self._error(p, req, "TypeError", f"central refused {problem}")
            return
        if p.owner:
            # Never SIGKILL the user's own interpreter for a frame: the frame is dropped.
            log.warning("the process that started the runtime sent %s; ignored it", problem)
            return
        log.warning("process <occ %s> (%s) sent %s; killing it", p.os_pid, p.function, problem)
        self._kill(p, ["killed", _packb(f"sent {problem}")])

    def _pid(self, p: Proc) -> list[int]:
        return [p.id, p.os_pid or 0]

    def _reply(self, p: Proc, req: int, value: Any) -> None:
        if p.conn is not None:
            p.conn.send([P.REPLY, req, True, value])

    def _error(self, p: Proc, req: int, name: str, *args: Any) -> None:
        if p.conn is not None:
            p.conn.send([P.REPLY, req, False, [name, *args]])

    def _live(self, pid_id: Any) -> Proc | None:
        p = self.procs.get(pid_id) if type(pid_id) is int else None
        if p is None or p.finalized:
            return None
        return p

    # -- requests ------------------------------------------------------------------

    def op_spawn(self, p: Proc, msg: list[Any]) -> None:
        _, req, blob, name, link, mon_owner, mon_n, function, sys_path, title, meta = msg
        if self.fs_lost is not None:
            self._error(p, req, "RuntimeError", f"cannot spawn: {self.fs_lost}; start a new runtime")
            return
        if self.stopping:
            self._error(p, req, "RuntimeError", "cannot spawn: the runtime is stopping")
            return
        if name is not None and name in self.names:
            self._error(p, req, "NameTaken", name)
            return
        child = self._new_proc(function)
        if meta:
            argv = meta.get("argv")
            if isinstance(argv, list):
                child.argv = [str(a) for a in argv]
            restarts = meta.get("restarts")
            if type(restarts) is int:
                child.restarts = restarts
            if isinstance(meta.get("child"), str):
                child.child_id = meta["child"]
        if name is not None:
            child.name = name
            self.names[name] = child.id
        if link:
            child.links.add(p.id)
            p.links.add(child.id)
        if mon_owner is not None:
            ref = (mon_owner, mon_n)
            child.monitored_by[ref] = p.id
            p.monitoring[ref] = child.id
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._attach(child, mine)

        def answer(ok: bool) -> None:
            if ok:
                self._reply(p, req, self._pid(child))
            else:
                self._error(p, req, "RuntimeError", f"cannot spawn {function}: the forkserver could not fork")

        child.forked_waiters.append(answer)
        self.fs.send([P.FORK, child.id, blob, sys_path, title], [theirs.detach()])

    def op_connect(self, p: Proc, msg: list[Any]) -> None:
        target = self._live(msg[1])
        if target is not None and target.os_pid is None:
            target.forked_waiters.append(lambda ok: self.op_connect(p, msg))
            return
        if target is None or target.conn is None or p.finalized or p.conn is None:
            if p.conn is not None:
                p.conn.send([P.PEER_DEAD, msg[1]])
            return
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Both ends go out in this one step, so both processes see their
        # sockets for one another in the same order (see Context._add_peer).
        p.conn.send([P.PEER, target.id, target.os_pid], [a.detach()])
        target.conn.send([P.PEER, p.id, p.os_pid], [b.detach()])

    def op_monitor(self, p: Proc, msg: list[Any]) -> None:
        _, owner, n, target_id = msg
        target = self._live(target_id)
        if target is None:
            os_pid = self.procs[target_id].os_pid if target_id in self.procs else 0
            if p.conn is not None:
                p.conn.send([P.DOWN, owner, n, target_id, os_pid or 0, ["noproc", _packb(None)]])
            return
        target.monitored_by[(owner, n)] = p.id
        p.monitoring[(owner, n)] = target.id

    def op_demonitor(self, p: Proc, msg: list[Any]) -> None:
        ref = (msg[1], msg[2])
        target_id = p.monitoring.pop(ref, None)
        if target_id is not None and target_id in self.procs:
            self.procs[target_id].monitored_by.pop(ref, None)

    def op_link(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id = msg
        target = self._live(target_id)
        if target is None:
            self._reply(p, req, False)
            return
        if target is not p:
            target.links.add(p.id)
            p.links.add(target.id)
        self._reply(p, req, True)

    def op_unlink(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id = msg
        p.links.discard(target_id)
        if target_id in self.procs:
            self.procs[target_id].links.discard(p.id)
        self._reply(p, req, None)

    def op_trap(self, p: Proc, msg: list[Any]) -> None:
        _, req, flag = msg
        old = p.trapping
        p.trapping = bool(flag)
        self._reply(p, req, old)

    def op_kill(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id, why = msg
        target = self._live(target_id)
        if target is not None:
            self._kill(target, ["killed", why])
        self._reply(p, req, None)

    def op_signal(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id, reason = msg
        target = self._live(target_id)
        if target is not None and target.trapping:
            if target.conn is not None:
                target.conn.send([P.EXIT_SIGNAL, p.id, p.os_pid or 0, reason, False])
        elif target is not None and not target.owner:
            self._kill(target, reason)
        self._reply(p, req, None)

    def op_register(self, p: Proc, msg: list[Any]) -> None:
        _, req, name, target_id = msg
        target = self._live(target_id)
        if target is None:
            self._error(
                p,
                req,
                "ValueError",
                f"register({name!r}, ...): the process is not alive; only a live process can hold a name",
            )
            return
        holder = self.names.get(name)
        if holder is not None:
            self._error(p, req, "NameTaken", name)
            return
        if target.name is not None:
            self._error(
                p,
                req,
                "ValueError",
                f"register({name!r}, ...): the process is already registered as {target.name!r}; unregister it first",
            )
            return
        target.name = name
        self.names[name] = target.id
        self._reply(p, req, None)

    def op_unregister(self, p: Proc, msg: list[Any]) -> None:
        _, req, name = msg
        holder = self.names.pop(name, None)
        if holder is None:
            self._error(p, req, "ValueError", f"unregister({name!r}): no process is registered under that name")
            return
        self.procs[holder].name = None
        self._reply(p, req, None)

    def op_whereis(self, p: Proc, msg: list[Any]) -> None:
        _, req, name = msg
        holder = self.names.get(name)
        if holder is None:
            self._reply(p, req, None)
            return
        q = self.procs[holder]
        if q.os_pid is None:
            q.forked_waiters.append(lambda ok: self._reply(p, req, self._pid(q) if ok else None))
            return
        self._reply(p, req, self._pid(q))

    def op_registered(self, p: Proc, msg: list[Any]) -> None:
        self._reply(p, msg[1], sorted(self.names))

    def op_processes(self, p: Proc, msg: list[Any]) -> None:
        self._reply(
            p,
            msg[1],
            [self._pid(q) for q in self.procs.values() if not q.hidden and not q.finalized and q.os_pid is not None],
        )

    def op_info(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id = msg
        q = self._live(target_id)
        if q is not None and q.os_pid is None and not q.hidden:
            # A process may ask about itself before central has read its
            # FORKED report: answer once the pid is known, as whereis does.
            q.forked_waiters.append(lambda ok: self.op_info(p, msg) if ok else self._reply(p, req, None))
            return
        if q is None or q.hidden or q.os_pid is None:
            self._reply(p, req, None)
            return
        self._reply(
            p,
            req,
            {
                "os_pid": q.os_pid,
                "name": q.name,
                "function": q.function,
                "links": [self._pid(self.procs[i]) for i in sorted(q.links) if i in self.procs],
                "monitors": [self._pid(self.procs[i]) for i in q.monitoring.values() if i in self.procs],
                "monitored_by": [self._pid(self.procs[i]) for i in q.monitored_by.values() if i in self.procs],
                "trap_exits": q.trapping,
                "started_at": q.started_at,
                "rss_bytes": _rss(q.os_pid),
            },
        )

    def op_exit(self, p: Proc, msg: list[Any]) -> None:
        if p.reported is None:
            p.reported = [msg[1], msg[2]]
            p.summary = msg[3]

    def op_stop(self, p: Proc, msg: list[Any]) -> None:
        if not p.owner:
            self._error(p, msg[1], "RuntimeError", "only the interpreter that started the runtime can stop it")
            return
        self.loop.create_task(self.shutdown(lambda: self._reply(p, msg[1], None)))

    # -- exits ---------------------------------------------------------------------

    def _kill(self, p: Proc, reason: list[Any]) -> None:
        if p.finalized:
            return
        if p.kill_reason is None:
            p.kill_reason = reason
        if p.os_pid is None:
            return  # killed at FORKED
        self._end_process(p)

    def _end_process(self, p: Proc) -> None:
        """SIGKILL to the process group; a port gets SIGTERM first.

        A port's process has adopted whatever its executable double-forked
        (it is a subreaper); killed outright, it would hand those to central,
        which may itself be dying (its owner's EOF arrives before its death
        signal), and they would escape. On SIGTERM it kills all of it first
        (occasional/ports/driver.py); SIGKILL follows if it has not ended.
        """
        assert p.os_pid is not None
        if p.argv is None:
            _signal(p, signal.SIGKILL, p.own_group)
            return
        if not _signal(p, signal.SIGTERM, False):
            return

        def insist() -> None:
            if not p.finalized:
                _signal(p, signal.SIGKILL, True)

        self.loop.call_later(1.0, insist)

    def _maybe_finalize(self, p: Proc) -> None:
        if p.finalized or p.os_pid is None:
            return
        eof = p.conn is None or p.conn.eof
        if p.status is None and not (eof and p.reported is not None) and not (eof and p.owner):
            return
        if p.conn is not None and not p.conn.eof:
            p.conn.drain()  # a report may still be in the socket
            if p.finalized:
                return
        if p.reported is not None:
            reason = p.reported
        elif p.kill_reason is not None:
            reason = p.kill_reason
        elif p.status is not None:
            kind, detail = reason_from_status(p.status)
            reason = [kind, _packb(detail)]
        else:
            reason = ["killed", _packb("its connection to central closed")]
        self._finalize(p, reason)

    def _finalize(self, p: Proc, reason: list[Any]) -> None:
        p.finalized = True
        del self.procs[p.id]
        if p.os_pid is not None and self.by_os_pid.get(p.os_pid) is p:
            del self.by_os_pid[p.os_pid]
        # Free the name before any DOWN goes out: whoever sees the DOWN and
        # asks whereis() finds it free (issue 3).
        if p.name is not None and self.names.get(p.name) == p.id:
            del self.names[p.name]
        if p.conn is not None:
            p.conn.close()
        if p.pidfd >= 0:
            os.close(p.pidfd)
            p.pidfd = -1
        pid = self._pid(p)
        for (owner, n), watcher_id in p.monitored_by.items():
            w = self.procs.get(watcher_id)
            if w is not None and w.conn is not None:
                w.monitoring.pop((owner, n), None)
                w.conn.send([P.DOWN, owner, n, pid[0], pid[1], reason])
        for ref, watched_id in p.monitoring.items():
            q = self.procs.get(watched_id)
            if q is not None:
                q.monitored_by.pop(ref, None)
        normal = reason[0] == "ok"
        handled = False
        for hook in self.exit_hooks:
            handled = hook(p, reason) or handled
        if reason[0] in _UNWATCHED_KINDS and not p.monitored_by and not p.links and not self.stopping and not handled:
            # Nobody will hear of this end otherwise (STYLE.md, "logging").
            log.warning(
                "process <occ %s> (%s) ended and no process monitors or links to it: %s",
                p.os_pid,
                p.function,
                p.summary or _describe_wire(reason),
            )
        for lid in sorted(p.links):
            q = self.procs.get(lid)
            if q is None:
                continue
            q.links.discard(p.id)
            if q.trapping:
                if q.conn is not None:
                    q.conn.send([P.EXIT_SIGNAL, pid[0], pid[1], reason, True])
            elif not normal:
                self._kill(q, ["linked", [pid[0], pid[1], reason]])
        if not p.owner:
            self._kill_orphans()
        if p.owner and not self.stopping:
            # The interpreter that owns the runtime is gone: nothing may outlive it.
            self.loop.create_task(self.shutdown(None))

    # -- forkserver --------------------------------------------------------------------

    def _on_forkserver(self, msg: list[Any]) -> None:
        op = msg[0]
        if op == P.FORKED:
            _, pid_id, os_pid = msg
            p = self.procs.get(pid_id)
            if p is None:
                return
            p.os_pid = os_pid
            self.by_os_pid[os_pid] = p
            _open_pidfd(p)
            waiters, p.forked_waiters = p.forked_waiters, []
            for waiter in waiters:
                waiter(True)
            if p.kill_reason is not None:
                self._end_process(p)
            self._maybe_finalize(p)
        elif op == P.REAPED:
            _, os_pid, status = msg
            p = self.by_os_pid.get(os_pid)
            if p is not None:
                p.status = status
                self._maybe_finalize(p)
        elif op == P.FORK_FAILED:
            _, pid_id, error = msg
            p = self.procs.get(pid_id)
            if p is not None:
                waiters, p.forked_waiters = p.forked_waiters, []
                p.os_pid = 0
                for waiter in waiters:
                    waiter(False)
                self._finalize(p, ["noproc", _packb(None)])

    def _on_forkserver_eof(self, error: str | None) -> None:
        if not self.stopping:
            self.loop.call_soon(self._forkserver_lost)

    def _forkserver_lost(self, status: int | None = None) -> None:
        if self.fs_lost is not None or self.stopping:
            return
        if status is None:
            status = _wait_for(self.fs_pid, 1.0)
        how = "unknown status" if status is None else _describe_status(status)
        self.fs_lost = f"the runtime's forkserver ended ({how})"
        log.error("%s; ending every process of the runtime", self.fs_lost)
        # Every user process dies with it (their death signal); the reason says
        # why, rather than inventing a status (STYLE.md, "Errors").
        reason = ["killed", _packb(self.fs_lost)]
        for p in list(self.procs.values()):
            if p.owner or p.finalized:
                continue
            if p.os_pid is not None:
                self._end_process(p)
            else:
                p.os_pid = 0
            self._finalize(p, reason)

    def _kill_orphans(self) -> None:
        """Kill every process central adopted as subreaper.

        Central's only child of its own is the forkserver; anything else was
        reparented to it because the process that started it ended (a port
        whose executable double-forked, a process SIGKILLed with children
        running). No process outlives the process that owns it (issue 5,
        supervisord #1101): they are killed, and reaped by on_sigchld.
        """
        for pid in children():
            if pid != self.fs_pid and pid not in self.by_os_pid:
                # A child of central's own that it has not reaped yet: its pid
                # cannot have been reused, so a plain kill is safe here.
                _sigkill(pid, False)

    def reap_periodically(self) -> None:
        self._kill_orphans()
        self.on_sigchld()
        # A process over the unread limit is found here too when central has
        # nothing more to send it (Conn.check_unread runs on each send).
        for p in list(self.procs.values()):
            if p.conn is not None and p.conn.out_bytes > P.MAX_UNREAD:
                p.conn.check_unread()
        if not self.stopping:
            self.loop.call_later(0.5, self.reap_periodically)

    def on_sigchld(self) -> None:
        # Central is a child subreaper: orphans of user processes, and user
        # processes themselves once the forkserver is gone, are reaped here.
        for pid, status in reap_ended():
            if pid == self.fs_pid:
                self.fs_pid = -1
                self.loop.remove_reader(self.fs_pidfd)
                if not self.stopping:
                    self._forkserver_lost(status)
                continue
            p = self.by_os_pid.get(pid)
            if p is not None and p.status is None:
                p.status = status
                self._maybe_finalize(p)

    # -- occasional ps -------------------------------------------------------------------

    def table(self) -> dict[str, Any]:
        """What ``occasional ps`` shows of this runtime."""
        now = time.monotonic()
        owner = next((p for p in self.procs.values() if p.owner), None)
        rows = []
        for p in self.procs.values():
            if p.finalized or (p.hidden and not p.owner):
                continue
            rows.append(
                {
                    "id": p.id,
                    "os_pid": p.os_pid,
                    "name": p.name,
                    "child_id": p.child_id,
                    "kind": "owner" if p.owner else "port" if p.argv is not None else "process",
                    "function": p.function if p.argv is None else None,
                    "argv": p.argv
                    if p.argv is not None
                    else (control.cmdline(p.os_pid) if p.owner and p.os_pid else None),
                    "state": "starting" if p.os_pid is None else control.proc_state(p.os_pid),
                    "restarts": p.restarts,
                    "uptime_s": round(now - p.started_mono, 3),
                    "rss_bytes": _rss(p.os_pid) if p.os_pid else None,
                    "exe_pid": control.first_child(p.os_pid) if p.argv is not None and p.os_pid else None,
                }
            )
        return {
            "central": os.getpid(),
            "owner": owner.os_pid if owner is not None else None,
            "command": control.cmdline(owner.os_pid) if owner is not None and owner.os_pid else [],
            "started_at": self.started_at,
            "processes": rows,
        }

    # -- stop -----------------------------------------------------------------------------

    async def shutdown(self, done: Callable[[], None] | None) -> None:
        import asyncio

        if self.stopping:
            return
        self.stopping = True
        for p in list(self.procs.values()):
            if not p.owner:
                self._kill(p, _STOP_REASON)
        deadline = time.monotonic() + 3.0
        while any(not p.owner for p in self.procs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        for p in list(self.procs.values()):
            if not p.owner:
                p.os_pid = p.os_pid or 0
                self._finalize(p, _STOP_REASON)
        # The forkserver exits when its socket closes; anything left of it is killed.
        self.fs.close()
        if self.fs_pidfd >= 0:
            self.loop.remove_reader(self.fs_pidfd)
        if self.fs_pid > 0:
            if _wait_for(self.fs_pid, 1.0) is None:
                _sigkill(self.fs_pid, False)  # central's own child, not reaped: its pid is its own
                _wait_for(self.fs_pid, 1.0)
            self.fs_pid = -1
        _kill_and_reap_children()
        if self.control is not None:
            self.control.close()
        if done is not None:
            done()
        if not self.stopped.done():
            self.stopped.set_result(None)


def _open_pidfd(p: Proc) -> None:
    """Take a pidfd for ``p``'s process as soon as its pid is known (FORKED).

    Why a signal through it cannot reach a stranger: a pid is free for reuse
    only once its process was reaped, and a pidfd refers to the process, not
    to the number (ESRCH once it was reaped). The forkserver reports FORKED
    before it can reap that child (it reaps on a later turn of its loop,
    after sending FORKED), so the pid is still the child's unless, in the
    moment the FORKED frame spends in the socket, the child ended, was
    reaped and the kernel handed its number out again after cycling through
    every other pid (pid_max). The owner is central's parent (central dies
    with it). A process central finalized has its pidfd closed and is never
    signalled again (_kill returns at once for it).
    """
    if p.os_pid:
        try:
            p.pidfd = os.pidfd_open(p.os_pid)
        except OSError:
            p.pidfd = -1  # ESRCH: it was reaped already; there is nothing left to signal


def _signal(p: Proc, sig: int, group: bool) -> bool:
    """Send ``sig`` to ``p``'s process (and its process group); False when it is gone."""
    if p.pidfd < 0 or p.os_pid is None:  # a pidfd is opened only once the os_pid is known
        return False
    if group:
        # The group's id is the leader's pid. Probing the leader through its
        # pidfd first shows it is not reaped, so that number is still its own
        # and killpg reaches our group, not a group that reused the number.
        try:
            signal.pidfd_send_signal(p.pidfd, 0)
            os.killpg(p.os_pid, sig)
        except OSError:
            pass
    try:
        signal.pidfd_send_signal(p.pidfd, sig)
    except OSError:  # ProcessLookupError: it has ended and was reaped
        return False
    return True


def _sigkill(os_pid: int, group: bool) -> None:
    """SIGKILL by pid: only for central's own children it has not reaped
    (their pids cannot have been reused); user processes go through _signal."""
    if os_pid <= 0:
        return
    try:
        if group:
            os.killpg(os_pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(os_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for(pid: int, timeout: float) -> int | None:
    """waitpid with a deadline; the status, or None if still running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == pid:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.001)


def _describe_wire(reason: list[Any]) -> str:
    kind, detail = reason
    if kind == "signal":
        return f"killed by signal {_unpackb(detail)}"
    if kind == "exitcode":
        return f"exited with status {_unpackb(detail)}"
    return kind


def _describe_status(status: int) -> str:
    kind, detail = reason_from_status(status)
    return f"killed by {detail}" if kind == "signal" else f"exit status {detail}"


def _kill_and_reap_children() -> None:
    """Kill and reap every child central still has (orphans it adopted)."""
    kill_children(timeout=2.0)
    for _pid, _status in reap_ended():
        pass


def _rss(os_pid: int) -> int | None:
    try:
        with open(f"/proc/{os_pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
