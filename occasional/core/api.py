"""The process verbs of the contract (API.md sections 2 to 5).

Each function finds the calling process's context, checks its arguments in
the caller (STYLE.md, "Errors"), and delegates. The checks and spawn helpers
without a leading underscore are also for the layers above core (behaviours,
ports, durable), which start processes and check arguments the same way.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import codec, context as _context, protocol as P
from .checks import check_text, check_timeout, format_seconds
from .context import current
from .errors import NoProcess, ProcessExit
from .match import compile_match, describe as describe_match
from .pid import Pid, Port, Ref, remote_ops, this_node

if TYPE_CHECKING:
    from .context import Context


def describe_function(f: Any) -> str:
    """What ``occasional ps`` shows as a process's function: ``module.qualname``,
    or what the function's ``_occ_describe`` attribute says (a Server's class)."""
    described = getattr(f, "_occ_describe", None)
    if described is not None:
        return described(f)
    if isinstance(f, functools.partial):
        inner = getattr(f.func, "_occ_describe", None)
        if inner is not None:
            return inner(f)
        return f"partial({describe_function(f.func)})"
    module = getattr(f, "__module__", None)
    qualname = getattr(f, "__qualname__", None) or getattr(f, "__name__", None)
    if qualname is None:
        qualname = type(f).__qualname__
    return f"{module}.{qualname}" if module else qualname


def short_name(f: Any) -> str:
    """A function's bare name, for a process title."""
    f = unwrap_partial(f)[0]
    return getattr(f, "__name__", None) or type(f).__name__


def unwrap_partial(f: Any, args: tuple[Any, ...] = ()) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """What calling ``f(*args)`` calls at last, through any (nested) functools.partial:
    the function, all its positional arguments and the keywords the partials add.

    The one place that reads a partial (issue 11): the Supervisor's child kinds
    recognise ``open_port``, ``durable.spawn`` or a Server through one."""
    keywords: dict[str, Any] = {}
    while isinstance(f, functools.partial):
        args = f.args + args
        keywords = {**f.keywords, **keywords}  # an outer partial's keyword wins
        f = f.func
    return f, args, keywords


def check_pid(call: str, pid: Any) -> Pid:
    if not isinstance(pid, Pid):
        raise TypeError(f"{call}: {pid!r} is not a Pid; pass a pid from spawn(), slf() or whereis()")
    return pid


def check_name(call: str, name: Any) -> str:
    return check_text(call, "name", name, "names are strings")


def spawn_as(
    call: str, f: Any, args: tuple[Any, ...], name: Any, options: dict[str, Any], link: bool, monitor: bool
) -> tuple[Pid, Ref | None]:
    """Check and spawn ``f(*args)`` for the verb ``call`` (named in every error)."""
    ctx = current(call)
    node = options.pop("node", None) if options else None
    if options:
        key = next(iter(options))
        raise TypeError(
            f"{call} got an unknown option {key!r}; the options are name= and node=. "
            "Use functools.partial to pass keyword arguments to the function"
        )
    if node is not None and not (type(node) is str and "@" in node):
        raise TypeError(f"{call}: node={node!r} is not a node name; pass a string such as 'name@host'")
    if not callable(f):
        raise TypeError(f"{call}: {f!r} is not callable; pass a function, lambda, partial or bound method")
    if name is not None:
        check_name(call, name)
    try:
        prepared = Prepared(f, args)
    except TypeError as e:
        raise TypeError(f"{call}: {e}") from e.__cause__
    if node is not None and node != this_node():
        # On another node: its central starts it (API.md section 11).
        ref = ctx.new_ref() if monitor else None
        pid = remote_ops().spawn(call, node, prepared, name, link, ref)
        return pid, ref
    return _spawn_prepared(ctx, prepared, name, link, monitor)


class Prepared:
    """A function and its arguments, serialised once for any number of spawns
    (a supervisor restarting the same child)."""

    __slots__ = ("blob", "function", "title")

    def __init__(self, f: Any, args: tuple[Any, ...]) -> None:
        try:
            self.blob = codec.dump_function(f, args)
        except Exception as e:
            raise TypeError(f"cannot serialize {f!r} or its arguments {args!r}: {e}; nothing was started") from e
        self.function = describe_function(f)
        self.title = short_name(f)


