"""Central services: request dispatch and exit propagation, on one uvloop event loop.

Started by the interpreter that starts a runtime (``occasional.core.boot``,
which forks the forkserver before anything else, so that one is a clean
interpreter). Every process holds one Unix socket to central. A process has
ended when central has its wait status, or has seen EOF on its socket after
it reported its reason (ARCHITECTURE.md, "Central services"). Central never
unpickles user data: user values cross it as bytes.

What lives where (issue 11): the process table in :mod:`.table`, the sockets
in :mod:`.transport`, signalling and reaping in :mod:`.reaping`, core's
request handlers in :mod:`.requests`, ``occasional ps`` in :mod:`.control`.
Code that runs inside central (the durable journal, nodes) extends it through
the methods under "extensions" below, and through nothing else.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from . import protocol as P
from .reaping import children, kill_children_soon, open_pidfd, reap_ended, sigkill, signal_process
from .reasons import describe_exit, reason_from_status
from .requests import Requests
from .table import Proc, Table
from .transport import Conn

if TYPE_CHECKING:
    import asyncio

    from . import control

log = logging.getLogger("occasional.core")

_packb = msgpack.packb
_unpackb = msgpack.unpackb
_STOP_REASON = ["killed", _packb("runtime stopped")]
# Ends worth a warning when no process watches: not a normal return, not a
# kill the runtime was asked for, not the echo of a linked partner's end.
_UNWATCHED_KINDS = ("error", "exitcode", "signal")
# How long shutdown waits for the processes it killed, then for the forkserver
# (before and after a SIGKILL), in seconds.
_STOP_PROCESSES_S = 3.0
_STOP_FORKSERVER_S = 1.0

Handler = Callable[[Proc, list[Any]], None]
ExitHook = Callable[[Proc, list[Any]], bool]


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
        self.table = Table()
        self.fs_pid = fs_pid
        self.fs_lost: str | None = None
        self.stopping = False
        self.stopped = loop.create_future()
        self.fs = Conn(loop, fs_sock, self._on_forkserver, self._on_forkserver_eof)
        # uvloop keeps SIGCHLD for itself: the forkserver's pidfd tells at once
        # when it ends (on_sigchld reaps it), and a slow timer reaps orphans.
        self.fs_pidfd = os.pidfd_open(fs_pid)
        self.fs_ended: asyncio.Future[int] = loop.create_future()  # its wait status, once reaped
        loop.add_reader(self.fs_pidfd, self.on_sigchld)
        # What extensions added (see "extensions" below).
        self._ops: dict[int, Handler] = {}
        self._exit_hooks: list[ExitHook] = []
        self._stop_hooks: list[Callable[[], None]] = []
        self._kept: dict[int, Callable[[int], None]] = {}
        self.facts: dict[str, Any] = {}  # sent with READY: {"node": name} (occasional.dist)
        self._users_ended: asyncio.Future[None] | None = None  # set in shutdown
        self.control: control.Server | None = None  # what `occasional ps` reads
        self.started_at = time.time()
        owner = self.table.new("<owner>", owner=True)
        owner.hidden = hidden_owner
        self.table.forked(owner, owner_pid)
        owner.pidfd = open_pidfd(owner_pid)
        self._attach(owner, owner_sock)
        # Core's own requests go through the same table as an extension's.
        self.add_ops("core", Requests(self).handlers())

    # -- extensions (issue 11: the surface code inside central builds on) ------------

    def add_ops(self, owner: str, handlers: Mapping[int, Handler]) -> None:
        """Handle the requests ``handlers`` names, each an op code ``owner``
        claimed with ``protocol.add_ops`` (ValueError naming the code and its
        holder otherwise). A code handled already gets the new handler."""
        P.check_owned(owner, handlers)
        self._ops.update(handlers)

    def add_exit_hook(self, hook: ExitHook) -> None:
        """Run ``hook(p, wire_reason)`` after each process is finalized. It
        returns True when it takes care of that end (the durable journal starts
        the process again), so the end is not logged as one nobody watches."""
        self._exit_hooks.append(hook)

    def add_stop_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` once when the runtime stops, after every process of it
        ended: the journal commits what is left and tells the nodes sharing it
        that this one left (issue 12)."""
        self._stop_hooks.append(hook)

    def keep_child(self, pid: int, on_ended: Callable[[int], None]) -> None:
        """A child an extension started (a node's Erlang VM): not killed as an
        orphan; reaped like the others, then ``on_ended(wait_status)`` runs."""
        self._kept[pid] = on_ended

    def refusal(self) -> str | None:
        """Why no new process can start now, or None when one can."""
        if self.fs_lost is not None:
            return f"{self.fs_lost}; start a new runtime"
        if self.stopping:
            return "the runtime is stopping"
        if self.fs.eof:  # its status is not known yet (_forkserver_ended)
            return "the runtime's forkserver ended; start a new runtime"
        return None

    def start_process(
        self, function: str, blob: bytes, sys_path: list[str], title: str, *, hidden: bool = False
    ) -> Proc:
        """A new process running ``blob`` (a function and its arguments as codec
        dumps them): its row, its socket to central, and the forkserver's fork.
        Its Linux pid comes later (``when_forked``). Check ``refusal()`` first."""
        why = self.refusal()
        if why is not None:
            raise RuntimeError(f"cannot start {function}: {why}")
        child = self.table.new(function)
        child.hidden = hidden
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._attach(child, mine)
        self.fs.send([P.FORK, child.id, blob, sys_path, title], [theirs.detach()])
        return child

    def when_forked(self, p: Proc, callback: Callable[[bool], None]) -> None:
        """Run ``callback(ok)`` once the forkserver reported ``p``'s fork (True)
        or that it never ran (False, ``p.fork_error`` says why); at once if known."""
        if p.os_pid is None:
            p.forked_waiters.append(callback)
        else:
            callback(p.os_pid != 0)

    def lookup(self, pid_id: Any) -> Proc | None:
        """The live process ``pid_id`` (any value a process sent), or None."""
        return self.table.lookup(pid_id)

    def link(self, a: Proc, b: Proc) -> None:
        self.table.link(a, b)

    def unlink(self, a: Proc, b: Proc) -> None:
        self.table.unlink(a, b.id)

    def reply(self, p: Proc, req: int, value: Any) -> None:
        if p.conn is not None:
            p.conn.send(P.reply(req, value))

    def error(self, p: Proc, req: int, name: str, *args: Any) -> None:
        """An error answer: the caller raises ``name(*args)`` (core/context.py _ERRORS)."""
        if p.conn is not None:
            p.conn.send(P.error(req, name, *args))

    def kill(self, p: Proc, reason: list[Any]) -> None:
        """End ``p`` with ``reason`` (a wire reason); nothing for a finalized one."""
        if p.finalized:
            return
        if p.kill_reason is None:
            p.kill_reason = reason
        if p.os_pid is None:
            return  # killed at FORKED
        self._end_process(p)

    # -- dispatch --------------------------------------------------------------------

    def _attach(self, p: Proc, sock: socket.socket) -> None:
        def on_frame(msg: list[Any]) -> None:
            op = msg[0]
            # An op code that is not an int (unhashable, or a float equal to
            # one) is unknown: it must not reach the dict lookup (issue 10).
            handler = self._ops.get(op) if type(op) is int else None
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
                    self.kill(p, ["killed", _packb(f"its connection to central broke: {error}")])
            self._maybe_finalize(p)

        def on_overflow(held: int) -> None:
            why = (
                f"its central socket held over {P.MAX_UNREAD} bytes unread ({held} bytes) for "
                f"{P.OUT_STALL_S:g} s; a process must receive to read what central sends it"
            )
            log.warning("process <occ %s> (%s): %s; killing it", p.os_pid, p.function, why)
            self.kill(p, ["killed", _packb(why)])

        conn = Conn(self.loop, sock, on_frame, on_eof, on_bad)
        if not p.owner:
            # The interpreter that started the runtime is the user's own: it is
            # never killed for what it leaves unread (see README, trust).
            conn.on_overflow = on_overflow
        self.table.attach(p, conn)

    def _refuse(self, p: Proc, msg: list[Any] | None, problem: str) -> None:
        """A malformed frame: an error reply when it has a request number
        (the caller raises TypeError), otherwise its sender ends with a
        reason that names the problem (issue 10); central, and every other
        process, go on, and so do the other frames of the same read."""
        req = P.request_number(msg) if msg is not None else 0
        if req:
            log.debug("process %s sent %s", p.id, problem)
            self.error(p, req, "TypeError", f"central refused {problem}")
            return
        if p.owner:
            # Never SIGKILL the user's own interpreter for a frame: the frame is dropped.
            log.warning("the process that started the runtime sent %s; ignored it", problem)
            return
        log.warning("process <occ %s> (%s) sent %s; killing it", p.os_pid, p.function, problem)
        self.kill(p, ["killed", _packb(f"sent {problem}")])

    # -- exits -----------------------------------------------------------------------

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
            signal_process(p.pidfd, p.os_pid, signal.SIGKILL, p.own_group)
            return
        if not signal_process(p.pidfd, p.os_pid, signal.SIGTERM, False):
            return

        def insist() -> None:
            if not p.finalized:
                signal_process(p.pidfd, p.os_pid or 0, signal.SIGKILL, True)

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
        watchers, linked = self.table.remove(p)
        if p.conn is not None:
            p.conn.close()
        if p.pidfd >= 0:
            os.close(p.pidfd)
            p.pidfd = -1
        self._run_forked_waiters(p, False)  # it ended before its fork was known
        pid = p.wire_pid()
        for w, (owner, n) in watchers:
            if w.conn is not None:
                w.conn.send(P.down(owner, n, pid, reason))
        handled = False
        for hook in self._exit_hooks:
            handled = hook(p, reason) or handled
        if reason[0] in _UNWATCHED_KINDS and not p.monitored_by and not p.links and not self.stopping and not handled:
            # Nobody will hear of this end otherwise (STYLE.md, "logging").
            log.warning(
                "process <occ %s> (%s) ended and no process monitors or links to it: %s",
                p.os_pid,
                p.function,
                p.summary or P.describe_reason(reason),
            )
        normal = reason[0] == "ok"
        for q in linked:
            if q.trapping:
                if q.conn is not None:
                    q.conn.send(P.exit_signal(pid, reason, True))
            elif not normal:
                self.kill(q, ["linked", [pid[0], pid[1], reason]])
        if not p.owner:
            self._kill_orphans()
        if p.owner and not self.stopping:
            # The interpreter that owns the runtime is gone: nothing may outlive it.
            self.loop.create_task(self.shutdown(None))
        ended = self._users_ended
        if ended is not None and not ended.done() and self.table.users() == 0:
            ended.set_result(None)

    def _run_forked_waiters(self, p: Proc, ok: bool) -> None:
        waiters, p.forked_waiters = p.forked_waiters, []
        for waiter in waiters:
            waiter(ok)

    # -- forkserver ------------------------------------------------------------------

    def _on_forkserver(self, msg: list[Any]) -> None:
        op = msg[0]
        if op == P.FORKED:
            _, pid_id, os_pid = msg
            p = self.table.get(pid_id)
            if p is None:
                return
            self.table.forked(p, os_pid)
            p.pidfd = open_pidfd(os_pid)  # why its pid is still its own here: reaping.open_pidfd
            self._run_forked_waiters(p, True)
            if p.kill_reason is not None:
                self._end_process(p)
            self._maybe_finalize(p)
        elif op == P.REAPED:
            _, os_pid, status = msg
            q = self.table.by_linux_pid(os_pid)
            if q is not None:
                q.status = status
                self._maybe_finalize(q)
        elif op == P.FORK_FAILED:
            _, pid_id, error = msg
            q = self.table.get(pid_id)
            if q is not None:
                q.fork_error = f"the forkserver could not fork: {error}"
                self.table.forked(q, 0)
                self._finalize(q, ["noproc", _packb(None)])

    def _on_forkserver_eof(self, error: str | None) -> None:
        if not self.stopping:
            self.loop.create_task(self._forkserver_ended())

    async def _forkserver_ended(self) -> None:
        """Its socket closed: its wait status comes once on_sigchld reaps it
        (its pidfd became readable); after a second without it, every process
        ends all the same."""
        status = self.fs_ended.result() if await self._forkserver_reaped() else None
        self._forkserver_lost(status)

    async def _forkserver_reaped(self) -> bool:
        """Whether on_sigchld reaps the forkserver within a second."""
        import asyncio

        try:
            await asyncio.wait_for(asyncio.shield(self.fs_ended), _STOP_FORKSERVER_S)
        except TimeoutError:
            return False
        return True

    def _forkserver_lost(self, status: int | None) -> None:
        if self.fs_lost is not None or self.stopping:
            return
        how = describe_exit(None if status is None else reason_from_status(status))
        self.fs_lost = f"the runtime's forkserver ended ({how})"
        log.error("%s; ending every process of the runtime", self.fs_lost)
        # Every user process dies with it (their death signal); the reason says
        # why, rather than inventing a status (STYLE.md, "Errors").
        reason = ["killed", _packb(self.fs_lost)]
        for p in self.table.rows():
            if p.owner or p.finalized:
                continue
            if p.os_pid is not None:
                self._end_process(p)
            else:
                p.fork_error = self.fs_lost
                self.table.forked(p, 0)
            self._finalize(p, reason)

    # -- reaping ---------------------------------------------------------------------

    def _kill_orphans(self) -> None:
        """Kill every process central adopted as subreaper: any child but the
        forkserver and those an extension keeps was reparented to it because
        the process that started it ended (a port whose executable
        double-forked, a process SIGKILLed with children running). No process
        outlives its owner (issue 5, supervisord #1101); on_sigchld reaps them."""
        for pid in children():
            if pid != self.fs_pid and pid not in self._kept and self.table.by_linux_pid(pid) is None:
                # A child of central's own that it has not reaped yet: its pid
                # cannot have been reused, so a plain kill is safe here.
                sigkill(pid)

    def reap_periodically(self) -> None:
        self._kill_orphans()
        self.on_sigchld()
        # A process over the unread limit is found here too when central has
        # nothing more to send it (Conn.check_unread runs on each send).
        for p in self.table.rows():
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
                if not self.fs_ended.done():
                    self.fs_ended.set_result(status)
                if not self.stopping:
                    self._forkserver_lost(status)
                continue
            p = self.table.by_linux_pid(pid)
            if pid in self._kept:
                self._kept.pop(pid)(status)
            elif p is not None and p.status is None:
                p.status = status
                self._maybe_finalize(p)

    # -- stop ------------------------------------------------------------------------

    async def shutdown(self, done: Callable[[], None] | None) -> None:
        import asyncio

        if self.stopping:
            return
        self.stopping = True
        self._users_ended = ended = self.loop.create_future()
        for p in self.table.rows():
            if not p.owner:
                self.kill(p, _STOP_REASON)
        if self.table.users():
            try:
                await asyncio.wait_for(ended, _STOP_PROCESSES_S)
            except TimeoutError:
                pass
        for p in self.table.rows():
            if not p.owner:
                if p.os_pid is None:
                    p.fork_error = "the runtime is stopping"
                    self.table.forked(p, 0)
                self._finalize(p, _STOP_REASON)
        for hook in self._stop_hooks:
            try:
                hook()
            except Exception:  # one extension's failure must not keep the others from stopping
                log.exception("a stop hook of the runtime failed")
        await self._stop_forkserver()
        await kill_children_soon(self.loop, timeout=2.0)  # orphans central adopted
        if self.control is not None:
            self.control.close()
        if done is not None:
            done()
        if not self.stopped.done():
            self.stopped.set_result(None)

    async def _stop_forkserver(self) -> None:
        """The forkserver exits when its socket closes; if it has not within a
        second, it is SIGKILLed and given another."""
        self.fs.close()
        if self.fs_pid > 0 and not await self._forkserver_reaped():
            sigkill(self.fs_pid)  # central's own child, not reaped: its pid is its own
            await self._forkserver_reaped()
        self.fs_pid = -1
        self.loop.remove_reader(self.fs_pidfd)
        os.close(self.fs_pidfd)
        self.fs_pidfd = -1
