"""Erlang/OTP supervisors (API.md section 6), with restart backoff.

A Supervisor is a Server that traps exits and is linked to its children.
Specs are checked whole, in the caller, before any process starts. Restarts
follow OTP's supervisor.erl: one_for_one, one_for_all, rest_for_one,
simple_one_for_one; permanent/transient/temporary (a transient child is not
restarted after a normal end or a shutdown, see ``_is_shutdown``; a temporary
child never is, not even when a sibling's restart stopped it); more than
``intensity`` restarts within ``period`` seconds end the supervisor, children first.
``backoff=(first_s, max_s)`` delays repeated restarts of one child, from a
timer of the supervisor, so it keeps answering management calls meanwhile.

A child is a function (a linked process) or a kind of child that the
registry knows (occasional/behaviours/child_kinds.py): a Server subclass, a
partial of ``Supervisor.start`` (a subtree), of ``ports.open_port`` or of
``durable.spawn``, or a kind of the user's own. A followed kind (a durable
process) is followed across the incarnations the runtime starts; only its
final reason is an exit, and one its kind says ended for good (a durable
process that returned) is never started again, even when permanent.
Specs and options are checked in occasional/behaviours/specs.py.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..core import api
from ..core.context import current
from ..core.errors import ProcessExit
from ..core.match import ANY
from ..core.pid import Pid
from ..core.reasons import format_reason
from .child_kinds import (
    ChildKind as ChildKind,
    Ended,
    FollowedChildKind as FollowedChildKind,
    add_child_kind as add_child_kind,
    child_kind_of,
)
from .protocol import ERROR_TAG, RESTART_TAG
from .server import Server, Stop, call
from .specs import ChildSpec as ChildSpec, SupervisorOptions, check_children, check_significant

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("occasional.supervisor")


class TooManyRestarts(RuntimeError):
    """A supervisor restarted its children more than ``intensity`` times in ``period``."""

    __module__ = "occasional"

    def __init__(self, child: str, reason: Any, intensity: int = 0, period: float = 0.0) -> None:
        super().__init__(child, reason, intensity, period)
        self.child = child
        self.reason = reason
        self.intensity = intensity
        self.period = period

    def __str__(self) -> str:
        return (
            f"more than {self.intensity} restarts within {self.period} s; the supervisor gave up "
            f"after child {self.child!r} ended with {self.reason!r}"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TooManyRestarts) and (other.child, other.reason) == (self.child, self.reason)

    def __hash__(self) -> int:
        return hash(self.child)


def _is_reason(reason: Any) -> bool:
    return type(reason) is tuple and len(reason) == 2 and isinstance(reason[0], str)


def _is_shutdown(reason: Any) -> bool:
    """True for the reasons a transient child is not restarted after, as OTP's
    ``normal``, ``shutdown`` and ``{shutdown, Term}`` (supervisor.erl, do_restart;
    issue 10): ``("ok", value)``, ``("killed", "shutdown")`` (``kill(pid,
    "shutdown")``, a supervisor's orderly stop) and ``("killed", ("shutdown",
    term))`` (``kill(pid, ("shutdown", term))``). A process that ends itself
    with information returns it: ``("ok", value)``."""
    kind, detail = reason
    if kind == "ok":
        return True
    if kind != "killed":
        return False
    if type(detail) is tuple and len(detail) == 2:
        detail = detail[0]
    return type(detail) is str and detail == "shutdown"


@dataclass
class _Child:
    spec: ChildSpec
    pid: Pid | None = None
    extra: tuple[Any, ...] = ()
    prepared: api.Prepared | None = None  # serialised once, for every restart
    crashes: int = 0  # consecutive restarts, for the backoff
    last_exit: float = 0.0
    waiting: bool = False  # a backoff timer will restart it
    restarts: int = 0  # every restart so far, for `occasional ps`
    kind: ChildKind | None = None  # None: a plain function
    key: str | None = None  # a followed kind's child: what it is followed by

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class _State:
    opts: SupervisorOptions
    children: list[_Child]
    template: ChildSpec | None = None
    restarts: deque[float] = field(default_factory=deque)
    name: str = ""


class Supervisor(Server):
    """An Erlang/OTP supervisor. Start it with ``Supervisor.start(children, ...)``.

    The management calls take the supervisor as its pid or registered name, and
    a child by its id (for simple_one_for_one, by its pid).
    """

    __module__ = "occasional"

    @classmethod
    def start(  # type: ignore[override]  # takes child specs and options, not init's *args, as OTP's supervisor:start_link does
        cls,
        children: Sequence[dict[str, Any] | ChildSpec],
        *,
        strategy: str = "one_for_one",
        intensity: int = 1,
        period: float = 5.0,
        backoff: tuple[float, float] | None = None,
        auto_shutdown: str = "never",
        name: str | None = None,
        link: bool = False,
    ) -> Pid:
        """Start a supervisor; returns after every child started.

        A child that fails to start stops the ones already started and
        raises ProcessExit. Specs and options are checked here, in the
        caller, before any process starts.
        """
        # A user may pass a list; SupervisorOptions checks that it is a pair.
        pair = None if backoff is None else cast("tuple[float, float]", tuple(backoff))
        opts = SupervisorOptions(strategy, intensity, period, pair, auto_shutdown)
        specs = check_children(children, strategy)
        check_significant(specs, opts.auto_shutdown)
        return super().start(opts, specs, name=name, link=link)

    # -- management (classmethods called from any process) --------------------------

    @staticmethod
    def _ask(sup: Pid | str, request: tuple[Any, ...]) -> Any:
        answer = call(sup, request, timeout=None)
        if type(answer) is tuple and len(answer) == 2 and answer[0] == ERROR_TAG:
            raise answer[1]
        return answer

    @classmethod
    def which_children(cls, sup: Pid | str) -> list[tuple[str, Pid | None, str]]:
        """``(id, pid or None, restart)`` for each child, in start order."""
        return cls._ask(sup, ("which_children",))

    @classmethod
    def start_child(cls, sup: Pid | str, spec_or_args: dict[str, Any] | ChildSpec | tuple[Any, ...]) -> Pid:
        """Add and start a child (a spec; for simple_one_for_one, a tuple of extra args)."""
        if isinstance(spec_or_args, dict):
            spec_or_args = ChildSpec.from_dict(spec_or_args)
        elif type(spec_or_args) is not tuple and not isinstance(spec_or_args, ChildSpec):
            raise TypeError(
                f"start_child(sup, {spec_or_args!r}): pass a child spec dict, or for simple_one_for_one a tuple of extra arguments"
            )
        return cls._ask(sup, ("start_child", spec_or_args))

    @classmethod
    def terminate_child(cls, sup: Pid | str, id: str | Pid) -> None:
        """Stop a child; its spec stays (restart_child starts it again)."""
        cls._ask(sup, ("terminate_child", id))

    @classmethod
    def restart_child(cls, sup: Pid | str, id: str | Pid) -> Pid:
        """Start a terminated child again."""
        return cls._ask(sup, ("restart_child", id))

    @classmethod
    def delete_child(cls, sup: Pid | str, id: str | Pid) -> None:
        """Remove a terminated child's spec."""
        cls._ask(sup, ("delete_child", id))

    # -- the supervisor process ----------------------------------------------------------

    def init(self, opts: SupervisorOptions, specs: list[ChildSpec]) -> _State:
        api.trap_exits(True)
        st = _State(opts, [])
        me = api.slf()
        st.name = repr(me)
        if opts.strategy == "simple_one_for_one":
            st.template = specs[0]
            return st
        for spec in specs:
            child = _Child(spec)
            try:
                self._start(child)
            except BaseException:
                self._stop_all(st)
                raise
            st.children.append(child)
        return st

    def handle_call(self, request: Any, frm: Any, st: _State) -> Any:
        try:
            return self._manage(request, st), st
        except Exception as e:  # bad ids, bad specs, a child that failed to start: the caller's error
            return (ERROR_TAG, e), st

    def _manage(self, request: Any, st: _State) -> Any:
        op = request[0]
        if op == "which_children":
            if st.template is not None:
                return [(st.template.id, c.pid, c.spec.restart) for c in st.children]
            return [(c.id, c.pid, c.spec.restart) for c in st.children]
        if op == "start_child":
            arg = request[1]
            if st.template is not None:
                if type(arg) is not tuple:
                    raise TypeError(
                        f"start_child: this supervisor is simple_one_for_one; pass a tuple of extra arguments, not {arg!r}"
                    )
                child = _Child(st.template, extra=arg)
            else:
                if not isinstance(arg, ChildSpec):
                    raise TypeError(f"start_child: pass a child spec dict, not {arg!r}")
                check_significant([arg], st.opts.auto_shutdown)
                if any(c.id == arg.id for c in st.children):
                    raise ValueError(f"start_child: a child with the id {arg.id!r} already exists")
                child = _Child(arg)
            self._start(child)
            st.children.append(child)
            return child.pid
        child = self._find(request[1], st)
        if op == "terminate_child":
            self._stop(child)
            child.waiting = False
            if child.spec.restart == "temporary" or st.template is not None:
                st.children.remove(child)
            return None
        if op == "restart_child":
            if child.pid is not None:
                raise ValueError(f"restart_child: child {child.id!r} is running; terminate it first")
            child.waiting = False
            self._start(child)
            return child.pid
        if op == "delete_child":
            if child.pid is not None:
                raise ValueError(f"delete_child: child {child.id!r} is running; terminate it first")
            st.children.remove(child)
            return None
        raise ValueError(f"unknown supervisor request {request!r}")

    def _find(self, key: Any, st: _State) -> _Child:
        for c in st.children:
            if (st.template is None and c.id == key) or (st.template is not None and c.pid == key):
                return c
        raise ValueError(f"this supervisor has no child {key!r}; see Supervisor.which_children(sup)")

    def handle_info(self, msg: Any, st: _State) -> _State:
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "EXIT":
            for child in st.children:
                # By id: the EXIT names a plain Pid, a followed child's pid may be
                # of a subclass (a DurablePid).
                if child.pid is not None and child.pid.id == msg[1].id:
                    if child.key is not None:
                        self._incarnation_ended(child, st)
                    else:
                        self._exited(child, msg[2], st)
                    break
            else:
                # An incarnation that started while its followed child had no
                # process (a durable process asleep) has no pid here yet.
                for child in list(st.children):
                    if child.key is not None and child.pid is not None and child.pid.id == 0:
                        self._incarnation_ended(child, st)
        elif type(msg) is tuple and len(msg) == 2 and msg[0] == RESTART_TAG:
            for child in st.children:
                if child.waiting and id(child) == msg[1]:
                    child.waiting = False
                    self._restart(child, st)
                    break
        return st

    def terminate(self, reason: Any, st: _State) -> None:
        self._stop_all(st)
        self._event(st, None, reason, "shutdown")

    # -- restarts -------------------------------------------------------------------------

    def _incarnation_ended(self, child: _Child, st: _State) -> None:
        """An incarnation of a followed child ended: only the child's final end
        is an exit of the child (FollowedChildKind)."""
        assert isinstance(child.kind, FollowedChildKind) and child.key is not None
        now = child.kind.follow(child.key)
        if isinstance(now, Ended):
            self._exited(child, now.reason, st)
        else:
            child.pid = now  # the runtime started it again, or it has no process now

    def _exited(self, child: _Child, reason: Any, st: _State) -> None:
        child.pid = None
        restart = child.spec.restart
        # A child its kind says ended for good is not restarted, not even when
        # 'permanent': a durable process that returned never runs again (API.md section 7).
        finished = child.kind is not None and child.kind.ends_for_good(reason)
        if restart == "temporary" or (restart == "transient" and _is_shutdown(reason)) or finished:
            if restart == "temporary" or st.template is not None:
                st.children.remove(child)
            self._event(st, child, reason, "not_restarted")
            self._check_auto_shutdown(child, st)
            return
        self._count_restart(child, reason, st)
        group = self._group(child, st)
        for other in reversed(group[1:]):
            self._stop(other)
            # A temporary child is never restarted, not even one that a
            # sibling's restart stopped: it leaves the children (OTP's
            # terminate_children in supervisor.erl; issue 10).
            if other.spec.restart == "temporary":
                st.children.remove(other)
        now = time.monotonic()
        if now - child.last_exit > st.opts.period:
            child.crashes = 0
        child.last_exit = now
        child.crashes += 1
        delay = self._delay(child, st)
        if delay > 0:
            for c in group:
                c.waiting = True
            self._event(st, child, reason, "restart", delay)
            self._occ_send_after(delay, (RESTART_TAG, id(child)))
        else:
            self._event(st, child, reason, "restart")
            self._restart(child, st)

    def _group(self, child: _Child, st: _State) -> list[_Child]:
        """The crashed child first, then the siblings its strategy restarts with it."""
        strategy = st.opts.strategy
        if strategy == "one_for_all":
            return [child] + [c for c in st.children if c is not child]
        if strategy == "rest_for_one":
            i = st.children.index(child)
            return [child] + st.children[i + 1 :]
        return [child]

    def _restart(self, child: _Child, st: _State) -> None:
        group = self._group(child, st)
        ordered = [c for c in st.children if c in group]
        for c in ordered:
            c.waiting = False
            if c.pid is None:
                c.restarts += 1
                try:
                    self._start(c)
                except ProcessExit as e:
                    # A failed restart counts as another exit of that child.
                    self._exited(c, e.reason, st)
                    return

    def _delay(self, child: _Child, st: _State) -> float:
        """first_s before the first restart, doubling per restart up to max_s."""
        if st.opts.backoff is None:
            return 0.0
        first, cap = st.opts.backoff
        return float(min(cap, first * 2 ** (child.crashes - 1)))

    def _count_restart(self, child: _Child, reason: Any, st: _State) -> None:
        now = time.monotonic()
        restarts = st.restarts
        restarts.append(now)
        while restarts and now - restarts[0] > st.opts.period:
            restarts.popleft()
        if len(restarts) > st.opts.intensity:
            self._event(st, child, reason, "give_up")
            raise TooManyRestarts(child.id, reason, st.opts.intensity, st.opts.period)

    def _check_auto_shutdown(self, child: _Child, st: _State) -> None:
        mode = st.opts.auto_shutdown
        if mode == "never" or not child.spec.significant:
            return
        if mode == "any_significant" or not any(c.spec.significant and c.pid is not None for c in st.children):
            self._event(st, child, ("ok", None), "auto_shutdown")
            raise Stop("auto_shutdown")

    # -- starting and stopping children ---------------------------------------------------------

    def _start(self, child: _Child) -> None:
        ctx = current("Supervisor")
        ctx.spawn_meta = {"restarts": child.restarts, "child": child.id}
        try:
            self._start_child(child)
        finally:
            ctx.spawn_meta = None

    def _start_child(self, child: _Child) -> None:
        spec = child.spec
        args = spec.args + child.extra
        kind = child.kind = child_kind_of(spec.function)
        if kind is None:
            if child.prepared is None:
                child.prepared = api.Prepared(spec.function, args)
            child.pid = api.spawn_prepared(child.prepared, link=True)
            return
        child.pid = kind.start(spec.id, spec.function, args)
        if isinstance(kind, FollowedChildKind):
            child.key = kind.key(spec.function, args)

    def _stop(self, child: _Child) -> None:
        pid = child.pid
        if pid is None:
            return
        child.pid = None
        if child.key is not None:
            # Ended for good with ("killed", "shutdown"), whichever incarnation
            # runs or none (asleep); a kill loses a durable process nothing.
            assert isinstance(child.kind, FollowedChildKind)
            if pid.id:
                api.unlink(pid)
            child.kind.stop(child.key)
            try:
                api.receive(
                    lambda m: type(m) is tuple and len(m) == 3 and m[0] == "EXIT" and m[1].id == pid.id, timeout=0
                )
            except TimeoutError:
                pass
            return
        # Monitor before unlinking: the child is watched at every moment, so
        # an end in between is not logged as an end nobody watched.
        ref = api.monitor(pid)
        api.unlink(pid)
        shutdown = child.spec.shutdown
        if shutdown == "brutal_kill":
            api.kill(pid, "shutdown")
        else:
            # An orderly stop: a child that traps exits (a Server) runs
            # terminate; any other ends at once, as in OTP.
            api.exit_signal(pid, ("killed", "shutdown"))
        try:
            api.receive(("DOWN", ref, ANY, ANY), timeout=None if isinstance(shutdown, str) else shutdown)
        except TimeoutError:
            api.kill(pid, "shutdown")
            api.receive(("DOWN", ref, ANY, ANY))
        # The link is gone, but an EXIT sent before unlink may be queued.
        try:
            api.receive(("EXIT", pid, ANY), timeout=0)
        except TimeoutError:
            pass

    def _stop_all(self, st: _State) -> None:
        for child in reversed(st.children):
            self._stop(child)

    def _event(self, st: _State, child: _Child | None, reason: Any, action: str, delay: float = 0.0) -> None:
        """A record on ``occasional.supervisor`` with the fields supervisor,
        child, reason and action (restart, not_restarted, give_up, shutdown,
        auto_shutdown); a delayed restart also has ``delay`` in seconds."""
        level = logging.ERROR if action == "give_up" else logging.INFO
        child_id = child.id if child else None
        when = f" in {delay:g} s" if delay else ""
        log.log(
            level,
            "supervisor %s: %s child %r%s; it ended with %s",
            st.name,
            action,
            child_id,
            when,
            format_reason(reason) if _is_reason(reason) else repr(reason),
            extra={"supervisor": st.name, "child": child_id, "reason": reason, "action": action, "delay": delay},
        )
