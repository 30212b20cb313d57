"""``ports.expect``: wait for a port's output to match, as pexpect does
(API.md section 13, issue 14).

It runs in the owner, the process the port's output goes to: it takes that
port's ``(port, ("data", frame))`` messages (``("lines", [line, ...])`` with
``framing="lines"``) out of the mailbox (every other
message stays, in order) into a buffer this process keeps for the port,
until the pattern matches; the buffer then keeps what follows the match, for
the next ``expect``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ..core import api
from ..core.checks import check_timeout, format_seconds
from ..core.context import Context, current
from ..core.pid import Port

# What came and no match consumed yet, per port (by id), in this process.
_buffers: dict[int, bytes] = {}
# Ports this process opened with framing="line" or "lines" on a pty: their frames get
# back the newline the framing took off, so that patterns see the output as
# written. Others are joined as they come (framing="raw", the pty default).
_line_ports: set[int] = set()

LAST_SHOWN = 200  # bytes of output an error shows


def opened(port: Port, framing: str) -> None:
    """open_port tells of a pty port it opened in this process."""
    if framing in ("line", "lines"):
        _line_ports.add(port.id)


def _compile(call: str, pattern: Any) -> re.Pattern[Any]:
    if isinstance(pattern, re.Pattern):
        return pattern
    if isinstance(pattern, (str, bytes)):
        try:
            return re.compile(pattern)
        except re.error as e:
            raise ValueError(
                f"{call}: pattern={pattern!r} is not a regular expression ({e}); fix or re.escape() it"
            ) from None
    raise TypeError(f"{call}: pattern={pattern!r} is not a regular expression; pass a str, bytes or re.compile()d one")


def _search(regex: re.Pattern[Any], buf: bytes) -> tuple[re.Match[Any], int] | None:
    """The first match in ``buf`` and the byte offset of its end.

    A str pattern searches ``buf`` decoded as UTF-8 with
    ``errors="surrogateescape"``: bytes that are not UTF-8 (or a character
    cut in two by the end of what came so far) are lone surrogates, which
    encode back to the very same bytes, so the match's end is an exact offset.
    """
    if isinstance(regex.pattern, bytes):
        mb = regex.search(buf)
        return None if mb is None else (mb, mb.end())
    text = buf.decode("utf-8", "surrogateescape")
    m = regex.search(text)
    return None if m is None else (m, len(text[: m.end()].encode("utf-8", "surrogateescape")))


def _last(buf: bytes) -> str:
    return repr(buf[-LAST_SHOWN:])


def expect(port: Port, pattern: Any, timeout: float | None = None) -> re.Match[Any]:
    """Wait until ``port``'s output matches ``pattern``; return the match.

    ``pattern``: a regular expression as bytes, str or ``re.compile()``\\ d.
    bytes patterns search the bytes; str patterns the bytes decoded as UTF-8
    (``errors="surrogateescape"``). The search is ``pattern.search`` over all
    the output not consumed yet, so ``m.string[:m.start()]`` is what came
    before the match (pexpect's ``before``). Output up to the end of the
    match is consumed; what follows is kept for the next call. Call it in the
    port's owner (the process its output goes to).

    Raises:
        TimeoutError: no match within ``timeout`` seconds (None: no limit);
            the message shows the last output seen. Nothing is consumed.
        EOFError: the port's output ended before a match (its exit_status
            stays in the mailbox), with the last output.
        TypeError / ValueError: ``port`` is not a Port, or a bad pattern or
            timeout, named.
    """
    call = "occasional.ports.expect()"
    ctx = current(call)
    if not isinstance(port, Port):
        raise TypeError(f"{call}: {port!r} is not a Port; pass what open_port() returned")
    regex = _compile(call, pattern)
    seconds = check_timeout(call, timeout)
    buf = _buffers.pop(port.id, b"")
    found = _search(regex, buf)
    if found is not None:
        _keep(port, buf[found[1] :])
        return found[0]
    ref = api.monitor(port)
    try:
        return _wait_for_match(ctx, port, ref, regex, buf, seconds, pattern)
    finally:
        api.demonitor(ref, flush=True)


def _keep(port: Port, rest: bytes) -> None:
    if rest:
        _buffers[port.id] = rest


def _wait_for_match(
    ctx: Context, port: Port, ref: Any, regex: re.Pattern[Any], buf: bytes, seconds: float | None, pattern: Any
) -> re.Match[Any]:
    deadline = None if seconds is None else time.monotonic() + seconds
    newline = b"\n" if port.id in _line_ports else b""
    skipped = 0

    def ours(msg: Any) -> bool:
        # The mailbox is scanned oldest first, each message once per receive:
        # counting the others tells where an exit_status was, to put it back.
        nonlocal skipped
        if (
            type(msg) is tuple
            and len(msg) == 2
            and msg[0] == port
            and type(msg[1]) is tuple
            and len(msg[1]) == 2
            and msg[1][0] in ("data", "lines", "exit_status")
        ):
            return True
        if type(msg) is tuple and len(msg) == 4 and msg[0] == "DOWN" and msg[1] == ref:
            return True
        skipped += 1
        return False

    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            skipped = 0
            try:
                msg = ctx.receive(ours, left)
            except TimeoutError:
                raise TimeoutError(
                    f"occasional.ports.expect({port!r}, {pattern!r}, timeout={format_seconds(seconds or 0)}): "
                    f"no match within {format_seconds(seconds or 0)} s; the last output seen: {_last(buf)}"
                ) from None
            if msg[0] == "DOWN":
                end = f"the port ended ({msg[3]!r})"
            elif msg[1][0] == "exit_status":
                ctx.mailbox.insert(skipped, msg)  # it stays for the owner, where it was
                end = f"the port's output ended (exit status {msg[1][1]!r})"
            else:
                tag, out = msg[1]
                if tag == "lines":
                    buf += b"".join([line + b"\n" for line in out])
                else:
                    buf += out + newline
                found = _search(regex, buf)
                if found is not None:
                    buf = buf[found[1] :]  # kept, by the finally below
                    return found[0]
                continue
            buf_seen, buf = buf, b""
            _line_ports.discard(port.id)
            raise EOFError(
                f"occasional.ports.expect({port!r}, {pattern!r}): {end} before a match; the last output seen: {_last(buf_seen)}"
            )
    finally:
        _keep(port, buf)
