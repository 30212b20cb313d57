"""occasional.testing.plugin under pytest-xdist, as the project's own suite runs (pyproject addopts).

Each xdist worker is a pytest of its own: the plugin must make each one a child subreaper
and check, per test, what that worker's test left behind. Each inner pytest runs in a
subprocess with two workers, as tests/test_framework_plugin.py runs its inner pytests.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "occasional.testing.plugin"


def run_with_two_workers(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", PLUGIN, "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile", timeout=60
    )


def test_under_xdist_every_worker_is_a_child_subreaper(pytester: pytest.Pytester) -> None:
    check = """
        import os
        from occasional.testing import reaper

        def test_this_worker_is_a_subreaper():
            assert (os.environ["PYTEST_XDIST_WORKER"], reaper.get_subreaper()) == (os.environ["PYTEST_XDIST_WORKER"], 1)
            with open(os.environ["PYTEST_XDIST_WORKER"], "w") as f:
                f.write(str(os.getpid()))
        """
    pytester.makepyfile(test_first=check, test_second=check)
    result = run_with_two_workers(pytester)
    result.assert_outcomes(passed=2)
    assert sorted(p.name for p in pytester.path.glob("gw*")) == ["gw0", "gw1"]


def test_under_xdist_an_orphan_a_test_leaves_is_adopted_by_its_worker_and_fails_that_test_naming_it(
    pytester: pytest.Pytester,
) -> None:
    # sh exits at once; its child, sleep, is reparented to the nearest subreaper: the worker.
    pytester.makepyfile(
        test_leaves="""
        import pathlib, subprocess

        def test_orphans_a_sleep():
            pid = subprocess.run(["sh", "-c", "sleep 31 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True).stdout
            pathlib.Path("pid").write_text(pid.strip())
        """,
        test_clean="""
        def test_clean():
            pass
        """,
    )
    result = run_with_two_workers(pytester)
    pid = int((pytester.path / "pid").read_text())
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_orphans_a_sleep*", f"*test left 1 process behind: {pid} (S) sleep 31*"]
    )
    assert not os.path.exists(f"/proc/{pid}")
