"""The ``occasional`` command (API.md section 9)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from .core.errors import ProcessExit


def _load(target: str) -> Callable[..., Any]:
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise SystemExit(f"occasional run: {target!r} is not MODULE:FUNCTION; write it like mypkg.jobs:main")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(f"occasional run: cannot import module {module_name!r}: {e}") from None
    try:
        f = getattr(module, func_name)
    except AttributeError:
        raise SystemExit(f"occasional run: module {module_name!r} has no function {func_name!r}") from None
    if not callable(f):
        raise SystemExit(f"occasional run: {target!r} is a {type(f).__name__}, not a function")
    return f


def _run(args: argparse.Namespace) -> int:
    from .core.runtime import run

    f = _load(args.target)
    try:
        value = run(f, *args.args)
    except ProcessExit as e:
        return _exit_status(e)
    if value is not None:
        print(value)
    return 0


def _exit_status(e: ProcessExit) -> int:
    """The status ``python app.py`` would end with had main ended this way (issue 10):
    ``n`` for ``("exitcode", n)`` (sys.exit(n), os._exit(n)), 128 + the signal's
    number for ``("signal", name)`` (as a shell reports it), 1 otherwise."""
    kind, detail = e.reason
    if kind == "exitcode" and isinstance(detail, int) and not isinstance(detail, bool):
        # Python prints nothing of its own for sys.exit(n); whatever the
        # process printed (sys.exit("message")) is already on stderr.
        return detail
    print(f"occasional run: {e}", file=sys.stderr)
    signum = getattr(signal, str(detail), None) if kind == "signal" else None
    if isinstance(signum, signal.Signals):
        return 128 + signum.value
    return 1


def _up(args: argparse.Namespace) -> int:
    from .up import ConfigError, load, serve

    try:
        plan = load(args.file)
    except ConfigError as e:
        print(f"occasional up: {e}", file=sys.stderr)
        return 2
    return serve(plan)


def _gateway(args: argparse.Namespace) -> int:
    from .core.runtime import runtime
    from .http.gateway import DEFAULT_MAX_BODY, GatewayError, import_programs, load_tokens, parse_listen, serve

    try:
        host, port = parse_listen(args.listen)
        tokens = load_tokens(args.tokens)
        import_programs([name for name in (args.programs or "").split(",") if name])
        if args.max_body is not None and args.max_body < 1:
            raise GatewayError(f"--max-body {args.max_body} is not a number of bytes >= 1")
    except GatewayError as e:
        print(f"occasional gateway: {e}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        print(f"occasional gateway: listening on {url}", flush=True)

    if port and not os.environ.get("OCC_GATEWAY_URL"):
        # What http.webhook_url() puts in its URLs, in every process of the runtime.
        os.environ["OCC_GATEWAY_URL"] = f"http://{host}:{port}"
    with runtime(journal=args.journal):
        serve(host, port, tokens, args.max_body or DEFAULT_MAX_BODY, ready)
    return 0


def _ps(args: argparse.Namespace) -> int:
    import json

    from .core.control import UnsafeDirectory, runtime_dir, runtimes

    try:
        scan = runtimes()
    except UnsafeDirectory as e:
        # Whoever can write there could serve us any table (issue 10): read nothing.
        print(f"occasional ps: not reading {e.path!r}: it {e.problem}; {e.fix}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"occasional ps: cannot read {runtime_dir()!r}: {e.strerror or e}", file=sys.stderr)
        return 1
    for why in scan.skipped:
        print(f"occasional ps: skipped {_printable(why)}", file=sys.stderr)
    found = scan.tables
    if args.runtime is not None:
        found = [t for t in found if args.runtime in (t.get("central"), t.get("owner"))]
    if args.json:
        print(json.dumps(found, indent=2))  # json escapes every control character itself
        return 0
    if not found:
        print(f"no running occasional runtime of this user (looked in {_printable(runtime_dir())})")
        return 0
    for n, table in enumerate(found):
        if n:
            print()
        command = " ".join(str(a) for a in table.get("command") or []) or "?"
        print(_printable(f"runtime {table.get('central')} (started by pid {table.get('owner')}: {command})"))
        print(_format_rows(table["processes"]))
    return 0


def _format_rows(rows: list[dict[str, Any]]) -> str:
    header = ("PID", "NAME", "FUNCTION / ARGV", "STATE", "RESTARTS", "UPTIME", "RSS")
    lines = [header]
    for r in sorted(rows, key=lambda r: r["id"]):
        name = _printable(
            r["name"] or r["child_id"] or ("(runtime's owner)" if r["kind"] == "owner" else f"<{r['id']}>")
        )
        what = _printable(" ".join(str(a) for a in r["argv"]) if r["argv"] else r["function"] or "")
        pid = str(r["os_pid"] or "-")
        if r["kind"] == "port":
            what = "port: " + what
            pid += f">{r['exe_pid']}" if r.get("exe_pid") else ""
        lines.append(
            (
                _printable(pid),
                name,
                what if len(what) <= 60 else what[:57] + "...",
                _printable(r["state"]),
                _printable(r["restarts"]),
                _duration(r["uptime_s"]),
                _size(r["rss_bytes"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _printable(value: object) -> str:
    """``value`` as text a terminal shows as is: every character that is not
    printable (ESC, newlines, bidi overrides...) is written as in a Python
    literal (``\\x1b``, ``\\n``, ``\\u202e``), and so is a backslash, so a
    name or an argv can neither drive the terminal nor forge a row (issue 10)."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_ESCAPES.get(c) or (c if c.isprintable() else repr(c)[1:-1]) for c in text)


