"""The services file of ``occasional up`` (API.md section 9): its format and its checks.

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
import importlib
import math
import os
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from typing import Any

from ..behaviours.supervisor import RESTARTS
from ..ports.logfile import MAX_BACKUPS, LogFile

TOP_KEYS = ("services", "intensity", "period", "backoff")
SERVICE_KEYS = ("argv", "function", "args", "restart", "backoff", "shutdown", "env", "cwd", "after", "stdout", "stderr")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """A services file that cannot be run: where the problem is, what it is, what to do."""

    def __init__(self, path: str, problem: str, key: str | None = None, line: int | None = None) -> None:
        super().__init__(path, problem, key, line)
        self.path = path
        self.problem = problem
        self.key = key
        self.line = line

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


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


# ---------------------------------------------------------------- checking a file


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        self.lines = _key_lines(text)

    def fail(self, keys: tuple[str, ...], problem: str) -> ConfigError:
        line = None
        for n in range(len(keys), 0, -1):  # the key's line, else its table's
            line = self.lines.get(keys[:n])
            if line is not None:
                break
        return ConfigError(self.path, problem, ".".join(keys) if keys else None, line)

    def unknown_keys(self, keys: tuple[str, ...], table: dict[str, Any], known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail((*keys, key), f"unknown key {key!r}; {hint}the keys here are {', '.join(known)}")


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
        raise _syntax_error(path, text, str(e)) from None
    c = _Checker(path, text)
    c.unknown_keys((), doc, TOP_KEYS)
    intensity = doc.get("intensity", 5)
    if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
        raise c.fail(
            ("intensity",), f"{intensity!r} is not a number of restarts; use an integer >= 0, e.g. intensity = 5"
        )
    period = doc.get("period", 10.0)
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not 0 < period < math.inf:
        raise c.fail(("period",), f"{period!r} is not a period; use seconds > 0, e.g. period = 10")
    backoff = _backoff(c, ("backoff",), doc.get("backoff"))
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
    _check_logs_apart(c, list(checked.values()))
    order = _start_order(c, checked)
    return Plan(os.path.abspath(path), c.directory, tuple(order), int(intensity), float(period), backoff)


def _syntax_error(path: str, text: str, message: str) -> ConfigError:
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        return ConfigError(
            path, f"not valid TOML: {message[: m.start()]} at column {col}; fix the syntax on line {line}", line=line
        )
    m = re.search(r"\s*\(at end of document\)$", message)
    if m:
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        return ConfigError(
            path, f"not valid TOML: {message[: m.start()]} at the end of the file; close what is left open", line=line
        )
    return ConfigError(path, f"not valid TOML: {message}; fix the syntax")


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Best effort: the line of each ``[table]`` header and ``key =`` in it.

    Only for error messages; what tomllib parsed is what counts.
    """
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    assignment = re.compile(r"^\s*(\"[^\"]*\"|[A-Za-z0-9_.-]+)\s*=")
    for n, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            table = tuple(part.strip().strip('"') for part in m.group(1).split("."))
            found.setdefault(table, n)
            continue
        m = assignment.match(line)
        if m:
            key = (
                tuple(part.strip('"') for part in m.group(1).split("."))
                if not m.group(1).startswith('"')
                else (m.group(1).strip('"'),)
            )
            found.setdefault((*table, *key), n)
    return found


def _backoff(c: _Checker, keys: tuple[str, ...], value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        and 0 < value[0] <= value[1] < math.inf
    ):
        raise c.fail(
            keys,
            f"{value!r} is not a backoff; use [first_s, max_s] with 0 < first_s <= max_s, e.g. backoff = [0.5, 10]",
        )
    return float(value[0]), float(value[1])


