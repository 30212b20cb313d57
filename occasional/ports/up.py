"""``occasional up FILE.toml``: a crash-only deployment from one file (API.md section 9).

The file declares services; each becomes a child of one ``one_for_one``
Supervisor, registered under its service name, so ``occasional ps`` shows it:

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

The file is checked whole before anything starts (``load``); every error
names the file, the line where it can be found, the key, and the fix.
Services start in an order that honours ``after`` (file order otherwise) and
stop in the reverse order, which is how the Supervisor starts and stops its
children. Running the tree is ``serve``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..behaviours.supervisor import RESTARTS, Supervisor
from ..core import api
from ..core.errors import ProcessExit
from ..core.match import ANY
from ..core.reasons import format_reason
from .logfile import LogFile, LogWriter

TOP_KEYS = ("services", "intensity", "period", "backoff")
SERVICE_KEYS = ("argv", "function", "args", "restart", "backoff", "shutdown", "env", "cwd", "after", "stdout", "stderr")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Stopping a service under its own supervisor takes the service's own shutdown
# time; its supervisor gets this much longer before it is killed.
_NESTED_MARGIN_S = 5.0


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
    lines: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False, compare=False)


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
        raise c.fail(("intensity",), f"{intensity!r} is not a number of restarts; use an integer >= 0, e.g. intensity = 5")
    period = doc.get("period", 10.0)
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not 0 < period < math.inf:
        raise c.fail(("period",), f"{period!r} is not a period; use seconds > 0, e.g. period = 10")
    backoff = _backoff(c, ("backoff",), doc.get("backoff"))
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        raise c.fail(("services",), "no services are declared; add a table like [services.web] with argv = [...] or function = \"module:function\"")
    checked = {name: _service(c, name, table, backoff) for name, table in services.items()}
    for svc in checked.values():
        for i, other in enumerate(svc.after):
            if other not in checked:
                close = difflib.get_close_matches(other, list(checked), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise c.fail(("services", svc.name, "after"), f"{other!r} is not a service of this file; {hint}name one of {', '.join(checked)}")
            if other == svc.name:
                raise c.fail(("services", svc.name, "after"), f"a service cannot start after itself; remove {other!r}")
    _check_logs_apart(c, list(checked.values()))
    order = _start_order(c, checked)
    return Plan(os.path.abspath(path), c.directory, tuple(order), int(intensity), float(period), backoff, c.lines)


def _syntax_error(path: str, text: str, message: str) -> ConfigError:
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        return ConfigError(path, f"not valid TOML: {message[:m.start()]} at column {col}; fix the syntax on line {line}", line=line)
    m = re.search(r"\s*\(at end of document\)$", message)
    if m:
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        return ConfigError(path, f"not valid TOML: {message[:m.start()]} at the end of the file; close what is left open", line=line)
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
            key = tuple(part.strip('"') for part in m.group(1).split(".")) if not m.group(1).startswith('"') else (m.group(1).strip('"'),)
            found.setdefault((*table, *key), n)
    return found


def _backoff(c: _Checker, keys: tuple[str, ...], value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (
        isinstance(value, list) and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        and 0 < value[0] <= value[1] < math.inf
    ):  # fmt: skip
        raise c.fail(keys, f"{value!r} is not a backoff; use [first_s, max_s] with 0 < first_s <= max_s, e.g. backoff = [0.5, 10]")
    return float(value[0]), float(value[1])


def _service(c: _Checker, name: str, table: Any, default_backoff: tuple[float, float] | None) -> Service:
    keys = ("services", name)
    if not _NAME.match(name):
        raise c.fail(keys, f"{name!r} is not a service name; use letters, digits, '_', '.' and '-', starting with a letter or digit")
    if not isinstance(table, dict):
        raise c.fail(keys, f"services.{name} = {table!r} is not a table; write it as [services.{name}] with argv = [...] or function = \"module:function\"")
    c.unknown_keys(keys, table, SERVICE_KEYS)
    if ("argv" in table) == ("function" in table):
        raise c.fail(keys, "give exactly one of argv = [...] (an executable) or function = \"module:function\" (a Python function)")

    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str) or not cwd:
        raise c.fail((*keys, "cwd"), f"{cwd!r} is not a directory; give a path, relative to the file's directory")
    cwd = os.path.normpath(os.path.join(c.directory, cwd))
    if not os.path.isdir(cwd):
        raise c.fail((*keys, "cwd"), f"{cwd!r} is not a directory; create it or fix the path (relative to {c.directory!r})")

    env = table.get("env", {})
    if not isinstance(env, dict):
        raise c.fail((*keys, "env"), f"{env!r} is not a table; write env = {{ NAME = \"value\" }}")
    checked_env: dict[str, str] = {}
    for var, value in env.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            shown = str(value).lower() if isinstance(value, bool) else value
            raise c.fail((*keys, "env", var), f"{value!r} is not an environment value; write it as a string, e.g. {var} = \"{shown}\"")
        if "=" in var or "\0" in var or not var:
            raise c.fail((*keys, "env", var), f"{var!r} is not an environment variable name; use a name without '=' ")
        checked_env[var] = str(value)

    argv: tuple[str, ...] | None = None
    function: str | None = None
    args: tuple[Any, ...] = ()
    if "argv" in table:
        raw = table["argv"]
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw) or not raw[0]:
            raise c.fail((*keys, "argv"), f"{raw!r} is not a command; write a list of strings, the executable first, e.g. argv = [\"python3\", \"-m\", \"http.server\"]")
        if "args" in table:
            raise c.fail((*keys, "args"), "args goes with function; put an executable's arguments in argv")
        argv = (_executable(c, (*keys, "argv"), raw[0], cwd, checked_env), *raw[1:])
    else:
        function = table["function"]
        _check_function(c, (*keys, "function"), function)
        raw_args = table.get("args", [])
        if not isinstance(raw_args, list):
            raise c.fail((*keys, "args"), f"{raw_args!r} is not a list; write args = [1, \"two\"]")
        args = tuple(raw_args)

    restart = table.get("restart", "permanent")
    if restart not in RESTARTS:
        raise c.fail((*keys, "restart"), f"{restart!r} is not a restart type; use \"permanent\", \"transient\" or \"temporary\"")
    shutdown = table.get("shutdown", 5.0)
    if shutdown != "brutal_kill" and (isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)) or not 0 <= shutdown < math.inf):
        raise c.fail((*keys, "shutdown"), f"{shutdown!r} is not a shutdown; use seconds >= 0 (e.g. shutdown = 5) or \"brutal_kill\"")
    after = table.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise c.fail((*keys, "after"), f"{after!r} is not a list of service names; write after = [\"db\"]")
    stdout = _output(c, (*keys, "stdout"), table.get("stdout", "inherit"), ("inherit",))
    stderr = _output(c, (*keys, "stderr"), table.get("stderr", "inherit"), ("inherit", "stdout"))
    if isinstance(stdout, LogFile) and stderr == stdout:
        stderr = "stdout"  # one file, one writer: merged as stderr = "stdout" would
    backoff = _backoff(c, (*keys, "backoff"), table["backoff"]) if "backoff" in table else default_backoff
    return Service(
        name, argv, function, args, restart, backoff,
        shutdown if isinstance(shutdown, str) else float(shutdown),
        checked_env, cwd, tuple(dict.fromkeys(after)), stdout, stderr,
    )  # fmt: skip


def _executable(c: _Checker, keys: tuple[str, ...], exe: str, cwd: str, env: dict[str, str]) -> str:
    """Check that the executable exists, as the port will look it up; a path with a
    slash is made absolute against the service's cwd (as subprocess does)."""
    if "/" in exe:
        full = os.path.join(cwd, exe)
        if not os.path.isfile(full):
            raise c.fail(keys, f"the executable {exe!r} does not exist (looked for {full!r}); fix the path, relative to the service's cwd")
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
        raise c.fail(keys, f"{target!r} is not \"module:function\"; write it like function = \"services_worker:work\"")
    module_name, func_name = target.split(":")
    with _on_sys_path(c.directory):
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise c.fail(keys, f"cannot import {module_name!r} ({type(e).__name__}: {e}); put the module beside the file or on PYTHONPATH") from None
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
        raise c.fail((*keys, "max_bytes"), f"{max_bytes!r} is not a size; use an integer of bytes >= 1, e.g. max_bytes = 10485760")
    backups = table.get("backups", LogFile.backups)
    if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
        raise c.fail((*keys, "backups"), f"{backups!r} is not a number of old files to keep; use an integer >= 0, e.g. backups = 5")
    return LogFile(os.path.join(c.directory, path), max_bytes, backups)


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
                raise c.fail(keys, f"{spec.path!r} is already the log of {first}; give each its own file, or merge a service's stderr with stderr = \"stdout\"")
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


