"""A private EPMD (Erlang's port mapper) for the tests of nodes (issue 13); see
occasional.testing.erlang, which re-exports all of it, for how nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ERL_EPMD_PORT = "ERL_EPMD_PORT"  # Erlang's own name for it: erl and epmd read it
START_TIMEOUT_S = 20.0
_POLL_S = 0.005


def _deathsig_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "SIGKILL"] if setpriv is not None else []


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ EPMD


@dataclass
class Epmd:
    """A running EPMD: its port and its process (a child of this one)."""

    port: int
    process: subprocess.Popen[bytes]

    def names(self) -> str:
        """What ``epmd -names`` says of this EPMD: the nodes registered with it."""
        done = subprocess.run(
            ["epmd", "-port", str(self.port), "-names"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=START_TIMEOUT_S,
        )
        return done.stdout.decode(errors="replace")

    def stop(self) -> None:
        """End EPMD and reap it. It keeps nothing: the nodes still registered notice nothing
        until they look a name up."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start_epmd(port: int | None = None) -> Epmd:
    """Start a private EPMD on ``port`` (default: a free one, tried again if another took it).

    Raises:
        RuntimeError: epmd is not installed, or did not listen within START_TIMEOUT_S.
    """
    binary = shutil.which("epmd")
    if binary is None:
        raise RuntimeError("no epmd on PATH; install Debian's erlang-base package (./setup.sh does)")
    attempts = 1 if port is not None else 3
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        # -address 127.0.0.1: the tests' nodes are on this machine; nothing else may reach it.
        process = subprocess.Popen(
            [*_deathsig_prefix(), binary, "-port", str(chosen), "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if _wait_until_listening(process, chosen):
            if process.stderr is not None:
                process.stderr.close()
            return Epmd(chosen, process)
        # It ended: the port was taken between free_port() and its bind.
        _, err = process.communicate()
        last = err.decode(errors="replace").strip()
    raise RuntimeError(f"epmd did not start on port {chosen}: {last or 'no output'}")


def _wait_until_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once EPMD accepts a connection; False if it ended. Nothing tells us when it listens,
    so it is asked again until it does (as postgres.py reads postmaster.pid)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"epmd did not listen on port {port} within {START_TIMEOUT_S} s")
        time.sleep(_POLL_S)


@contextlib.contextmanager
def epmd_server(port: int | None = None) -> Iterator[Epmd]:
    """A private EPMD for the ``with`` block, then nothing left of it. ``ERL_EPMD_PORT`` is not
    touched: give it to what should use this EPMD, or use :func:`epmd_environment`."""
    server = start_epmd(port)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def epmd_environment(port: int) -> Iterator[None]:
    """``ERL_EPMD_PORT=port`` in ``os.environ`` for the block, then what it was before."""
    before = os.environ.get(ERL_EPMD_PORT)
    os.environ[ERL_EPMD_PORT] = str(port)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ERL_EPMD_PORT, None)
        else:
            os.environ[ERL_EPMD_PORT] = before


@pytest.fixture(scope="module", name="epmd")
def epmd_fixture() -> Iterator[Epmd]:
    """One private EPMD for a test module, named by ``ERL_EPMD_PORT`` in ``os.environ`` meanwhile.

    Every runtime started with ``node=`` and every :class:`ErlangNode` in the module registers
    with it, and a worker of ``pytest -n`` has its own (a port of its own), so two modules
    running at once never see each other's nodes. Per module, see the module's docstring."""
    with epmd_server() as server, epmd_environment(server.port):
        yield server
