"""Checks of the numbers a caller gives: seconds and counts, one rule in one place.

Each layer checked these on its own and they disagreed on infinity (issue 11).
The rule now:

- A number is an ``int`` or a ``float``, never a ``bool`` (``True`` is no count).
- NaN is never a number of seconds.
- ``math.inf`` is allowed exactly where it means "wait for it, however long
  it takes": a timeout (a receive, a call, ``durable.result``), where
  ``check_timeout`` makes it ``None`` as None itself, and a child's shutdown
  time (OTP's ``infinity``, what a child that is itself a supervisor wants).
  Every other length of time must be finite: a supervisor's period, its
  backoff, a durable sleep, a step's retry waits. Infinity there is no time
  the runtime can count, wait out or record (the journal keeps finite
  deadlines, core/protocol.py), so it is refused where it is given rather
  than failing later.

The predicates say only whether a value passes; each caller raises its own
error, which names the value, the rule and what to do (STYLE.md, "Errors").
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Any


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_seconds(value: Any, *, positive: bool = False, forever: bool = False) -> bool:
    """A number of seconds, >= 0 (> 0 with ``positive``), finite unless ``forever``
    allows ``inf``; never NaN."""
    if not is_number(value) or math.isnan(value) or (math.isinf(value) and not forever):
        return False
    return value > 0 if positive else value >= 0


def is_backoff(value: Any) -> bool:
    """A supervisor's backoff: a tuple or list ``(first_s, max_s)`` of finite seconds, 0 < first_s <= max_s."""
    return (
        type(value) in (tuple, list)
        and len(value) == 2
        and all(is_seconds(x, positive=True) for x in value)
        and value[0] <= value[1]
    )


def is_whole(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: Any, least: int = 0) -> bool:
    """A whole number of at least ``least``."""
    return is_whole(value) and value >= least


def check_text(call: str, key: str, value: Any, rule: str) -> str:
    """``value``, a non-empty string (a name, an id), or the error naming ``key=value`` and ``rule``."""
    if not isinstance(value, str):
        raise TypeError(f"{call}: {key}={value!r} is not a string; {rule}")
    if not value:
        raise ValueError(f"{call}: {key}={value!r} is empty; use a non-empty string")
    return value


def check_timeout(call: str, timeout: Any) -> float | None:
    """``timeout`` as seconds (None: wait forever, as is ``inf``), or the error naming it."""
    if timeout is None:
        return None
    if not is_number(timeout):
        raise TypeError(
            f"{call}: timeout={timeout!r} is not a number; give seconds as a number, or None to wait forever"
        )
    if math.isnan(timeout):
        raise ValueError(
            f"{call}: timeout={timeout!r} is not a number of seconds; use a number >= 0, or None to wait forever"
        )
    if timeout < 0:
        raise ValueError(
            f"{call}: timeout={timeout!r} is negative; use a number >= 0 (0 just looks), or None to wait forever"
        )
    if math.isinf(timeout):
        return None
    return float(timeout)


def format_seconds(seconds: float) -> str:
    """Seconds as an error message says them: ``5``, ``0.25``."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


def without_password(text: str) -> str:
    """``text`` as errors and logs may show it: a URL without its password (in
    the user part or a ``password=`` parameter); anything else unchanged, so an
    error still contains the very string the user passed (issue 12)."""
    if "://" not in text:
        return text
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return text
    netloc, query = parts.netloc, parts.query
    user, at, hosts = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.partition(':')[0]}@{hosts}"
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if any(k == "password" for k, _v in pairs):
        query = urllib.parse.urlencode([(k, v) for k, v in pairs if k != "password"], safe="/")
    if (netloc, query) == (parts.netloc, parts.query):
        return text
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