def _duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f}M"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="occasional",
        description="Erlang-style processes for Python, where every process is a real Linux process.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_p = commands.add_parser(
        "run",
        help="run MODULE:FUNCTION as the main process of a new runtime",
        description="Start a runtime and run FUNCTION(*ARGS) from MODULE as its first process "
        "(ARGS are passed as strings). Prints the return value if it is not None and exits 0. "
        "Like python, exits N when the process ended with status N (sys.exit(N), os._exit(N)), "
        "1 with the traceback on an uncaught exception, 128+SIG when killed by a signal, "
        "and 1 with the reason for any other abnormal end.",
    )
    run_p.add_argument("target", metavar="MODULE:FUNCTION")
    run_p.add_argument("args", nargs="*", metavar="ARGS")
    run_p.set_defaults(handler=_run)
    up_p = commands.add_parser(
        "up",
        help="run the services declared in FILE.toml as one supervision tree",
        description="Start every service of FILE.toml (executables and Python functions) under one "
        "supervisor, restart them as the file says, and stop them all, in reverse start order, on "
        "SIGTERM or Ctrl-C (exit 0). A file that cannot run is refused before anything starts (exit 2); "
        "exit 1 if a service cannot start or the supervisor gives up. The format is described in "
        "occasional/up/serve.py and examples/services.toml.",
    )
    up_p.add_argument("file", metavar="FILE.toml")
    up_p.set_defaults(handler=_up)
    ps_p = commands.add_parser(
        "ps",
        help="list the processes of the running runtimes of this user",
        description="For each running runtime of this user (occasional up, occasional run, any occ.run "
        "or occ.start program), print each process: pid, name (or <id>), function or argv, state, "
        "restarts, uptime and RSS; a port's PID reads PORT>EXECUTABLE (the port's process, then the "
        "executable it runs). Runtimes are found by their control sockets in "
        "$XDG_RUNTIME_DIR/occasional (or /tmp/occasional-UID), read only if that directory is this "
        "user's and nobody else can write to it (exit 1 otherwise); a socket that does not answer "
        "within 5 s, or that another user serves, is skipped and named on stderr.",
    )
    ps_p.add_argument(
        "runtime",
        nargs="?",
        type=int,
        metavar="PID",
        help="only the runtime whose central services or owner has this pid",
    )
    ps_p.add_argument("--json", action="store_true", help="print JSON, for scripts")
    ps_p.set_defaults(handler=_ps)
    gw_p = commands.add_parser(
        "gateway",
        help="serve HTTP into the mailboxes of a journal's durable processes",
        description="Start a runtime on JOURNAL (resuming its durable processes) and serve HTTP: "
        "POST /processes/ID/messages delivers the JSON body to that durable process (202 once "
        "committed); GET /processes/ID gives its state and result. Every request needs "
        "Authorization: Bearer TOKEN, a token of OCC_GATEWAY_TOKEN or of --tokens FILE, but for "
        "POSTs to the signed URLs of http.webhook_url() (OCC_GATEWAY_SECRET signs them; "
        "OCC_GATEWAY_URL, by default http://HOST:PORT of --listen, is their address). Stops on "
        "SIGTERM or Ctrl-C (exit 0); exit 2 when it cannot start as asked (API.md section 14).",
    )
    gw_p.add_argument("--journal", required=True, metavar="JOURNAL", help="a journal path or postgresql:// URL")
    gw_p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    gw_p.add_argument("--tokens", metavar="FILE", help="the tokens requests may carry, one per line")
    gw_p.add_argument("--max-body", type=int, metavar="BYTES", help="the largest body taken (default 1 MiB)")
    gw_p.add_argument(
        "--programs",
        metavar="MODULE[,MODULE]",
        help="modules whose @occasional.http.program functions POST /processes may start",
    )
    gw_p.set_defaults(handler=_gateway)
    from .durable.cli import add_journal_command

    add_journal_command(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
