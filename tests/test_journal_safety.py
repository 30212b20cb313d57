"""The journal as a file on disk (issue 10): who may read and write it, and what it runs.

A journal holds pickles, so it is code: inspecting it with ``occasional
journal ls|show`` runs none of it unless ``--trust`` is given (API.md section
10). A journal is created 0600 with its -wal, -shm and lock files; it serves
one runtime at a time (``PATH.lock``); it says what it is (``application_id``,
layout in ``user_version``) so that another file, or a newer layout, is
refused by name; and any path works, ``#``, ``?`` and ``%`` included.

Runtimes that must be alive at the same time as the test's own run in a child
interpreter (``holding``), which ends when the test closes its stdin.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgpack
import pytest

import occasional as occ
from occasional import durable
from occasional.testing import run

from conftest import ROOT, holding

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")
APPLICATION_ID = 0x4F43434A  # "OCCJ", occasional/durable/store.py
NOT_A_JOURNAL = r"the file {path} is not a journal of occasional: "


def journal_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCCASIONAL, "journal", *args], capture_output=True, text=True, timeout=30)


def quoted(path: str | Path) -> str:
    return re.escape(repr(str(path)))


def wait_for_go() -> str:
    return occ.receive(("go",))[0]


def finish_at_once() -> str:
    return "finished"


def record_a_finished_process(journal: str) -> None:
    def main():
        durable.spawn("done", finish_at_once)
        return durable.result("done", timeout=10)

    assert run(main, journal=journal) == ("ok", "finished")


# --- inspection runs no code from the journal -------------------------------------------


def tripwire_class() -> type:
    """A class whose unpickling creates a file: what a hostile journal could hold.

    Defined in a function, so dill pickles the class by value and the
    ``occasional`` command can unpickle it without importing this module."""

    class Tripwire:
        def __init__(self, path: str) -> None:
            self.path = path

        def __setstate__(self, state: dict[str, Any]) -> None:
            open(state["path"], "a").close()
            self.__dict__.update(state)

        def __repr__(self) -> str:
            return "Tripwire()"

    return Tripwire


def keep_what_arrives() -> Any:
    return occ.receive()


@pytest.fixture
def tripwire(sqlite_journal: str, tmp_path: Path) -> tuple[str, Path]:
    """A journal whose process "keeper" received a Tripwire and returned it;
    the file that unpickling it creates is removed again."""
    marker = tmp_path / "unpickled"
    Tripwire = tripwire_class()

    def main():
        pid = durable.spawn("keeper", keep_what_arrives)
        occ.send(pid, Tripwire(str(marker)))
        return durable.result("keeper", timeout=10)[0]

    assert run(main, journal=sqlite_journal) == "ok"
    assert marker.exists()  # the process unpickled it: the tripwire works
    marker.unlink()
    return sqlite_journal, marker


def pickle_sizes(journal: str) -> tuple[int, int]:
    """The sizes of the dill pickles in keeper's mailbox and in its final reason."""
    with contextlib.closing(sqlite3.connect(journal)) as db:
        (body,) = db.execute("SELECT body FROM mailbox WHERE process='keeper'").fetchone()
        (reason,) = db.execute("SELECT reason FROM processes WHERE id='keeper'").fetchone()
    size = lambda data: msgpack.unpackb(data, ext_hook=lambda code, ext: len(ext))  # noqa: E731
    return size(body), size(msgpack.unpackb(reason)[1])


def test_journal_show_prints_a_pickled_message_as_its_size_without_unpickling_it(tripwire):
    journal, marker = tripwire
    message_size, _ = pickle_sizes(journal)
    done = journal_command("show", journal, "keeper")
    assert (done.returncode, done.stderr) == (0, "")
    assert re.search(rf"(?m)^\s+1\s+receive\s+#1 <dill, {message_size} bytes>$", done.stdout), done.stdout
    assert not marker.exists()


def test_journal_ls_prints_a_pickled_result_as_its_size_without_unpickling_it(tripwire):
    journal, marker = tripwire
    _, result_size = pickle_sizes(journal)
    done = journal_command("ls", journal)
    assert (done.returncode, done.stderr) == (0, "")
    assert re.search(
        rf"(?m)^keeper\s+done\s+1\s+1\s+test_journal_safety\.keep_what_arrives\s+\('ok', <dill, {result_size} bytes>\)$",
        done.stdout,
    ), done.stdout
    assert not marker.exists()


