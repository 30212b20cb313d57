"""The verbs of durable processes (API.md section 7)."""

from __future__ import annotations

import functools
import math
import random as _random
import sys
import time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import msgpack

from ..core import codec, context
from ..core.api import describe_function, short_name
from ..core.checks import check_text, format_seconds, is_count, is_number, is_seconds, is_whole
from ..core.context import reason_from_wire
from ..core.errors import NoProcess
from . import protocol as D, replay
from .context import current as _durable_context

# The address lives in .pid (replay needs it too); here are its public home
# and, for pickles made before it moved, its old maker (issue 11).
from .pid import DurablePid as DurablePid, _make_durable_pid as _make_durable_pid  # noqa: F401

_packb = msgpack.packb
_unpackb = msgpack.unpackb
F = TypeVar("F", bound=Callable[..., Any])


def _check_id(call: str, id: Any) -> str:
    check_text(call, "id", id, "a durable process has a stable string id")
    if not D.is_durable_id(id):
        raise ValueError(f"{call}: id={id!r} holds a control character; use printable text")
    return id


def spawn(id: str, f: Callable[..., Any], *args: Any) -> DurablePid:
    """Start ``f(*args)`` as the durable process ``id`` and return its address.

    The process is recorded in the journal before this returns. If it crashes
    or is SIGKILLed, the runtime starts it again and it replays its journal.
    If ``id`` is already in the journal, nothing is started (whatever ``f``
    is, as OTP's ``already_started``): the address of the existing process is
    returned, and a finished one keeps its result. A durable process that
    calls spawn again on replay gets the same answer, so spawn needs no
    journal entry of its own.

    Raises:
        TypeError: ``id`` is not a string, ``f`` is not callable or cannot be serialised.
        RuntimeError: the runtime was started without ``journal=``.
    """
    ctx = context.current("durable.spawn()")
    _check_id(f"durable.spawn({id!r}, ...)", id)
    if not callable(f):
        raise TypeError(
            f"durable.spawn({id!r}, {f!r}): {f!r} is not callable; pass a function, lambda, partial or bound method"
        )
    try:
        blob = codec.dump_function(replay.run, (id, f, args))
    except Exception as e:
        raise TypeError(
            f"durable.spawn({id!r}, ...): cannot serialize {f!r} or its arguments {args!r}: {e}; nothing was started"
        ) from e
    pid_id, os_pid = ctx.call(
        D.D_SPAWN, id, blob, describe_function(f), _packb(sys.path), f"occasional: {id} ({short_name(f)})"
    )
    return DurablePid._make_durable(id, pid_id, os_pid)


def whereis(id: str) -> DurablePid | None:
    """The address of durable process ``id``, or None if the journal has no such id.

    The address is valid whether or not an incarnation runs now: a message
    sent to it waits in the journal.
    """
    ctx = context.current("durable.whereis()")
    _check_id(f"durable.whereis({id!r})", id)
    found = ctx.call(D.D_WHEREIS, id)
    return None if found is None else DurablePid._make_durable(id, found[0], found[1])


def result(id: str, timeout: float | None = None) -> tuple[str, Any]:
    """The final reason of durable process ``id``, waiting for it to end.

    Read from the journal, so it is there also after the process, the caller
    or the whole runtime was killed and started again. Besides the reasons of
    API.md section 4, a process that crashed again and again at the same
    journal position ends with ``("crashloop", {"position": n, "crashes": k,
    "last": text})``.

    Raises:
        TimeoutError: it did not end within ``timeout`` seconds.
        occasional.NoProcess: the journal has no durable process ``id``.
    """
    ctx = context.current("durable.result()")
    _check_id(f"durable.result({id!r})", id)
    if timeout is not None and not (is_number(timeout) and timeout >= 0):  # inf: forever, as None (core/checks.py)
        raise ValueError(f"durable.result({id!r}, timeout={timeout!r}): give seconds as a number >= 0, or None")
    req = ctx.request(D.D_RESULT, id)
    deadline = None if timeout is None or math.isinf(timeout) else time.monotonic() + timeout
    answer = ctx.wait_reply(req, deadline)
    if answer is None:
        assert timeout is not None  # only a wait with a deadline ends without an answer
        ctx.tell([D.D_CANCEL, req])
        secs = format_seconds(timeout)
        raise TimeoutError(f"durable.result({id!r}, timeout={secs}): the process did not end within {secs} s")
    ok, value = answer
    if not ok:
        raise NoProcess(id) if value[0] == "NoProcess" else RuntimeError(*value[1:])
    return reason_from_wire(value)


