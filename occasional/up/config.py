"""The services file of ``occasional up`` (API.md section 9): its format, and how a service is read.

A services file declares services; ``occasional up`` (occasional.up)
makes each a child of one ``one_for_one`` Supervisor, registered under its
service name, so that ``occasional ps`` shows it:

    intensity = 5               # more than 5 restarts within period seconds
    period = 10                 # stop everything (defaults 5 and 10)
    backoff = [0.5, 10]         # optional: delay of repeated restarts, every service

    [services.web]              # a port: a native executable
    argv = ["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"]
    stdout = "logs/web.log"     # or {path = ..., max_bytes = ..., backups = ...}
    stderr = "stdout"

    [services.worker]           # a process: a Python function
    function = "services_worker:work"
    args = [2.0]
    after = ["web"]

Top-level keys: ``intensity`` (int >= 0, default 5) and ``period`` (seconds
> 0, default 10): more restarts than that end the tree; ``backoff = [first_s,
max_s]`` (default none: restart at once) for every service; ``services``.
The runtime's options, as ``occ.run`` takes them: ``journal`` (a file path,
relative to the file's directory, or a ``postgresql://`` URL: the services'
durable processes), ``journal_sync`` and ``lease`` (a PostgreSQL journal's
node lease, API.md section 11).

A service, ``[services.NAME]`` (NAME: letters, digits, ``_ . -``), has
exactly one of ``argv`` (a list of strings; a bare name is looked up on PATH,
a path with a slash is relative to the service's cwd) or ``function``
(``"module:function"``, imported with the file's directory on sys.path) with
``args`` (a list, passed positionally), and may have:

- ``restart``: ``"permanent"`` (default), ``"transient"``, ``"temporary"``;
- ``backoff = [first_s, max_s]``: its own, instead of the file's (it then
  runs under a one-child supervisor of its own, with the file's intensity
  and period; when that one gives up, the root restarts it, counting one);
- ``shutdown``: seconds (default 5) a port gets after SIGTERM (a function
  that does not trap exits ends at once) before SIGKILL, or ``"brutal_kill"``;
- ``env = { NAME = "value" }``: added to the environment of ``occasional up``
  (numbers are written as strings);
- ``cwd``: relative to the file's directory, which is the default;
- ``after = ["other", ...]``: start only once those run (a port: its
  executable was started; a function: its process is registered), stop
  before them;
- ``stdout``: ``"inherit"`` (default), a file path (relative to the file's
  directory), or ``{ path = ..., max_bytes = 10485760, backups = 5 }``,
  rotated by size between lines (``backups`` at most 1000); created 0640,
  never written through a symlink; ``stderr``: the same, or ``"stdout"``.

The file is checked whole before anything starts (``load``); every error
names the file, the line where it can be found, the key, and the fix.
``Plan.services`` is in an order that honours ``after`` (file order
otherwise): the Supervisor starts its children in list order and stops them
in reverse, so a service starts after what it names and stops before it.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..behaviours.specs import RESTARTS
from ..core.checks import is_count, is_seconds
from ..ports.logfile import LogFile
from .checks import (
    Checker,
    ConfigError as ConfigError,
    check_backoff,
    check_executable,
    check_function,
    check_logs_apart,
    check_output,
    start_order,
    syntax_error,
)

# The keys that are options of the runtime the services run in (API.md sections 7 and 11).
RUNTIME_KEYS = ("journal", "journal_sync", "lease", "node", "cookie", "net_ticktime")
TOP_KEYS = ("services", "intensity", "period", "backoff", *RUNTIME_KEYS)
SERVICE_KEYS = ("argv", "function", "args", "restart", "backoff", "shutdown", "env", "cwd", "after", "stdout", "stderr")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Service:
    """One checked ``[services.NAME]`` table; paths are absolute."""

    name: str
    argv: tuple[str, ...] | None
    function: str | None
    args: tuple[Any, ...]
    restart: str
    backoff: tuple[float, float] | None
    shutdown: float | str
    env: dict[str, str]
    cwd: str
    after: tuple[str, ...]
    stdout: LogFile | str  # a LogFile or "inherit"
    stderr: LogFile | str  # a LogFile, "inherit" or "stdout"


@dataclass(frozen=True)
class Plan:
    """A checked services file: the services in start order, and the tree's options."""

    path: str
    directory: str
    services: tuple[Service, ...]
    intensity: int = 5
    period: float = 10.0
    backoff: tuple[float, float] | None = None
    # Options of the runtime (journal, journal_sync, lease), checked as occ.run checks them.
    options: dict[str, Any] = field(default_factory=dict)