def test_journal_show_with_trust_unpickles_values_as_a_process_would(tripwire):
    journal, marker = tripwire
    done = journal_command("show", "--trust", journal, "keeper")
    assert (done.returncode, done.stderr) == (0, "")
    assert re.search(r"(?m)^keeper: test_journal_safety\.keep_what_arrives, done, \('ok', Tripwire\(\)\)$", done.stdout)
    assert re.search(r"(?m)^\s+1\s+receive\s+#1 Tripwire\(\)$", done.stdout), done.stdout
    assert marker.exists()


# --- files 0600 -------------------------------------------------------------------------


def test_a_new_journal_and_its_wal_shm_and_lock_files_are_readable_by_their_owner_only(sqlite_journal):
    def main():
        durable.spawn("done", finish_at_once)
        durable.result("done", timeout=10)
        # While the runtime has the journal open: its -wal and -shm exist now.
        return {tail: stat.S_IMODE(os.stat(sqlite_journal + tail).st_mode) for tail in ("", "-wal", "-shm", ".lock")}

    assert run(main, journal=sqlite_journal) == {"": 0o600, "-wal": 0o600, "-shm": 0o600, ".lock": 0o600}


# --- one runtime per journal ------------------------------------------------------------

HOLDER = textwrap.dedent(
    """\
    import sys

    import occasional as occ
    from occasional import durable


    def wait_for_go():
        return occ.receive(("go",))[0]


    occ.start(journal=sys.argv[1])
    durable.spawn("held", wait_for_go)
    print("holding", flush=True)
    sys.stdin.readline()
    occ.stop()
    print("stopped", flush=True)
    """
)


def test_a_second_runtime_on_a_journal_in_use_fails_at_once_until_the_first_one_ends(sqlite_journal, tmp_path):
    with holding(sqlite_journal, tmp_path, HOLDER) as holder:
        with pytest.raises(
            BlockingIOError,
            match=(
                rf"^the journal {quoted(sqlite_journal)} is in use by another runtime \(its central services, pid \d+, "
                rf"hold {quoted(sqlite_journal + '.lock')}\); a journal serves one runtime at a time, or its durable steps "
                r"would run twice: stop that runtime first, or give this one another journal=$"
            ),
        ):
            occ.run(finish_at_once, journal=sqlite_journal)
        assert holder.poll() is None
    record_a_finished_process(sqlite_journal)


def test_journal_ls_reads_a_journal_that_a_runtime_has_in_use(journal, tmp_path):
    # Reading needs no lock: SQLite's WAL lets a reader in while the runtime writes, PostgreSQL's MVCC
    # too; both stores, as every durable test (issue 12).
    with holding(journal, tmp_path, HOLDER):
        done = journal_command("ls", journal)
    assert (done.returncode, done.stderr) == (0, "")
    assert re.search(r"(?m)^held\s+running\s+0\s+0\s+__main__\.wait_for_go$", done.stdout), done.stdout


# --- what the file is -------------------------------------------------------------------


