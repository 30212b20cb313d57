"""A real, private PostgreSQL server for tests (issue 12; API.md section 11, "A journal shared by nodes").

The journal of section 11 lives in PostgreSQL, and it is proved against a real server, not a fake:
Debian's ``postgresql`` package (``setup.sh`` installs it), started from its binaries in a
temporary directory and removed at the end with everything in it.

- :func:`postgres_server`: a context manager for any code (bench/, examples/, a test)::

      with postgres_server() as pg:
          url = pg.create_database()  # "postgresql:///occ_1?host=/tmp/occ-pg-...&user=postgres"

- pytest fixtures, opted in with one line in a conftest.py
  (``pytest_plugins = ["occasional.testing.postgres"]``): ``postgres_server``, one server for
  a test module, and ``postgres_url``, the URL of a new empty database of the test's own, dropped
  after it.

How the server runs:

- It listens on a Unix socket in its temporary directory (mode 0700) and on no TCP port
  (``listen_addresses=''``), so trust authentication is safe: only this user (and root) can
  reach the socket. The superuser is ``postgres`` whoever runs it.
- ``fsync`` stays on: the durability tests of issue 12 mean it. Only ``initdb`` runs with
  ``--no-sync``: a crash of the machine loses the temporary cluster anyway.
- ``initdb`` and ``postgres`` refuse to run as root, and CI runs as root. As root, the directory
  is given to the ``postgres`` user and both run as it through ``setpriv`` (util-linux, like
  ``runuser``), which execs in place: the server is then a direct child of this process, stopped
  by a signal and reaped with ``wait()``, not a daemon that ``pg_ctl`` detached. As any other
  user, they run as that user.
- ``setpriv --pdeathsig SIGQUIT``: if this process dies without stopping the server (SIGKILL,
  the plugin's hard timeout), the server gets PostgreSQL's immediate-shutdown signal and ends.
  Linux sends it when the *thread* that started the server ends: start it from the main thread,
  or from one that lives as long as the server.

Nothing left behind (occasional.testing.plugin): the postmaster is started during the setup of
the module fixture, so the plugin counts it, and every backend it forks later, as held by
that fixture until it is finalized; stopping waits for the postmaster, which waits for its
children, so no process remains for the last test's check, and no fd stays open in between
(the log file is closed once the child has it; each database is made over a connection that
is closed before the test starts).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

SUPERUSER = "postgres"
DATABASE = "occ"  # made at start, for code that wants one database (bench/, examples/)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_POLL_S = 0.005
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
# sun_path holds 108 bytes with its NUL; the server names its socket <dir>/.s.PGSQL.5432.
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.5432")
# What a test needs: fsync on (durability is under test), about 100 connections (the issue's
# budget: 2,000 durable processes share a small pool, never a connection each), little memory.
SETTINGS: dict[str, str] = {
    "listen_addresses": "",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "100",
    "shared_buffers": "16MB",
    "log_min_messages": "warning",
}


def find_binaries() -> Path:
    """The bin directory of the newest PostgreSQL that Debian's packages installed, else of PATH's.

    Raises:
        RuntimeError: no PostgreSQL server binaries are installed.
    """
    majors = []
    if _DEBIAN_ROOT.is_dir():
        for entry in _DEBIAN_ROOT.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "postgres").is_file():
                majors.append(int(entry.name))
    if majors:
        return _DEBIAN_ROOT / str(max(majors)) / "bin"
    on_path = shutil.which("postgres")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(on_path).resolve().parent
    raise RuntimeError(
        f"no PostgreSQL server found: neither {_DEBIAN_ROOT}/<major>/bin/postgres nor postgres and initdb on PATH; "
        "install Debian's postgresql package (./setup.sh does)"
    )


@dataclass
class PostgresServer:
    """A running server: its directory (data, socket, log) and its postmaster process."""

    directory: Path
    process: subprocess.Popen[bytes]
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    bindir: Path | None = None  # where its binaries are, and how it runs as its owner: for restart()
    prefix: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str = DATABASE) -> str:
        """The libpq URL of ``database`` (default: the one made at start) on this server, as its
        superuser, over the socket."""
        return f"postgresql:///{quote(database, safe='')}?host={quote(str(self.directory), safe='/')}&user={SUPERUSER}"

    def create_database(self, name: str | None = None) -> str:
        """Make a new empty database (from template0), named ``name`` or ``occ_<n>``, and return its URL."""
        if name is None:
            name = f"occ_{next(self._names)}"
        self._execute("CREATE DATABASE {} TEMPLATE template0", name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database that ``url`` names, ending the connections still open to it."""
        from psycopg.conninfo import conninfo_to_dict

        name = conninfo_to_dict(url)["dbname"]
        # WITH (FORCE): a backend whose client just closed may not have exited yet; without it,
        # DROP waits up to 5 s for it, then fails.
        self._execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", str(name))

    def _execute(self, template: str, name: str) -> None:
        # psycopg is the postgres extra: imported only when a database is asked for.
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL(template).format(sql.Identifier(name)))

    def restart(self) -> None:
        """Stop the server as an administrator would, and start it again on the same data.

        A fast shutdown (SIGINT): clients are disconnected, their transactions
        rolled back, what is committed stays. For a test that a client lives
        through its server's restart; the new postmaster is started by the caller,
        so call it from a test that owns the server (``postgres_server()``)."""
        assert self.bindir is not None, "a server made by start() knows its binaries"
        self.process.send_signal(signal.SIGINT)
        self.process.wait(STOP_TIMEOUT_S)
        self.process = _start(self.bindir, self.directory, self.prefix)
        _wait_until_ready(self)

    def stop(self) -> None:
        """End the server (immediate shutdown: its data is thrown away) and remove its directory."""
        try:
            if self.process.poll() is None:
                # SIGQUIT is PostgreSQL's immediate shutdown: the postmaster ends its children,
                # waits for them, and exits. Its data is removed next, so nothing needs flushing.
                self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def _as_owner(owner: pwd.struct_passwd | None) -> list[str]:
    """The prefix that runs a command as ``owner`` (None: as we are), ended with SIGQUIT if we die."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if owner is not None:
            raise RuntimeError(
                "PostgreSQL refuses to run as root, and setpriv (util-linux) is not installed to run it as "
                f"{owner.pw_name!r}; install util-linux or run the tests as another user"
            )
        return []
    prefix = [setpriv, "--pdeathsig", "SIGQUIT"]
    if owner is not None:
        prefix += ["--reuid", str(owner.pw_uid), "--regid", str(owner.pw_gid), "--clear-groups"]
    return prefix


def _server_owner() -> pwd.struct_passwd | None:
    """The user the server runs as: ``postgres`` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise RuntimeError(
            f"running as root, but there is no {SUPERUSER!r} user to run PostgreSQL as (it refuses root); "
            "install Debian's postgresql package, which creates it (./setup.sh does)"
        ) from None