def spawn_prepared(prepared: Prepared, link: bool) -> Pid:
    """Spawn from an already serialised function (internal: supervisors)."""
    return _spawn_prepared(current("spawn()"), prepared, None, link, False)[0]


def spawn_from(
    call: str,
    prepared: Prepared,
    *,
    name: str | None = None,
    link: bool = False,
    monitor: bool = False,
    meta: dict[str, Any] | None = None,
) -> tuple[Pid, Ref | None]:
    """Spawn from an already serialised function for the verb ``call`` (a
    port's driver); ``meta``: facts for central's table that ``occasional
    ps`` shows (a port's ``argv``)."""
    ctx = current(call)
    if name is not None:
        check_name(call, name)
    return _spawn_prepared(ctx, prepared, name, link, monitor, meta)


def _spawn_prepared(
    ctx: Context, prepared: Prepared, name: str | None, link: bool, monitor: bool, meta: dict[str, Any] | None = None
) -> tuple[Pid, Ref | None]:
    # A supervisor adds ``restarts`` to meta via ctx.spawn_meta.
    if ctx.spawn_meta:
        meta = {**ctx.spawn_meta, **(meta or {})}
    ref = ctx.new_ref() if monitor else None
    if ref is not None:
        ctx.add_monitor(ref, None)
    title = f"occasional: {name if name is not None else prepared.title}"
    try:
        reply = ctx.call(
            P.SPAWN,
            prepared.blob,
            name,
            link,
            ref.owner if ref else None,
            ref.n if ref else None,
            prepared.function,
            sys.path,
            title,
            meta,
        )
    except BaseException:
        if ref is not None:
            ctx.drop_monitor(ref)
        raise
    pid = Pid._make(reply[0], reply[1])
    if ref is not None:
        ctx.add_monitor(ref, pid)
    return pid, ref


def spawn(f: Callable[..., Any], *args: Any, name: str | None = None, **options: Any) -> Pid:
    """Start ``f(*args)`` in a new Linux process and return its Pid.

    What happens: f and args are serialised here with dill, central asks the
    forkserver for a child, which is registered as ``name`` (if given) and runs
    f. Nothing starts if serialising fails.

    Raises:
        TypeError: f is not callable, or f or an argument cannot be serialised.
        occasional.NameTaken: ``name`` is held by a live process.
    """
    return spawn_as("spawn()", f, args, name, options, False, False)[0]


def spawn_link(f: Callable[..., Any], *args: Any, name: str | None = None, **options: Any) -> Pid:
    """spawn + link, atomically: the link exists before f runs."""
    return spawn_as("spawn_link()", f, args, name, options, True, False)[0]


def spawn_monitor(f: Callable[..., Any], *args: Any, name: str | None = None, **options: Any) -> tuple[Pid, Ref]:
    """spawn + monitor, atomically: the DOWN comes even if f ends at once."""
    pid, ref = spawn_as("spawn_monitor()", f, args, name, options, False, True)
    assert ref is not None  # monitor=True makes one
    return pid, ref


def slf() -> Pid:
    """The calling process."""
    return current("slf()").pid


def send(dest: Pid | str | tuple[str, str], msg: Any) -> None:
    """Send ``msg`` to a Pid, a Port, a registered name or ``(name, node)``; never blocks.

    Messages from one sender to one receiver arrive in the order sent; a
    message to a dead Pid is dropped, as in Erlang.

    Raises:
        occasional.NoProcess: ``dest`` is a name no process holds.
        TypeError: ``dest`` is not an address, or ``msg`` cannot be serialised
            (nothing is sent).
        ValueError: ``msg`` is over 1 GiB encoded (``codec.MAX_MESSAGE``, the
            frame limit of every receiver); nothing is sent, and the messages
            sent after it arrive as usual (API.md section 10).
    """
    ctx = _context._current
    if ctx is None or ctx.closed:
        ctx = current("send()")
    if isinstance(dest, Pid):
        if dest._occ_route is not None:  # a durable process: through its journal (occasional.durable)
            dest._occ_route(msg)
            return
        pid_id = dest.id
        if type(dest) is Port and not isinstance(msg, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"send({dest!r}, {msg!r}): a port takes bytes, written to the executable's stdin; "
                "encode the message, e.g. text.encode()"
            )
    elif type(dest) is str:
        found = ctx.call(P.WHEREIS, dest)
        if found is None:
            raise NoProcess(dest)
        pid_id = found[0]
    elif type(dest) is tuple and len(dest) == 2 and type(dest[0]) is str and type(dest[1]) is str:
        if dest[1] != this_node():
            remote_ops().send_named(dest[0], dest[1], msg)  # a name on another node (API.md section 11)
            return
        found = ctx.call(P.WHEREIS, dest[0])
        if found is None:
            raise NoProcess(dest[0])
        pid_id = found[0]
    else:
        raise TypeError(
            f"send({dest!r}, ...): {type(dest).__name__} is not an address; "
            "send to a Pid, a Port, a registered name (str) or (name, node)"
        )
    try:
        payload = codec.dumps(msg)
    except TypeError as e:
        raise TypeError(f"send(): {e}; nothing was sent") from e.__cause__
    ctx.send_bytes(pid_id, payload)


