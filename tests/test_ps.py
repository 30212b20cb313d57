"""`occasional ps`: the processes of the running runtimes of the user (API.md section 9, issue 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import occasional as occ
from occasional import ports
from occasional.core.control import PS_DEADLINE, PS_MAX_FRAME
from occasional.sck.frame import HEADER
from occasional.testing import run

from conftest import ROOT, descendants, reap_orphans, snapshot, wait_until_gone

OCCASIONAL = [sys.executable, "-m", "occasional"]


@pytest.fixture(autouse=True)
def own_runtime_dir(tmp_path, monkeypatch):
    """Each test looks only at its own runtimes: other programs of this user may be running."""
    d = tmp_path / "run"
    d.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def ps(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OCCASIONAL, "ps", *args], capture_output=True, text=True, timeout=20, cwd=ROOT)


def ps_json(*args: str) -> list[dict[str, Any]]:
    done = ps("--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def idle() -> None:
    occ.receive()


def by_name(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"] or r["child_id"] or f"<{r['id']}>": r for r in table["processes"]}


def test_ps_json_lists_each_process_with_pid_name_function_state_restarts_uptime_and_rss():
    def main(owner):
        worker = occ.spawn(idle, name="worker")
        port = ports.open_port(["sleep", "60"], name="sleeper")
        # A process just spawned may still be starting: it shows "waiting"
        # once it blocks in receive.
        deadline = time.monotonic() + 10
        while True:
            (table,) = ps_json(str(owner))
            if by_name(table)["worker"]["state"] == "waiting" or time.monotonic() > deadline:
                exe = Path(f"/proc/{by_name(table)['sleeper']['exe_pid']}/cmdline").read_bytes()
                return table, worker.os_pid, port.os_pid, exe
            time.sleep(0.05)

    table, worker_pid, port_pid, exe_cmdline = run(main, os.getpid())
    assert table["owner"] == os.getpid()
    rows = by_name(table)
    worker = rows["worker"]
    assert (worker["os_pid"], worker["kind"], worker["function"]) == (worker_pid, "process", f"{__name__}.idle")
    assert worker["state"] == "waiting" and worker["restarts"] == 0
    assert 0 <= worker["uptime_s"] < 30 and worker["rss_bytes"] > 1 << 20
    sleeper = rows["sleeper"]
    assert (sleeper["os_pid"], sleeper["kind"], sleeper["argv"]) == (port_pid, "port", ["sleep", "60"])
    assert exe_cmdline == b"sleep\x0060\x00"


def test_ps_counts_the_restarts_of_a_supervised_child():
    def main(owner):
        sup = occ.Supervisor.start([{"id": "flaky", "function": idle}], intensity=5)
        for _ in range(2):
            ((_, pid, _),) = occ.Supervisor.which_children(sup)
            os.kill(pid.os_pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while occ.Supervisor.which_children(sup)[0][1] in (pid, None) and time.monotonic() < deadline:
                time.sleep(0.01)
        (table,) = ps_json(str(owner))
        return by_name(table)["flaky"]["restarts"]

    assert run(main, os.getpid()) == 2


def test_ps_prints_a_table_with_a_header_and_a_row_per_process():
    def main(owner):
        occ.spawn(idle, name="worker")
        return ps(str(owner)).stdout

    out = run(main, os.getpid())
    lines = out.splitlines()
    assert lines[0].startswith("runtime ")
    assert lines[1].split() == ["PID", "NAME", "FUNCTION", "/", "ARGV", "STATE", "RESTARTS", "UPTIME", "RSS"]
    assert any(line.split()[1:3] == ["worker", f"{__name__}.idle"] for line in lines[2:])


def test_ps_with_no_runtime_running_says_so_and_where_it_looked(own_runtime_dir):
    done = ps()
    assert done.returncode == 0
    assert "no running occasional runtime" in done.stdout and str(own_runtime_dir) in done.stdout


def test_ps_finds_a_runtime_started_by_another_program_and_forgets_it_once_sigkilled(own_runtime_dir):
    program = "import occasional as occ\nocc.run(lambda: occ.receive())\n"
    child = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            found = ps_json()
            time.sleep(0.05)
        assert [t["owner"] for t in found] == [child.pid]
        tree = snapshot(descendants(child.pid))
        child.kill()
        child.wait()
        left = wait_until_gone(tree)
        reap_orphans(tree)
        assert left == []
        assert ps_json() == []
        assert list(own_runtime_dir.glob("occasional/*.sock")) == []  # the stale socket was removed
    finally:
        child.kill()
        child.wait()


def test_a_runtime_removes_its_control_socket_when_it_stops(own_runtime_dir):
    def main():
        return sorted(p.name for p in (own_runtime_dir / "occasional").iterdir())

    inside = run(main)
    assert len(inside) == 1 and inside[0].endswith(".sock")
    assert list((own_runtime_dir / "occasional").iterdir()) == []


# --------------------------------------------------------------- neighbours (issue 10)


def _fake_sockets(own_runtime_dir: Path, names: list[str]) -> list[socket.socket]:
    """Listening sockets in the runtime dir that never accept: a hung runtime, or not a runtime."""
    d = own_runtime_dir / "occasional"
    d.mkdir(mode=0o700, exist_ok=True)
    made = []
    for name in names:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(d / name))
        s.listen(1)
        made.append(s)
    return made


def test_ps_gives_up_on_sockets_that_never_answer_at_one_deadline_for_all_and_lists_the_rest(own_runtime_dir):
    hung = _fake_sockets(own_runtime_dir, ["1.sock", "2.sock", "3.sock", "4.sock"])

    def main():
        start = time.monotonic()
        done = ps("--json")
        return time.monotonic() - start, done.returncode, json.loads(done.stdout), done.stderr

    try:
        elapsed, status, found, stderr = run(main)
    finally:
        for s in hung:
            s.close()
    assert (status, [t["owner"] for t in found]) == (0, [os.getpid()])
    assert stderr == "".join(
        f"occasional ps: skipped {n}.sock: no answer within {PS_DEADLINE:g} s\n" for n in range(1, 5)
    )
    assert PS_DEADLINE <= elapsed < PS_DEADLINE + 2.5  # once for all four, not once each


def test_ps_skips_a_socket_that_announces_a_frame_over_its_limit(own_runtime_dir):
    (lsock,) = _fake_sockets(own_runtime_dir, ["1.sock"])
    with lsock:
        lsock.settimeout(20)
        proc = subprocess.Popen(
            [*OCCASIONAL, "ps", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        try:
            conn, _ = lsock.accept()
            with conn:
                conn.sendall(HEADER.pack(PS_MAX_FRAME + 1))  # and never the frame: ps must not wait for it
                out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, json.loads(out)) == (0, [])
    assert (
        err
        == f"occasional ps: skipped 1.sock: peer announced a frame of {PS_MAX_FRAME + 1} bytes, over the limit of {PS_MAX_FRAME} bytes\n"
    )


def test_ps_prints_the_control_characters_of_names_and_argv_escaped():
    def main(owner):
        occ.spawn(idle, name="evil\x1b[2J\nname")
        ports.open_port(["sh", "-c", "sleep 60", "x\x1b]0;title\x07y"], name="tab\there")
        return ps(str(owner)).stdout

    out = run(main, os.getpid())
    assert [c for c in out if not c.isprintable() and c != "\n"] == []
    rows = {line.split()[1]: line for line in out.splitlines()[2:]}
    assert "evil\\x1b[2J\\nname" in rows and f"{__name__}.idle" in rows["evil\\x1b[2J\\nname"]
    assert "port: sh -c sleep 60 x\\x1b]0;title\\x07y" in rows["tab\\there"]
