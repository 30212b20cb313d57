"""The pieces issue 11 wrote once, where their copies disagreed.

SystemExit becomes a reason by one rule (core/reasons.py reason_from_exit_code),
in a plain process and a durable one alike; numbers of seconds follow one rule
for infinity (core/checks.py): ``inf`` only where waiting forever has a meaning.
"""

from __future__ import annotations

import math
import sys

import pytest

import occasional as occ
from occasional import durable
from occasional.testing import run


def exits_300() -> None:
    sys.exit(300)


def reason_of(f: object) -> object:
    _pid, ref = occ.spawn_monitor(f)
    return occ.receive(("DOWN", ref, occ.ANY, occ.ANY))[3]


# --- SystemExit to a reason --------------------------------------------------------------


def test_a_plain_process_that_calls_sys_exit_300_ends_with_exitcode_44_as_the_os_reports_it():
    assert occ.run(reason_of, exits_300) == ("exitcode", 44)


def test_a_durable_process_that_calls_sys_exit_300_ends_with_exitcode_44_as_a_plain_process_does(journal):
    def main():
        durable.spawn("exiter", exits_300)
        return durable.result("exiter", timeout=10)

    assert run(main, journal=journal) == ("exitcode", 44)


# --- seconds: inf only where waiting forever has a meaning -------------------------------------


def test_an_infinite_receive_timeout_waits_forever_as_none_does():
    def main():
        me = occ.slf()
        occ.send(me, "here")
        return occ.receive(timeout=math.inf)

    assert occ.run(main) == "here"


def test_an_infinite_supervisor_period_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"^period=inf is not a period; use seconds > 0$"):
        occ.Supervisor.start([], period=math.inf)


def test_an_infinite_supervisor_backoff_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"^backoff=\(1, inf\) is not a backoff; use \(first_s, max_s\)"):
        occ.Supervisor.start([], backoff=(1, math.inf))


def sleeps() -> None:
    occ.receive(("never",))


def test_a_child_with_an_infinite_shutdown_is_waited_for_until_it_stops_as_otps_infinity():
    def main():
        sup = occ.Supervisor.start([{"id": "a", "function": sleeps, "shutdown": math.inf}])
        [(_id, pid, _restart)] = occ.Supervisor.which_children(sup)
        ref = occ.monitor(pid)
        occ.Supervisor.terminate_child(sup, "a")
        return occ.receive(("DOWN", ref, occ.ANY, occ.ANY))[3]

    assert occ.run(main) == ("killed", "shutdown")


def test_a_nan_child_shutdown_raises_value_error_naming_it():
    spec = {"id": "a", "function": exits_300, "shutdown": math.nan}
    with pytest.raises(
        ValueError, match=r"^child 'a': shutdown=nan is not a shutdown; use seconds >= 0 or 'brutal_kill'$"
    ):
        occ.Supervisor.start([spec])


def test_an_infinite_retry_wait_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"^Retry\(max_delay=inf\): give seconds as a finite number >= 0$"):
        durable.Retry(max_delay=math.inf)


def test_an_infinite_durable_sleep_raises_value_error_naming_it(journal):
    def sleeps_forever() -> str:
        try:
            durable.sleep(math.inf)
        except ValueError as e:
            return str(e)
        return "slept"

    def main():
        durable.spawn("sleeper", sleeps_forever)
        return durable.result("sleeper", timeout=10)

    assert run(main, journal=journal) == (
        "ok",
        "durable.sleep(inf): a sleep must end; give a finite number of seconds",
    )


def test_a_nan_durable_result_timeout_raises_value_error_naming_it(journal):
    def main():
        try:
            durable.result("x", timeout=math.nan)
        except ValueError as e:
            return str(e)
        return "waited"

    assert run(main, journal=journal) == "durable.result('x', timeout=nan): give seconds as a number >= 0, or None"
