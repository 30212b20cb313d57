"""Real Erlang for the tests of nodes (issue 13; API.md section 11): a private EPMD and real ``erl`` nodes.

An occasional node *is* an Erlang node (its runtime runs an Erlang VM beside central), so its
tests need what any Erlang node needs, and a real Erlang node to talk to:

- :func:`epmd_server`: a private EPMD (Erlang's port mapper, ``/usr/bin/epmd``) on a free port,
  for the ``with`` block. Every Erlang VM finds its EPMD through ``ERL_EPMD_PORT`` (Erlang's own
  environment variable), so a VM started with it set registers there and nowhere else.
- The pytest fixture ``epmd`` (one EPMD for a test module, ``ERL_EPMD_PORT`` set in ``os.environ``
  meanwhile, for every VM the module's tests start). Import its function into a test module,
  ``from occasional.testing.erlang import epmd_fixture``, or load this module as a plugin
  (``pytest_plugins = ["occasional.testing.erlang"]``), and ask for ``epmd`` by name.
- :class:`ErlangNode`: a real ``erl -name NAME@HOST -setcookie C -noshell``, in which a test
  evaluates Erlang expressions and reads back their values, printed as Erlang prints them::

      with ErlangNode("e@127.0.0.1", cookie) as e:
          e.eval("net_adm:ping('occ@127.0.0.1').")  # "pong"
          e.eval("register(echo, spawn(fun Loop() -> receive {From, M} -> From ! M, Loop() end end)).")

How nothing is left behind (occasional.testing.plugin):

- EPMD runs in the foreground (``epmd -port P``, never ``-daemon``): it is a child of this
  process, stopped with a signal and reaped with ``wait()``. A VM started here gets
  ``-start_epmd false``: without an EPMD at ``ERL_EPMD_PORT`` it fails to start instead of
  starting a daemon EPMD that would outlive the test.
- The fixture starts its EPMD during its setup, so the plugin counts it as held by the fixture
  until the module ends; per module, not per session, because a test elsewhere that checks
  what its own runtime left among pytest's children must not find it (as for
  ``occasional.testing.postgres``). An EPMD starts in milliseconds.
- Each ``erl`` runs in a session of its own. ``stop()`` ends the VM (EOF on its stdin makes it
  halt; SIGKILL if it does not within a few seconds) and then its helper processes
  (``erl_child_setup``, which leads a session of its own, so no signal to the VM's group reaches
  it), reaping those that became our zombies. The native resolver (``inet_gethost``, another
  such helper) is not used at all: the VM resolves names itself (``{lookup, [file, dns]}``).
- Both run under ``setpriv --pdeathsig SIGKILL`` (util-linux) when it is installed: if this
  process dies without stopping them (SIGKILL, the plugin's hard timeout), they die too. Linux
  sends it when the *thread* that started them ends: start them from the main thread.

Nothing here imports occasional, nor decodes Erlang terms: values come back as the text that
``io_lib:format("~0tp", [Value])`` prints (one line), which a test compares with ``==``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from .epmd import (  # re-exported: tests import the fixture from here
    ERL_EPMD_PORT,
    START_TIMEOUT_S,
    Epmd as Epmd,
    _deathsig_prefix,
    epmd_environment as epmd_environment,
    epmd_fixture as epmd_fixture,
    epmd_server as epmd_server,
    free_port as free_port,
    start_epmd as start_epmd,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

STOP_TIMEOUT_S = 5.0
EVAL_TIMEOUT_S = 10.0
_POLL_S = 0.005
_RESULT = "\x02"  # starts a line that answers an expression; the VM's own output never does

# The loop a node runs, given to -eval: read "<characters>\n<expression>" from stdin, evaluate
# it, and print "\x02ok <value>" or "\x02error <{Class, Reason}>" on one line. EOF on stdin
# (stop()) halts the VM. It runs in a process of its own, so that init finishes booting. Each
# expression starts with no variables bound: unlike the shell's, a variable bound by one test's
# expression (X in "receive {reply, X} -> X end") cannot turn the next test's into a match.
_LOOP = r"""
Read = fun() ->
    try
        Size = binary_to_integer(string:trim(io:get_line(standard_io, ""))),
        {ok, unicode:characters_to_list(io:get_chars(standard_io, "", Size))}
    catch _:_ -> eof
    end
