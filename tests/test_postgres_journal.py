"""A durable journal in PostgreSQL, written by one runtime (issue 12, first step; API.md section 11).

Every test runs against a real server (occasional.testing.postgres): a
database of the test's own, ``journal=`` its URL. Side effects are counted in
files, so a step run twice shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from test_durable_core import reap_what_the_killed_run_left_to_us

import occasional as occ
from occasional import durable
from occasional.testing import run

from conftest import holding, reap_orphans, snapshot, wait_until_gone

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")


def journal_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCCASIONAL, "journal", *args], capture_output=True, text=True, timeout=30)


def add(a: int, b: int) -> int:
    return a + b


def write_once(path: str, what: str) -> str:
    """A step's side effect: one line appended per run of it."""
    with open(path, "a") as f:
        f.write(what + "\n")
    return what


def two_steps_around_a_kill(main: occ.Pid, effects: str) -> list[str]:
    first = durable.step(write_once, effects, "first")
    occ.send(main, ("ready", occ.slf()))
    occ.receive(("go",))
    second = durable.step(write_once, effects, "second")
    return [first, second]


def test_a_durable_process_on_a_postgresql_journal_returns_its_result(postgres_url):
    def main():
        durable.spawn("adder", add, 2, 3)
        return durable.result("adder", timeout=10)

    assert run(main, journal=postgres_url) == ("ok", 5)


def test_a_later_runtime_reads_back_the_result_a_previous_one_committed_to_postgresql(postgres_url):
    def spawn_it():
        durable.spawn("adder", add, 2, 3)
        return durable.result("adder", timeout=10)

    def read_it():
        return durable.result("adder", timeout=10)

    run(spawn_it, journal=postgres_url)
    assert run(read_it, journal=postgres_url) == ("ok", 5)


def test_a_durable_process_sigkilled_mid_run_replays_from_postgresql_and_runs_no_step_twice(postgres_url, tmp_path):
    effects = str(tmp_path / "effects")

    def main():
        durable.spawn("job", two_steps_around_a_kill, occ.slf(), effects)
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        os.kill(pid.os_pid, signal.SIGKILL)
        occ.send(pid, ("go",))  # its durable address: committed, then read by the next incarnation
        return durable.result("job", timeout=10)

    assert run(main, journal=postgres_url) == ("ok", ["first", "second"])
    assert Path(effects).read_text() == "first\nsecond\n"


def test_journal_ls_of_a_postgresql_url_lists_its_durable_processes(postgres_url):
    def main():
        durable.spawn("adder", add, 2, 3)
        return durable.result("adder", timeout=10)

    run(main, journal=postgres_url)
    done = journal_command("ls", postgres_url)
    assert (done.returncode, done.stderr) == (0, "")
    assert re.search(r"(?m)^adder\s+done\s+\d+\s+0\s+test_postgres_journal\.add  \('ok', 5\)$", done.stdout), (
        done.stdout
    )


def test_journal_show_of_a_postgresql_url_shows_the_steps_of_a_process(postgres_url, tmp_path):
    effects = str(tmp_path / "effects")

    def main():
        durable.spawn("job", two_steps_around_a_kill, occ.slf(), effects)
        _, pid = occ.receive(("ready", occ.ANY), timeout=10)
        occ.send(pid, ("go",))
        return durable.result("job", timeout=10)

    run(main, journal=postgres_url)
    done = journal_command("show", postgres_url, "job")
    assert (done.returncode, done.stderr) == (0, "")
    steps = [line.split()[1:] for line in done.stdout.splitlines()[2:]]
    assert [s for s in steps if s[0] == "step"] == [
        ["step", "write_once", "'first'"],
        ["step", "write_once", "'second'"],
    ]


HOLDER = textwrap.dedent(
    """\
    import sys

    import occasional as occ

    occ.start(journal=sys.argv[1])
    print("holding", flush=True)
    sys.stdin.readline()
    occ.stop()
    print("stopped", flush=True)
    """
)


def test_a_second_runtime_on_a_postgresql_journal_in_use_runs_beside_the_first_as_another_node(postgres_url, tmp_path):
    with holding(postgres_url, tmp_path, HOLDER) as holder:
        assert run(add, 2, 3, journal=postgres_url) == 5
        assert holder.poll() is None


def test_a_runtime_on_a_postgresql_journal_starts_once_the_previous_one_has_ended(postgres_url, tmp_path):
    with holding(postgres_url, tmp_path, HOLDER):
        pass
    assert run(add, 2, 3, journal=postgres_url) == 5