# ---------------------------------------------------------------- the tree


class FunctionService:
    """A ``function = "module:function"`` service: runs in the service's own process.

    It moves to the service's cwd, adds its env, sends its stdout/stderr to
    log files if asked, imports the function (again at each restart, so a
    restart runs the code as it is now) and calls it with the args.
    """

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        # What ``occasional ps`` shows as the function (core.api._describe reads these).
        module, name = (svc.function or ":").split(":")
        self.__module__ = module
        self.__qualname__ = name

    def __call__(self) -> Any:
        svc = self.svc
        os.chdir(svc.cwd)
        os.environ.update(svc.env)
        redirect = _Redirect(svc.stdout, svc.stderr)
        try:
            module_name, func_name = (svc.function or ":").split(":")
            f = getattr(importlib.import_module(module_name), func_name)
            return f(*svc.args)
        finally:
            redirect.undo()


class _Redirect:
    """fd 1 and 2 of this process into LogWriters, through a pipe per file and a
    thread that copies it: what the function's own children write is logged too."""

    def __init__(self, stdout: LogFile | str, stderr: LogFile | str) -> None:
        self.saved: dict[int, int] = {}
        self.threads: list[threading.Thread] = []
        _flush_stdio()
        if isinstance(stdout, LogFile):
            self._to_log(1, stdout)
        if stderr == "stdout":
            self._dup(1, 2)
        elif isinstance(stderr, LogFile):
            self._to_log(2, stderr)
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)  # a service's log shows each line as it is printed

    def _dup(self, src: int, fd: int) -> None:
        self.saved.setdefault(fd, os.dup(fd))
        os.dup2(src, fd)

    def _to_log(self, fd: int, spec: LogFile) -> None:
        writer = LogWriter(spec)
        r, w = os.pipe()
        self._dup(w, fd)
        os.close(w)
        t = threading.Thread(target=_copy, args=(r, writer), name=f"log {spec.path}", daemon=True)
        t.start()
        self.threads.append(t)

    def undo(self) -> None:
        """Put fd 1 and 2 back and let the threads write what is left in the pipes."""
        _flush_stdio()
        for fd, saved in self.saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        for t in self.threads:
            t.join(timeout=2.0)  # a child of the function may still hold the pipe open


