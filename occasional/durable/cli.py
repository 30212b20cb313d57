"""``occasional journal ls|show|replay``: look into a journal (API.md section 9)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import msgpack

from ..core import codec
from .store import Reader, sqlite_path

_WIDTH = 70


def add_journal_command(commands: Any) -> None:
    """Add ``journal`` to the ``occasional`` command's subcommands."""
    journal_p = commands.add_parser(
        "journal",
        help="look into a journal of durable processes",
        description="List the durable processes of a journal, show one's history, or replay it "
        "against the current code with no side effects.",
    )
    sub = journal_p.add_subparsers(dest="journal_command", metavar="SUBCOMMAND", required=True)
    ls_p = sub.add_parser("ls", help="every durable process of the journal: id, status, events, messages, function")
    ls_p.add_argument("path", metavar="PATH")
    ls_p.set_defaults(handler=_ls)
    show_p = sub.add_parser("show", help="the history of one durable process: seq, kind, name, a short body")
    show_p.add_argument("path", metavar="PATH")
    show_p.add_argument("id", metavar="ID")
    show_p.set_defaults(handler=_show)
    replay_p = sub.add_parser(
        "replay",
        help="replay a durable process's journal against the current code, with no side effects",
        description="Run the process's function against its journal: steps return their recorded "
        "outcomes, receives their recorded messages, sends and sleeps do nothing. Exits 1 and shows the "
        "first NonDeterminism if the code no longer takes the recorded path (for CI); 0 otherwise.",
    )
    replay_p.add_argument("path", metavar="PATH")
    replay_p.add_argument("id", metavar="ID")
    replay_p.set_defaults(handler=_replay)


def _open(path: str) -> Reader:
    try:
        return Reader(sqlite_path(path))
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"occasional journal: {e}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _load(body: bytes) -> Any:
    try:
        return codec.loads(body)
    except Exception:
        return _Opaque(len(body))


class _Opaque:
    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"<{self.n} bytes this interpreter cannot decode>"


def _reason(raw: bytes | None) -> str:
    if raw is None:
        return ""
    kind, detail = msgpack.unpackb(raw)
    return _short((kind, _load(detail)))


def _ls(args: argparse.Namespace) -> int:
    with _open(args.path) as reader:
        counts = reader.counts()
        rows = reader.processes()
        print(f"{'ID':<20} {'STATUS':<8} {'EVENTS':>7} {'MESSAGES':>8}  FUNCTION / REASON")
        for row in rows:
            events, messages = counts.get(row.id, (0, 0))
            status = row.status
            if status == "asleep" and row.wake_at:
                status = f"asleep (wakes in {max(0.0, row.wake_at - time.time()):.0f} s)"
            tail = row.function + (f"  {_reason(row.reason)}" if row.reason else "")
            print(f"{row.id:<20} {status:<8} {events:>7} {messages:>8}  {tail}")
    return 0


def _body(kind: str, body: bytes, mailbox: dict[int, bytes]) -> str:
    if kind == "receive":
        seq = msgpack.unpackb(body)
        if seq is None:
            return "timed out"
        return f"#{seq} {_short(_load(mailbox[seq])) if seq in mailbox else '?'}"
    if kind in ("now", "random", "uuid4", "sleep", "step.attempt"):
        value = msgpack.unpackb(body)
        if kind == "sleep":
            return f"until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))}"
        return _short(value) if kind != "step.attempt" else f"attempt {value}"
    if kind == "step":
        ok, value = _load(body)[:2] if not isinstance(_load(body), _Opaque) else (True, _load(body))
        return _short(value) if ok else f"raised {_short(value)}"
    if kind == "step.retry":
        loaded = _load(body)
        if isinstance(loaded, _Opaque):
            return repr(loaded)
        failures, exc, until = loaded
        return f"failure {failures}: {_short(exc)}, next attempt at {time.strftime('%H:%M:%S', time.localtime(until))}"
    if kind == "send":
        loaded = _load(body)
        return f"send #{loaded}" if isinstance(loaded, int) else _short(loaded)
    return _short(_load(body))


def _show(args: argparse.Namespace) -> int:
    with _open(args.path) as reader:
        row = reader.process(args.id)
        if row is None:
            print(f"occasional journal show: the journal {args.path!r} has no durable process {args.id!r}; "
                  "`occasional journal ls PATH` lists them", file=sys.stderr)
            return 1
        mailbox = {seq: body for seq, _sender, _send_seq, body in reader.mailbox(args.id)}
        print(f"{row.id}: {row.function}, {row.status}" + (f", {_reason(row.reason)}" if row.reason else ""))
        print(f"{'SEQ':>6}  {'KIND':<13} {'NAME':<20} BODY")
        for seq, kind, name, body in reader.events(args.id):
            print(f"{seq:>6}  {kind:<13} {name:<20} {_body(kind, body, mailbox)}")
        taken = {msgpack.unpackb(body) for _s, kind, _n, body in reader.events(args.id) if kind == "receive"}
        left = [(seq, body) for seq, body in mailbox.items() if seq not in taken]
        if left:
            print(f"mailbox, not received yet ({len(left)}):")
            for seq, body in left:
                print(f"{'#' + str(seq):>6}  {_short(_load(body))}")
    return 0


def _check(path: str, id: str) -> tuple[str, str]:
    """Runs as a process: replay ``id`` against the current code, check only."""
    from . import replay
    from .errors import JournalEnd, NonDeterminism

    with Reader(path) as reader:
        row = reader.process(id)
        events = len(reader.events(id))
    if row is None:
        return ("unknown", "")
    _run, (_id, f, fargs) = codec.load_function(row.blob)
    try:
        value = replay.run(id, f, fargs, check_path=path)
        return ("ok", f"the code takes the recorded path through all {events} events and returns {_short(value)}")
    except JournalEnd:
        return ("ok", f"the code takes the recorded path through all {events} events; a live run would go on from there")
    except NonDeterminism as e:
        return ("nondeterminism", f"NonDeterminism: {e}")
    except BaseException as e:
        recorded = _reason(row.reason)
        return ("raised", f"the replay raised {e!r} (the journal records {recorded or 'no end yet'})")


def _replay(args: argparse.Namespace) -> int:
    import occasional as occ

    path = sqlite_path(args.path)
    _open(path).close()
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the journal's modules in the current directory
    status, text = occ.run(_check, path, args.id)
    if status == "unknown":
        print(f"occasional journal replay: the journal {args.path!r} has no durable process {args.id!r}",
              file=sys.stderr)
        return 1
    print(f"{args.id}: {text}")
    return 0 if status == "ok" else 1
