"""Ports: native executables run as processes of the runtime (API.md section 8).

``open_port(argv)`` starts an executable directly (never through a shell)
and returns a :class:`occasional.Port`, a process like any other: it can be
linked, monitored, registered, sent to by name and supervised. Its stdout
arrives to the owner as ``(port, ("data", frame))`` messages, framed by
lines, 4-byte length packets or raw chunks, or with ``framing="lines"`` as
``(port, ("lines", [line, ...]))``, every line of one read in one message;
``send(port, data)`` writes a
frame to its stdin; ``close(port)`` closes the stdin; ``(port,
("exit_status", n))`` is the last message.

``open_port(argv, pty=True)`` runs it on a pseudo-terminal (API.md section
13): ``resize(port, rows, cols)`` sets its size and ``expect(port, pattern)``
waits for its output to match, as pexpect does.

When the owner ends, however it ends, or the runtime ends, the executable
and everything it started are killed (see :mod:`occasional.ports.driver`).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..core import api, codec
from ..core.checks import is_count
from ..core.context import current
from ..core.errors import exit_error
from ..core.match import ANY
from ..core.pid import Port
from ..sck.frame import FrameError
from . import driver, terminal
from .expect import expect, opened
from .logfile import LogFile
from .protocol import CLOSE, STARTED

__all__ = ["open_port", "pipeline", "statuses", "close", "resize", "expect", "LogFile", "FrameError"]

# "lines": framed as "line", delivered a read's lines per message (issue 15).
FRAMINGS = ("line", "lines", "packet", "raw")
STDOUTS = ("message", "inherit")
STDERRS = ("inherit", "stdout", "message")
DEFAULT_MAX_FRAME = 64 << 20
# A frame reaches the owner as the message (port, ("data", frame)): the frame
# and about 50 bytes of encoding must fit in one message (codec.MAX_MESSAGE).
# A larger frame would make the owner drop its connection to the port, and
# every frame behind it (issue 10, "Nothing lost").
MAX_MAX_FRAME = codec.MAX_MESSAGE - 1024


def _check_argv(argv: Any) -> tuple[str, ...]:
    if isinstance(argv, (str, bytes)):
        raise TypeError(
            f"open_port({argv!r}): argv is a string; pass a list such as {str(argv).split()!r} "
            "(the executable is run directly, never through a shell)"
        )
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError(f"open_port({argv!r}): argv is not a non-empty list of strings; pass e.g. ['cat']")
    out = []
    for a in argv:
        if isinstance(a, os.PathLike):
            a = os.fspath(a)
        if not isinstance(a, str):
            raise TypeError(f"open_port({argv!r}): argument {a!r} is not a string; pass every argument as a str")
        if "\0" in a:
            raise ValueError(f"open_port({argv!r}): argument {a!r} contains a NUL byte, which no argument can hold")
        out.append(a)
    return tuple(out)


def _find_executable(name: str, cwd: str | None, env: dict[str, str] | None) -> str:
    """The file exec will run, as subprocess finds it; raises naming it."""
    if os.sep in name:
        path = name if os.path.isabs(name) or cwd is None else os.path.join(cwd, name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                errno.ENOENT, f"open_port: the executable {name!r} does not exist; check the path", name
            )
    else:
        search = (env if env is not None else os.environ).get("PATH", os.defpath)
        found = shutil.which(name, path=search)
        if found is None:
            exists = shutil.which(name, mode=os.F_OK, path=search)
            if exists is not None:
                raise PermissionError(
                    errno.EACCES,
                    f"open_port: {exists!r} (found for {name!r} on PATH) is not executable; chmod +x it",
                    exists,
                )
            raise FileNotFoundError(
                errno.ENOENT,
                f"open_port: no executable {name!r} on PATH ({search}); give its full path or fix PATH",
                name,
            )
        path = found
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise PermissionError(errno.EACCES, f"open_port: {name!r} is a directory, not an executable", name)
    if not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, f"open_port: {name!r} is not executable; chmod +x it", name)
    return path


def _check_output(option: str, value: Any, allowed: tuple[str, ...]) -> str | LogFile:
    if isinstance(value, LogFile) or value in allowed:
        return value
    choices = ", ".join(repr(a) for a in allowed)
    raise ValueError(f"open_port: {option}={value!r} is not an option; use {choices} or occasional.ports.LogFile(path)")


def _check_terminal(pty: Any, stdout: Any, stderr: Any) -> None:
    if type(pty) is not bool:
        raise TypeError(f"open_port: pty={pty!r} is not a bool; pass True to run the executable on a pseudo-terminal")
    if not pty:
        return
    if stdout == "inherit":
        raise ValueError(
            "open_port: pty=True with stdout='inherit': the terminal is its stdout; use 'message' or a LogFile"
        )
    if stderr not in ("inherit", "stdout"):
        raise ValueError(
            f"open_port: pty=True with stderr={stderr!r}: on a terminal stderr is the terminal, as stdout; "
            "leave stderr at its default"
        )


def _check_spec(
    argv: Any, framing: Any, cwd: Any, env: Any, stdout: Any, stderr: Any, max_frame: Any, pty: Any = False
) -> driver.PortSpec:
    args = _check_argv(argv)
    _check_terminal(pty, stdout, stderr)
    if framing is None:
        framing = "raw" if pty else "line"
    if framing not in FRAMINGS:
        choices = ", ".join(repr(f) for f in FRAMINGS)
        raise ValueError(f"open_port: framing={framing!r} is not a framing; use one of {choices}")
    if cwd is not None:
        if isinstance(cwd, os.PathLike):
            cwd = os.fspath(cwd)
        if not isinstance(cwd, str):
            raise TypeError(f"open_port: cwd={cwd!r} is not a path; pass a directory as a string")
        cwd = os.path.abspath(cwd)
        if not os.path.isdir(cwd):
            raise FileNotFoundError(
                errno.ENOENT, f"open_port: cwd={cwd!r} is not a directory; create it or fix the path", cwd
            )
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise TypeError(
                f"open_port: env={env!r} is not a dict of str to str; pass the whole environment, e.g. {{**os.environ, 'X': '1'}}"
            )
        env = dict(env)
    out = _check_output("stdout", stdout, STDOUTS)
    err = _check_output("stderr", stderr, STDERRS)
    if not is_count(max_frame, least=1):
        raise ValueError(f"open_port: max_frame={max_frame!r} is not a size; use an int of bytes >= 1")
    if max_frame > MAX_MAX_FRAME:
        raise ValueError(
            f"open_port: max_frame={max_frame!r} is over {MAX_MAX_FRAME} bytes, the largest frame that fits in "
            "one message to the owner; use a smaller size"
        )
    executable = _find_executable(args[0], cwd, env)
    return driver.PortSpec(args, executable, framing, cwd, env, out, err, max_frame, pty)


def open_port(
    argv: Sequence[str | os.PathLike[str]],
    *,
    framing: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    stderr: str | LogFile = "inherit",
    stdout: str | LogFile = "message",
    max_frame: int = DEFAULT_MAX_FRAME,
    name: str | None = None,
    link: bool = False,
    pty: bool = False,
) -> Port:
    """Run ``argv`` as a port owned by the caller; returns once it runs.

    ``framing``: ``"line"`` (the default without a pty: a frame per line, newline stripped; ``send``
    appends one), ``"lines"`` (framed as ``"line"``, but every whole line of
    one read of stdout comes in one message ``(port, ("lines", [line, ...]))``,
    in order: one message per read instead of per line, for high line rates,
    where the owner's cost per message is the limit; stderr's lines still come
    one ``("stderr", line)`` each), ``"packet"`` (4-byte big-endian length), ``"raw"`` (chunks
    as read, split to at most ``max_frame`` bytes; the default with
    ``pty=True``, since prompts end without a newline). A line or packet over
    ``max_frame`` bytes (default 64 MiB, at most 1 GiB - 1 KiB) ends the
    port with an ``("error", FrameError)`` reason, after every whole frame
    before it was delivered.
    ``stdout``: ``"message"`` (frames to the owner), ``"inherit"``, or a
    :class:`LogFile`; ``stderr``: ``"inherit"``, ``"stdout"`` (merged),
    ``"message"`` (``(port, ("stderr", frame))``) or a LogFile. ``env`` is the
    whole environment, as in ``subprocess``. ``name=`` registers the port and
    ``link=True`` links it to the caller, atomically.
    ``pty=True``: the executable's stdin, stdout and stderr are a new
    pseudo-terminal of 24 rows and 80 columns, its controlling terminal
    (``isatty()`` is true; it echoes input and ends lines with ``\r\n``,
    as any terminal); ``close(port)`` sends the terminal's EOF character
    (^D). See :func:`resize` and :func:`expect`.

    Raises, in the caller, before anything starts:
        FileNotFoundError / PermissionError: the executable is missing or not
            executable (named in the message).
        TypeError / ValueError: a bad argument, named.
        occasional.NameTaken: ``name`` is held by a live process.
    """
    current("open_port()")
    spec = _check_spec(argv, framing, cwd, env, stdout, stderr, max_frame, pty)
    return _start("open_port()", spec, name, link)


def _start(call: str, spec: driver.PortSpec, name: str | None, link: bool) -> Port:
    """Spawn the port process for ``spec`` and wait until its executable runs."""
    ctx = current(call)
    if name is not None:
        api.check_name(call, name)
    token = ctx.new_ref()
    prepared = api.Prepared(driver.run, (spec, ctx.pid, token))
    prepared.title = os.path.basename(spec.argv[0])
    every = [stage[1] for stage in spec.stages] or [spec.argv]
    prepared.function = " | ".join(shlex.join(argv) for argv in every)
    pid, ref = api.spawn_from(call, prepared, name=name, link=bool(link), monitor=True, meta={"argv": list(spec.argv)})
    assert ref is not None

    def started(m: Any) -> bool:
        return type(m) is tuple and (
            (len(m) == 3 and m[0] == STARTED and m[1] == token) or (len(m) == 4 and m[0] == "DOWN" and m[1] == ref)
        )

    msg = api.receive(started)
    if msg[0] == "DOWN":
        raise exit_error(pid, msg[3])
    api.demonitor(ref, flush=True)
    if msg[2] is not None:
        raise msg[2]
    port = Port._make(pid.id, pid.os_pid)
    if spec.pty:
        opened(port, spec.framing)
    return port


def pipeline(
    stages: Sequence[Sequence[str | os.PathLike[str]]],
    *,
    framing: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    stderr: str | LogFile = "inherit",
    stdout: str | LogFile = "message",
    max_frame: int = DEFAULT_MAX_FRAME,
    name: str | None = None,
    link: bool = False,
) -> Port:
    """Run ``stages`` as one port, each stage's stdout into the next one's
    stdin, with no shell (API.md section 13): what is sent to the port goes
    to the first stage, the last stage's output comes as the port's, every
    stage's stderr as ``stderr`` says. The stages are one process group that
    dies with the port. ``("exit_status", n)`` is the last stage's;
    ``("statuses", [n, ...])`` comes just before it, each stage's, as bash's
    PIPESTATUS (:func:`statuses` waits for it)."""
    current("pipeline()")
    if not isinstance(stages, (list, tuple)) or len(stages) < 1:
        raise TypeError(f"pipeline({stages!r}): pass a list of argv lists, e.g. [['ls'], ['wc', '-l']]")
    specs = [_check_spec(argv, framing, cwd, env, stdout, stderr, max_frame) for argv in stages]
    last = specs[-1]
    return _start("pipeline()", replace(last, stages=tuple((sp.executable, sp.argv) for sp in specs)), name, link)


def statuses(port: Port, timeout: float | None = None) -> list[int]:
    """Each stage's exit status (a negative number: killed by that signal), once
    the pipeline ``port`` has ended; waits for it up to ``timeout`` seconds."""
    if not isinstance(port, Port):
        raise TypeError(f"statuses({port!r}): not a port; pass the port pipeline() returned")
    _, (_, found) = api.receive((port, ("statuses", ANY)), timeout)
    current("statuses()").post((port, ("statuses", found)))  # still there for whoever asks again
    return list(found)


def close(port: Port) -> None:
    """Close the port's stdin once what was sent before is written (EOF for
    the executable). Erlang's ports cannot do this (erlang/otp #4326)."""
    ctx = current("occasional.ports.close()")
    if not isinstance(port, Port):
        raise TypeError(f"occasional.ports.close({port!r}): not a Port; pass what open_port() returned")
    ctx.send_bytes(port.id, codec.dumps(CLOSE))


