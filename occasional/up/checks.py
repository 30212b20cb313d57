"""The checks of a services file's values (occasional.up.config has the format).

Every check raises :class:`ConfigError` through :class:`Checker`, which finds
the line of the key at fault: the error names the file, the line, the key and
the fix, before anything starts.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any

from ..core.checks import is_backoff, is_count
from ..ports.logfile import MAX_BACKUPS, LogFile

if TYPE_CHECKING:
    from .config import Service


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


class Checker:
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


def syntax_error(path: str, text: str, message: str) -> ConfigError:
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


def check_backoff(c: Checker, keys: tuple[str, ...], value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and is_backoff(value)):
        raise c.fail(
            keys,
            f"{value!r} is not a backoff; use [first_s, max_s] with 0 < first_s <= max_s, e.g. backoff = [0.5, 10]",
        )
    return float(value[0]), float(value[1])


def check_executable(c: Checker, keys: tuple[str, ...], exe: str, cwd: str, env: dict[str, str]) -> str:
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


def check_function(c: Checker, keys: tuple[str, ...], target: Any) -> None:
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


def check_output(c: Checker, keys: tuple[str, ...], value: Any, words: tuple[str, ...]) -> LogFile | str:
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
    if not is_count(max_bytes, least=1):
        raise c.fail(
            (*keys, "max_bytes"),
            f"{max_bytes!r} is not a size; use an integer of bytes >= 1, e.g. max_bytes = 10485760",
        )
    backups = table.get("backups", LogFile.backups)
    if not is_count(backups):
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


def check_logs_apart(c: Checker, services: list[Service]) -> None:
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


def start_order(c: Checker, services: dict[str, Service]) -> list[Service]:
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
