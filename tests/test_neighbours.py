"""Neighbours on the same machine (API.md section 10, issue 10): a runtime talks
only to its own user, through a directory only its user can change, and
`occasional run` exits as `python app.py` would.

"Another user" is uid 65534 (nobody): the tests that need one run as root,
which can chown a directory to it and can become it in a forked child.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from occasional.sck.frame import frame
from occasional.testing import run

from conftest import ROOT

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")
NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to act as another user (uid 65534)")


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """A runtime dir of the test's own, for the runtimes it starts and the `occasional ps` it runs."""
    d = tmp_path / "run"
    d.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def _unsafe(kind: str, xdg: Path) -> Path:
    """Make ``xdg/occasional`` unsafe in one of three ways; returns the directory it leads to."""
    d = xdg / "occasional"
    if kind == "owned by another user":
        d.mkdir(mode=0o700)
        os.chown(d, NOBODY, NOBODY)
        return d
    if kind == "a symlink":
        target = xdg / "elsewhere"
        target.mkdir(mode=0o700)
        d.symlink_to(target)
        return target
    d.mkdir()
    d.chmod(0o777)  # "writable by others"
    return d


UNSAFE = [pytest.param("owned by another user", marks=needs_root), "a symlink", "writable by others"]
PROBLEM = {
    "owned by another user": f"belongs to uid {NOBODY}, not to this user (uid {os.geteuid()})",
    "a symlink": "is a symbolic link",
    "writable by others": "can be written by group or others (mode 0777)",
}


# --------------------------------------------------------------- the directory


@pytest.mark.parametrize("kind", UNSAFE)
def test_a_runtime_refuses_an_unsafe_control_directory_with_a_warning_and_runs_without_a_socket(xdg, kind):
    leads_to = _unsafe(kind, xdg)
    program = "import occasional as occ\nprint(occ.run(lambda: 42))\n"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout) == (0, "42\n")
    assert (
        f"occasional: the control socket directory '{xdg / 'occasional'}' {PROBLEM[kind]}; " in done.stderr
        and "This runtime runs without a control socket: `occasional ps` will not list it" in done.stderr
    ), done.stderr
    assert list(leads_to.iterdir()) == []  # no socket was made in it, nor through it


@pytest.mark.parametrize("kind", UNSAFE)
def test_ps_reads_nothing_from_an_unsafe_control_directory_and_says_why(xdg, kind):
    leads_to = _unsafe(kind, xdg)
    (leads_to / "1.sock").write_bytes(b"")  # a stale socket ps would remove, were it reading
    done = subprocess.run([OCCASIONAL, "ps"], capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"occasional ps: not reading '{xdg / 'occasional'}': it {PROBLEM[kind]}; "), (
        done.stderr
    )
    assert [p.name for p in leads_to.iterdir()] == ["1.sock"]


# --------------------------------------------------------------- peer uids


def _as_user(uid: int, f: Callable[[], bytes]) -> bytes:
    """``f()`` in a forked child that became ``uid``; what it returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                out = f()
            except Exception as e:  # said, so that a failure never reads as "got nothing"
                out = f"error: {e!r}".encode()
            os.write(w, out)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        got = pipe.read()
    os.waitpid(pid, 0)
    return got


def _read_all(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        chunks = []
        while data := s.recv(1 << 16):
            chunks.append(data)
        return b"".join(chunks)


@pytest.fixture
def reachable(monkeypatch):
    """A runtime dir that uid 65534 can pass through (0711 all the way down)
    but not write to: still a safe directory, yet another user can reach a
    socket in it, as root could reach one in any directory."""
    base = Path(tempfile.mkdtemp(prefix="occ-neighbours-", dir="/tmp"))
    base.chmod(0o711)
    (base / "occasional").mkdir(mode=0o711)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    yield base / "occasional"
    shutil.rmtree(base)


@needs_root
def test_a_runtime_closes_a_control_connection_from_another_user_without_a_word(reachable):
    def main():
        (sock,) = reachable.glob("*.sock")
        sock.chmod(0o777)  # reachable to anyone who gets this far
        return _as_user(NOBODY, lambda: _read_all(str(sock))), msgpack.unpackb(_read_all(str(sock))[4:])["central"]

    as_nobody, central_as_root = run(main)
    assert as_nobody == b""
    assert isinstance(central_as_root, int)  # its own user still gets the table


@needs_root
def test_ps_refuses_a_control_socket_served_by_another_user(xdg):
    d = xdg / "occasional"
    d.mkdir(mode=0o700)
    fake = {"central": 4242, "owner": 4242, "command": ["fake"], "started_at": 0, "processes": []}
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(str(d / "4242.sock"))  # made by root, in root's directory
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child serves as uid 65534
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            lsock.listen(1)  # SO_PEERCRED tells a client who called listen()
            os.write(w, b"ready")
            lsock.settimeout(20)
            conn, _ = lsock.accept()
            conn.sendall(frame(msgpack.packb(fake)))
            conn.close()
        finally:
            os._exit(0)
    os.close(w)
    lsock.close()
    try:
        assert select.select([r], [], [], 20)[0] and os.read(r, 5) == b"ready"
        done = subprocess.run([OCCASIONAL, "ps", "--json"], capture_output=True, text=True, timeout=20)
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert (done.returncode, json.loads(done.stdout)) == (0, [])
    assert (
        done.stderr
        == f"occasional ps: skipped 4242.sock: refused, it is served by uid {NOBODY}, not by this user (uid 0)\n"
    )


# --------------------------------------------------------------- occasional run's exit status


@pytest.fixture
def app(tmp_path):
    (tmp_path / "app.py").write_text(
        textwrap.dedent("""
        import os, signal, sys

        def returns():
            return None

        def exit_0():
            sys.exit(0)

        def exit_3():
            sys.exit(3)

        def os_exit_4():
            os._exit(4)

        def raises():
            raise ValueError("no luck")

        def sigkilled():
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    )
    return tmp_path


def _occasional_run(app: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCCASIONAL, "run", target], capture_output=True, text=True, timeout=60, cwd=app)


@pytest.mark.parametrize(
    "target, status", [("app:returns", 0), ("app:exit_0", 0), ("app:exit_3", 3), ("app:os_exit_4", 4)]
)
def test_run_exits_with_the_status_main_ended_with_and_adds_nothing_to_stderr(app, target, status):
    done = _occasional_run(app, target)
    assert (done.returncode, done.stdout, done.stderr) == (status, "", "")


def test_run_exits_128_plus_the_signal_number_when_main_is_killed_by_a_signal(app):
    done = _occasional_run(app, "app:sigkilled")
    assert done.returncode == 128 + signal.SIGKILL
    assert re.fullmatch(r"occasional run: process <occ \d+> ended: killed by signal SIGKILL\n", done.stderr), (
        done.stderr
    )
