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

A child is a function (a linked process), a Server subclass, a partial of
``Supervisor.start`` (a subtree), of ``ports.open_port`` or of
``durable.spawn``. A durable child is the durable process, followed across
the incarnations the runtime starts; only its final reason is an exit, and
one that returned is never started again, even when permanent
(occasional/durable/supervised.py).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .. import ports
from ..core import api
from ..core.context import current
from ..core.errors import ProcessExit
from ..core.match import ANY
from ..core.pid import Pid
from ..core.reasons import format_reason
from ..durable import supervised as durable_child
from .protocol import ERROR_TAG, RESTART_TAG
from .server import Server, Stop, call

log = logging.getLogger("occasional.supervisor")

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
RESTARTS = ("permanent", "transient", "temporary")
AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")
SPEC_KEYS = ("id", "function", "args", "restart", "shutdown", "significant")


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


def _is_server_start(f: Any) -> bool:
    """A Server subclass, its bound ``start``, or a partial of either."""
    while isinstance(f, functools.partial):
        f = f.func
    if isinstance(f, type):
        return issubclass(f, Server)
    owner = getattr(f, "__self__", None)
    return isinstance(owner, type) and issubclass(owner, Server) and getattr(f, "__name__", None) == "start"


def _spawn_args(f: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments a partial of durable.spawn passes it: (id, f, *args)."""
    while isinstance(f, functools.partial):
        args = f.args + args
        f = f.func
    return args


def _durable_id(f: Any, args: tuple[Any, ...]) -> str:
    return _spawn_args(f, args)[0]


@dataclass(frozen=True)
class ChildSpec:
    id: str
    function: Any
    args: tuple[Any, ...] = ()
    restart: str = "permanent"
    shutdown: float | str = 5.0
    significant: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TypeError(f"child spec id={self.id!r} is not a non-empty string; give each child a string id")
        if not callable(self.function):
            raise TypeError(
                f"child {self.id!r}: function={self.function!r} is not callable; "
                "pass a function, a Server subclass or a partial of Supervisor.start"
            )
        if type(self.args) is not tuple:
            raise TypeError(f"child {self.id!r}: args={self.args!r} is not a tuple; pass the arguments as a tuple")
        if durable_child.is_spawn(self.function):
            full = _spawn_args(self.function, self.args)
            if (full and (not isinstance(full[0], str) or not full[0])) or (len(full) > 1 and not callable(full[1])):
                raise TypeError(
                    f"child {self.id!r}: {self.function!r} does not start a durable process; "
                    "use functools.partial(durable.spawn, id, f, *args) with a non-empty string id and a callable f"
                )
        if self.restart not in RESTARTS:
            raise ValueError(
                f"child {self.id!r}: restart={self.restart!r} is not a restart type; use 'permanent', 'transient' or 'temporary'"
            )
        s = self.shutdown
        if s != "brutal_kill" and (
            isinstance(s, bool) or not isinstance(s, (int, float)) or not s >= 0 or math.isnan(s)
        ):
            raise ValueError(f"child {self.id!r}: shutdown={s!r} is not a shutdown; use seconds >= 0 or 'brutal_kill'")
        if not isinstance(self.significant, bool):
            raise TypeError(f"child {self.id!r}: significant={self.significant!r} is not True or False")
        if self.significant and self.restart == "permanent":
            raise ValueError(
                f"child {self.id!r}: a significant child must be 'transient' or 'temporary', not 'permanent'"
            )

    @classmethod
    def from_dict(cls, spec: Any) -> ChildSpec:
        if isinstance(spec, ChildSpec):
            return spec
        if not isinstance(spec, dict):
            raise TypeError(f"child spec {spec!r} is not a dict; write it as {{'id': ..., 'function': ...}}")
        unknown = [k for k in spec if k not in SPEC_KEYS]
        if unknown:
            raise ValueError(
                f"child spec {spec!r} has an unknown key {unknown[0]!r}; the keys are {', '.join(SPEC_KEYS)}"
            )
        for key in ("id", "function"):
            if key not in spec:
                raise ValueError(f"child spec {spec!r} has no {key!r}; 'id' and 'function' are required")
        return cls(**spec)


@dataclass(frozen=True)
class _Options:
    strategy: str
    intensity: int
    period: float
    backoff: tuple[float, float] | None
    auto_shutdown: str

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not a strategy; use one of {', '.join(STRATEGIES)}")
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int) or self.intensity < 0:
            raise ValueError(f"intensity={self.intensity!r} is not a number of restarts; use an int >= 0")
        if isinstance(self.period, bool) or not isinstance(self.period, (int, float)) or not self.period > 0:
            raise ValueError(f"period={self.period!r} is not a period; use seconds > 0")
        b = self.backoff
        if b is not None and not (
            type(b) in (tuple, list)
            and len(b) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)
            and 0 < b[0] <= b[1]
        ):
            raise ValueError(f"backoff={b!r} is not a backoff; use (first_s, max_s) with 0 < first_s <= max_s")
        if self.auto_shutdown not in AUTO_SHUTDOWN:
            raise ValueError(f"auto_shutdown={self.auto_shutdown!r}; use one of {', '.join(AUTO_SHUTDOWN)}")
        if self.strategy == "simple_one_for_one" and self.auto_shutdown != "never":
            # OTP refuses this pair as bad_combination when it checks the
            # supervisor flags (supervisor.erl); we follow it (issue 10).
            raise ValueError(
                f"strategy='simple_one_for_one' cannot have auto_shutdown={self.auto_shutdown!r} (OTP refuses it "
                "too); use auto_shutdown='never' with simple_one_for_one, or another strategy"
            )


def _check_children(specs: Any, strategy: str) -> list[ChildSpec]:
    if not isinstance(specs, (list, tuple)):
        raise TypeError(f"children={specs!r} is not a list of child specs")
    checked = [ChildSpec.from_dict(s) for s in specs]
    seen: set[str] = set()
    for spec in checked:
        if spec.id in seen:
            raise ValueError(f"two children have the id {spec.id!r}; ids must be unique")
        seen.add(spec.id)
    if strategy == "simple_one_for_one" and len(checked) != 1:
        raise ValueError(f"simple_one_for_one takes exactly one template spec, not {len(checked)}")
    return checked


def _check_significant(specs: list[ChildSpec], auto_shutdown: str) -> None:
    for spec in specs:
        if spec.significant and auto_shutdown == "never":
            raise ValueError(
                f"child {spec.id!r} is significant, which means nothing with auto_shutdown='never' (as in OTP 24); "
                "pass auto_shutdown='any_significant' or 'all_significant', or drop significant"
            )


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
    durable_id: str | None = None  # a durable child: the id it follows (durable/supervised.py)

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class _State:
    opts: _Options
    children: list[_Child]
    template: ChildSpec | None = None
    restarts: deque[float] = field(default_factory=deque)
    name: str = ""


class Supervisor(Server):
    """An Erlang/OTP supervisor. Start it with ``Supervisor.start(children, ...)``."""

    __module__ = "occasional"

    @classmethod
    def start(  # type: ignore[override]  # takes child specs and options, not init's *args, as OTP's supervisor:start_link does
        cls,
        children: Any,
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
        # tuple() of the list a user may pass has no length in its type; _Options checks that it is two.
        opts = _Options(strategy, intensity, period, tuple(backoff) if backoff is not None else None, auto_shutdown)  # type: ignore[arg-type]
        specs = _check_children(children, strategy)
        _check_significant(specs, opts.auto_shutdown)
        return super().start(opts, specs, name=name, link=link)

    # -- management (classmethods called from any process) --------------------------

    @staticmethod
    def _ask(sup: Any, request: tuple[Any, ...]) -> Any:
        answer = call(sup, request, timeout=None)
        if type(answer) is tuple and len(answer) == 2 and answer[0] == ERROR_TAG:
            raise answer[1]
        return answer

    @classmethod
    def which_children(cls, sup: Any) -> list[tuple[str, Pid | None, str]]:
        """``(id, pid or None, restart)`` for each child, in start order."""
        return cls._ask(sup, ("which_children",))

    @classmethod
    def start_child(cls, sup: Any, spec_or_args: Any) -> Pid:
        """Add and start a child (a spec; for simple_one_for_one, a tuple of extra args)."""
        if isinstance(spec_or_args, dict):
            spec_or_args = ChildSpec.from_dict(spec_or_args)
        elif type(spec_or_args) is not tuple and not isinstance(spec_or_args, ChildSpec):
            raise TypeError(
                f"start_child(sup, {spec_or_args!r}): pass a child spec dict, or for simple_one_for_one a tuple of extra arguments"
            )
        return cls._ask(sup, ("start_child", spec_or_args))

    @classmethod
    def terminate_child(cls, sup: Any, id: Any) -> None:
        """Stop a child; its spec stays (restart_child starts it again)."""
        cls._ask(sup, ("terminate_child", id))

    @classmethod
    def restart_child(cls, sup: Any, id: Any) -> Pid:
        """Start a terminated child again."""
        return cls._ask(sup, ("restart_child", id))

    @classmethod
    def delete_child(cls, sup: Any, id: Any) -> None:
        """Remove a terminated child's spec."""
        cls._ask(sup, ("delete_child", id))

    # -- the supervisor process ----------------------------------------------------------

    def init(self, opts: _Options, specs: list[ChildSpec]) -> _State:
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
                _check_significant([arg], st.opts.auto_shutdown)
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
                # By id: the EXIT names a plain Pid, a durable child's pid is a DurablePid.
                if child.pid is not None and child.pid.id == msg[1].id:
                    if child.durable_id is not None:
                        self._durable_exited(child, child.durable_id, st)
                    else:
                        self._exited(child, msg[2], st)
                    break
            else:
                # An incarnation that started while its durable child slept
                # (linked to us by central) has no pid here yet.
                for child in list(st.children):
                    if child.durable_id is not None and child.pid is not None and child.pid.id == 0:
                        self._durable_exited(child, child.durable_id, st)
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

    def _durable_exited(self, child: _Child, durable_id: str, st: _State) -> None:
        """An incarnation of a durable child ended: only the durable process's
        final end is an exit of the child (durable/supervised.py)."""
        state, value = durable_child.follow(durable_id)
        if state == "done":
            self._exited(child, value, st)
        else:
            child.pid = value  # the runtime started it again, or it sleeps

    def _exited(self, child: _Child, reason: Any, st: _State) -> None:
        child.pid = None
        restart = child.spec.restart
        # A durable process that returned is finished for good: its id never
        # runs again (API.md section 7), so not even 'permanent' restarts it.
        finished = child.durable_id is not None and reason[0] == "ok"
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
        if durable_child.is_spawn(spec.function):
            # The durable process, followed across its incarnations; None
            # when it has returned already (as OTP's ``ignore``).
            state, value = durable_child.start(spec.function, args)
            child.durable_id = _durable_id(spec.function, args)
            child.pid = None if state == "done" else value
        elif _is_server_start(spec.function) or ports.is_open_port(spec.function):
            f: Any = spec.function
            start = f.start if isinstance(f, type) and issubclass(f, Server) else f  # a Server subclass, or its start
            child.pid = start(*args, link=True)
        else:
            if child.prepared is None:
                child.prepared = api.Prepared(spec.function, args)
            child.pid = api.spawn_prepared(child.prepared, link=True)

    def _stop(self, child: _Child) -> None:
        pid = child.pid
        if pid is None:
            return
        child.pid = None
        if child.durable_id is not None:
            # Ended for good with ("killed", "shutdown"), whichever incarnation
            # runs or none (asleep); a kill loses a durable process nothing.
            if pid.id:
                api.unlink(pid)
            durable_child.stop(child.durable_id)
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