end,
Eval = fun(Text) ->
    try
        {ok, Tokens, _} = erl_scan:string(Text),
        {ok, Exprs} = erl_parse:parse_exprs(Tokens),
        {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
        ["ok ", io_lib:format("~0tp", [Value])]
    catch Class:Reason -> ["error ", io_lib:format("~0tp", [{Class, Reason}])]
    end
end,
Loop = fun Loop() ->
    case Read() of
        {ok, Text} ->
            io:put_chars(standard_io, [2, Eval(Text), $\n]),
            Loop();
        eof -> erlang:halt(0)
    end
end,
spawn(fun() ->
    io:setopts(standard_io, [binary, {encoding, unicode}]),
    try Loop() catch _:_ -> erlang:halt(1) end
end).
"""


class ErlangError(Exception):
    """An Erlang expression raised, or the node could not answer it."""

    def __init__(self, expression: str, detail: str) -> None:
        super().__init__(expression, detail)
        self.expression = expression
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.expression!r}: {self.detail}"


def quote_atom(name: str) -> str:
    """``name`` as an Erlang atom literal: ``'occ@127.0.0.1'``."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ------------------------------------------------------------------ erl nodes


class ErlangNode:
    """A real Erlang node, ``erl -name NAME@HOST -setcookie COOKIE -noshell``, that evaluates
    the expressions a test gives it. ``-sname`` for a host without a dot, as Erlang requires.

    ``epmd_port`` defaults to ``ERL_EPMD_PORT`` of ``os.environ`` (the ``epmd`` fixture sets it);
    ``net_ticktime`` (seconds) is Erlang's kernel parameter; ``args`` go to erl as they are.
    """

    def __init__(
        self,
        name: str,
        cookie: str,
        *,
        net_ticktime: int | None = None,
        epmd_port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        if "@" not in name:
            raise ValueError(f"node name {name!r} has no host; write it NAME@HOST, e.g. 'e@127.0.0.1'")
        if epmd_port is None:
            env_port = os.environ.get(ERL_EPMD_PORT)
            if env_port is None:
                raise RuntimeError(
                    f"no EPMD for node {name!r}: ERL_EPMD_PORT is not set and no epmd_port= was given; "
                    "start one with the epmd fixture or epmd_server() (a test must not use the machine's EPMD)"
                )
            epmd_port = int(env_port)
        self.name = name
        self.cookie = cookie
        self.epmd_port = epmd_port
        self.net_ticktime = net_ticktime
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []  # what the VM printed that answers no expression (its logs)
        self._buffer = b""
        self._directory: str | None = None
        self._busy = False  # an expression gave no answer in time: the loop reads no EOF now
        self._started = 0  # the VM's start time (clock ticks since boot)

    @property
    def os_pid(self) -> int:
        """The Linux pid of the VM (beam.smp: erl and erlexec exec it in place)."""
        if self.process is None:
            raise RuntimeError(f"Erlang node {self.name!r} is not running; start() it first")
        return self.process.pid

    def start(self) -> ErlangNode:
        """Start the VM and wait until it answers ``node().`` with its name.

        Raises:
            ErlangError: the VM ended while starting (its output is in the message), or did not
                answer within START_TIMEOUT_S.
        """
        erl = shutil.which("erl")
        if erl is None:
            raise RuntimeError("no erl on PATH; install Debian's erlang-base package (./setup.sh does)")
        # A directory of its own: a VM that crashes writes erl_crash.dump into its cwd, and no
        # dump is wanted anyway (ERL_CRASH_DUMP_SECONDS=0).
        self._directory = tempfile.mkdtemp(prefix="occ-erl-")
        host = self.name.partition("@")[2]
        naming = "-name" if "." in host else "-sname"
        command = [*_deathsig_prefix(), erl, naming, self.name, "-setcookie", self.cookie, "-noshell"]
        command += ["-start_epmd", "false"]
        # Erlang's own resolver, not the native one: that is a port program (inet_gethost) in a
        # session of its own, which outlives the VM for a moment and is left as our zombie. Names
        # come from /etc/hosts then DNS; the tests use 127.0.0.1.
        inetrc = os.path.join(self._directory, "inetrc")
        with open(inetrc, "w") as f:
            f.write("{lookup, [file, dns]}.\n")
        command += ["-kernel", "inetrc", f'"{inetrc}"']
        if self.net_ticktime is not None:
            command += ["-kernel", "net_ticktime", str(self.net_ticktime)]
        command += [*self.args, "-eval", _LOOP]
        env = {**os.environ, ERL_EPMD_PORT: str(self.epmd_port), "ERL_CRASH_DUMP_SECONDS": "0"}
        self.process = subprocess.Popen(
            command,
            cwd=self._directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = _stat(self.process.pid)
        self._started = started[2] if started is not None else 0
        try:
            answer = self.eval("node().", timeout=START_TIMEOUT_S)
            if answer != quote_atom(self.name):
                raise ErlangError("node().", f"the VM says it is {answer}, not {quote_atom(self.name)}")
        except BaseException:
            self.stop()
            raise
        return self

    def eval(self, expression: str, timeout: float = EVAL_TIMEOUT_S) -> str:
        """Evaluate ``expression`` (Erlang, ending with a full stop) and return its value as
        ``~0tp`` prints it: ``"pong"``, ``"{reply,<<\\"hi\\">>}"``. Each expression starts with
        no variables bound (unlike in the Erlang shell): write what belongs together as one
        expression, ``"P = spawn(...), P ! go, ok."``.

        Raises:
            ErlangError: the expression raised (the detail is ``{Class, Reason}``), or the VM
                ended, or it gave no answer within ``timeout`` seconds.
        """
        process = self.process
        if process is None or process.stdin is None:
            raise ErlangError(expression, f"Erlang node {self.name!r} is not running; start() it first")
        if not expression.strip():
            raise ValueError("an empty expression; give an Erlang expression ending with a full stop, e.g. 'node().'")
        try:
            process.stdin.write(f"{len(expression)}\n{expression}".encode())
            process.stdin.flush()
        except BrokenPipeError:
            raise ErlangError(expression, self._ended()) from None
        line = self._read_result(expression, time.monotonic() + timeout)
        kind, _, value = line.partition(" ")
        if kind != "ok":
            raise ErlangError(expression, f"raised {value}")
        return value

    def _read_result(self, expression: str, deadline: float) -> str:
        """The next line that answers an expression; other lines go to ``output``."""
        process = self.process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buffer:
                    raw, _, self._buffer = self._buffer.partition(b"\n")
                    line = raw.decode("utf-8", errors="replace").rstrip("\r")
                    if line.startswith(_RESULT):
                        return line[len(_RESULT) :]
                    self.output.append(line)
                left = deadline - time.monotonic()
                if left <= 0:
                    self._busy = True
                    raise ErlangError(expression, f"no answer within the timeout; the VM printed: {self._printed()}")
                if selector.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise ErlangError(expression, self._ended())
                    self._buffer += chunk

    def _printed(self) -> str:
        return "\n".join(self.output[-30:]) or "(nothing)"

    def _ended(self) -> str:
        assert self.process is not None
        try:
            status = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        return f"the VM of {self.name!r} closed its output (exit status {status}); it printed: {self._printed()}"

    def stop(self) -> None:
        """End the VM and every process it started; nothing of it is left when this returns."""
        process = self.process
        if process is None:
            return
        helpers = _descendants(process.pid) if process.poll() is None else []
        # A VM that ended by itself left its helpers to us (the subreaper): they are no longer
        # among its descendants, and would be left as our zombies.
        helpers += [h for h in _orphaned_helpers(self._started) if h not in helpers]
        try:
            if process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()  # the loop reads EOF and halts the VM
            try:
                # An expression still running (a receive without after) keeps the loop from
                # reading the EOF: such a VM is killed at once.
                process.wait(0 if self._busy else STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
            _end_descendants(helpers)
        finally:
            self.process = None
            self._busy = False
            self._buffer = b""
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None

    def __enter__(self) -> ErlangNode:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"os pid {self.process.pid}" if self.process is not None else "stopped"
        return f"<ErlangNode {self.name} ({state})>"


def _end_descendants(procs: list[tuple[int, int]]) -> None:
    """Make sure none of ``procs`` (pid, start time) runs, and reap those that are now our zombies.

    A VM's helpers (``erl_child_setup``) each lead a session of their own, so no signal to the
    VM's group reaches them; when the VM ends they end too, orphaned: under a subreaper (pytest
    with occasional.testing.plugin) they become its zombies, which nothing else would reap in time."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    me = os.getpid()
    while True:
        running = []
        for pid, start in procs:
            stat = _stat(pid)
            if stat is None or stat[2] != start:
                continue  # gone, or its pid is another process's now
            state, ppid, _ = stat
            if state in ("Z", "X"):
                if ppid == me:
                    _reap(pid, start)
                continue
            running.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not running or time.monotonic() >= deadline:
            return
        time.sleep(_POLL_S)


def _reap(pid: int, start: int) -> None:
    """Reap our zombie ``pid`` if it is still the process that started at ``start``: a pidfd pins it."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone (reaped by the plugin's reaper meanwhile), or no pidfds
        return
    try:
        stat = _stat(pid)
        if stat is not None and stat[2] == start:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    finally:
        os.close(pidfd)


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of ``pid``."""
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                stat = _stat(kid)
                if stat is not None and all(kid != p for p, _ in found):
                    found.append((kid, stat[2]))
                    todo.append(kid)
    return found


def _orphaned_helpers(since: int) -> list[tuple[int, int]]:
    """(pid, start time) of the ``erl_child_setup`` processes that are this process's children
    and started at or after ``since``: a VM's helpers it orphaned, now ours as the subreaper."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        if comm == "erl_child_setup" and int(fields[1]) == me and int(fields[19]) >= since:
            found.append((int(entry), int(fields[19])))
    return found


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
    return fields[0], int(fields[1]), int(fields[19])


__all__ = [
    "ERL_EPMD_PORT",
    "Epmd",
    "ErlangError",
    "ErlangNode",
    "epmd_environment",
    "epmd_fixture",
    "epmd_server",
    "free_port",
    "quote_atom",
    "start_epmd",
]
