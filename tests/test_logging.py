"""An abnormal end that no process watches is reported on stderr, as Erlang's
error logger does; a watched one is left to its watcher."""

import re
import subprocess
import sys
import textwrap


def _stderr_of(script: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_crash_nobody_watches_is_reported_on_stderr_with_its_traceback():
    err = _stderr_of("""
        import occasional as occ

        def lost():
            raise KeyError("nobody listens")

        def main():
            pid = occ.spawn(lost)
            while pid in occ.processes():  # gone from the table once logged
                pass

        occ.run(main)
    """)
    assert "(__main__.lost) ended and no process monitors or links to it: Traceback (most recent call last):" in err
    assert err.rstrip().endswith("KeyError: 'nobody listens'")


def test_a_crash_a_monitor_watches_is_not_logged():
    err = _stderr_of("""
        import occasional as occ

        def watched():
            raise KeyError("somebody listens")

        def main():
            pid, ref = occ.spawn_monitor(watched)
            occ.receive(("DOWN", ref, occ.ANY, occ.ANY))

        occ.run(main)
    """)
    assert err == ""


def test_a_supervisor_that_gives_up_says_so_on_stderr_naming_the_child_and_its_reason():
    err = _stderr_of("""
        import occasional as occ

        def crash():
            raise RuntimeError("again")

        def main():
            sup = occ.Supervisor.start([{"id": "crasher", "function": crash}], intensity=2, period=10)
            ref = occ.monitor(sup)
            occ.receive(("DOWN", ref, occ.ANY, occ.ANY))

        occ.run(main)
    """)
    give_up = [line for line in err.splitlines() if "give_up" in line]
    assert len(give_up) == 1
    assert re.fullmatch(r"occasional: supervisor <occ \d+>: give_up child 'crasher'; it ended with Traceback \(most recent call last\):", give_up[0])
    assert "RuntimeError: again" in err
