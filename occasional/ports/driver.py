"""The process behind a port: it runs the executable and frames its stdio.

A port is a process of the runtime like any other (forked by the
forkserver, in central's table, linkable, monitorable, registrable); its
function is :func:`run`, which starts the executable with ``subprocess``
in a process group of its own, then multiplexes the executable's pipes with
its own mailbox (the mailbox's epoll waits on both):

* stdout (and stderr with ``stderr="message"``) -> frames -> the owner, as
  ``(port, ("data", frame))`` / ``(port, ("stderr", frame))``, or into a
  size-rotated log file; with ``framing="lines"``, all the lines of one read
  of stdout in one message ``(port, ("lines", [line, ...]))`` (issue 15: at
  high line rates the owner's cost per message is the bottleneck);
* bytes sent to the port -> one frame each -> the executable's stdin, never
  blocking (a user-space buffer, as for peers); the frames of every message
  that arrived together are written with one syscall, before the driver
  waits again (issue 15: a write per line was half of the driver's time);
* with ``pty=True`` (:mod:`occasional.ports.terminal`), one pseudo-terminal
  is the executable's stdin, stdout and stderr: the driver reads and writes
  its master, and EIO on reading it (every slave closed) is the end of output;
* the executable's end (a pidfd) -> ``(port, ("exit_status", n))`` to the
  owner, last, then the port ends with a reason from that status.

No orphans: the driver is a child subreaper, so whatever the executable
starts and abandons (a double fork, ``setsid``) is reparented to it, and it
kills all of it when the port ends. When the driver itself is SIGKILLed,
the executable and all it started are reparented to central, a subreaper
too, which kills every process it adopts. The executable gets no death
signal of its own: setting one needs ``preexec_fn``, which makes
``subprocess`` fork and run Python in the child instead of vfork-ing, and
cost 1.9 ms of every port start (bench/RESULTS.md, port restart).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import select
import signal
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..core import api, context
from ..core.pid import Pid, Port, Ref
from ..core.reasons import reason_from_returncode
from ..sck.frame import FrameError
from .framing import Framer, batch_encoder, encoder, frame_out
from .lifetime import die_with_the_runtime, end, kill_everything_started
from .logfile import LogFile, LogWriter
from .protocol import CLOSE, STARTED
from .stages import start_stages, statuses
from .terminal import RESIZE, RESIZED, eof_char, open_terminal, set_size, take_as_controlling_terminal

log = logging.getLogger("occasional.ports")

_READ = 1 << 16
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
# Stop reading the executable while this much is queued for a slow owner:
# the pipe then fills and the executable blocks, instead of the driver's memory.
_HIGH_WATER = 8 << 20
# Bytes for stdin queued before the driver writes them without waiting for the
# mailbox to empty; and the most chunks one writev takes (IOV_MAX is 1024).
_STDIN_BATCH = 1 << 16
_WRITEV_MAX = 512

_EXITED = object()  # put in the mailbox by the pidfd handler


@dataclass(frozen=True)
class PortSpec:
    """What open_port checked, as the driver receives it."""

    argv: tuple[str, ...]
    executable: str
    framing: str
    cwd: str | None
    env: dict[str, str] | None
    stdout: str | LogFile
    stderr: str | LogFile
    max_frame: int
    pty: bool = False  # stdin, stdout and stderr are a new pseudo-terminal (API.md section 13)
    # A pipeline's stages, first to last, each (executable, argv); argv is the last one's.
    stages: tuple[tuple[str, tuple[str, ...]], ...] = ()


class _Output:
    """One of the executable's output pipes and where its frames go."""

    def __init__(self, driver: _Driver, pipe: Any, tag: str, dest: str | LogFile) -> None:
        self.driver = driver
        self.fd = pipe.fileno()
        self.pipe = pipe
        self.tag = tag
        self.log = LogWriter(dest) if isinstance(dest, LogFile) else None
        self.framer = None if self.log is not None else Framer(driver.spec.framing, driver.spec.max_frame)
        # framing="lines": stdout's lines of one read in one message (API.md
        # section 8); stderr's lines still come one message each.
        batched = driver.spec.framing == "lines" and tag == "data"
        self.tag = "lines" if batched else tag
        self.encode = (batch_encoder if batched else encoder)(driver.me, self.tag)
        self.open = True
        self.paused = False
        os.set_blocking(self.fd, False)

    def on_event(self, ev: int) -> None:
        self.read_some()

    def read_some(self) -> bool:
        """Read what the pipe holds now; False at EOF or on an error."""
        try:
            data = os.read(self.fd, _READ)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.close()
            return False
        if self.log is not None:
            self.log.write(data)
            return True
        framer = self.framer
        assert framer is not None
        frames = framer.feed(data)
        # Every whole frame before bad output is delivered, then the port
        # ends with the error (issue 10, "Nothing lost").
        if frames:
            self.driver.deliver(self.encode(frames))
        if framer.error is not None:
            stream = "stderr" if self.tag == "stderr" else "stdout"
            self.driver.fail(FrameError(f"port {' '.join(self.driver.spec.argv)!r}: its {stream} has {framer.error}"))
            return False
        return True

    def drain(self) -> None:
        while self.open and self.read_some():
            pass

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        self.driver.unwatch(self.fd)
        self.pipe.close()
        if self.log is not None:
            self.log.close()


