"""Central's handlers for core's own requests (protocol.REQUESTS: spawn,
links, monitors, names, kills, ...).

They are added to central's op table like an extension's (``Central.add_ops``)
and change central's state only through its table and its public methods
(issue 11). Central checked each request's shape before a handler runs.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import msgpack

from . import control, protocol as P

if TYPE_CHECKING:
    from .central import Central, Handler
    from .table import Proc

_packb = msgpack.packb


class Requests:
    def __init__(self, central: Central) -> None:
        self.c = central
        self.table = central.table

    def handlers(self) -> dict[int, Handler]:
        return {
            P.SPAWN: self.op_spawn, P.CONNECT: self.op_connect, P.MONITOR: self.op_monitor,
            P.DEMONITOR: self.op_demonitor, P.LINK: self.op_link, P.UNLINK: self.op_unlink,
            P.TRAP: self.op_trap, P.KILL: self.op_kill, P.REGISTER: self.op_register,
            P.UNREGISTER: self.op_unregister, P.WHEREIS: self.op_whereis,
            P.REGISTERED: self.op_registered, P.PROCESSES: self.op_processes, P.INFO: self.op_info,
            P.EXIT: self.op_exit, P.STOP: self.op_stop, P.SIGNAL: self.op_signal,
        }  # fmt: skip

    def _name_taken(self, p: Proc, req: int, name: str, holder: Proc) -> None:
        """NameTaken, naming the holder by its Pid: ``NameTaken(name, holder_id,
        holder_os_pid)`` in the caller (core/errors.py). A holder not forked
        yet is named once its Linux pid is known, as whereis answers."""
        c = self.c
        c.when_forked(holder, lambda ok: c.error(p, req, "NameTaken", name, *holder.wire_pid()))

    # -- processes -------------------------------------------------------------------

    def op_spawn(self, p: Proc, msg: list[Any]) -> None:
        _, req, blob, name, link, mon_owner, mon_n, function, sys_path, title, meta = msg
        c = self.c
        why = c.refusal()
        if why is not None:
            c.error(p, req, "RuntimeError", f"cannot spawn: {why}")
            return
        holder = self.table.holder(name) if name is not None else None
        if holder is not None:
            self._name_taken(p, req, name, holder)
            return
        child = c.start_process(function, blob, sys_path, title)
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
            self.table.register_name(name, child)
        if link:
            c.link(child, p)
        if mon_owner is not None:
            self.table.add_monitor(p, (mon_owner, mon_n), child)

        def answer(ok: bool) -> None:
            if ok:
                c.reply(p, req, child.wire_pid())
            else:
                c.error(p, req, "RuntimeError", f"cannot spawn {function}: {child.fork_error}")

        c.when_forked(child, answer)

    def op_connect(self, p: Proc, msg: list[Any]) -> None:
        target = self.c.lookup(msg[1])
        if target is not None and target.os_pid is None:
            self.c.when_forked(target, lambda ok: self.op_connect(p, msg))
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

    def op_kill(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id, why = msg
        target = self.c.lookup(target_id)
        if target is not None:
            self.c.kill(target, ["killed", why])
        self.c.reply(p, req, None)

    def op_signal(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id, reason = msg
        target = self.c.lookup(target_id)
        if target is not None and target.trapping:
            if target.conn is not None:
                target.conn.send(P.exit_signal(p.wire_pid(), reason, False))
        elif target is not None and not target.owner:
            self.c.kill(target, reason)
        self.c.reply(p, req, None)

    def op_exit(self, p: Proc, msg: list[Any]) -> None:
        if p.reported is None:
            p.reported = [msg[1], msg[2]]
            p.summary = msg[3]

    def op_stop(self, p: Proc, msg: list[Any]) -> None:
        c = self.c
        if not p.owner:
            c.error(p, msg[1], "RuntimeError", "only the interpreter that started the runtime can stop it")
            return
        c.loop.create_task(c.shutdown(lambda: c.reply(p, msg[1], None)))

    # -- links and monitors ----------------------------------------------------------

    def op_monitor(self, p: Proc, msg: list[Any]) -> None:
        _, owner, n, target_id = msg
        target = self.c.lookup(target_id)
        if target is None:
            gone = self.table.get(target_id)  # ending: in the table, no longer live
            os_pid = gone.os_pid or 0 if gone is not None else 0
            if p.conn is not None:
                p.conn.send(P.down(owner, n, [target_id, os_pid], ["noproc", _packb(None)]))
            return
        self.table.add_monitor(p, (owner, n), target)

    def op_demonitor(self, p: Proc, msg: list[Any]) -> None:
        self.table.remove_monitor(p, (msg[1], msg[2]))

    def op_link(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id = msg
        target = self.c.lookup(target_id)
        if target is None:
            self.c.reply(p, req, False)
            return
        self.c.link(target, p)
        self.c.reply(p, req, True)

    def op_unlink(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id = msg
        self.table.unlink(p, target_id)  # the target may have ended: its id is enough
        self.c.reply(p, req, None)

    def op_trap(self, p: Proc, msg: list[Any]) -> None:
        _, req, flag = msg
        old = p.trapping
        p.trapping = bool(flag)
        self.c.reply(p, req, old)

    # -- names -----------------------------------------------------------------------

    def op_register(self, p: Proc, msg: list[Any]) -> None:
        _, req, name, target_id = msg
        c = self.c
        target = c.lookup(target_id)
        if target is None:
            why = f"register({name!r}, ...): the process is not alive; only a live process can hold a name"
            c.error(p, req, "ValueError", why)
            return
        holder = self.table.holder(name)
        if holder is not None:
            self._name_taken(p, req, name, holder)
            return
        if target.name is not None:
            why = f"register({name!r}, ...): the process is already registered as {target.name!r}; unregister it first"
            c.error(p, req, "ValueError", why)
            return
        self.table.register_name(name, target)
        c.reply(p, req, None)

    def op_unregister(self, p: Proc, msg: list[Any]) -> None:
        _, req, name = msg
        if self.table.unregister_name(name) is None:
            self.c.error(p, req, "ValueError", f"unregister({name!r}): no process is registered under that name")
            return
        self.c.reply(p, req, None)

    def op_whereis(self, p: Proc, msg: list[Any]) -> None:
        _, req, name = msg
        q = self.table.holder(name)
        if q is None:
            self.c.reply(p, req, None)
            return
        self.c.when_forked(q, lambda ok: self.c.reply(p, req, q.wire_pid() if ok else None))

    def op_registered(self, p: Proc, msg: list[Any]) -> None:
        self.c.reply(p, msg[1], self.table.registered())

    # -- what central knows ----------------------------------------------------------

    def op_processes(self, p: Proc, msg: list[Any]) -> None:
        pids = [q.wire_pid() for q in self.table if not q.hidden and not q.finalized and q.os_pid is not None]
        self.c.reply(p, msg[1], pids)

    def op_info(self, p: Proc, msg: list[Any]) -> None:
        _, req, target_id = msg
        c = self.c
        q = c.lookup(target_id)
        if q is not None and q.os_pid is None and not q.hidden:
            # A process may ask about itself before central has read its
            # FORKED report: answer once the pid is known, as whereis does.
            c.when_forked(q, lambda ok: self.op_info(p, msg) if ok else c.reply(p, req, None))
            return
        if q is None or q.hidden or q.os_pid is None:
            c.reply(p, req, None)
            return
        rows = self.table
        c.reply(
            p,
            req,
            {
                "os_pid": q.os_pid,
                "name": q.name,
                "function": q.function,
                "links": [r.wire_pid() for i in sorted(q.links) if (r := rows.get(i)) is not None],
                "monitors": [r.wire_pid() for i in q.monitoring.values() if (r := rows.get(i)) is not None],
                "monitored_by": [r.wire_pid() for i in q.monitored_by.values() if (r := rows.get(i)) is not None],
                "trap_exits": q.trapping,
                "started_at": q.started_at,
                "rss_bytes": control.rss(q.os_pid),
            },
        )
