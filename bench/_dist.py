"""Helpers shared by the benchmarks of nodes (bench/dist_*.py, issue 13 "Performance").

- :func:`epmd`: a private EPMD (``epmd -port P`` in the foreground) with ``ERL_EPMD_PORT=P`` in
  ``os.environ`` for the block, so that every VM started meanwhile (a runtime's, a plain
  ``erl``'s, a peer node's) registers there and nowhere else; stopped at the end.
- :class:`PeerNode`: a node that is a runtime in an interpreter of its own (this file run as a
  script, ``python bench/_dist.py NAME COOKIE PROGRAM ARGS...``), running one of the programs
  below; :meth:`PeerNode.kill` SIGKILLs its whole runtime (every process group of it: the
  interpreter, central, the forkserver, its processes and its Erlang VM) and reaps what it can.
- :func:`erlang_nodes`: two plain ``erl -name`` nodes with :data:`ERLANG_MODULE` loaded, the
  baseline of "the same between two BEAM nodes", timed in Erlang.
- :func:`tcp_pingpong`: the raw baseline, two Python processes (fork) over TCP loopback, each
  message pickled behind a 4-byte length.
- :func:`handshake`: find a peer's registered process and make the connection between the nodes,
  so that no benchmark times Erlang's connection set-up.

The functions that run on a peer node live here, not in a benchmark's ``__main__``, so the peer's
interpreter finds them by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import occasional as occ

from pingpong import RawConn  # the raw baseline of bench/pingpong.py

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

HOST = "127.0.0.1"
COOKIE = "occasional-bench"
READY_TIMEOUT_S = 30.0


# -- EPMD ----------------------------------------------------------------------------------


@contextlib.contextmanager
def epmd() -> Iterator[int]:
    """A private EPMD for the block; its port is in ``ERL_EPMD_PORT`` meanwhile."""
    from occasional.testing.epmd import epmd_environment, epmd_server

    with epmd_server() as server, epmd_environment(server.port):
        yield server.port


def leftovers(port: int) -> list[str]:
    """``beam.smp`` or ``epmd`` processes that still run for the EPMD on ``port`` (its own
    ``-port P``, or ``ERL_EPMD_PORT=P`` in a VM's environment): a benchmark leaves none."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        name = os.path.basename(args[0]).decode(errors="replace")
        if name == "epmd" and str(port).encode() in args:
            found.append(f"{entry}: epmd")
        elif name == "beam.smp" and f"ERL_EPMD_PORT={port}".encode() in env:
            found.append(f"{entry}: {b' '.join(args)[:100].decode(errors='replace')}")
    return found


# -- the processes of a runtime ----------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent, process group, start time) of ``pid``, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def tree(pid: int) -> list[tuple[int, int, int]]:
    """(pid, process group, start time) of ``pid`` and every live descendant, parents first."""
    found: list[tuple[int, int, int]] = []
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop(0)
        st = _stat(p)
        if st is None or p in seen:
            continue
        seen.add(p)
        found.append((p, st[2], st[3]))
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(k) for k in f.read().split()]
            except OSError:
                pass
    return found