def _service(c: _Checker, name: str, table: Any, default_backoff: tuple[float, float] | None) -> Service:
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

    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str) or not cwd:
        raise c.fail((*keys, "cwd"), f"{cwd!r} is not a directory; give a path, relative to the file's directory")
    cwd = os.path.normpath(os.path.join(c.directory, cwd))
    if not os.path.isdir(cwd):
        raise c.fail(
            (*keys, "cwd"), f"{cwd!r} is not a directory; create it or fix the path (relative to {c.directory!r})"
        )

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

    argv: tuple[str, ...] | None = None
    function: str | None = None
    args: tuple[Any, ...] = ()
    if "argv" in table:
        raw = table["argv"]
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw) or not raw[0]:
            raise c.fail(
                (*keys, "argv"),
                f'{raw!r} is not a command; write a list of strings, the executable first, e.g. argv = ["python3", "-m", "http.server"]',
            )
        if "args" in table:
            raise c.fail((*keys, "args"), "args goes with function; put an executable's arguments in argv")
        argv = (_executable(c, (*keys, "argv"), raw[0], cwd, checked_env), *raw[1:])
    else:
        function = table["function"]
        _check_function(c, (*keys, "function"), function)
        raw_args = table.get("args", [])
        if not isinstance(raw_args, list):
            raise c.fail((*keys, "args"), f'{raw_args!r} is not a list; write args = [1, "two"]')
        args = tuple(raw_args)

    restart = table.get("restart", "permanent")
    if restart not in RESTARTS:
        raise c.fail(
            (*keys, "restart"), f'{restart!r} is not a restart type; use "permanent", "transient" or "temporary"'
        )
    shutdown = table.get("shutdown", 5.0)
    if shutdown != "brutal_kill" and (
        isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)) or not 0 <= shutdown < math.inf
    ):
        raise c.fail(
            (*keys, "shutdown"),
            f'{shutdown!r} is not a shutdown; use seconds >= 0 (e.g. shutdown = 5) or "brutal_kill"',
        )
    after = table.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise c.fail((*keys, "after"), f'{after!r} is not a list of service names; write after = ["db"]')
    stdout = _output(c, (*keys, "stdout"), table.get("stdout", "inherit"), ("inherit",))
    stderr = _output(c, (*keys, "stderr"), table.get("stderr", "inherit"), ("inherit", "stdout"))
    if isinstance(stdout, LogFile) and stderr == stdout:
        stderr = "stdout"  # one file, one writer: merged as stderr = "stdout" would
    backoff = _backoff(c, (*keys, "backoff"), table["backoff"]) if "backoff" in table else default_backoff
    return Service(
        name,
        argv,
        function,
        args,
        restart,
        backoff,
        shutdown if isinstance(shutdown, str) else float(shutdown),
        checked_env,
        cwd,
        tuple(dict.fromkeys(after)),
        stdout,
        stderr,
    )


def _executable(c: _Checker, keys: tuple[str, ...], exe: str, cwd: str, env: dict[str, str]) -> str:
    """Check that the executable exists, as the port will look it up; a path with a
    slash is made absolute against the service's cwd (as subprocess does)."""
    if "/" in exe:
        full = os.path.join(cwd, exe)
        if not os.path.isfile(full):
            raise c.fail(
                keys,
                f"the executable {exe!r} does not exist (looked for {full!r}); fix the path, relative to the service's cwd",
            )
        if not os.access(full, os.X_OK):
            raise c.fail(keys, f"{full!r} is not executable; chmod +x it, or start it through its interpreter")
        return os.path.normpath(full)
    path = os.pathsep.join(os.get_exec_path({**os.environ, **env}))
    if shutil.which(exe, path=path) is None:
        raise c.fail(keys, f"the executable {exe!r} is not found on PATH; give its full path or fix its name")
    return exe


def _check_function(c: _Checker, keys: tuple[str, ...], target: Any) -> None:
    """``module:function`` must import and name a callable; imported here, with the
    file's directory on sys.path, so that a typo is refused before anything starts."""
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise c.fail(keys, f'{target!r} is not "module:function"; write it like function = "services_worker:work"')
    module_name, func_name = target.split(":")
    with _on_sys_path(c.directory):
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise c.fail(
                keys,
                f"cannot import {module_name!r} ({type(e).__name__}: {e}); put the module beside the file or on PYTHONPATH",
            ) from None
    f = getattr(module, func_name, None)
    if f is None:
        raise c.fail(keys, f"module {module_name!r} has no {func_name!r}; name a function it defines")
    if not callable(f):
        raise c.fail(keys, f"{target!r} is a {type(f).__name__}, not a function; name a function")