def receive(match: Any = None, timeout: float | None = None) -> Any:
    """Remove and return the oldest message that ``match`` accepts.

    ``match`` is a predicate or a template (API.md section 3); skipped
    messages stay in the mailbox, in order. Blocks until one arrives; with
    ``timeout`` (seconds, 0 = just look) raises TimeoutError if none matched.
    """
    ctx = _context._current
    if ctx is None or ctx.closed:
        ctx = current("receive()")
    if match is None and timeout is None and not ctx.journaled:
        mailbox = ctx.mailbox
        return mailbox.popleft() if mailbox else ctx.receive(None, None)
    seconds = check_timeout("receive()", timeout)
    try:
        return ctx.receive(compile_match(match), seconds)
    except TimeoutError:
        if seconds is None:
            raise
        # Say how long and for what (issue 11): a bare "timed out" in a log
        # does not tell which of a process's receives gave up.
        raise _receive_timed_out(match, seconds) from None


def _receive_timed_out(match: Any, seconds: float) -> TimeoutError:
    what = "" if match is None else f"{describe_match(match)}, "
    which = "message" if match is None else "matching message"
    if seconds == 0:
        return TimeoutError(f"receive({what}timeout=0): no {which} in the mailbox")
    secs = format_seconds(seconds)
    return TimeoutError(f"receive({what}timeout={secs}): no {which} arrived within {secs} s")


def monitor(pid: Pid) -> Ref:
    """Watch ``pid``: the caller gets ``("DOWN", ref, pid, reason)`` exactly once."""
    ctx = current("monitor()")
    check_pid(f"monitor({pid!r})", pid)
    ref = ctx.new_ref()
    ctx.add_monitor(ref, pid)
    if pid._remote is not None:
        remote_ops().monitor(pid, ref)
    else:
        ctx.tell(P.monitor(ref.owner, ref.n, pid.id))
    return ref


def _is_down_for(ref: Ref) -> Callable[[Any], bool]:
    return lambda msg: type(msg) is tuple and len(msg) == 4 and msg[0] == "DOWN" and msg[1] == ref


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Stop watching: no DOWN for ``ref`` is delivered after this returns.

    ``flush=True`` also removes one already in the mailbox. Returns whether
    the monitor was still active.
    """
    ctx = current("demonitor()")
    if not isinstance(ref, Ref):
        raise TypeError(f"demonitor({ref!r}): not a Ref; pass the ref that monitor() or spawn_monitor() returned")
    target = ctx.monitored(ref)
    active = ctx.drop_monitor(ref)
    if active and target is not None and target._remote is not None:
        remote_ops().demonitor(ref)
    elif active:
        ctx.tell([P.DEMONITOR, ref.owner, ref.n])
    if flush:
        ctx.discard_message(_is_down_for(ref))
    return active


def link(pid: Pid) -> None:
    """Link the caller and ``pid``, both ways.

    When a linked process ends abnormally its partner is killed with
    ``("linked", (pid, reason))``, unless the partner traps exits. Linking to
    a process that has already ended delivers ``("EXIT", pid, ("noproc",
    None))`` to a trapping caller, and raises ProcessExit with that reason in
    any other.
    """
    ctx = current("link()")
    check_pid(f"link({pid!r})", pid)
    if pid._remote is not None:
        why = remote_ops().link(pid)
        if why is None:
            return
        if ctx.trapping:
            ctx.post(("EXIT", pid, why))
            return
        raise ProcessExit(why, pid)
    if ctx.call(P.LINK, pid.id):
        return
    if ctx.trapping:
        ctx.post(("EXIT", pid, ("noproc", None)))
        return
    raise ProcessExit(("noproc", None), pid)


def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid`` (if any)."""
    ctx = current("unlink()")
    check_pid(f"unlink({pid!r})", pid)
    if pid._remote is not None:
        remote_ops().unlink(pid)
        return
    ctx.call(P.UNLINK, pid.id)


