"""The exceptions of the contract (API.md sections 4, 5 and 10).

Each carries its data as attributes, builds its message from them, and arrives
from another process equal to the one raised.
"""

from __future__ import annotations

from typing import Any

from .pid import Pid


class _DataError(Exception):
    """An exception whose identity is its data."""

    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # The instance dict travels too: it holds the traceback text of the
        # process that raised it.
        return (type(self), tuple(getattr(self, f) for f in self._fields), self.__dict__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + tuple(repr(getattr(self, f)) for f in self._fields))


class ProcessExit(_DataError):
    """A process ended with a reason that is not normal.

    ``exc.reason`` is the exit reason, a ``(kind, detail)`` tuple (API.md
    section 4); ``exc.pid`` the process, where known. For an uncaught
    exception the original exception is chained as ``__cause__`` and its
    remote traceback text is part of the message.
    """

    __module__ = "occasional"
    _fields = ("reason", "pid")

    def __init__(self, reason: tuple[str, Any], pid: Any = None) -> None:
        super().__init__(reason, pid)
        self.reason = reason
        self.pid = pid

    def __str__(self) -> str:
        from .reasons import format_reason

        who = f"process {self.pid!r}" if self.pid is not None else "the process"
        if self.reason[0] == "error":
            return f"{who} ended with an error:\n{format_reason(self.reason)}"
        return f"{who} ended: {format_reason(self.reason)}"


def exit_error(pid: Any, reason: tuple[str, Any]) -> ProcessExit:
    """The ProcessExit for ``pid``'s end with ``reason``, chained from the
    exception the process raised, if any: what a verb that waits on a process
    raises (run, Server.start and call, open_port; one place, issue 11)."""
    err = ProcessExit(reason, pid)
    if reason[0] == "error" and isinstance(reason[1], BaseException):
        err.__cause__ = reason[1]  # as ``raise err from reason[1]``: the context is suppressed
    return err


class NoProcess(_DataError):
    """No process is registered under that name."""

    __module__ = "occasional"
    _fields = ("name",)

    def __init__(self, name: Any) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return (
            f"no process is registered as {self.name!r}; "
            "check the name, or register the process first (register() or spawn(..., name=))"
        )


class NameTaken(_DataError):
    """A name is already held by a live process.

    ``exc.name`` is the name, ``exc.holder`` the Pid holding it (None when
    not known). Central's error reply carries ``name, holder_id,
    holder_os_pid``, and ``NameTaken(*args)`` makes the holder's Pid from them.
    """

    __module__ = "occasional"
    _fields = ("name", "holder")

    def __init__(self, name: str, holder: Pid | int | None = None, holder_os_pid: int | None = None) -> None:
        if type(holder) is int:
            holder = Pid._make(holder, holder_os_pid or 0)
        super().__init__(name, holder)
        self.name = name
        self.holder = holder

    def __str__(self) -> str:
        held = f" by {self.holder!r}" if self.holder is not None else ""
        return f"the name {self.name!r} is taken{held}; pick another name or unregister it first"


def no_runtime(call: str) -> RuntimeError:
    return RuntimeError(f"{call} needs a running occasional runtime; start one with occ.run(main) or occ.start()")