class _on_sys_path:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __enter__(self) -> None:
        self.added = self.directory not in sys.path
        if self.added:
            sys.path.insert(0, self.directory)

    def __exit__(self, *exc: object) -> None:
        if self.added:
            sys.path.remove(self.directory)


def _output(c: _Checker, keys: tuple[str, ...], value: Any, words: tuple[str, ...]) -> LogFile | str:
    choices = " or ".join(f'"{w}"' for w in words)
    fix = f'use {choices}, a file path (e.g. "logs/out.log"), or {{ path = "logs/out.log", max_bytes = 10485760, backups = 5 }}'
    if value in words:
        return str(value)
    if isinstance(value, str):
        table: dict[str, Any] = {"path": value}
    elif isinstance(value, dict):
        table = value
        c.unknown_keys(keys, table, ("path", "max_bytes", "backups"))
    else:
        raise c.fail(keys, f"{value!r} is not an output; {fix}")
    path = table.get("path")
    if not isinstance(path, str) or not path:
        raise c.fail(keys, f"{value!r} has no path; {fix}")
    max_bytes = table.get("max_bytes", LogFile.max_bytes)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise c.fail(
            (*keys, "max_bytes"),
            f"{max_bytes!r} is not a size; use an integer of bytes >= 1, e.g. max_bytes = 10485760",
        )
    backups = table.get("backups", LogFile.backups)
    if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
        raise c.fail(
            (*keys, "backups"),
            f"{backups!r} is not a number of old files to keep; use an integer >= 0, e.g. backups = 5",
        )
    if backups > MAX_BACKUPS:
        raise c.fail(
            (*keys, "backups"),
            f"{backups!r} is more old files than a log keeps (at most {MAX_BACKUPS}); use backups = {MAX_BACKUPS} or fewer, and a larger max_bytes to keep more",
        )
    spec = LogFile(os.path.join(c.directory, path), max_bytes, backups)
    # Refused now, before anything starts; the writer refuses it again when it
    # opens the file (O_NOFOLLOW), should one appear later (issue 10).
    if os.path.islink(spec.path):
        raise c.fail(
            keys if isinstance(value, str) else (*keys, "path"),
            f"{spec.path!r} is a symbolic link; logs are never written through one: remove it, or give its target as the path",
        )
    return spec


def _check_logs_apart(c: _Checker, services: list[Service]) -> None:
    """Two writers rotating one file would rename it under each other."""
    seen: dict[str, tuple[str, ...]] = {}
    for svc in services:
        for stream in ("stdout", "stderr"):
            spec = getattr(svc, stream)
            if not isinstance(spec, LogFile):
                continue
            keys = ("services", svc.name, stream)
            if spec.path in seen:
                first = ".".join(seen[spec.path])
                raise c.fail(
                    keys,
                    f'{spec.path!r} is already the log of {first}; give each its own file, or merge a service\'s stderr with stderr = "stdout"',
                )
            seen[spec.path] = keys


def _start_order(c: _Checker, services: dict[str, Service]) -> list[Service]:
    """Each service after those it names in ``after``; otherwise in file order."""
    order: list[Service] = []
    done: set[str] = set()
    waiting = list(services.values())
    while waiting:
        ready = next((s for s in waiting if all(a in done for a in s.after)), None)
        if ready is None:
            cycle = _cycle(services, {s.name for s in waiting}, waiting[0].name)
            raise c.fail(
                ("services", cycle[0], "after"),
                f"the services {' -> '.join(repr(n) for n in cycle)} wait for each other; remove one of these after entries",
            )
        order.append(ready)
        done.add(ready.name)
        waiting.remove(ready)
    return order


def _cycle(services: dict[str, Service], waiting: set[str], start: str) -> list[str]:
    """A cycle of ``after`` among the services that cannot start, as a path that ends
    where it begins: each of them waits for another one of them, so a walk repeats."""
    path = [start]
    while True:
        nxt = next(a for a in services[path[-1]].after if a in waiting)
        if nxt in path:
            return path[path.index(nxt) :] + [nxt]
        path.append(nxt)