@dataclass(frozen=True)
class Retry:
    """How a step is tried again: up to ``attempts`` attempts in all, waiting
    ``backoff`` seconds after the first failure, twice as long after each
    further one, at most ``max_delay``. The waits are durable timers: a
    restart does not start them again."""

    attempts: int = 3
    backoff: float = 1.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if not is_whole(self.attempts):
            raise TypeError(f"Retry(attempts={self.attempts!r}): attempts is a whole number of attempts, e.g. 3")
        if not is_count(self.attempts, least=1):
            raise ValueError(f"Retry(attempts={self.attempts!r}): a step needs at least 1 attempt")
        for field in ("backoff", "max_delay"):
            value = getattr(self, field)
            if not is_number(value):
                raise TypeError(f"Retry({field}={value!r}): give seconds as a number")
            if not is_seconds(value):  # a wait that never ends is no retry (core/checks.py)
                raise ValueError(f"Retry({field}={value!r}): give seconds as a finite number >= 0")

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure."""
        return float(min(self.max_delay, self.backoff * (2 ** (failures - 1))))


@overload
def step(f: F) -> F: ...
@overload
def step(f: Callable[..., Any], *args: Any, retry: Retry | None = None) -> Any: ...


def step(f: Callable[..., Any], *args: Any, retry: Retry | None = None) -> Any:
    """Run ``f(*args)`` once and journal its result or exception.

    ``durable.step(f)`` with nothing else is the decorator, wherever it is
    written (module level, inside a durable function): it returns ``f`` made
    a step, so every call of it is one, and ``durable.step(f)()`` runs a
    zero-argument step now. With arguments or ``retry=``, ``durable.step(f,
    *args)`` runs ``f(*args)`` as a step now (API.md section 7). On replay the
    recorded outcome is returned (or raised) without calling ``f``. At least
    once: a crash after ``f`` had its effect but before its outcome was
    committed runs it again, so ``f`` can use ``durable.step_key()``
    (``"{id}:{n}"`` for the n-th step of the process, the same in every
    attempt) as an idempotency key, and ``durable.attempt()``. With
    ``retry=``, an exception (an ``Exception``, not a BaseException) is
    retried after a durable wait; the last one is the outcome.

    Raises:
        TypeError: ``f`` is not callable, or ``retry`` is not a durable.Retry.
        RuntimeError: the step runs outside a durable process.
    """
    # The form alone decides, never where it is written: a decorator inside a
    # durable function used to run f at once (issue 10).
    if not args and retry is None:
        if not callable(f):
            raise TypeError(
                f"durable.step({f!r}): {f!r} is not callable; decorate a function, or pass the function to run"
            )
        return _decorate(f)
    return _step(f, args, retry)


def _decorate(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def as_step(*args: Any, retry: Retry | None = None) -> Any:
        return _step(f, args, retry)

    as_step.__wrapped__ = f
    return as_step


def _name(f: Callable[..., Any]) -> str:
    f = getattr(f, "__wrapped__", f)
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or type(f).__qualname__


def _step(f: Callable[..., Any], args: tuple[Any, ...], retry: Retry | None) -> Any:
    ctx = _durable_context("durable.step()")
    if not callable(f):
        raise TypeError(f"durable.step({f!r}): {f!r} is not callable; pass the function to run as a step")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"durable.step(..., retry={retry!r}): pass a durable.Retry(attempts, backoff, max_delay)")
    f = getattr(f, "__wrapped__", f)
    name = _name(f)
    ctx.steps += 1
    key = f"{ctx.did}:{ctx.steps}"
    attempts = failures = 0
    wait_until: float | None = None
    # Replay: the attempts that started, the failures that were retried, and the outcome.
    while True:
        ev = ctx.peek_event()
        if ev is None:
            break
        if ev[2] != name or ev[1] not in ("step.attempt", "step.retry", "step"):
            raise ctx.mismatch("step", name)
        ctx.pos += 1
        if ev[1] == "step.attempt":
            attempts += 1
        elif ev[1] == "step.retry":
            failures, _exc, wait_until = codec.loads(ev[3])
        else:
            ok, value = codec.loads(ev[3])[:2]
            if ok:
                return value
            raise value
    while True:
        if wait_until is not None:
            ctx.wait_until(wait_until)
            wait_until = None
        attempts += 1
        ctx.record("step.attempt", name, _packb(attempts))
        # What was received before must be committed before f can act on it;
        # with nothing else buffered, the start record need not be waited for:
        # central reads it even if this process dies at once.
        ctx.flush(len(ctx.pending) > 1)
        ctx.step = (key, attempts)
        try:
            value = f(*args)
            outcome: tuple[Any, ...] = (True, value, attempts)
        except Exception as e:
            failures += 1
            if retry is not None and failures < retry.attempts:
                wait_until = time.time() + retry.delay(failures)
                ctx.record("step.retry", name, _dump_outcome((failures, e, wait_until)))
                ctx.flush(True)
                continue
            outcome = (False, e, attempts)
        finally:
            ctx.step = None
        ctx.record("step", name, _dump_outcome(outcome))
        ctx.flush(True)
        if outcome[0]:
            return outcome[1]
        raise outcome[1]


def _dump_outcome(outcome: tuple[Any, ...]) -> bytes:
    try:
        return codec.dumps(outcome)
    except TypeError as e:
        raise TypeError(f"a durable step's outcome {outcome[1]!r} cannot be journaled: {e}") from e


def step_key() -> str:
    """The idempotency key of the step running now: ``"{id}:{n}"``, the same in every attempt."""
    ctx = _durable_context("durable.step_key()")
    if ctx.step is None:
        raise RuntimeError("durable.step_key() works only inside a function that durable.step runs")
    return ctx.step[0]


def attempt() -> int:
    """The attempt number of the step running now: 1, then 2 after a retry or a crash during it."""
    ctx = _durable_context("durable.attempt()")
    if ctx.step is None:
        raise RuntimeError("durable.attempt() works only inside a function that durable.step runs")
    return ctx.step[1]


def _value(call: str, kind: str, make: Callable[[], Any]) -> Any:
    ctx = _durable_context(call)
    ev = ctx.next_event(kind, "")
    if ev is not None:
        return _unpackb(ev[3])
    value = make()
    ctx.record(kind, "", _packb(value))
    return value


def now() -> float:
    """``time.time()``, journaled: a replay gets the recorded value."""
    return _value("durable.now()", "now", time.time)


def random() -> float:
    """``random.random()``, journaled: a replay gets the recorded value."""
    return _value("durable.random()", "random", _random.random)


def uuid4() -> _uuid.UUID:
    """``uuid.uuid4()``, journaled: a replay gets the recorded value."""
    return _uuid.UUID(_value("durable.uuid4()", "uuid4", lambda: str(_uuid.uuid4())))


def sleep(seconds: float) -> None:
    """Sleep until a deadline recorded in the journal (now + ``seconds``).

    A restart does not start the sleep again: it ends at the recorded
    deadline. A long sleep costs no process: the process ends and the runtime
    starts it again at the deadline, also after a restart of the whole runtime.
    """
    ctx = _durable_context("durable.sleep()")
    if not is_number(seconds):
        raise TypeError(f"durable.sleep({seconds!r}): give seconds as a number")
    if math.isinf(seconds) and seconds > 0:  # its deadline is journaled, and must be finite (core/checks.py)
        raise ValueError(f"durable.sleep({seconds!r}): a sleep must end; give a finite number of seconds")
    if not is_seconds(seconds):
        raise ValueError(f"durable.sleep({seconds!r}): a sleep cannot be negative; give seconds >= 0")
    ev = ctx.next_event("sleep", "")
    if ev is not None:
        deadline = _unpackb(ev[3])
    else:
        deadline = time.time() + seconds
        ctx.record("sleep", "", _packb(deadline))
        ctx.flush(False)
    ctx.wait_until(deadline)
