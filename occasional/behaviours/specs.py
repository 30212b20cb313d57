"""What a Supervisor is started with: child specs and its options, checked whole,
in the caller, before any process starts (API.md section 6; STYLE.md, "Errors").

A spec's function is checked further by its kind of child, when a registered
kind recognises it (occasional/behaviours/child_kinds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.checks import is_backoff, is_count, is_seconds
from .child_kinds import child_kind_of

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
RESTARTS = ("permanent", "transient", "temporary")
AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")
SPEC_KEYS = ("id", "function", "args", "restart", "shutdown", "significant")


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor: ``function(*args)`` under the ``id``, with its
    restart type, its ``shutdown`` time (seconds or ``"brutal_kill"``) and
    whether it is ``significant`` for auto_shutdown (OTP's child_spec)."""

    id: str
    function: Any
    args: tuple[Any, ...] = ()
    restart: str = "permanent"
    shutdown: float | str = 5.0
    significant: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TypeError(f"child spec id={self.id!r} is not a non-empty string; give each child a string id")
        if not callable(self.function):
            raise TypeError(
                f"child {self.id!r}: function={self.function!r} is not callable; "
                "pass a function, a Server subclass or a partial of Supervisor.start"
            )
        if type(self.args) is not tuple:
            raise TypeError(f"child {self.id!r}: args={self.args!r} is not a tuple; pass the arguments as a tuple")
        kind = child_kind_of(self.function)
        if kind is not None:
            kind.check(self.id, self.function, self.args)
        if self.restart not in RESTARTS:
            raise ValueError(
                f"child {self.id!r}: restart={self.restart!r} is not a restart type; use 'permanent', 'transient' or 'temporary'"
            )
        s = self.shutdown
        if s != "brutal_kill" and not is_seconds(s, forever=True):  # inf: OTP's infinity (core/checks.py)
            raise ValueError(f"child {self.id!r}: shutdown={s!r} is not a shutdown; use seconds >= 0 or 'brutal_kill'")
        if not isinstance(self.significant, bool):
            raise TypeError(f"child {self.id!r}: significant={self.significant!r} is not True or False")
        if self.significant and self.restart == "permanent":
            raise ValueError(
                f"child {self.id!r}: a significant child must be 'transient' or 'temporary', not 'permanent'"
            )

    @classmethod
    def from_dict(cls, spec: Any) -> ChildSpec:
        if isinstance(spec, ChildSpec):
            return spec
        if not isinstance(spec, dict):
            raise TypeError(f"child spec {spec!r} is not a dict; write it as {{'id': ..., 'function': ...}}")
        unknown = [k for k in spec if k not in SPEC_KEYS]
        if unknown:
            raise ValueError(
                f"child spec {spec!r} has an unknown key {unknown[0]!r}; the keys are {', '.join(SPEC_KEYS)}"
            )
        for key in ("id", "function"):
            if key not in spec:
                raise ValueError(f"child spec {spec!r} has no {key!r}; 'id' and 'function' are required")
        return cls(**spec)


@dataclass(frozen=True)
class SupervisorOptions:
    """A supervisor's flags (OTP's sup_flags), checked as one."""

    strategy: str
    intensity: int
    period: float
    backoff: tuple[float, float] | None
    auto_shutdown: str

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not a strategy; use one of {', '.join(STRATEGIES)}")
        if not is_count(self.intensity):
            raise ValueError(f"intensity={self.intensity!r} is not a number of restarts; use an int >= 0")
        if not is_seconds(self.period, positive=True):
            raise ValueError(f"period={self.period!r} is not a period; use seconds > 0")
        b = self.backoff
        if b is not None and not is_backoff(b):
            raise ValueError(f"backoff={b!r} is not a backoff; use (first_s, max_s) with 0 < first_s <= max_s")
        if self.auto_shutdown not in AUTO_SHUTDOWN:
            raise ValueError(f"auto_shutdown={self.auto_shutdown!r}; use one of {', '.join(AUTO_SHUTDOWN)}")
        if self.strategy == "simple_one_for_one" and self.auto_shutdown != "never":
            # OTP refuses this pair as bad_combination when it checks the
            # supervisor flags (supervisor.erl); we follow it (issue 10).
            raise ValueError(
                f"strategy='simple_one_for_one' cannot have auto_shutdown={self.auto_shutdown!r} (OTP refuses it "
                "too); use auto_shutdown='never' with simple_one_for_one, or another strategy"
            )


def check_children(specs: Any, strategy: str) -> list[ChildSpec]:
    """Every spec checked, ids unique; one template for simple_one_for_one."""
    if not isinstance(specs, (list, tuple)):
        raise TypeError(f"children={specs!r} is not a list of child specs")
    checked = [ChildSpec.from_dict(s) for s in specs]
    seen: set[str] = set()
    for spec in checked:
        if spec.id in seen:
            raise ValueError(f"two children have the id {spec.id!r}; ids must be unique")
        seen.add(spec.id)
    if strategy == "simple_one_for_one" and len(checked) != 1:
        raise ValueError(f"simple_one_for_one takes exactly one template spec, not {len(checked)}")
    return checked


def check_significant(specs: list[ChildSpec], auto_shutdown: str) -> None:
    """A significant child needs an auto_shutdown that looks at it."""
    for spec in specs:
        if spec.significant and auto_shutdown == "never":
            raise ValueError(
                f"child {spec.id!r} is significant, which means nothing with auto_shutdown='never' (as in OTP 24); "
                "pass auto_shutdown='any_significant' or 'all_significant', or drop significant"
            )
