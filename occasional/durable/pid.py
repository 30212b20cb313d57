"""The address of a durable process (API.md section 7).

A :class:`DurablePid` routes ``send`` through the journal: core's ``send``
calls its ``_occ_route`` (core knows no durable op codes, issue 11).
"""

from __future__ import annotations

from typing import Any

from ..core import codec, context
from ..core.pid import Pid
from . import protocol as D
from .context import DurableContext


class DurablePid(Pid):
    """The address of a durable process, valid across its restarts.

    ``send`` to it goes through the journal: it returns once the message is
    committed to the process's mailbox, and the process receives it whichever
    incarnation runs then (or after a restart of the whole runtime). ``id`` and
    ``os_pid`` are those of the incarnation the address was made for (0 when
    none ran), so ``monitor``, ``link`` and ``kill`` act on that incarnation;
    ``durable.result(pid.durable_id)`` waits for the process's end. Two
    addresses are equal when they name the same incarnation of the same id.
    """

    __slots__ = ("durable_id",)
    __module__ = "occasional.durable"
    durable_id: str

    def __new__(cls, *args: Any, **kwargs: Any) -> DurablePid:
        raise TypeError(
            "occasional.durable.DurablePid has no public constructor; "
            "get one from durable.spawn(), durable.whereis() or slf() in a durable process"
        )

    @classmethod
    def _make_durable(cls, durable_id: str, id: int, os_pid: int) -> DurablePid:
        self = object.__new__(cls)
        _set_id(self, id)
        _set_os_pid(self, os_pid)
        _set_durable_id(self, durable_id)
        return self

    def _occ_route(self, msg: Any) -> None:
        _send(self.durable_id, msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_durable_pid, (self.durable_id, self.id, self.os_pid))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DurablePid) and other.durable_id == self.durable_id and other.id == self.id

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("occ-durable", self.durable_id, self.id))

    def __repr__(self) -> str:
        return f"<occ durable {self.durable_id!r} {self.os_pid}>"


_set_id = Pid.__dict__["id"].__set__
_set_os_pid = Pid.__dict__["os_pid"].__set__
_set_durable_id = DurablePid.__dict__["durable_id"].__set__


def _make_durable_pid(durable_id: str, id: int, os_pid: int) -> DurablePid:
    return DurablePid._make_durable(durable_id, id, os_pid)


def _send(durable_id: str, msg: Any) -> None:
    ctx = context.current("send()")
    try:
        payload = codec.dumps(msg)
    except TypeError as e:
        raise TypeError(f"send(): {e}; nothing was sent") from e.__cause__
    if isinstance(ctx, DurableContext):
        ctx.send_durable(durable_id, payload)
    else:
        ctx.call(D.D_SEND, durable_id, payload, None, 0, [])