def load(path: str) -> Plan:
    """Read and check a services file; nothing starts.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or declares
            something that cannot run (an unknown key, a bad value, an
            ``after`` naming an unknown service, a cycle of ``after``).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, f"cannot read it ({e.strerror}); give the path of a services file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, f"is not UTF-8 text ({e}); TOML files are UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise syntax_error(path, text, str(e)) from None
    c = Checker(path, text)
    c.unknown_keys((), doc, TOP_KEYS)
    intensity = doc.get("intensity", 5)
    if not is_count(intensity):
        raise c.fail(
            ("intensity",), f"{intensity!r} is not a number of restarts; use an integer >= 0, e.g. intensity = 5"
        )
    period = doc.get("period", 10.0)
    if not is_seconds(period, positive=True):
        raise c.fail(("period",), f"{period!r} is not a period; use seconds > 0, e.g. period = 10")
    backoff = check_backoff(c, ("backoff",), doc.get("backoff"))
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        raise c.fail(
            ("services",),
            'no services are declared; add a table like [services.web] with argv = [...] or function = "module:function"',
        )
    checked = {name: _service(c, name, table, backoff) for name, table in services.items()}
    for svc in checked.values():
        for other in svc.after:
            if other not in checked:
                close = difflib.get_close_matches(other, list(checked), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise c.fail(
                    ("services", svc.name, "after"),
                    f"{other!r} is not a service of this file; {hint}name one of {', '.join(checked)}",
                )
            if other == svc.name:
                raise c.fail(("services", svc.name, "after"), f"a service cannot start after itself; remove {other!r}")
    check_logs_apart(c, list(checked.values()))
    order = start_order(c, checked)
    options = _runtime_options(c, doc)
    return Plan(os.path.abspath(path), c.directory, tuple(order), int(intensity), float(period), backoff, options)


def _runtime_options(c: Checker, doc: dict[str, Any]) -> dict[str, Any]:
    """``journal`` (a path relative to the file's directory, or a postgresql:// URL),
    ``journal_sync``, ``lease``, and a node's ``node``, ``cookie`` and
    ``net_ticktime``, checked by the runtime's own option checks."""
    from ..core.runtime import check_options
    from ..durable.store import is_postgres

    options = {key: doc[key] for key in RUNTIME_KEYS if key in doc}
    journal = options.get("journal")
    if journal is not None:
        if not isinstance(journal, str) or not journal:
            raise c.fail(
                ("journal",),
                f"{journal!r} is not a journal; give a file path (relative to this file's directory) "
                'or a PostgreSQL URL, e.g. journal = "postgresql://host/db"',
            )
        if not is_postgres(journal):
            options["journal"] = os.path.join(c.directory, journal)
    try:
        check_options("occasional up", options)
    except (TypeError, ValueError) as e:
        key = next(k for k in reversed(RUNTIME_KEYS) if f"{k}=" in str(e) and k in options)
        raise c.fail((key,), str(e).removeprefix("occasional up: ")) from None
    return options


def _service(c: Checker, name: str, table: Any, default_backoff: tuple[float, float] | None) -> Service:
    keys = ("services", name)
    if not _NAME.match(name):
        raise c.fail(
            keys,
            f"{name!r} is not a service name; use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    if not isinstance(table, dict):
        raise c.fail(
            keys,
            f'services.{name} = {table!r} is not a table; write it as [services.{name}] with argv = [...] or function = "module:function"',
        )
    c.unknown_keys(keys, table, SERVICE_KEYS)
    if ("argv" in table) == ("function" in table):
        raise c.fail(
            keys, 'give exactly one of argv = [...] (an executable) or function = "module:function" (a Python function)'
        )
    cwd = _cwd(c, keys, table)
    env = _env(c, keys, table)
    argv, function, args = _command(c, keys, table, cwd, env)
    restart, shutdown, after = _lifecycle(c, keys, table)
    stdout = check_output(c, (*keys, "stdout"), table.get("stdout", "inherit"), ("inherit",))
    stderr = check_output(c, (*keys, "stderr"), table.get("stderr", "inherit"), ("inherit", "stdout"))
    if isinstance(stdout, LogFile) and stderr == stdout:
        stderr = "stdout"  # one file, one writer: merged as stderr = "stdout" would
    backoff = check_backoff(c, (*keys, "backoff"), table["backoff"]) if "backoff" in table else default_backoff
    return Service(name, argv, function, args, restart, backoff, shutdown, env, cwd, after, stdout, stderr)


def _cwd(c: Checker, keys: tuple[str, ...], table: dict[str, Any]) -> str:
    """The service's cwd, absolute: relative to the file's directory, which is the default."""
    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str) or not cwd:
        raise c.fail((*keys, "cwd"), f"{cwd!r} is not a directory; give a path, relative to the file's directory")
    cwd = os.path.normpath(os.path.join(c.directory, cwd))
    if not os.path.isdir(cwd):
        raise c.fail(
            (*keys, "cwd"), f"{cwd!r} is not a directory; create it or fix the path (relative to {c.directory!r})"
        )
    return cwd


def _env(c: Checker, keys: tuple[str, ...], table: dict[str, Any]) -> dict[str, str]:
    """What the service adds to the environment; numbers are written as strings."""
    env = table.get("env", {})
    if not isinstance(env, dict):
        raise c.fail((*keys, "env"), f'{env!r} is not a table; write env = {{ NAME = "value" }}')
    checked_env: dict[str, str] = {}
    for var, value in env.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            shown = str(value).lower() if isinstance(value, bool) else value
            raise c.fail(
                (*keys, "env", var),
                f'{value!r} is not an environment value; write it as a string, e.g. {var} = "{shown}"',
            )
        if "=" in var or "\0" in var or not var:
            raise c.fail((*keys, "env", var), f"{var!r} is not an environment variable name; use a name without '=' ")
        checked_env[var] = str(value)
    return checked_env


def _command(
    c: Checker, keys: tuple[str, ...], table: dict[str, Any], cwd: str, env: dict[str, str]
) -> tuple[tuple[str, ...] | None, str | None, tuple[Any, ...]]:
    """``(argv, None, ())`` for a port, ``(None, "module:function", args)`` for a function."""
    if "argv" in table:
        raw = table["argv"]
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw) or not raw[0]:
            raise c.fail(
                (*keys, "argv"),
                f'{raw!r} is not a command; write a list of strings, the executable first, e.g. argv = ["python3", "-m", "http.server"]',
            )
        if "args" in table:
            raise c.fail((*keys, "args"), "args goes with function; put an executable's arguments in argv")
        return (check_executable(c, (*keys, "argv"), raw[0], cwd, env), *raw[1:]), None, ()
    function = table["function"]
    check_function(c, (*keys, "function"), function)
    raw_args = table.get("args", [])
    if not isinstance(raw_args, list):
        raise c.fail((*keys, "args"), f'{raw_args!r} is not a list; write args = [1, "two"]')
    return None, function, tuple(raw_args)


def _lifecycle(c: Checker, keys: tuple[str, ...], table: dict[str, Any]) -> tuple[str, float | str, tuple[str, ...]]:
    """``(restart, shutdown, after)``: how the service is restarted, stopped and ordered."""
    restart = table.get("restart", "permanent")
    if restart not in RESTARTS:
        raise c.fail(
            (*keys, "restart"), f'{restart!r} is not a restart type; use "permanent", "transient" or "temporary"'
        )
    shutdown = table.get("shutdown", 5.0)
    if shutdown != "brutal_kill" and not is_seconds(shutdown, forever=True):
        raise c.fail(
            (*keys, "shutdown"),
            f'{shutdown!r} is not a shutdown; use seconds >= 0 (e.g. shutdown = 5) or "brutal_kill"',
        )
    after = table.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise c.fail((*keys, "after"), f'{after!r} is not a list of service names; write after = ["db"]')
    return restart, shutdown if isinstance(shutdown, str) else float(shutdown), tuple(dict.fromkeys(after))
