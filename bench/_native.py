"""A small native service and the daemons that supervise it, for the benchmarks of issue 5.

The service is the same executable under every supervisor: started with the
path of a Unix socket, it connects to it, says ``up <its pid> <t>`` (t: the
CLOCK_MONOTONIC nanoseconds when it started running), then answers
each ``ping N`` line with ``pong N`` until the connection ends. Two builds of
it exist: ``c``, a 20-line C program compiled here at bench time with ``cc``,
and ``py``, the same protocol as a ``python -S`` script (which imports only
``os``, ``socket`` and ``sys``; bench/restart.py uses the same child). The C
one starts in well under a millisecond, so its figures show the supervisor's
own cost; the Python one is what a typical service script costs to start.

The measuring side is a ``Listener``: a Unix socket in a temporary directory,
accepting the services' connections and reading their ``up`` lines.

supervisord and circus are started in their own session from a generated
config, as in bench/restart.py, and stopped with SIGTERM; their session's
process group and every pid a service reported are then SIGKILLed, so nothing
is left behind (supervisord puts each child in a process group of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

BIN = os.path.dirname(sys.executable)

SERVICE_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct sockaddr_un a;
    char buf[256];
    struct timespec t;
    int s, n;
    clock_gettime(CLOCK_MONOTONIC, &t);  /* when it started running, for the split of a restart */
    if (argc < 2) return 2;
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) return 1;
    n = snprintf(buf, sizeof buf, "up %d %lld\n", (int)getpid(), (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    if (write(s, buf, n) != n) return 1;
    while ((n = read(s, buf, sizeof buf)) > 0) {  /* "ping N\n" -> "pong N\n" */
        buf[1] = 'o';
        if (write(s, buf, n) != n) return 1;
    }
    return 0;
}
"""

SERVICE_PY = """
import os, sys, time
t = time.monotonic_ns()
import socket
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"up %d %d\\n" % (os.getpid(), t))
while True:
    b = s.recv(256)
    if not b:
        break
    s.sendall(b"po" + b[2:])
"""

SERVICES = ("c", "py")


class Build:
    """The service's executables in a temporary directory; ``argv(kind, sock)`` runs one."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="occ-bench-native-")
        with open(os.path.join(self.dir, "svc.py"), "w") as f:
            f.write(SERVICE_PY)
        src = os.path.join(self.dir, "svc.c")
        with open(src, "w") as f:
            f.write(SERVICE_C)
        self.c_error: str | None = None
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            self.c_error = "no C compiler (cc) on PATH"
        else:
            r = subprocess.run([cc, "-O2", "-o", os.path.join(self.dir, "svc"), src], capture_output=True, text=True)
            if r.returncode != 0:
                self.c_error = f"cc failed: {r.stderr.strip()}"

    def available(self, kind: str) -> str | None:
        """None if the service ``kind`` can run, else why not."""
        return self.c_error if kind == "c" else None

    def argv(self, kind: str, sock: str) -> list[str]:
        if kind == "c":
            return [os.path.join(self.dir, "svc"), sock]
        return [sys.executable, "-S", os.path.join(self.dir, "svc.py"), sock]

    def label(self, kind: str) -> str:
        return "C program" if kind == "c" else "python -S script"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Listener:
    """Where the services say they are up: a Unix socket in a temporary directory."""

    def __init__(self, prefix: str = "occ-bench-", backlog: int = 128, timeout: float = 15.0) -> None:
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.path = os.path.join(self.dir, "main.sock")
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(backlog)
        self.sock.settimeout(timeout)
        self.pids: set[int] = set()  # every service that ever said up, to kill at the end
        self.conns: list[socket.socket] = []
        self.started = 0.0

    def accept(self) -> tuple[socket.socket, int]:
        """The next service's connection and its pid, once it has said ``up``.

        ``self.started`` is then when that service started running, in
        ``time.monotonic()`` seconds (the same clock as CLOCK_MONOTONIC).
        """
        c, _ = self.sock.accept()
        c.settimeout(self.sock.gettimeout())
        buf = b""
        while not buf.endswith(b"\n"):
            b = c.recv(64)
            if not b:
                raise EOFError(f"a service connected and closed before saying up (got {buf!r})")
            buf += b
        word, pid, started = buf.split()
        assert word == b"up", buf
        self.started = int(started) / 1e9
        self.pids.add(int(pid))
        return c, int(pid)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()
        kill_all(self.pids)
        shutil.rmtree(self.dir, ignore_errors=True)


def ping(c: socket.socket, i: int) -> None:
    """One request to a service and its answer."""
    c.sendall(b"ping %d\n" % i)
    buf = b""
    while not buf.endswith(b"\n"):
        b = c.recv(64)
        if not b:
            raise EOFError("the service closed the connection instead of answering")
        buf += b
    assert buf == b"pong %d\n" % i, buf


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    """True if pid runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def describe(pids: Sequence[int], most: int = 5) -> str:
    """pid, state, parent and process group of a few processes, from /proc (for a report)."""
    out = []
    for pid in list(pids)[:most]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out.append(f"{pid} state={fields[0]} ppid={fields[1]} pgid={fields[2]} sid={fields[3]}")
        except OSError:
            out.append(f"{pid} gone")
    return "; ".join(out) + (" ..." if len(pids) > most else "")