def _make_directory(owner: pwd.struct_passwd | None) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="occ-pg-"))  # 0700
    if len(str(directory)) > _MAX_SOCKET_DIR:
        shutil.rmtree(directory)
        directory = Path(tempfile.mkdtemp(prefix="occ-pg-", dir="/tmp"))
    if owner is not None:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    return directory


def _initdb(bindir: Path, directory: Path, prefix: list[str]) -> None:
    command = [
        *prefix,
        str(bindir / "initdb"),
        "--pgdata",
        str(directory / "data"),
        "--username",
        SUPERUSER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--no-sync",
    ]
    # cwd: a directory the server's user may enter (as root, ours may be /root).
    done = subprocess.run(command, cwd=directory, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise RuntimeError(f"initdb failed with status {done.returncode}: {output}")


def _start(bindir: Path, directory: Path, prefix: list[str]) -> subprocess.Popen[bytes]:
    settings = {**SETTINGS, "unix_socket_directories": str(directory)}
    command = [*prefix, str(bindir / "postgres"), "-D", str(directory / "data")]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    with open(directory / "server.log", "ab") as log:
        # A session of its own: a Ctrl-C at the terminal reaches pytest, whose finalizer
        # stops the server; it does not reach the server first.
        return subprocess.Popen(
            command, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def _wait_until_ready(server: PostgresServer) -> None:
    """Wait until the postmaster says it accepts connections, as ``pg_ctl start -w`` does.

    Its status is the 8th line of postmaster.pid ("ready" since PostgreSQL 10); nothing
    tells us when it changes, so it is read again until it does or the server ends.
    """
    pidfile = server.directory / "data" / "postmaster.pid"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        status = server.process.poll()
        if status is not None:
            raise RuntimeError(f"PostgreSQL ended with status {status} while starting: {_tail(server.log)}")
        try:
            lines = pidfile.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= 8 and lines[0] == str(server.process.pid) and lines[7].strip() == "ready":
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"PostgreSQL was not ready within {START_TIMEOUT_S} s: {_tail(server.log)}")
        time.sleep(_POLL_S)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start() -> PostgresServer:
    """Start a private server in a new temporary directory; the caller must ``stop()`` it."""
    bindir = find_binaries()
    owner = _server_owner()
    prefix = _as_owner(owner)
    directory = _make_directory(owner)
    try:
        _initdb(bindir, directory, prefix)
        server = PostgresServer(directory, _start(bindir, directory, prefix), bindir=bindir, prefix=prefix)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        _wait_until_ready(server)
        server.create_database(DATABASE)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the duration of the ``with`` block, then nothing left of it."""
    server = start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ pytest fixtures


@pytest.fixture(scope="module", name="postgres_server")
def _postgres_server_fixture() -> Iterator[PostgresServer]:
    """One server for a test module (started at first use, ~1 s), stopped at its end.

    Per module, not per session: the server's processes are children of pytest,
    and a test elsewhere that checks what its own runtime left among pytest's
    children must not find them."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new empty database of this test's own, dropped after it."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


__all__ = [
    "PostgresServer",
    "find_binaries",
    "postgres_server",
    "postgres_url",
    "start",
    "DATABASE",
    "SETTINGS",
    "SUPERUSER",
]