def trap_exits(flag: bool = True) -> bool:
    """While set, ends of linked processes arrive as ``("EXIT", pid, reason)``.

    Returns the previous flag.
    """
    ctx = current("trap_exits()")
    if not isinstance(flag, bool):
        raise TypeError(f"trap_exits({flag!r}): the flag is True or False")
    old = ctx.call(P.TRAP, flag)
    ctx.trapping = flag
    return bool(old)


def kill(pid: Pid, why: Any = "killed") -> None:
    """End ``pid`` unconditionally (SIGKILL to its process group).

    Its reason is ``("killed", why)``.
    """
    ctx = current("kill()")
    check_pid(f"kill({pid!r})", pid)
    try:
        why_bytes = codec.dumps(why)
    except TypeError as e:
        raise TypeError(f"kill(): why={why!r} cannot be serialized: {e}") from e
    if pid._remote is not None:
        remote_ops().kill(pid, why_bytes)
        return
    ctx.call(P.KILL, pid.id, why_bytes)


def exit_signal(pid: Pid, reason: tuple[str, Any]) -> None:
    """Send an exit signal, as Erlang's ``exit(Pid, Reason)``: a process that
    traps exits receives ``("EXIT", sender, reason)``; any other ends with
    ``reason``. Internal: supervisors use it for an orderly shutdown."""
    ctx = current("exit_signal()")
    kind, detail = reason
    if pid._remote is not None:
        remote_ops().exit_signal(pid, kind, codec.dumps(detail))
        return
    ctx.call(P.SIGNAL, pid.id, [kind, codec.dumps(detail)])


def register(name: str, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the caller) as ``name``.

    Raises:
        occasional.NameTaken: a live process holds the name.
        TypeError: the name is not a string.
    """
    ctx = current("register()")
    check_name(f"register({name!r})", name)
    target = ctx.pid if pid is None else check_pid(f"register({name!r}, {pid!r})", pid)
    if target._remote is not None:
        raise ValueError(
            f"register({name!r}, {pid!r}): that process is on {target.node}; a name is registered on the node "
            "of its process: register it there, or use register_global"
        )
    ctx.call(P.REGISTER, name, target.id)


def unregister(name: str) -> None:
    """Free ``name``. Raises ValueError if no process holds it."""
    ctx = current("unregister()")
    check_name(f"unregister({name!r})", name)
    ctx.call(P.UNREGISTER, name)


def whereis(name: str) -> Pid | None:
    """The process registered as ``name``, or None."""
    ctx = current("whereis()")
    check_name(f"whereis({name!r})", name)
    found = ctx.call(P.WHEREIS, name)
    return None if found is None else Pid._make(found[0], found[1])


def registered() -> list[str]:
    """Every registered name, sorted."""
    return list(current("registered()").call(P.REGISTERED))


def processes() -> list[Pid]:
    """The live processes of the runtime."""
    return [Pid._make(i, o) for i, o in current("processes()").call(P.PROCESSES)]


def process_info(pid: Pid) -> dict[str, Any] | None:
    """What the runtime knows of a live process, or None if it has ended.

    Keys: ``os_pid``, ``name``, ``function``, ``links``, ``monitors`` (the
    processes it monitors), ``monitored_by``, ``trap_exits``, ``started_at``
    (a ``time.time()`` value), ``rss_bytes``.
    """
    ctx = current("process_info()")
    check_pid(f"process_info({pid!r})", pid)
    if pid._remote is not None:
        raise ValueError(f"process_info({pid!r}): that process is on {pid.node}; ask a process of that node")
    info = ctx.call(P.INFO, pid.id)
    if info is None:
        return None
    for key in ("links", "monitors", "monitored_by"):
        info[key] = [Pid._make(i, o) for i, o in info[key]]
    return info
