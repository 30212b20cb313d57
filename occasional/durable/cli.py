"""``occasional journal ls|show|replay``: look into a journal (API.md section 9).

``ls`` and ``show`` run no code from the journal (API.md section 10): values
that travelled as dill pickles are printed as ``<dill, N bytes>`` unless
``--trust`` is given, since unpickling runs whatever the pickle says. The rest
of a body (msgpack and our extension types) is plain data and is decoded.
``replay`` runs the journal's code by design, as a resume would.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack

from ..core import codec
from .store import Reader, journal_name

_WIDTH = 70
# Either store (issue 12): the journal string picks it, as journal= does.
_PATH_HELP = "the journal: an SQLite file, or a postgresql:// URL"


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
    ls_p.add_argument("path", metavar="PATH", help=_PATH_HELP)
    ls_p.set_defaults(handler=_ls)
    show_p = sub.add_parser("show", help="the history of one durable process: seq, kind, name, a short body")
    show_p.add_argument("path", metavar="PATH", help=_PATH_HELP)
    show_p.add_argument("id", metavar="ID")
    show_p.set_defaults(handler=_show)
    for p in (ls_p, show_p):
        p.add_argument(
            "--trust",
            action="store_true",
            help="decode values stored as dill pickles too; unpickling runs code from the journal, so only "
            "for a journal you trust (without it they show as <dill, N bytes>)",
        )
    replay_p = sub.add_parser(
        "replay",
        help="replay a durable process's journal against the current code, with no side effects",
        description="Run the process's function against its journal: steps return their recorded "
        "outcomes, receives their recorded messages, sends and sleeps do nothing. Exits 1 and shows the "
        "first NonDeterminism if the code no longer takes the recorded path (for CI); 0 otherwise.",
    )
    replay_p.add_argument("path", metavar="PATH", help=_PATH_HELP)
    replay_p.add_argument("id", metavar="ID")
    replay_p.set_defaults(handler=_replay)


def _open(path: str, command: str) -> Reader:
    try:
        return Reader(journal_name(path))
    except (OSError, ValueError, RuntimeError) as e:
        # Exit 2, as `occasional up` for a file it refuses: nothing was read.
        print(f"occasional journal {command}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _decoder(trust: bool) -> Callable[[bytes], Any]:
    """How bodies are decoded: with ``--trust`` as a process would, else without running code."""
    decode = codec.loads if trust else codec.loads_inert

    def load(body: bytes) -> Any:
        try:
            return decode(body)
        except Exception:
            return _Opaque(len(body))

    return load


class _Opaque:
    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"<{self.n} bytes this interpreter cannot decode>"


def _reason(raw: bytes | None, load: Callable[[bytes], Any]) -> str:
    if raw is None:
        return ""
    kind, detail = msgpack.unpackb(raw)
    return _short((kind, load(detail)))


def _ls(args: argparse.Namespace) -> int:
    load = _decoder(args.trust)
    with _open(args.path, "ls") as reader:
        counts = reader.counts()
        rows = reader.processes()
        print(f"{'ID':<20} {'STATUS':<8} {'EVENTS':>7} {'MESSAGES':>8}  FUNCTION / REASON")
        for row in rows:
            events, messages = counts.get(row.id, (0, 0))
            status = row.status
            if status == "asleep" and row.wake_at:
                status = f"asleep (wakes in {max(0.0, row.wake_at - time.time()):.0f} s)"
            tail = row.function + (f"  {_reason(row.reason, load)}" if row.reason else "")
            print(f"{row.id:<20} {status:<8} {events:>7} {messages:>8}  {tail}")
    return 0


def _body(kind: str, body: bytes, mailbox: dict[int, bytes], load: Callable[[bytes], Any]) -> str:
    if kind == "receive":
        seq = msgpack.unpackb(body)
        if seq is None:
            return "timed out"
        return f"#{seq} {_short(load(mailbox[seq])) if seq in mailbox else '?'}"
    if kind in ("now", "random", "uuid4", "sleep", "step.attempt"):
        value = msgpack.unpackb(body)
        if kind == "sleep":
            return f"until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))}"
        return _short(value) if kind != "step.attempt" else f"attempt {value}"
    loaded = load(body)
    if kind == "step":
        if isinstance(loaded, _Opaque):
            return repr(loaded)
        ok, value = loaded[:2]
        return _short(value) if ok else f"raised {_short(value)}"
    if kind == "step.retry":
        if isinstance(loaded, _Opaque):
            return repr(loaded)
        failures, exc, until = loaded
        return f"failure {failures}: {_short(exc)}, next attempt at {time.strftime('%H:%M:%S', time.localtime(until))}"
    if kind == "send":
        return f"send #{loaded}" if isinstance(loaded, int) else _short(loaded)
    return _short(loaded)


def _show(args: argparse.Namespace) -> int:
    load = _decoder(args.trust)
    with _open(args.path, "show") as reader:
        row = reader.process(args.id)
        if row is None:
            print(
                f"occasional journal show: the journal {args.path!r} has no durable process {args.id!r}; "
                "`occasional journal ls PATH` lists them",
                file=sys.stderr,
            )
            return 1
        mailbox = {seq: body for seq, _sender, _send_seq, body in reader.mailbox(args.id)}
        print(f"{row.id}: {row.function}, {row.status}" + (f", {_reason(row.reason, load)}" if row.reason else ""))
        print(f"{'SEQ':>6}  {'KIND':<13} {'NAME':<20} BODY")
        events = reader.events(args.id)
        for seq, kind, name, body in events:
            try:
                text = _body(kind, body, mailbox, load)
            except Exception:  # an entry of another shape than its kind's: still print every entry
                text = repr(_Opaque(len(body)))
            print(f"{seq:>6}  {kind:<13} {name:<20} {text}")
        taken = {msgpack.unpackb(body) for _s, kind, _n, body in events if kind == "receive"}
        left = [(seq, body) for seq, body in mailbox.items() if seq not in taken]
        if left:
            print(f"mailbox, not received yet ({len(left)}):")
            for seq, body in left:
                print(f"{'#' + str(seq):>6}  {_short(load(body))}")
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
        return (
            "ok",
            f"the code takes the recorded path through all {events} events; a live run would go on from there",
        )
    except NonDeterminism as e:
        return ("nondeterminism", f"NonDeterminism: {e}")
    except BaseException as e:
        recorded = _reason(row.reason, _decoder(True))
        return ("raised", f"the replay raised {e!r} (the journal records {recorded or 'no end yet'})")


def _replay(args: argparse.Namespace) -> int:
    from ..core.runtime import run

    path = journal_name(args.path)
    _open(path, "replay").close()
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the journal's modules in the current directory
    status, text = run(_check, path, args.id)
    if status == "unknown":
        print(
            f"occasional journal replay: the journal {args.path!r} has no durable process {args.id!r}", file=sys.stderr
        )
        return 1
    print(f"{args.id}: {text}")
    return 0 if status == "ok" else 1