def resize(port: Port, rows: int, cols: int) -> None:
    """Set the size of ``port``'s pseudo-terminal; the executable gets
    SIGWINCH. Returns once it is set (the port does the ioctl: only it holds
    the terminal). A port that has ended is left as it is.

    Raises:
        TypeError: ``port`` is not a Port, or not one opened with ``pty=True``;
            ``rows``/``cols`` not ints.
        ValueError: ``rows``/``cols`` not in 1..65535.
        occasional.NoProcess: the port is not running.
    """
    call = f"occasional.ports.resize({port!r}, {rows!r}, {cols!r})"
    ctx = current("occasional.ports.resize()")
    if not isinstance(port, Port):
        raise TypeError(f"{call}: {port!r} is not a Port; pass what open_port(argv, pty=True) returned")
    for key, value in (("rows", rows), ("cols", cols)):
        if type(value) is not int:
            raise TypeError(
                f"{call}: {key}={value!r} is not an int; give the size in characters, e.g. 24 rows, 80 cols"
            )
        if not 1 <= value <= 0xFFFF:
            raise ValueError(f"{call}: {key}={value!r} is not a terminal size; use an int from 1 to 65535")
    ref = api.monitor(port)
    try:
        ctx.send_bytes(port.id, codec.dumps((terminal.RESIZE, rows, cols, ctx.pid, ref)))

        def answer(m: Any) -> bool:
            return type(m) is tuple and (
                (len(m) == 3 and m[0] == terminal.RESIZED and m[1] == ref)
                or (len(m) == 4 and m[0] == "DOWN" and m[1] == ref)
            )

        msg = api.receive(answer)
    finally:
        api.demonitor(ref, flush=True)
    if msg[0] == "DOWN":
        raise exit_error(port, msg[3])
    if msg[2] is not None:
        raise msg[2]


FrameError.__module__ = "occasional.ports"

# A partial of open_port in a child spec starts a port: the Supervisor learns
# that from its registry, which this fills, since behaviours never imports
# ports (issue 11). Last, so that open_port exists to be passed in.
from . import supervised as _supervised  # noqa: E402  registers ports as a Supervisor child kind

_supervised.register(open_port)
