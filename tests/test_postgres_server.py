"""The real PostgreSQL server the tests of issue 12 start (occasional.testing.postgres; API.md
section 11, "A journal shared by nodes"): a private server per test module, an empty database per
test, nothing left once it stops, and no TCP port.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from conftest import descendants, snapshot, survivors

if TYPE_CHECKING:
    from occasional.testing.postgres import PostgresServer


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _tcp_listeners() -> set[int]:
    """Inodes of the TCP sockets listening in this network namespace (state 0A in /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":
                found.add(int(fields[9]))
    return found


def _commands_naming(directory: Path) -> list[str]:
    """Command lines of the processes of this machine that name ``directory`` (the postmaster's -D does)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            command = raw.replace(b"\0", b" ").decode(errors="replace")
            if str(directory) in command:
                found.append(f"{entry}: {command}")
    return found


def test_a_database_url_connects_with_psycopg_and_runs_a_query(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 6 * 7").fetchone() == (42,)


def test_the_server_runs_with_fsync_on(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT current_setting('fsync')").fetchone() == ("on",)


_seen_databases: list[str] = []


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_a_new_empty_database(postgres_url: str, run: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        query = "SELECT current_database(), count(*) FROM pg_tables WHERE schemaname = 'public'"
        name, tables = conn.execute(query).fetchone()
        conn.execute("CREATE TABLE left_by_a_test (x int)")
    assert tables == 0
    assert name not in _seen_databases
    _seen_databases.append(str(name))


def test_the_server_listens_on_a_unix_socket_in_its_directory_and_on_no_tcp_port(
    postgres_server: PostgresServer,
) -> None:
    assert (postgres_server.directory / ".s.PGSQL.5432").is_socket()
    assert _socket_inodes(postgres_server.process.pid) & _tcp_listeners() == set()


def test_after_a_server_stops_no_process_and_no_directory_remain() -> None:
    # Imported here, not at the top: conftest's pytest_plugins imports the module as a plugin,
    # and pytest can rewrite its asserts only if nothing imported it first.
    from occasional.testing.postgres import postgres_server

    with postgres_server() as server, psycopg.connect(server.url()) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        directory = server.directory
        taken = snapshot([server.process.pid, *descendants(server.process.pid)])
        assert backend is not None and backend[0] in {pid for pid, _, _ in taken}
    assert survivors(taken) == []
    assert _commands_naming(directory) == []
    assert not directory.exists()