def kill_tree(procs: Sequence[tuple[int, int, int]]) -> None:
    """SIGKILL every process group of ``procs``, then every one of them (a helper in a session
    of its own)."""
    for pgid in dict.fromkeys(g for _, g, _ in procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid, _, _ in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(procs: Sequence[tuple[int, int, int]], timeout: float = 10.0) -> list[int]:
    """Wait until none of ``procs`` runs (a zombie counts as gone once its parent is not us)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid, _, start in procs:
            st = _stat(pid)
            if st is None or st[3] != start:
                continue
            if st[0] in ("Z", "X"):
                if st[1] == os.getpid():
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                continue
            left.append(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


# -- a node in an interpreter of its own -----------------------------------------------------------


class PeerNode:
    """``occ.run(PROGRAM, *ARGS, node=NAME, cookie=COOKIE)`` in an interpreter of its own.

    The program prints ``ready`` on stdout once it serves; the node's stderr goes to a file
    (printed if it fails to start)."""

    def __init__(self, name: str, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.err = tempfile.TemporaryFile()  # noqa: SIM115  # closed in reap(), when the node is gone
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "_dist.py"), name, COOKIE, program, *args],
            env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)])},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.err,
            start_new_session=True,
        )

    def wait_ready(self) -> PeerNode:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.kill()
            self.err.seek(0)
            raise RuntimeError(f"node {self.name} did not start: {self.err.read().decode(errors='replace')[-2000:]}")
        return self

    def tree(self) -> list[tuple[int, int, int]]:
        return tree(self.proc.pid)

    def kill(self, procs: Sequence[tuple[int, int, int]] | None = None) -> None:
        """SIGKILL the whole runtime (``procs``, if taken already) and reap it."""
        procs = self.tree() if procs is None else procs
        kill_tree(procs)
        self.reap(procs)

    def reap(self, procs: Sequence[tuple[int, int, int]]) -> None:
        self.proc.wait()
        left = wait_gone(procs)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.err.close()
        if left:
            raise RuntimeError(f"node {self.name}: processes {left} outlived SIGKILL")


def node_main() -> None:
    name, cookie, program, *args = sys.argv[1:]
    occ.run(globals()[program], *args, node=name, cookie=cookie)


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def handshake(dest: Any, attempts: int = 20) -> occ.Pid:
    """The pid of the process registered as ``dest`` (name, node), which answers
    ``("hello", frm)`` with ``("me", its pid)``. The first send connects the two nodes, and the
    peer's name reaches its VM a moment after the peer says it is ready: asked again until it
    answers."""
    for _ in range(attempts):
        occ.send(dest, ("hello", occ.slf()))
        try:
            pid: occ.Pid = occ.receive(("me", occ.ANY), timeout=2.0)[1]
            return pid
        except TimeoutError:
            continue
    raise RuntimeError(f"{dest} did not answer within {attempts * 2} s")


# -- programs of peer nodes (their first process) -------------------------------------------------


def echo_node() -> None:
    """Register "echo"; answer ("hello", frm) with ("me", pid) and then ("ping", i) with
    ("pong", i) to the last hello's sender, until ("stop", None)."""
    occ.register("echo")
    _ready()
    send, receive = occ.send, occ.receive
    peer: Any = None
    while True:
        tag, x = receive()
        if tag == "ping":
            send(peer, ("pong", x))
        elif tag == "hello":
            peer = x
            send(x, ("me", occ.slf()))
        elif tag == "stop":
            return


def sink_node() -> None:
    """Register "sink"; answer ("hello", frm) with ("me", pid); on ("count", (frm, n)) say
    "ready" to frm, receive n messages, and send ("done", seconds per message, timed from the
    first message to the last) to frm."""
    occ.register("sink")
    _ready()
    receive = occ.receive
    while True:
        tag, x = receive()
        if tag == "hello":
            occ.send(x, ("me", occ.slf()))
        elif tag == "count":
            frm, n = x
            occ.send(frm, "ready")
            receive()
            t0 = time.perf_counter()
            for _ in range(n - 1):
                receive()
            occ.send(frm, ("done", (time.perf_counter() - t0) / (n - 1)))
        elif tag == "stop":
            return


# -- the BEAM baseline ------------------------------------------------------------------------------

ERLANG_MODULE = r"""
-module(occ_bench).
-export([echo/0, pingpong/4, sink/0, flood/2]).

%% The same echo as the Python one: learns its peer once, then answers {ping, I} with {pong, I}.
echo() -> receive {hello, From} -> From ! {me, self()}, echo(From) end.
echo(From) ->
    receive
        {ping, I} -> From ! {pong, I}, echo(From);
        {hello, F} -> F ! {me, self()}, echo(F);
        stop -> ok
    end.

%% Batches of Batch round trips with bench_echo of Node after Warm; the microseconds of each batch.
pingpong(Node, Batches, Batch, Warm) ->
    Echo = rpc:call(Node, erlang, whereis, [bench_echo]),
    Echo ! {hello, self()},
    receive {me, _} -> ok end,
    loop(Echo, Warm),
    [element(1, timer:tc(fun() -> loop(Echo, Batch) end)) || _ <- lists:seq(1, Batches)].

loop(_, 0) -> ok;
loop(Echo, N) -> Echo ! {ping, N}, receive {pong, N} -> loop(Echo, N - 1) end.

%% Counts N messages from the first to the last, and tells From the microseconds.
sink() ->
    receive
        {count, From, N} ->
            From ! ready,
            receive {msg, _} -> ok end,
            T0 = erlang:monotonic_time(microsecond),
            drain(N - 1),
            From ! {done, erlang:monotonic_time(microsecond) - T0},
            sink();
        stop -> ok
    end.

drain(0) -> ok;
drain(N) -> receive {msg, _} -> drain(N - 1) end.

%% Tells bench_sink of Node to count N, sends it N {msg, I}, and returns
%% {microseconds at the sink, at the sender}.
flood(Node, N) ->
    Sink = rpc:call(Node, erlang, whereis, [bench_sink]),
    Sink ! {count, self(), N},
    receive ready -> ok end,
    T0 = erlang:monotonic_time(microsecond),
    send(Sink, 0, N),
    Sent = erlang:monotonic_time(microsecond) - T0,
    receive {done, T} -> {T, Sent} end.

send(_, N, N) -> ok;
send(Sink, I, N) -> Sink ! {msg, I}, send(Sink, I + 1, N).
"""


@contextlib.contextmanager
def erlang_nodes() -> Iterator[tuple[Any, Any]]:
    """Two plain ``erl -name`` nodes on this machine, connected, with ``occ_bench`` loaded,
    ``bench_echo`` and ``bench_sink`` registered on the second."""
    from occasional.testing.erlang import ErlangNode

    with tempfile.TemporaryDirectory(prefix="occ-bench-erl-") as d:
        src = Path(d) / "occ_bench.erl"
        src.write_text(ERLANG_MODULE)
        erlc = shutil.which("erlc") or "erlc"
        subprocess.run([erlc, "-o", d, str(src)], check=True, capture_output=True)
        args = ["-pa", d]
        stamp = os.getpid()
        with (
            ErlangNode(f"bench_e1_{stamp}@{HOST}", COOKIE, args=args) as e1,
            ErlangNode(f"bench_e2_{stamp}@{HOST}", COOKIE, args=args) as e2,
        ):
            e2.eval("register(bench_echo, spawn(occ_bench, echo, [])).")
            e2.eval("register(bench_sink, spawn(occ_bench, sink, [])).")
            e1.eval(f"pong = net_adm:ping('{e2.name}').")
            yield e1, e2


def beam_pingpong(nodes: tuple[Any, Any], batches: int, batch: int, warm: int) -> list[float]:
    """Seconds per round trip of each batch, between the two nodes of :func:`erlang_nodes`."""
    e1, e2 = nodes
    text = e1.eval(f"occ_bench:pingpong('{e2.name}', {batches}, {batch}, {warm}).", timeout=120)
    return [int(us) / 1e6 / batch for us in re.findall(r"\d+", text)]


def beam_oneway(nodes: tuple[Any, Any], n: int) -> tuple[float, float]:
    """(seconds per message at the sink, seconds of the sender's loop) between the two nodes."""
    e1, e2 = nodes
    at_sink, sent = re.findall(r"\d+", e1.eval(f"occ_bench:flood('{e2.name}', {n}).", timeout=120))
    return int(at_sink) / 1e6 / (n - 1), int(sent) / 1e6


# -- the raw baseline: TCP loopback + pickle ---------------------------------------------------------


def tcp_pingpong(batches: int, batch: int, warm: int) -> list[float]:
    """Seconds per round trip of each batch: a forked echo over TCP loopback (TCP_NODELAY)."""
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        try:
            listener.close()
            s = socket.create_connection((HOST, port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = RawConn(s)
            while True:
                try:
                    msg: Any = conn.recv()  # the peer sends (tag, i)
                    i = msg[1]
                except EOFError:
                    break
                conn.send(("pong", i))
        finally:
            os._exit(0)
    s, _ = listener.accept()
    listener.close()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = RawConn(s)
    for i in range(warm):
        conn.send(("ping", i))
        conn.recv()
    out = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for i in range(batch):
            conn.send(("ping", i))
            conn.recv()
        out.append((time.perf_counter() - t0) / batch)
    s.close()
    os.waitpid(child, 0)
    return out


if __name__ == "__main__":
    node_main()