class _Driver:
    def __init__(self, spec: PortSpec, owner: Pid) -> None:
        self.spec = spec
        self.owner = owner
        self.ctx = context.current("open_port()")
        self.me = Port._make(self.ctx.pid.id, os.getpid())
        self.proc: subprocess.Popen[bytes] | None = None
        self.outputs: list[_Output] = []
        self.stdin_fd = -1
        self.stdin_pipe: Any = None
        self.terminal: _Output | None = None  # a pty port's master end, read (stdin_fd is a dup of it)
        self.stdin_buf: deque[bytes] = deque()
        self.stdin_watching = False
        self.closing_stdin = False
        self.pidfd = -1
        self.first: list[subprocess.Popen[bytes]] = []  # a pipeline's stages before the last
        self.stage_statuses: list[int | None] = []
        self.status: int | None = None
        self.ending: tuple[str, Any] | None = None  # a reason that overrides the status
        self.owner_ref: Ref | None = None
        self.stdin_queued = 0  # bytes in stdin_buf

    @property
    def pgid(self) -> int:
        """The executable's process group: a pipeline's first stage's."""
        assert self.proc is not None
        return self.first[0].pid if self.first else self.proc.pid

    # -- start ---------------------------------------------------------------------

    def start(self) -> None:
        if self.spec.pty:
            self._start_on_terminal()
        elif self.spec.stages:
            self.first = start_stages(self.spec)
            self._start_on_pipes()
        else:
            self._start_on_pipes()
        assert self.proc is not None
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.watch(self.pidfd, _EPOLLIN, self._on_exit)
        for o in self.outputs:
            self.watch(o.fd, _EPOLLIN, o.on_event)

    def _start_on_pipes(self) -> None:
        spec = self.spec
        out = subprocess.PIPE if spec.stdout != "inherit" else None
        if spec.stderr == "stdout":
            err: Any = subprocess.STDOUT if out is not None else None
        elif spec.stderr == "inherit":
            err = None
        else:
            err = subprocess.PIPE
        before = self.first
        self.proc = subprocess.Popen(
            list(spec.argv),
            executable=spec.executable,
            stdin=subprocess.PIPE if not before else before[-1].stdout,
            stdout=out,
            stderr=err,
            cwd=spec.cwd,
            env=spec.env,
            process_group=before[0].pid if before else 0,
            bufsize=0,
        )
        stdin = before[0].stdin if before else self.proc.stdin
        if before and before[-1].stdout is not None:
            before[-1].stdout.close()  # the last stage holds it now: its EOF is the stage before's end
        assert stdin is not None
        self.stdin_pipe = stdin
        self.stdin_fd = stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        if self.proc.stdout is not None:
            self.outputs.append(_Output(self, self.proc.stdout, "data", spec.stdout))
        if self.proc.stderr is not None:
            self.outputs.append(_Output(self, self.proc.stderr, "stderr", spec.stderr))

    def _start_on_terminal(self) -> None:
        """The executable's stdio is the slave of a new pty, its controlling
        terminal in a session of its own (so its process group, killed as
        any port's). Only this process holds the master (close-on-exec): the
        executable, and whatever it starts, see the slave alone. The child
        must run Python between fork and exec for TIOCSCTTY (preexec_fn),
        which costs the vfork a pipe port gets (see the module docstring)."""
        spec = self.spec
        master, slave = open_terminal()
        try:
            self.proc = subprocess.Popen(
                list(spec.argv),
                executable=spec.executable,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=spec.cwd,
                env=spec.env,
                start_new_session=True,
                preexec_fn=take_as_controlling_terminal,
                bufsize=0,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            # The master reads EIO once every slave is closed: the end of output.
            os.close(slave)
        self.stdin_fd = os.dup(master)  # epoll watches an fd once: one to read, one to write
        os.set_blocking(self.stdin_fd, False)
        self.stdin_pipe = io.FileIO(self.stdin_fd, "wb", closefd=True)
        self.terminal = _Output(self, io.FileIO(master, "rb", closefd=True), "data", spec.stdout)
        self.outputs.append(self.terminal)

    def watch(self, fd: int, events: int, handler: Callable[[int], None]) -> None:
        self.ctx.watch_fd(fd, events, handler)

    def unwatch(self, fd: int) -> None:
        self.ctx.unwatch_fd(fd)

    # -- the executable's output -> the owner ----------------------------------------

    def deliver(self, messages: bytes) -> None:
        """Send the owner wire frames of messages (an _Output's ``encode``)."""
        owner_id = self.owner.id
        self.ctx.send_framed(owner_id, messages)
        if self.ctx.queued_bytes(owner_id) > _HIGH_WATER:
            self._pause_outputs()

    def _pause_outputs(self) -> None:
        for o in self.outputs:
            if o.open and not o.paused:
                o.paused = True
                self.ctx.modify_fd(o.fd, 0)

    def _resume_outputs(self) -> None:
        if self.ctx.queued_bytes(self.owner.id) > _HIGH_WATER // 2:
            return
        for o in self.outputs:
            if o.open and o.paused:
                o.paused = False
                self.ctx.modify_fd(o.fd, _EPOLLIN)

    # -- messages -> the executable's stdin ---------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue a frame for stdin. It is written, in order, once the messages
        that arrived with it are handled (``loop``), or at once when
        ``_STDIN_BATCH`` bytes wait: one syscall for many lines."""
        if self.stdin_fd < 0 or self.closing_stdin:
            return  # stdin is closed: like a send to an ended process, dropped
        chunk = frame_out(self.spec.framing, data)
        if not chunk:
            return  # b"" sent to a raw port: nothing to write
        self.stdin_buf.append(chunk)
        self.stdin_queued += len(chunk)
        if self.stdin_queued >= _STDIN_BATCH and not self.stdin_watching:
            self._flush_stdin()

    def _flush_stdin(self, ev: int = 0) -> None:
        buf = self.stdin_buf
        while buf:
            chunks = list(buf) if len(buf) <= _WRITEV_MAX else [buf[i] for i in range(_WRITEV_MAX)]
            try:
                n = os.writev(self.stdin_fd, chunks)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.EPIPE:
                    raise
                buf.clear()  # the executable closed its stdin: nothing more can go
                self.stdin_queued = 0
                break
            self.stdin_queued -= n
            while buf and n >= len(buf[0]):
                n -= len(buf.popleft())
            if n:
                buf[0] = buf[0][n:]
            if buf and len(chunks) < _WRITEV_MAX:
                break  # a short write: the pipe is full
        want = bool(buf)
        if want != self.stdin_watching:
            self.stdin_watching = want
            if want:
                self.watch(self.stdin_fd, _EPOLLOUT, self._flush_stdin)
            else:
                self.unwatch(self.stdin_fd)
        if not buf and self.closing_stdin:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            self.unwatch(self.stdin_fd)
            self.stdin_pipe.close()
            self.stdin_fd = -1

    def close_stdin(self) -> None:
        if self.spec.pty and self.stdin_fd >= 0 and not self.closing_stdin:
            # Closing our copy of the master ends nothing the executable reads:
            # a terminal's end of input is its VEOF character (^D), as
            # pexpect's sendeof. That copy is closed once it is written.
            eof = eof_char(self.stdin_fd)
            self.stdin_buf.append(eof)
            self.stdin_queued += len(eof)
            self.closing_stdin = True
            self._flush_stdin()
            return
        self.closing_stdin = True
        if not self.stdin_buf:
            self._close_stdin()

    # -- ends ---------------------------------------------------------------------

    def _on_exit(self, ev: int) -> None:
        assert self.proc is not None
        self.unwatch(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        self.status = self.proc.wait()
        self.ctx.post(_EXITED)

    def fail(self, error: FrameError) -> None:
        """Bad output ends the port (API.md section 10), never the owner."""
        if self.ending is None:
            self.ending = ("error", error)
        self._signal_executable(signal.SIGKILL)
        for o in self.outputs:
            o.close()

    def _signal_executable(self, sig: int) -> None:
        """Send ``sig`` to the executable's process group, while it has not ended."""
        if self.proc is not None and self.status is None:
            try:
                os.killpg(self.pgid, sig)
            except OSError:
                pass

    def on_message(self, msg: Any) -> None:
        t = type(msg)
        if t is bytes:
            self.write(msg)
        elif t is tuple and len(msg) == 4 and msg[0] == "DOWN" and msg[1] == self.owner_ref:
            # The owner is gone: so is everything it started (API.md section 8).
            self.ending = ("killed", f"its owner {self.owner!r} ended")
            self._signal_executable(signal.SIGKILL)
        elif t is tuple and len(msg) == 3 and msg[0] == "EXIT":
            self._on_exit_signal(msg[1], msg[2])
        elif msg == CLOSE:
            self.close_stdin()
        elif t is tuple and len(msg) == 5 and msg[0] == RESIZE:
            if self.stdin_buf and not self.stdin_watching:
                self._flush_stdin()  # what was sent before the resize is written before it
            self._resize(*msg[1:])
        elif t in (bytearray, memoryview):
            self.write(bytes(msg))
        else:
            log.warning(
                "port %r (%s) dropped a message that is not bytes: %.200r", self.me, " ".join(self.spec.argv), msg
            )

    def _resize(self, rows: int, cols: int, reply_to: Pid, ref: Ref) -> None:
        """``ports.resize``: checked by the caller, done here, where the master is."""
        error: Exception | None = None
        if not self.spec.pty:
            error = TypeError(
                f"occasional.ports.resize({self.me!r}, {rows!r}, {cols!r}): {self.me!r} is not on a pseudo-terminal; "
                "open it with open_port(argv, pty=True)"
            )
        elif self.terminal is not None and self.terminal.open:  # else it has ended: nothing to resize
            try:
                set_size(self.terminal.fd, rows, cols)
            except OSError as e:
                error = e
        api.send(reply_to, (RESIZED, ref, error))

    def _on_exit_signal(self, sender: Pid, reason: tuple[str, Any]) -> None:
        if reason[0] == "ok":
            return  # a normal end kills nobody
        if reason == ("killed", "shutdown"):
            # An orderly shutdown (a supervisor's): the executable gets SIGTERM
            # and its shutdown time; the supervisor kills the port after that.
            if self.ending is None:
                self.ending = reason
            self._signal_executable(signal.SIGTERM)
            return
        if self.ending is None:
            self.ending = ("linked", (sender, reason))
        self._signal_executable(signal.SIGKILL)

    def loop(self) -> None:
        receive = self.ctx.receive
        mailbox = self.ctx.mailbox
        while self.status is None:
            if self.stdin_buf and not mailbox and not self.stdin_watching:
                self._flush_stdin()  # before waiting: what was sent is written, in order
            msg = receive(None, None)
            if msg is _EXITED:
                break
            self.on_message(msg)
            if any(o.paused for o in self.outputs):
                self._resume_outputs()
        if self.first:
            assert self.status is not None
            self.stage_statuses = statuses(self.first, self.status)
        # What the executable wrote before it ended is still in the pipes.
        for o in self.outputs:
            if o.paused:
                o.paused = False
            o.drain()
        kill_everything_started(self.pgid if self.proc else 0)
        for o in self.outputs:
            o.drain()
            o.close()
        self._close_stdin()

    def reason(self) -> tuple[str, Any]:
        if self.ending is not None:
            return self.ending
        for o in self.outputs:
            left = o.framer.left() if o.framer is not None else 0
            if left:
                what = "packet" if self.spec.framing == "packet" else "line"
                return (
                    "error",
                    FrameError(
                        f"port {' '.join(self.spec.argv)!r}: its {'stderr' if o.tag == 'stderr' else 'stdout'} "
                        f"ended with {left} bytes of an unfinished {what}, which were not delivered"
                    ),
                )
        status = self.status
        assert status is not None
        return ("ok", None) if status == 0 else reason_from_returncode(status)


def run(spec: PortSpec, owner: Pid, token: Ref) -> NoReturn:
    """The port process's function (see the module docstring)."""
    import prctl

    prctl.set_child_subreaper(1)
    driver = _Driver(spec, owner)
    die_with_the_runtime(driver)
    ctx = driver.ctx
    try:
        driver.start()  # first: a restart waits for this, not for central
    except OSError as e:
        # The executable could not start: the caller of open_port raises this,
        # and the port ends normally, so nothing linked to it dies.
        api.send(owner, (STARTED, token, e))
        end(ctx, ("ok", None))
    api.send(owner, (STARTED, token, None))
    api.trap_exits(True)
    driver.owner_ref = api.monitor(owner)  # an owner already gone: DOWN noproc, handled as its end
    reason: tuple[str, Any]
    try:
        driver.loop()
        assert driver.proc is not None
        status = driver.proc.returncode
        if driver.first:
            api.send(owner, (driver.me, ("statuses", driver.stage_statuses)))
        api.send(owner, (driver.me, ("exit_status", status)))
        reason = driver.reason()
    except BaseException as e:
        driver._signal_executable(signal.SIGKILL)
        kill_everything_started(driver.pgid if driver.proc else 0)
        reason = ("error", e)
    end(ctx, reason)