def test_a_runtime_refuses_a_text_file_as_its_journal_naming_it(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n" * 100)
    with pytest.raises(
        ValueError,
        match=(
            rf"^{NOT_A_JOURNAL.format(path=quoted(notes))}SQLite cannot read it as a database \(file is not a database\); "
            r"give the path of a journal, or of a file that does not exist yet$"
        ),
    ):
        occ.run(finish_at_once, journal=str(notes))
    assert notes.read_text() == "remember the milk\n" * 100


def another_applications_database(path: Path, application_id: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA application_id={application_id}")
        db.execute("CREATE TABLE contacts (name TEXT)")
        db.commit()


def test_a_runtime_refuses_a_sqlite_database_of_another_application_naming_it_and_its_id(tmp_path):
    other = tmp_path / "contacts.db"
    another_applications_database(other, 0x12345678)
    with pytest.raises(
        ValueError,
        match=(
            rf"^{NOT_A_JOURNAL.format(path=quoted(other))}it is a SQLite database of another application "
            r"\(application_id 0x12345678, a journal's is 0x4f43434a\); give the path of a journal, or of a file that"
        ),
    ):
        occ.run(finish_at_once, journal=str(other))


def test_a_runtime_refuses_a_sqlite_database_with_other_tables_and_no_application_id(tmp_path):
    other = tmp_path / "contacts.db"
    another_applications_database(other, 0)
    with pytest.raises(
        ValueError,
        match=(
            rf"^{NOT_A_JOURNAL.format(path=quoted(other))}it is a SQLite database with the tables contacts "
            r"and no journal's application_id; give the path of a journal"
        ),
    ):
        occ.run(finish_at_once, journal=str(other))


def set_pragmas(journal: str, **values: int) -> None:
    with contextlib.closing(sqlite3.connect(journal)) as db:
        for name, value in values.items():
            db.execute(f"PRAGMA {name}={value}")
        db.commit()


def pragmas(journal: str) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(journal)) as db:
        return db.execute("PRAGMA application_id").fetchone()[0], db.execute("PRAGMA user_version").fetchone()[0]


def test_a_runtime_refuses_a_journal_of_a_newer_layout_naming_it(sqlite_journal):
    record_a_finished_process(sqlite_journal)
    set_pragmas(sqlite_journal, user_version=2)
    with pytest.raises(
        ValueError,
        match=(
            rf"^the journal {quoted(sqlite_journal)} has layout 2, newer than this occasional reads \(up to 1\): "
            r"a newer occasional wrote it; open it with that version$"
        ),
    ):
        occ.run(finish_at_once, journal=sqlite_journal)


def test_a_journal_written_before_journals_had_an_application_id_is_adopted_and_stamped(sqlite_journal):
    record_a_finished_process(sqlite_journal)
    set_pragmas(sqlite_journal, application_id=0, user_version=0)  # as every journal written before issue 10

    def main():
        return durable.result("done", timeout=10)

    assert (run(main, journal=sqlite_journal), pragmas(sqlite_journal)) == (("ok", "finished"), (APPLICATION_ID, 1))


def test_the_recorded_journal_opens_in_a_runtime_and_keeps_its_processes(tmp_path):
    # tests/durable/journals/shop.sqlite was recorded before journals had an application_id.
    journal = str(tmp_path / "shop.sqlite")
    shutil.copyfile(ROOT / "tests" / "durable" / "journals" / "shop.sqlite", journal)

    def main():
        kind, value = durable.result("order-1", timeout=10)
        return kind, value["order"]

    assert run(main, journal=journal) == ("ok", "order-1")


def test_journal_ls_refuses_a_file_that_is_not_a_journal_with_status_2_and_no_traceback(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n" * 100)
    done = journal_command("ls", str(notes))
    assert (done.returncode, done.stdout) == (2, "")
    assert re.match(
        rf"^occasional journal ls: {NOT_A_JOURNAL.format(path=quoted(notes))}SQLite cannot read it as a database "
        r"\(file is not a database\); give the path of a journal\n\Z",
        done.stderr,
    ), done.stderr


def test_journal_show_refuses_a_journal_of_a_newer_layout_with_status_2_and_no_traceback(sqlite_journal):
    record_a_finished_process(sqlite_journal)
    set_pragmas(sqlite_journal, user_version=2)
    done = journal_command("show", sqlite_journal, "done")
    assert (done.returncode, done.stdout) == (2, "")
    assert re.match(
        rf"^occasional journal show: the journal {quoted(sqlite_journal)} has layout 2, newer than this occasional reads "
        r"\(up to 1\): a newer occasional wrote it; open it with that version\n\Z",
        done.stderr,
    ), done.stderr


# --- any path ---------------------------------------------------------------------------


def step_then_wait(main: occ.Pid) -> str:
    before = durable.step(str.upper, "before")
    occ.send(main, ("waiting", occ.slf()))
    return f"{before} then {wait_for_go()}"


def test_a_journal_whose_path_has_a_hash_a_question_mark_and_a_percent_sign_runs_resumes_and_lists(tmp_path):
    (tmp_path / "a#b?c%41").mkdir()
    journal = str(tmp_path / "a#b?c%41" / "j#1?x=2.sqlite")

    def first():
        durable.spawn("waiter", step_then_wait, occ.slf())
        return occ.receive(("waiting", occ.ANY), timeout=10)[0]

    def second():
        occ.send(durable.whereis("waiter"), ("go",))
        return durable.result("waiter", timeout=10)

    assert (run(first, journal=journal), run(second, journal=journal)) == ("waiting", ("ok", "BEFORE then go"))
    done = journal_command("ls", journal)
    assert (done.returncode, done.stderr) == (0, "")
    assert re.search(r"(?m)^waiter\s+done\s+4\s+1\s+", done.stdout), done.stdout
