"""@occasional.http.program: what the gateway may start (API.md section 14, issue 16)."""

from __future__ import annotations

import pytest

from occasional import http
from occasional.http.programs import PROGRAMS


def report() -> str:
    return "report"


def other_report() -> str:
    return "other"


@pytest.fixture(autouse=True)
def no_programs():
    saved = dict(PROGRAMS)
    PROGRAMS.clear()
    yield
    PROGRAMS.clear()
    PROGRAMS.update(saved)


def test_program_registers_a_function_under_its_name_and_returns_it():
    assert (http.program(report), PROGRAMS) == (report, {"report": report})


def test_program_with_a_name_registers_it_under_that_name():
    assert (http.program(name="monthly")(report), PROGRAMS) == (report, {"monthly": report})


def test_a_name_held_by_another_function_is_refused_naming_both():
    http.program(report)
    with pytest.raises(ValueError, match=r"^http\.program: the name 'report' is taken by <function report"):
        http.program(name="report")(other_report)
    assert dict(PROGRAMS) == {"report": report}


def test_something_not_callable_is_refused():
    with pytest.raises(TypeError, match=r"^http\.program: 42 is not callable; decorate a function$"):
        http.program(42)  # type: ignore[call-overload]