def _copy(r: int, writer: LogWriter) -> None:
    try:
        while data := os.read(r, 1 << 16):
            writer.write(data)
    finally:
        writer.close()
        os.close(r)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


class _Tree(Supervisor):
    """The supervisor of ``occasional up``: a Supervisor that logs its restarts and
    registers a function service under its name as it spawns it."""

    def init(self, *args: Any) -> Any:
        # Every process logs WARNING and up to stderr (core/logs.py); `occasional up`
        # also shows each restart, as supervisord does.
        logging.getLogger("occasional.supervisor").setLevel(logging.INFO)
        return super().init(*args)

    def _start_child(self, child: Any) -> None:
        f = child.spec.function
        if isinstance(f, FunctionService):
            # Registered as it is spawned, so that a service started after it
            # (`after`) finds it by name at once.
            child.pid = api.spawn_link(f, name=child.spec.id)
        else:
            super()._start_child(child)


def child_specs(plan: Plan) -> list[dict[str, Any]]:
    """The Supervisor's children, in start order.

    A service whose backoff is not the file's runs under a supervisor of its
    own with that backoff (the Supervisor takes one backoff for all its
    children); when that one gives up, the root restarts it, counting one
    restart.
    """
    from . import open_port

    specs = []
    for svc in plan.services:
        f: Any
        if svc.argv is not None:
            f = functools.partial(
                open_port, list(svc.argv), cwd=svc.cwd, env={**os.environ, **svc.env},
                stdout=svc.stdout, stderr=svc.stderr, name=svc.name,
            )  # fmt: skip
        else:
            f = FunctionService(svc)
        spec: dict[str, Any] = {"id": svc.name, "function": f, "restart": svc.restart, "shutdown": svc.shutdown}
        if svc.backoff != plan.backoff:
            own = functools.partial(_Tree.start, [spec], intensity=plan.intensity, period=plan.period, backoff=svc.backoff)
            shutdown = _NESTED_MARGIN_S + (svc.shutdown if isinstance(svc.shutdown, float) else 0.0)
            spec = {"id": svc.name, "function": own, "shutdown": shutdown}
        specs.append(spec)
    return specs


def serve(plan: Plan) -> int:
    """Run the services of ``plan`` until SIGTERM or SIGINT; the exit status.

    0 after an orderly stop (every service stopped, in reverse start order,
    each within its shutdown time); 1 if a service could not start or the
    supervisor gave up. A second SIGTERM or SIGINT during the stop ends this
    process at once, and with it every process of the runtime (their chain of
    parent-death signals).
    """
    from ..core.runtime import runtime

    asked: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if asked:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        asked.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    sys.path.insert(0, plan.directory)
    say = functools.partial(print, f"occasional up: {plan.path}:", file=sys.stderr, flush=True)
    try:
        with runtime():
            try:
                sup = _Tree.start(child_specs(plan), intensity=plan.intensity, period=plan.period, backoff=plan.backoff)
            except ProcessExit as e:
                say(f"a service failed to start, so none runs: {format_reason(e.reason)}")
                return 1
            ref = api.monitor(sup)
            names = ", ".join(s.name for s in plan.services)
            say(f"{len(plan.services)} services running: {names}; Ctrl-C or SIGTERM stops them")
            while not asked:
                try:
                    down = api.receive(("DOWN", ref, ANY, ANY), timeout=0.1)
                except TimeoutError:
                    continue  # the signal handler only sets a flag: acting on it here is safe
                say(f"the supervisor gave up, every service is stopped: {format_reason(down[3])}")
                return 1
            say(f"{signal.Signals(asked[0]).name}: stopping {names} in reverse order")
            api.exit_signal(sup, ("killed", "shutdown"))  # an orderly stop: the supervisor's terminate
            api.receive(("DOWN", ref, ANY, ANY))
            say("every service stopped")
            return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
