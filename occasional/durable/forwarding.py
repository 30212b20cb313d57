"""After a commit: committed messages forwarded to running durable processes,
and the acks of the sends that waited for it (docs/architecture.md, "Durable
processes").

A message goes to the incarnation's central socket once it is committed, in
mailbox order. Forwarding stops for an incarnation that does not read
(``st.held``, issue 10) and for one that missed messages another node
committed (a shared journal, issue 12): it then reads what it missed from the
journal (:func:`catch_up`), so no message is lost or overtaken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core import protocol as P
from . import protocol as D

if TYPE_CHECKING:
    from ..core.table import Proc
    from ..core.transport import Conn
    from .state import State
    from .writer import Writer

# How many committed messages one catch-up forwards at most, read from the
# journal _CATCH_UP_CHUNK at a time, until the forwarding window is full.
_CATCH_UP_ROWS = 256
_CATCH_UP_CHUNK = 4


def deliver(w: Writer, forwards: list[tuple[State, int, bytes]], acks: list[tuple[Proc, int]]) -> None:
    """Send a commit's forwards and acks: one write per process."""
    # Its forwarded messages, then its acks, so a durable process that sends
    # to itself finds the message when its send returns. Processes with an ack
    # go first: a sender waiting for its commit is woken before the receivers
    # are (one write per message was central's cost before,
    # bench/results/2026-11-22-durable-send-profile.txt).
    out: dict[Conn, list[list[Any]]] = {}
    for p, _req in acks:
        if p.conn is not None:
            out.setdefault(p.conn, [])
    sizes: dict[Conn, int] = {}
    held: list[tuple[State, Conn]] = []
    for st, seq, body in forwards:
        proc = st.proc
        if proc is None or not st.hello or st.held or seq <= st.fwd_seq or proc.conn is None:
            continue
        conn = proc.conn
        if conn.out_bytes + sizes.get(conn, 0) > D.FORWARD_WINDOW:
            st.held = True
            held.append((st, conn))
            continue
        out.setdefault(conn, []).append(D.message(seq, body))
        sizes[conn] = sizes.get(conn, 0) + len(body)
        st.fwd_seq = seq
    for p, req in acks:
        if p.conn is not None:
            out[p.conn].append(P.reply(req, None))
    for conn, frames in out.items():
        conn.send_frames(frames)
    for st, conn in held:
        wait_for_reader(w, st, conn)


# ``st.held``: forwarding to st's incarnation stopped, as over
# D.FORWARD_WINDOW bytes wait in its central socket (or it missed messages
# another node committed). Its messages are committed, so none is lost: once
# it has read what it has, the rest comes from the journal (catch_up).


def wait_for_reader(w: Writer, st: State, conn: Conn) -> None:
    if conn.out:
        conn.on_drained = lambda: catch_up(w, st, conn)
    else:
        w.loop.call_soon(catch_up, w, st, conn)


def catch_up(w: Writer, st: State, conn: Conn) -> None:
    conn.on_drained = None
    proc = st.proc
    if not st.held or proc is None or proc.conn is not conn or conn.closed or conn.eof or conn.overflowed:
        return  # caught up already, or that incarnation is ending: the next one starts from the journal
    # Rows after fwd_seq that are in the store are committed: their
    # forwards were skipped while held; later ones come with their commit.
    # Read a few at a time: a row may be a message of 1 GiB, and what is read
    # is held in memory (by the driver too) until it is sent.
    frames: list[list[Any]] = []
    size = 0
    while True:
        rows = w.store.mailbox_after(st.row.id, st.fwd_seq, _CATCH_UP_CHUNK)
        for seq, body in rows:
            frames.append(D.message(seq, body))
            size += len(body)
            st.fwd_seq = seq
        if len(rows) < _CATCH_UP_CHUNK:
            st.held = False  # caught up: forwarding goes on at the next commit
            break
        if size > D.FORWARD_WINDOW or len(frames) >= _CATCH_UP_ROWS:
            break
    if frames:
        conn.send_frames(frames)
    if st.held:
        wait_for_reader(w, st, conn)


def refill(w: Writer, st: State) -> None:
    """Forward what the journal has for st beyond what it was sent (other nodes' messages)."""
    proc = st.proc
    if proc is None or not st.hello or st.held or proc.conn is None:
        return  # not live yet: its replay reads the journal
    st.held = True
    wait_for_reader(w, st, proc.conn)


def numbered(
    w: Writer, forwards: list[tuple[State, int, bytes]], seqs: list[int | None]
) -> list[tuple[State, int, bytes]]:
    """The forwards of a commit to a shared journal, with the seqs the store gave their rows.

    A seq right after the last one known is forwarded as usual; one after a
    gap (another node's messages committed in between) makes the process read
    what it missed from the journal, in order (catch_up)."""
    out = []
    for st, row, body in forwards:
        seq = seqs[row]
        if seq is None:
            continue  # a repeated send the journal already had
        if seq == st.mailbox_seq + 1:
            out.append((st, seq, body))
            st.mailbox_seq = seq
        elif seq > st.mailbox_seq:
            st.mailbox_seq = seq
            refill(w, st)
    return out
