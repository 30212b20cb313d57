"""Recorded journals, replayed by the current code on every run (STYLE.md, "Tests"; issue 6).

``tests/durable/journals/shop.sqlite`` was recorded from
``tests/durable/durable_programs.py`` by ``tests/durable/record_journals.py``
and is kept in the repository. ``occasional journal replay`` runs each of its
processes against today's code: a change to replay, to the journal's format or
to those programs that would strand a journal already on disk fails here. One
process, "restock", was recorded from an older ``restock`` that made another
step first, so its replay must raise NonDeterminism, showing both steps.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")
PROGRAMS = ROOT / "tests" / "durable"


def replay(tmp_path: Path, id: str) -> subprocess.CompletedProcess[str]:
    """``occasional journal replay`` of ``id`` in a copy of the recorded journal, next to its programs."""
    journal = tmp_path / "shop.sqlite"
    shutil.copyfile(PROGRAMS / "journals" / "shop.sqlite", journal)  # SQLite may write beside the file it opens
    return subprocess.run(
        [OCCASIONAL, "journal", "replay", str(journal), id], capture_output=True, text=True, timeout=60, cwd=PROGRAMS
    )


def test_a_recorded_finished_process_replays_through_every_kind_of_entry_to_its_recorded_result(tmp_path):
    done = replay(tmp_path, "order-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(
        "order-1: the code takes the recorded path through all 18 events and returns "
        "{'order': 'order-1', 'reserved': ['cake', 'tea'], 'paid': 'charged ..."
    )


def test_a_recorded_unfinished_process_replays_to_where_a_live_run_would_go_on(tmp_path):
    done = replay(tmp_path, "waiting")
    assert (done.returncode, done.stdout) == (
        0,
        "waiting: the code takes the recorded path through all 5 events; a live run would go on from there\n",
    )


def test_a_recorded_process_that_the_current_code_parts_from_raises_nondeterminism_showing_both_steps(tmp_path):
    done = replay(tmp_path, "restock")
    assert done.returncode == 1
    assert re.match(
        r"^restock: NonDeterminism: the replay of durable process 'restock' took a different path at position 1: "
        r"the journal has step\.attempt 'release_stock' there, the code attempted step 'hold_stock'\.",
        done.stdout,
    )
