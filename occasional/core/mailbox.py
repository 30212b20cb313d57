"""A process's mailbox and selective receive over it (API.md section 3).

What arrived and was not yet received waits here, oldest first. ``receive``
scans it with the match and, when nothing matches, waits for more through
its host's ``pump`` (ARCHITECTURE.md, "Mailbox"). A mixin of
:class:`occasional.core.context.Context`, which owns the sockets that fill it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

_now = time.monotonic

# Takes a message and returns the key it answers to, or None (must not raise).
KeyOf = Callable[[Any], Hashable | None]


class Mailbox:
    """The messages of one process, and the rules for taking them out."""

    mailbox: deque[Any]  # read it, take from its front; add with post()
    call_down: tuple[str, Any] | None  # set by the host (see Context.call_process)
    # key_of -> the keys whose one message is dropped on arrival (see drop_on_arrival)
    _drops: dict[KeyOf, set[Hashable]]

    if TYPE_CHECKING:

        def pump(self, timeout: float | None) -> None: ...

    def _init_mailbox(self) -> None:
        self.mailbox = deque()
        self._drops = {}

    def post(self, msg: Any) -> None:
        """Put ``msg`` at the end of the mailbox, as if it had just arrived."""
        self.mailbox.append(msg)

    def discard_message(self, pred: Callable[[Any], bool]) -> bool:
        """Remove the oldest message ``pred`` accepts, if one is here now;
        never waits. Returns whether there was one."""
        mailbox = self.mailbox
        for i, msg in enumerate(mailbox):
            if pred(msg):
                del mailbox[i]
                return True
        return False

    def drop_on_arrival(self, key: Hashable, key_of: KeyOf) -> None:
        """Drop, on arrival, the one message for which ``key_of(msg) == key``.

        A behaviour's late answers use this: a reply to a call that timed out
        never reaches the mailbox (issue 4, OTP 24 aliases). Core does not know
        what a reply looks like (issue 11); ``key_of`` does, and is asked only
        while some key waits, so the message path costs nothing otherwise.
        """
        self._drops.setdefault(key_of, set()).add(key)

    def _deliver(self, msg: Any) -> None:
        """Append ``msg``, unless a ``drop_on_arrival`` key claims it."""
        drops = self._drops
        for key_of, keys in drops.items():
            key = key_of(msg)
            if key is not None and key in keys:
                keys.discard(key)
                if not keys:
                    del drops[key_of]
                return  # the loop ends here, so deleting from drops is safe
        self.mailbox.append(msg)

    def receive(self, pred: Callable[[Any], bool] | None, timeout: float | None) -> Any:
        """The oldest message ``pred`` accepts (any, for None), waiting up to
        ``timeout`` seconds (None: forever); raises TimeoutError after that.

        Returns None when the process a call waits on has ended (``call_down``).
        """
        mailbox = self.mailbox
        deadline = None if timeout is None else _now() + timeout
        if pred is None:
            while True:
                if mailbox:
                    return mailbox.popleft()
                self._wait(deadline)
        scanned = 0
        while True:
            n = len(mailbox)
            while scanned < n:
                msg = mailbox[scanned]
                if pred(msg):
                    del mailbox[scanned]
                    return msg
                scanned += 1
            if self.call_down is not None:
                return None  # the process a call waits on has ended (see Context.watch)
            self._wait(deadline)

    def _wait(self, deadline: float | None) -> None:
        if deadline is None:
            self.pump(None)
            return
        left = deadline - _now()
        if left <= 0:
            # Look once more without waiting: timeout=0 still sees what is readable.
            before = len(self.mailbox)
            self.pump(0)
            if len(self.mailbox) == before:
                raise TimeoutError("receive() timed out: no matching message arrived in time")
            return
        self.pump(left)
