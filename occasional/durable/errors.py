"""The errors of durable processes (API.md section 7)."""

from __future__ import annotations

from typing import Any

from ..core.errors import _DataError


class NonDeterminism(_DataError):
    """A replay took a different path than the journal records.

    ``exc.id`` is the durable process, ``exc.position`` the journal position
    (event seq) where the paths part, ``exc.recorded`` and ``exc.attempted``
    the two entries as ``(kind, name)``. The process ends with this error and
    is not restarted: running the same code again would part at the same place.
    """

    __module__ = "occasional.durable"
    _fields = ("id", "position", "recorded", "attempted")

    def __init__(self, id: str, position: int, recorded: tuple[str, str], attempted: tuple[str, str]) -> None:
        super().__init__(id, position, recorded, attempted)
        self.id = id
        self.position = position
        self.recorded = tuple(recorded)
        self.attempted = tuple(attempted)

    def __str__(self) -> str:
        return (
            f"the replay of durable process {self.id!r} took a different path at position {self.position}: "
            f"the journal has {_entry(self.recorded)} there, the code attempted {_entry(self.attempted)}. "
            "Code that runs in a durable process must take the path its journal records; "
            "put changed behaviour behind a new durable id, or finish old processes first"
        )


def _entry(entry: tuple[Any, ...]) -> str:
    kind, name = entry[0], entry[1]
    return f"{kind} {name!r}" if name else str(kind)


class JournalEnd(BaseException):
    """Internal: a check-only replay (``occasional journal replay``) reached the
    end of the journal, where a live run would go on. A BaseException, so user
    code that catches Exception does not swallow it."""
