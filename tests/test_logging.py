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
    assert re.fullmatch(
        r"occasional: supervisor <occ \d+>: give_up child 'crasher'; it ended with Traceback \(most recent call last\):",
        give_up[0],
    )
    assert "RuntimeError: again" in err


def test_a_sigkilled_durable_process_that_the_runtime_restarts_is_not_logged_as_unwatched(journal):
    err = _stderr_of(f"""
        import os, signal
        import occasional as occ
        from occasional import durable

        def job(main):
            occ.send(main, ("ready", occ.slf()))
            occ.receive(("go",))
            return "done"

        def main():
            durable.spawn("job", job, occ.slf())
            _, pid = occ.receive(("ready", occ.ANY), timeout=10)
            os.kill(pid.os_pid, signal.SIGKILL)
            occ.send(pid, ("go",))
            assert durable.result("job", timeout=10) == ("ok", "done")

        occ.run(main, journal={journal!r})
    """)
    assert err == ""


def test_a_durable_process_that_raises_with_nobody_watching_is_reported_on_stderr():
    err = _stderr_of("""
        import tempfile
        import time
        import occasional as occ
        from occasional import durable

        def job():
            raise KeyError("nobody listens")

        def main():
            durable.spawn("job", job)
            durable.result("job", timeout=10)
            # The result is committed before the process has ended; central
            # logs the end when it has it. Wait for that, not for the result.
            deadline = time.monotonic() + 10
            while occ.processes() != [occ.slf()] and time.monotonic() < deadline:
                time.sleep(0.01)

        with tempfile.TemporaryDirectory() as d:
            occ.run(main, journal=d + "/journal.sqlite")
    """)
    assert "ended and no process monitors or links to it: Traceback (most recent call last):" in err
    assert err.rstrip().endswith("KeyError: 'nobody listens'")
