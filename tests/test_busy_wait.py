"""A waiting process busy-waits briefly before it sleeps (issue 15), and sleeps.

``OCC_BUSY_WAIT_US`` sets how long, in microseconds; 0 turns it off. The
setting is read when ``occasional`` is imported, so these tests run programs
in interpreters of their own, with the variable in their environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import occasional as occ

PING_PONG = textwrap.dedent(
    """
    import occasional as occ

    def echo():
        while True:
            msg = occ.receive()
            if msg[0] == "stop":
                return
            occ.send(msg[1], ("pong", msg[2]))

    def main():
        peer = occ.spawn(echo)
        got = []
        for i in range(200):
            occ.send(peer, ("ping", occ.slf(), i))
            got.append(occ.receive(("pong", occ.ANY))[1])
        occ.send(peer, ("stop",))
        return got == list(range(200))

    print(occ.run(main))
    """
)


def run_program(source: str, busy_wait: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OCC_BUSY_WAIT_US=busy_wait)
    return subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=60)


def test_messages_go_both_ways_in_order_with_busy_waiting_off():
    done = run_program(PING_PONG, "0")
    assert (done.returncode, done.stdout) == (0, "True\n")


def test_messages_go_both_ways_in_order_with_a_long_busy_wait():
    done = run_program(PING_PONG, "1000")
    assert (done.returncode, done.stdout) == (0, "True\n")


def test_a_busy_wait_that_is_not_a_number_of_microseconds_is_refused_naming_it():
    done = run_program("import occasional", "fifty")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "ValueError: OCC_BUSY_WAIT_US='fifty' is not a number of microseconds from 0 to 1000000; "
        "set it to, say, 50, or to 0 to let a waiting process sleep at once"
    )


def test_a_busy_wait_over_a_second_is_refused_naming_it():
    done = run_program("import occasional", "2000000")
    assert done.returncode == 1
    assert "OCC_BUSY_WAIT_US='2000000' is not a number of microseconds from 0 to 1000000" in done.stderr


def cpu_seconds(os_pid: int) -> float:
    with open(f"/proc/{os_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def waiter() -> None:
    occ.receive(("never sent",))


def test_a_process_that_waits_for_messages_that_never_come_sleeps_instead_of_spinning():
    # Ten messages it does not want wake it ten times; each time it busy-waits
    # at most 50 us, and fewer as its waits go unanswered. A process that spun
    # instead of sleeping would use the whole half second.
    def main():
        p = occ.spawn(waiter)
        for i in range(10):
            occ.send(p, ("not this", i))
        time.sleep(0.5)
        used = cpu_seconds(p.os_pid)
        occ.kill(p, "done")
        return used

    assert occ.run(main) < 0.1
