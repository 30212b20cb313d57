"""`occasional up` with a journal: its services' durable processes, on SQLite or PostgreSQL (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from occasional.durable.store import Reader
from occasional.up import ConfigError, load

from conftest import ROOT, descendants, reap_orphans, snapshot, wait_until_gone

SERVICE = textwrap.dedent(
    """\
    import occasional as occ
    from occasional import durable


    def double(x):
        return 2 * x


    def work(out):
        durable.spawn("doubler", double, 21)
        with open(out, "w") as f:
            f.write(repr(durable.result("doubler", timeout=20)))
        occ.receive("never sent")
    """
)


@pytest.mark.timeout(60)
def test_occasional_up_runs_its_services_durable_processes_in_the_journal_the_file_names(tmp_path, postgres_url):
    (tmp_path / "svc.py").write_text(SERVICE)
    (tmp_path / "services.toml").write_text(
        f'journal = "{postgres_url}"\nlease = 3\n[services.work]\nfunction = "svc:work"\nargs = ["out"]\n'
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "occasional", "up", "services.toml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "out").exists() or not (tmp_path / "out").read_text():
            assert up.poll() is None and time.monotonic() < deadline, up.stderr.read() if up.stderr else ""
            time.sleep(0.02)
        tree = snapshot([up.pid, *descendants(up.pid)])
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=30)
        assert wait_until_gone(tree) == []
        reap_orphans(tree)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert (up.returncode, (tmp_path / "out").read_text()) == (0, "('ok', 42)"), err
    with Reader(postgres_url) as journal:
        assert [(p.id, p.status) for p in journal.processes()] == [("doubler", "done")]


def test_a_relative_journal_path_in_a_services_file_is_relative_to_its_directory(tmp_path):
    (tmp_path / "services.toml").write_text('journal = "state/journal.sqlite"\n[services.web]\nargv = ["true"]\n')
    assert load(str(tmp_path / "services.toml")).options == {"journal": str(tmp_path / "state" / "journal.sqlite")}


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (
            "journal = 5",
            "1: journal: 5 is not a journal; give a file path (relative to this file's directory) or a PostgreSQL URL",
        ),
        (
            'journal = "j.sqlite"\njournal_sync = "disk"',
            "2: journal_sync: journal_sync='disk' is not a sync mode; use 'machine'",
        ),
        (
            'journal = "postgresql:///db"\nlease = 0',
            "2: lease: lease=0 is not a lease; give a finite number of seconds > 0",
        ),
        (
            'journal = "j.sqlite"\nlease = 3',
            "2: lease: lease=3 is the lease of a node on a journal shared by nodes; it needs journal='postgresql://...'",
        ),
        (
            'node = "no-host"',
            "1: node: node='no-host' is not a node name; give NAME@HOST, such as 'app@127.0.0.1' or 'app@myhost'",
        ),
        ("net_ticktime = 3", "1: net_ticktime: net_ticktime= is a setting of a node; give node= too"),
    ],
    ids=["journal-not-text", "unknown-sync", "zero-lease", "lease-on-sqlite", "bad-node", "ticktime-without-node"],
)
def test_a_bad_runtime_option_in_a_services_file_is_refused_naming_its_line_and_key(tmp_path, lines, says):
    path = tmp_path / "services.toml"
    path.write_text(f'{lines}\n[services.web]\nargv = ["true"]\n')
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}:{says}")
