"""A gen_server-like Server and its client calls (API.md section 6).

A Server is a process that keeps a state and answers requests: ``call``
(synchronous, monitor-based), ``cast`` (asynchronous) and plain messages
(``handle_info``). The process runs ``_serve``; the callbacks run there, never
in the caller.
"""

from __future__ import annotations

import functools
import heapq
import logging
import time
from typing import TYPE_CHECKING, Any

from ..core import api
from ..core.checks import check_timeout, format_seconds
from ..core.codec import dumps, short_repr
from ..core.context import current
from ..core.errors import ProcessExit, exit_error
from ..core.pid import Pid, Ref
from ..core.reasons import keep_traceback
from .protocol import CALL_TAG, CAST_TAG, REPLY_TAG, STARTED_TAG

if TYPE_CHECKING:
    from collections.abc import Hashable

log = logging.getLogger("occasional.core")


class _NoReply:
    __slots__ = ("state",)

    def __init__(self, state: Any) -> None:
        self.state = state


def noreply(state: Any) -> Any:
    """Return from ``handle_call`` without answering yet; answer later with
    ``occ.reply(frm, value)``, from this or any other process."""
    return _NoReply(state)


class Stop(Exception):
    """Raised in a callback to end the server in an orderly way (terminate runs)."""

    def __init__(self, reason: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason


class Server:
    """Base class of a gen_server-like process.

    Override ``init(*args) -> state``, ``handle_call(request, frm, state) ->
    (reply, state)`` (or ``occ.noreply(state)``), ``handle_cast(msg, state) ->
    state``, ``handle_info(msg, state) -> state`` and ``terminate(reason,
    state)``. ``terminate`` runs when a handler raises and on an orderly stop
    (an exit signal from the parent while the server traps exits).
    """

    __module__ = "occasional"
    _occ_parent: Pid
    _occ_timers: list[tuple[float, int, Any]]

    def init(self, *args: Any) -> Any:
        return None

    def handle_call(self, request: Any, frm: tuple[Pid, Ref], state: Any) -> Any:
        raise TypeError(f"{type(self).__qualname__} got the call {request!r} but defines no handle_call")

    def handle_cast(self, msg: Any, state: Any) -> Any:
        raise TypeError(f"{type(self).__qualname__} got the cast {msg!r} but defines no handle_cast")

    def handle_info(self, msg: Any, state: Any) -> Any:
        log.warning(
            "%s %r ignored an unexpected message %r (define handle_info)", type(self).__qualname__, api.slf(), msg
        )
        return state

    def terminate(self, reason: Any, state: Any) -> None:
        return None

    def _occ_send_after(self, seconds: float, msg: Any) -> None:
        """Deliver ``msg`` to handle_info after ``seconds`` (a timer of this process)."""
        self._occ_timer_seq = getattr(self, "_occ_timer_seq", 0) + 1
        heapq.heappush(self._occ_timers, (time.monotonic() + seconds, self._occ_timer_seq, msg))

    @classmethod
    def start(cls, *args: Any, name: str | None = None, link: bool = False, **options: Any) -> Pid:
        """Start the server as a new process; return its Pid after ``init`` returned.

        Raises:
            occasional.ProcessExit: ``init`` raised (the original exception is
                chained) or the process ended before init returned.
            occasional.NameTaken: ``name`` is held by a live process.
        """
        ctx = current(f"{cls.__qualname__}.start()")
        if options:
            raise TypeError(
                f"{cls.__qualname__}.start() got an unknown option {next(iter(options))!r}; the options are name= "
                "and link=. Pass arguments for init() positionally"
            )
        token = ctx.new_ref()
        f = functools.partial(_serve, cls, args, ctx.pid, token)
        pid, ref = api.spawn_as(f"{cls.__qualname__}.start()", f, (), name, {}, link, True)
        msg = ctx.receive(
            lambda m: (
                type(m) is tuple
                and (
                    (len(m) == 2 and m[0] == STARTED_TAG and m[1] == token)
                    or (len(m) == 4 and m[0] == "DOWN" and m[1] == ref)
                )
            ),
            None,
        )
        assert ref is not None  # spawn_as(..., monitor=True) makes one
        if msg[0] == STARTED_TAG:
            api.demonitor(ref, flush=True)
            return pid
        raise exit_error(pid, msg[3])  # it ended, normally or not, before init returned


def _serve(cls: type[Server], args: tuple[Any, ...], parent: Pid, token: Ref) -> None:
    server = cls()
    server._occ_parent = parent
    server._occ_timers = []
    state = server.init(*args)
    api.send(parent, (STARTED_TAG, token))
    _loop(server, state)


def _describe_serve(f: functools.partial[Any]) -> str:
    cls = f.args[0]
    return f"{cls.__module__}.{cls.__qualname__} (Server)"


# A function attribute, read by core's api.describe_function for `occasional ps`: core may not import behaviours.
_serve._occ_describe = _describe_serve  # type: ignore[attr-defined]


def _loop(server: Server, state: Any) -> None:
    ctx = current("Server")
    timers = server._occ_timers
    parent = server._occ_parent
    cls_name = type(server).__qualname__
    while True:
        timeout = None if not timers else max(0.0, timers[0][0] - time.monotonic())
        try:
            msg = ctx.receive(None, timeout)
        except TimeoutError:
            msg = heapq.heappop(timers)[2]
        try:
            tag = msg[0] if type(msg) is tuple and msg else None
            if tag == CALL_TAG and len(msg) == 4:
                frm = (msg[1], msg[2])
                result = server.handle_call(msg[3], frm, state)
                if type(result) is _NoReply:
                    state = result.state
                elif type(result) is tuple and len(result) == 2:
                    if msg[1]._occ_route is None:
                        ctx.send_bytes(msg[1].id, dumps((REPLY_TAG, msg[2], result[0])))
                    else:
                        # A durable caller: the reply goes to its journal, so it
                        # reaches whichever incarnation runs (API.md section 7).
                        api.send(msg[1], (REPLY_TAG, msg[2], result[0]))
                    state = result[1]
                else:
                    raise TypeError(
                        f"{cls_name}.handle_call returned {result!r}; return (reply, new_state) or occ.noreply(new_state)"
                    )
            elif tag == CAST_TAG and len(msg) == 2:
                state = server.handle_cast(msg[1], state)
            elif tag == "EXIT" and len(msg) == 3 and msg[1] == parent and ctx.trapping:
                # The parent ended or asked for an orderly stop (a supervisor's
                # shutdown): terminate, then end (OTP gen_server does the same).
                server.terminate(msg[2], state)
                return
            else:
                state = server.handle_info(msg, state)
        except Stop as stop:
            server.terminate(("ok", stop.reason), state)
            return
        except BaseException as e:
            keep_traceback(e)
            try:
                server.terminate(("error", e), state)
            except BaseException:
                log.exception("%s.terminate raised while the server was ending", cls_name)
            raise


def _resolve(call: str, dest: Pid | str) -> Pid | None:
    if isinstance(dest, Pid):
        return dest
    if type(dest) is str:
        return api.whereis(dest)
    raise TypeError(f"{call}: {dest!r} is not an address; pass a Pid or a registered name (str)")


def call(dest: Pid | str, request: Any, timeout: float | None = 5.0) -> Any:
    """Send ``request`` to a Server and wait for its reply.

    Monitor-based: a server that does not exist raises ProcessExit with
    ``("noproc", None)``, one that ends before replying raises ProcessExit with
    its reason. A reply that arrives after a timeout never reaches the mailbox.

    Raises:
        TimeoutError: no reply within ``timeout`` seconds.
        occasional.ProcessExit: the server is gone or ended during the call.
    """
    ctx = current("call()")
    seconds = check_timeout("call()", timeout)
    pid = _resolve("call()", dest)
    if pid is None:
        raise ProcessExit(("noproc", None), dest)
    tag = ctx.new_ref()
    try:
        payload = dumps((CALL_TAG, ctx.pid, tag, request))
    except TypeError as e:
        raise TypeError(f"call(): {e}; nothing was sent") from e.__cause__
    try:
        msg, reason = ctx.call_process(
            pid, payload, lambda m: type(m) is tuple and len(m) == 3 and m[0] == REPLY_TAG and m[1] == tag, seconds
        )
    except TimeoutError:
        # The caller gave up: a reply already here goes, a later one is
        # dropped on arrival, so none is ever received (issue 4).
        if not ctx.discard_message(lambda m: _reply_ref(m) == tag):
            ctx.drop_on_arrival(tag, _reply_ref)
        assert seconds is not None  # only a call with a timeout times out
        server = "" if isinstance(dest, Pid) else f" from {pid!r}"
        raise TimeoutError(
            f"call({dest!r}, {short_repr(request)}): no reply{server} within {format_seconds(seconds)} s"
        ) from None
    if msg is not None:
        return msg[2]
    assert reason is not None  # call_process returns no message only with the server's reason
    raise exit_error(pid, reason)  # it ended, normally or not, before it replied


def _reply_ref(msg: Any) -> Hashable | None:
    """The ref a reply answers, for any message: None for one that is no reply."""
    if type(msg) is tuple and len(msg) == 3 and msg[0] == REPLY_TAG and isinstance(msg[1], Ref):
        return msg[1]
    return None


def cast(dest: Pid | str, msg: Any) -> None:
    """Send ``msg`` to a Server's handle_cast; never fails, even to a dead
    server or a name nobody holds."""
    current("cast()")
    pid = _resolve("cast()", dest)
    if pid is not None:
        api.send(pid, (CAST_TAG, msg))


def reply(frm: tuple[Pid, Ref], value: Any) -> None:
    """Answer a call: ``frm`` is what handle_call received."""
    if not (type(frm) is tuple and len(frm) == 2 and isinstance(frm[0], Pid) and isinstance(frm[1], Ref)):
        raise TypeError(f"reply({frm!r}, ...): pass the frm that handle_call received")
    api.send(frm[0], (REPLY_TAG, frm[1], value))
