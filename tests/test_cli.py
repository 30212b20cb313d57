"""The `occasional` command (API.md section 9): run and --help."""

import os
import subprocess
import sys
import textwrap

import pytest

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")


def _occasional(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCCASIONAL, *args], capture_output=True, text=True, timeout=30, cwd=cwd)


@pytest.fixture
def jobs(tmp_path):
    (tmp_path / "jobs.py").write_text(
        textwrap.dedent("""
        import occasional as occ

        def greet(a, b):
            pid, ref = occ.spawn_monitor(lambda: f"{a} and {b}")
            return occ.receive(("DOWN", ref, occ.ANY, occ.ANY))[3][1]

        def fail():
            raise ValueError("no luck")

        def quiet():
            pass
    """)
    )
    return str(tmp_path)


def test_help_lists_the_run_command():
    done = _occasional("--help")
    assert (done.returncode, "run MODULE:FUNCTION as the main process of a new runtime" in done.stdout) == (0, True)


def test_run_prints_what_the_function_returned_given_string_arguments(jobs):
    done = _occasional("run", "jobs:greet", "x", "y", cwd=jobs)
    assert (done.returncode, done.stdout, done.stderr) == (0, "x and y\n", "")


def test_run_prints_nothing_for_a_function_that_returns_none(jobs):
    done = _occasional("run", "jobs:quiet", cwd=jobs)
    assert (done.returncode, done.stdout) == (0, "")


def test_run_exits_1_with_the_reason_and_traceback_when_the_function_raises(jobs):
    done = _occasional("run", "jobs:fail", cwd=jobs)
    assert done.returncode == 1
    assert done.stderr.startswith("occasional run: process <occ ")
    assert done.stderr.rstrip().endswith("ValueError: no luck")


def test_run_names_a_target_that_is_not_module_colon_function(jobs):
    done = _occasional("run", "jobs.greet", cwd=jobs)
    assert (done.returncode, done.stderr) == (
        1,
        "occasional run: 'jobs.greet' is not MODULE:FUNCTION; write it like mypkg.jobs:main\n",
    )


def test_run_names_a_function_the_module_does_not_have(jobs):
    done = _occasional("run", "jobs:nope", cwd=jobs)
    assert (done.returncode, done.stderr) == (1, "occasional run: module 'jobs' has no function 'nope'\n")
