"""``occasional up FILE.toml``: run a services file as one supervision tree (API.md section 9).

The file's format and checks are in :mod:`occasional.up.config` and
:mod:`occasional.up.checks`. Here:
the Supervisor's children (a port per ``argv`` service, a process per
``function`` service), the life of a function service's process (cwd, env,
log files), and ``serve``, which runs the tree until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..behaviours.child_kinds import ChildKind, add_child_kind
from ..behaviours.supervisor import Supervisor
from ..core import api
from ..core.child import flush_stdio
from ..core.errors import ProcessExit
from ..core.match import ANY
from ..core.reasons import format_reason
from ..ports import open_port
from ..ports.logfile import LogFile, LogWriter
from .config import ConfigError as ConfigError, Plan, Service, load as load

if TYPE_CHECKING:
    from ..core.pid import Pid

# Stopping a service under its own supervisor takes the service's own shutdown
# time; its supervisor gets this much longer before it is killed.
_NESTED_MARGIN_S = 5.0

__all__ = ["ConfigError", "load", "serve", "child_specs"]


class FunctionService:
    """A ``function = "module:function"`` service: runs in the service's own process.

    It moves to the service's cwd, adds its env, sends its stdout/stderr to
    log files if asked, imports the function (again at each restart, so a
    restart runs the code as it is now) and calls it with the args.
    """

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        # What ``occasional ps`` shows as the function (core.api.describe_function reads these).
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
        flush_stdio()
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
        flush_stdio()
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


@dataclass(frozen=True)
class FunctionServiceKind(ChildKind):
    """A function service as a Supervisor child: registered under its service name
    as it is spawned, so that a service started after it (``after``) finds it by
    name at once."""

    def recognises(self, function: Callable[..., Any]) -> bool:
        return isinstance(function, FunctionService)

    def start(self, id: str, function: Callable[..., Any], args: tuple[Any, ...]) -> Pid:
        return api.spawn_link(function, *args, name=id)


add_child_kind(FunctionServiceKind())


class Services(Supervisor):
    """The supervisor of ``occasional up``: a Supervisor that logs its restarts."""

    def init(self, *args: Any) -> Any:
        # Every process logs WARNING and up to stderr (core/logs.py); `occasional up`
        # also shows each restart, as supervisord does.
        logging.getLogger("occasional.supervisor").setLevel(logging.INFO)
        return super().init(*args)


def child_specs(plan: Plan) -> list[dict[str, Any]]:
    """The Supervisor's children, in start order.

    A service whose backoff is not the file's runs under a supervisor of its
    own with that backoff (the Supervisor takes one backoff for all its
    children); when that one gives up, the root restarts it, counting one
    restart.
    """
    specs = []
    for svc in plan.services:
        f: Any
        if svc.argv is not None:
            f = functools.partial(
                open_port,
                list(svc.argv),
                cwd=svc.cwd,
                env={**os.environ, **svc.env},
                stdout=svc.stdout,
                stderr=svc.stderr,
                name=svc.name,
            )
        else:
            f = FunctionService(svc)
        spec: dict[str, Any] = {"id": svc.name, "function": f, "restart": svc.restart, "shutdown": svc.shutdown}
        if svc.backoff != plan.backoff:
            own = functools.partial(
                Services.start, [spec], intensity=plan.intensity, period=plan.period, backoff=svc.backoff
            )
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
        with runtime(**plan.options):
            try:
                sup = Services.start(
                    child_specs(plan), intensity=plan.intensity, period=plan.period, backoff=plan.backoff
                )
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
            backwards = ", ".join(s.name for s in reversed(plan.services))
            say(f"{signal.Signals(asked[0]).name}: stopping {backwards}, in this order")
            api.exit_signal(sup, ("killed", "shutdown"))  # an orderly stop: the supervisor's terminate
            api.receive(("DOWN", ref, ANY, ANY))
            say("every service stopped")
            return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