def test_a_postgresql_url_of_a_server_that_is_not_running_raises_os_error_naming_the_url(tmp_path):
    url = f"postgresql:///occ?host={tmp_path}&user=postgres"
    with pytest.raises(
        OSError,
        match=(
            rf"^cannot connect to the journal {re.escape(repr(url))}: .*connection to server on socket .*: No such file or "
            r"directory.*; start that PostgreSQL server, or correct the URL \(host, port, database, user\)$"
        ),
    ):
        occ.run(print, journal=url)


def test_a_runtime_that_cannot_reach_a_postgresql_journal_names_the_url_without_its_password(tmp_path):
    url = f"postgresql://someone:s3cret@/occ?host={tmp_path}"
    with pytest.raises(OSError) as caught:
        occ.run(print, journal=url)
    assert str(caught.value).startswith(f"cannot connect to the journal 'postgresql://someone@/occ?host={tmp_path}': ")
    assert "s3cret" not in str(caught.value)


def test_journal_ls_of_a_url_with_a_password_names_the_url_without_the_password(tmp_path):
    done = journal_command("ls", f"postgresql://someone:s3cret@/occ?host={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"occasional journal ls: cannot connect to the journal 'postgresql://someone@/occ?host={tmp_path}': "
    )
    assert "s3cret" not in done.stderr


def test_a_postgresql_database_with_other_tables_is_refused_as_a_journal_naming_them(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id integer)")
    with pytest.raises(
        ValueError,
        match=(
            rf"^the database of {re.escape(repr(postgres_url))} is not a journal of occasional: its schema 'public' "
            r"has the tables invoices and no occasional_journal table; give the URL of a journal, or of an empty "
            r"database for a new one$"
        ),
    ):
        occ.run(print, journal=postgres_url)


def test_a_postgresql_journal_of_a_newer_layout_is_refused_naming_its_layout(postgres_url):
    run(add, 2, 3, journal=postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE occasional_journal SET layout = 99")
    with pytest.raises(
        ValueError,
        match=(
            rf"^the journal {re.escape(repr(postgres_url))} has layout 99, newer than this occasional reads "
            r"\(up to 1\): a newer occasional wrote it; open it with that version$"
        ),
    ):
        occ.run(print, journal=postgres_url)


def test_a_message_to_a_durable_process_is_committed_to_postgresql_before_send_returns(postgres_url):
    def wait_for_one() -> object:
        return occ.receive()

    def main():
        pid = durable.spawn("waiter", wait_for_one)
        occ.send(pid, "hello")
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute("SELECT process, seq, sender, send_seq FROM mailbox").fetchall()
        return rows, durable.result("waiter", timeout=10)

    assert run(main, journal=postgres_url) == ([("waiter", 1, None, None)], ("ok", "hello"))


def test_the_nodes_table_has_the_runtime_that_wrote_the_journal_as_owner_of_its_processes_and_left_once_it_stopped(
    postgres_url,
):
    def main():
        durable.spawn("adder", add, 2, 3)
        return durable.result("adder", timeout=10)

    run(main, journal=postgres_url)
    with psycopg.connect(postgres_url) as conn:
        nodes = conn.execute("SELECT node, incarnation, status, lease_until > started FROM nodes").fetchall()
        owners = conn.execute("SELECT id, owner, epoch FROM processes").fetchall()
    assert [(incarnation, status, later) for _node, incarnation, status, later in nodes] == [(1, "left", True)]
    assert owners == [("adder", nodes[0][0], 1)]


def test_a_runtime_whose_node_row_was_marked_dead_commits_nothing_more_and_ends(postgres_url, tmp_path):
    # The fence every commit starts with (issue 12): what a takeover does to a node.
    waiter = tmp_path / "waiter"

    def main():
        pid = durable.spawn("waiter", wait_for_go)
        waiter.write_text(json.dumps(snapshot([pid.os_pid])))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE nodes SET status = 'dead'")
        occ.send(pid, ("go",))
        return "not reached: the send waits for a commit that fails"

    with pytest.raises(RuntimeError, match=r"^the runtime's central services ended \(exit status 1\)"):
        occ.run(main, journal=postgres_url)
    # The waiter ends by its death signal once central has; it may be handed to us
    # (pytest is a subreaper) a moment after the run returned.
    tree = [tuple(p) for p in json.loads(waiter.read_text())]
    assert wait_until_gone(tree) == []
    reap_orphans(tree)
    reap_what_the_killed_run_left_to_us()  # central and the forkserver
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM mailbox").fetchone() == (0,)


def wait_for_go() -> str:
    return occ.receive(("go",))[0]