# -- the raw fork+exec supervisor (baseline) -----------------------------------------------

# What a user would write in Python with nothing but os: fork, exec, wait, again.
# It runs in its own small interpreter (python -S), so its fork copies little.
RAW_SUPERVISOR = """
import json, os, signal, sys
argvs = json.loads(sys.argv[1])
children = {}
def stop(sig, frame):
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
def start(i):
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argvs[i][0], argvs[i])
        finally:
            os._exit(127)
    children[pid] = i
for i in range(len(argvs)):
    start(i)
while True:
    pid, _ = os.wait()
    start(children.pop(pid))
"""


def start_raw(argvs: Sequence[Sequence[str]]) -> subprocess.Popen[bytes]:
    """The raw supervisor, running one child per argv and restarting each one that dies."""
    return subprocess.Popen(
        [sys.executable, "-S", "-c", RAW_SUPERVISOR, json.dumps([list(a) for a in argvs])],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


# -- supervisord and circus -----------------------------------------------------------------

CIRCUS_CHECK_DELAY = 0.1
# How often each daemon looks for dead children (bench/restart.py explains both).
EXT_PERIOD = {"supervisord": 1.0, "circus": CIRCUS_CHECK_DELAY}
EXT_LABEL = {"supervisord": "supervisord", "circus": f"circus, check_delay={CIRCUS_CHECK_DELAY:g} s"}

SUPERVISORD_HEAD = """
[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
"""
SUPERVISORD_PROGRAM = """
[program:{name}]
command={cmd}
autorestart=true
startsecs=0
startretries=1000000
stopwaitsecs=2
stdout_logfile=NONE
stderr_logfile=NONE
"""
CIRCUS_HEAD = """
[circus]
endpoint = ipc://{d}/ctl.sock
pubsub_endpoint = ipc://{d}/pub.sock
statsd = false
check_delay = {check_delay}
logoutput = {d}/circusd.log
"""
CIRCUS_WATCHER = """
[watcher:{name}]
cmd = {cmd}
numprocesses = 1
respawn = true
"""


def ext_available(name: str) -> str | None:
    """None if the daemon can run here, else why not."""
    try:
        __import__({"supervisord": "supervisor", "circus": "circus"}[name])
    except Exception as e:
        return f"not installed: {e!r}"
    exe = os.path.join(BIN, {"supervisord": "supervisord", "circus": "circusd"}[name])
    if not os.path.exists(exe):
        return f"{exe} not found"
    return None


def ext_config(name: str, d: str, programs: Mapping[str, Sequence[str]]) -> str:
    """Write the daemon's config for these programs (name -> argv) into d; return its path."""
    head, item = (SUPERVISORD_HEAD, SUPERVISORD_PROGRAM) if name == "supervisord" else (CIRCUS_HEAD, CIRCUS_WATCHER)
    text = head.format(d=d, check_delay=CIRCUS_CHECK_DELAY)
    for prog, argv in programs.items():
        text += item.format(name=prog, cmd=" ".join(argv))
    path = os.path.join(d, f"{name}.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def ext_command(name: str, conf: str) -> list[str]:
    if name == "supervisord":
        return [os.path.join(BIN, "supervisord"), "-c", conf]
    return [os.path.join(BIN, "circusd"), conf]


def start_session(cmd: Sequence[str], log: str) -> subprocess.Popen[bytes]:
    """Run cmd in a new session, its output to the file log."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def stop_session(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> float:
    """SIGTERM, wait, then SIGKILL the session's process group; return how long the stop took."""
    t0 = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    took = time.perf_counter() - t0
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait()
    return took
