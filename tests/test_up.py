"""`occasional up FILE.toml` (API.md section 9, issue 5): one supervision tree from a file.

Every test that runs services runs `occasional up` as a real command, and
watches its services from outside: each service notes what it sees in a file
of the test's directory, and the test reads it (with a deadline: nothing else
can tell it when another program wrote a file).
"""

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from occasional.ports.logfile import LogFile
from occasional.up import ConfigError, load

from conftest import descendants, poll, reap_orphans, snapshot, survivors, wait_until_gone

OCCASIONAL = os.path.join(os.path.dirname(sys.executable), "occasional")

# A native service: notes "start NAME PID" once it can be stopped, "stop NAME PID"
# on SIGTERM, and what it was asked to print.
SERVICE_SCRIPT = """
import os, signal, sys, time
name, log = sys.argv[1], sys.argv[2]

def note(*what):
    with open(log, "a") as f:
        f.write(" ".join(map(str, what)) + "\\n")

def on_term(signum, frame):
    note("stop", name, os.getpid())
    sys.exit(0)

signal.signal(signal.SIGTERM, signal.SIG_IGN if name.startswith("stubborn") else on_term)
note("start", name, os.getpid())
if name.startswith("where"):
    note("where", name, os.getcwd(), os.environ.get("GREETING"), os.environ.get("FROM_THE_SHELL"))
if name.startswith("chatty"):
    for i in range(int(sys.argv[3])):
        print(f"line {i:03d} " + "x" * 20, flush=True)
    note("printed", name, os.getpid())
while True:
    time.sleep(60)
"""

# The same, as a function service.
SERVICE_MODULE = """
import os, sys, time
import occasional as occ

def note(log, *what):
    with open(log, "a") as f:
        f.write(" ".join(map(str, what)) + "\\n")

def service(name, log, count=0):
    note(log, "start", name, os.getpid())
    if name.startswith("where"):
        note(log, "where", name, os.getcwd(), os.environ.get("GREETING"), os.environ.get("FROM_THE_SHELL"))
    if name.startswith("sees"):
        note(log, "sees", name, ",".join(occ.registered()))
    if name.startswith("chatty"):
        for i in range(count):
            print(f"line {i:03d} " + "x" * 20)
        note(log, "printed", name, os.getpid())
    while True:
        time.sleep(60)
"""


def q(value):
    """A TOML value: JSON strings and lists are TOML too."""
    return json.dumps(value)


@pytest.fixture
def here(tmp_path):
    """The test's directory, with the service script and module beside the file."""
    (tmp_path / "svc.py").write_text(SERVICE_SCRIPT)
    (tmp_path / f"svcmod_{tmp_path.name}.py").write_text(SERVICE_MODULE)
    return tmp_path


def native(here, name, *extra):
    """The TOML lines of a native service running the script."""
    return f"[services.{name}]\nargv = {q([sys.executable, str(here / 'svc.py'), name, str(here / 'notes'), *map(str, extra)])}\n"


def function(here, name, *extra):
    """The TOML lines of a function service running the module's service()."""
    return f"[services.{name}]\nfunction = {q(f'svcmod_{here.name}:service')}\nargs = {q([name, str(here / 'notes'), *extra])}\n"


KINDS = {"native": native, "function": function}


def notes(here):
    try:
        return [line.split(" ") for line in (here / "notes").read_text().splitlines()]
    except FileNotFoundError:
        return []


def wait_for_notes(here, accepts, timeout=15.0):
    return poll(lambda: notes(here), accepts, timeout)


def started(here):
    """{name: [pid, ...]} from the 'start' notes, in order."""
    found = {}
    for n in notes(here):
        if n[0] == "start":
            found.setdefault(n[1], []).append(int(n[2]))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Up:
    """`occasional up FILE` as a real command; its stderr read with deadlines."""

    def __init__(self, path, env=None):
        # A process group of its own, as a shell gives a foreground job: Ctrl-C is SIGINT to that group.
        self.proc = subprocess.Popen(
            [OCCASIONAL, "up", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            process_group=0,
        )
        self.err = ""

    def read_until(self, text, timeout=20.0):
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while text not in self.err:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"occasional up did not say {text!r} within {timeout} s; it said:\n{self.err}")
            data = os.read(fd, 1 << 16)
            if not data:
                raise AssertionError(f"occasional up ended before it said {text!r}; it said:\n{self.err}")
            self.err += data.decode()
        return self.err

    def running(self):
        return self.read_until("services running")

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Send ``sig`` (SIGINT to the whole group, as Ctrl-C does); return the exit
        status once it ended, with all it said."""
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        self.err += self.proc.stderr.read().decode()
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture
def up():
    started_ups = []

    def start(path, env=None):
        u = Up(path, env)
        started_ups.append(u)
        return u

    yield start
    for u in started_ups:
        u.close()


def write(here, text, name="services.toml"):
    path = here / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------- refused files


def refusal(here, text):
    with pytest.raises(ConfigError) as info:
        load(str(write(here, text)))
    return str(info.value)


def test_a_file_with_a_syntax_error_is_refused_naming_the_line(here):
    message = refusal(here, '[services.web]\nargv = ["true"\nrestart = "permanent"\n')
    assert message == f"{here}/services.toml:3: not valid TOML: Unclosed array at column 1; fix the syntax on line 3"


def test_an_unknown_key_is_refused_naming_it_and_the_key_it_resembles(here):
    message = refusal(here, '[services.web]\nargv = ["true"]\nrestrat = "permanent"\n')
    assert message.startswith(
        f"{here}/services.toml:3: services.web.restrat: unknown key 'restrat'; did you mean 'restart'? the keys here are argv, function"
    )


def test_an_unknown_top_level_key_is_refused_naming_it(here):
    message = refusal(here, 'intensty = 3\n[services.web]\nargv = ["true"]\n')
    assert (
        message
        == f"{here}/services.toml:1: intensty: unknown key 'intensty'; did you mean 'intensity'? the keys here are services, intensity, period, backoff, journal, journal_sync, lease, node, cookie, net_ticktime"
    )


@pytest.mark.parametrize(
    "line, key, says",
    [
        (
            'restart = "sometimes"',
            "restart",
            '\'sometimes\' is not a restart type; use "permanent", "transient" or "temporary"',
        ),
        ("shutdown = -1", "shutdown", '-1 is not a shutdown; use seconds >= 0 (e.g. shutdown = 5) or "brutal_kill"'),
        (
            "backoff = [5, 1]",
            "backoff",
            "[5, 1] is not a backoff; use [first_s, max_s] with 0 < first_s <= max_s, e.g. backoff = [0.5, 10]",
        ),
        ('cwd = "nowhere"', "cwd", "is not a directory; create it or fix the path"),
        (
            "env = { DEBUG = true }",
            "env.DEBUG",
            'True is not an environment value; write it as a string, e.g. DEBUG = "true"',
        ),
        (
            'stdout = { path = "out.log", max_bytes = 0 }',
            "stdout.max_bytes",
            "0 is not a size; use an integer of bytes >= 1, e.g. max_bytes = 10485760",
        ),
        (
            'stdout = { path = "out.log", backups = 5000 }',
            "stdout.backups",
            "5000 is more old files than a log keeps (at most 1000); use backups = 1000 or fewer",
        ),
        ('after = "db"', "after", "'db' is not a list of service names; write after = [\"db\"]"),
    ],
)
def test_a_bad_value_is_refused_naming_its_line_and_key_and_saying_what_to_write(here, line, key, says):
    message = refusal(here, f'[services.web]\nargv = ["true"]\n{line}\n')
    assert message.startswith(f"{here}/services.toml:3: services.web.{key}: ")
    assert says in message


@pytest.mark.parametrize(
    "line, key", [('stdout = "out.log"', "stdout"), ('stderr = { path = "out.log" }', "stderr.path")]
)
def test_a_log_path_that_is_a_symlink_is_refused_before_anything_starts(here, line, key):
    (here / "out.log").symlink_to(here / "elsewhere")
    message = refusal(here, f'[services.web]\nargv = ["true"]\n{line}\n')
    assert (
        message
        == f"{here}/services.toml:3: services.web.{key}: '{here}/out.log' is a symbolic link; logs are never written through one: remove it, or give its target as the path"
    )


def test_an_executable_that_is_not_on_path_is_refused_before_anything_starts(here):
    message = refusal(here, '[services.web]\nargv = ["no-such-program-here"]\n')
    assert (
        message
        == f"{here}/services.toml:2: services.web.argv: the executable 'no-such-program-here' is not found on PATH; give its full path or fix its name"
    )


def test_a_function_that_does_not_import_is_refused_naming_the_module(here):
    message = refusal(here, '[services.worker]\nfunction = "no_such_module_here:work"\n')
    assert message.startswith(
        f"{here}/services.toml:2: services.worker.function: cannot import 'no_such_module_here' (ModuleNotFoundError"
    )


def test_a_service_with_both_argv_and_function_is_refused(here):
    message = refusal(here, f'[services.web]\nargv = ["true"]\nfunction = "svcmod_{here.name}:service"\n')
    assert (
        message
        == f'{here}/services.toml:1: services.web: give exactly one of argv = [...] (an executable) or function = "module:function" (a Python function)'
    )


def test_after_naming_an_unknown_service_is_refused_naming_it(here):
    message = refusal(here, '[services.web]\nargv = ["true"]\nafter = ["dbb"]\n[services.db]\nargv = ["true"]\n')
    assert (
        message
        == f"{here}/services.toml:3: services.web.after: 'dbb' is not a service of this file; did you mean 'db'? name one of web, db"
    )


def test_a_cycle_of_after_is_refused_showing_the_cycle(here):
    message = refusal(
        here,
        """
        [services.a]
        argv = ["true"]
        after = ["c"]
        [services.b]
        argv = ["true"]
        after = ["a"]
        [services.c]
        argv = ["true"]
        after = ["b"]
    """,
    )
    assert (
        message
        == f"{here}/services.toml:4: services.a.after: the services 'a' -> 'c' -> 'b' -> 'a' wait for each other; remove one of these after entries"
    )


def test_two_services_logging_to_one_file_are_refused(here):
    message = refusal(
        here, '[services.a]\nargv = ["true"]\nstdout = "out.log"\n[services.b]\nargv = ["true"]\nstdout = "out.log"\n'
    )
    assert message == (
        f"{here}/services.toml:6: services.b.stdout: {str(here / 'out.log')!r} is already the log of services.a.stdout; "
        'give each its own file, or merge a service\'s stderr with stderr = "stdout"'
    )


def test_a_file_without_services_is_refused_saying_how_to_declare_one(here):
    assert refusal(here, "intensity = 3\n") == (
        f"{here}/services.toml: services: no services are declared; add a table like "
        '[services.web] with argv = [...] or function = "module:function"'
    )


def test_paths_in_the_file_are_relative_to_its_directory(here, monkeypatch):
    (here / "work").mkdir()
    monkeypatch.chdir("/")
    plan = load(str(write(here, '[services.web]\nargv = ["true"]\ncwd = "work"\nstdout = "logs/web.log"\n')))
    assert (plan.services[0].cwd, plan.services[0].stdout) == (
        str(here / "work"),
        LogFile(str(here / "logs" / "web.log")),
    )


def test_occasional_up_prints_a_refusal_to_stderr_exits_2_and_starts_nothing(here):
    path = write(here, native(here, "web") + 'restart = "sometimes"\n')
    done = subprocess.run([OCCASIONAL, "up", str(path)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"occasional up: {path}:3: services.web.restart: 'sometimes' is not a restart type")
    assert notes(here) == []


def test_occasional_up_refuses_a_file_that_does_not_exist(here):
    done = subprocess.run([OCCASIONAL, "up", str(here / "nope.toml")], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (
        2,
        f"occasional up: {here}/nope.toml: cannot read it (No such file or directory); give the path of a services file\n",
    )


# ---------------------------------------------------------------- running services


def test_services_start_after_the_services_they_name_each_registered_under_its_name(here, up):
    # File order a, b, c; b waits for c. A function service notes the names registered when it starts.
    u = up(
        write(
            here,
            function(here, "sees_a") + function(here, "sees_b") + 'after = ["sees_c"]\n' + function(here, "sees_c"),
        )
    )
    u.running()
    seen = wait_for_notes(here, lambda ns: len([n for n in ns if n[0] == "sees"]) == 3)
    views = {n[1]: n[2].split(",") for n in seen if n[0] == "sees"}
    assert ("sees_a" in views["sees_c"], sorted(views["sees_b"])) == (True, ["sees_a", "sees_b", "sees_c"])


def test_services_stop_in_the_reverse_of_their_start_order(here, up):
    u = up(write(here, native(here, "a") + native(here, "b") + 'after = ["c"]\n' + native(here, "c")))
    u.running()
    wait_for_notes(here, lambda ns: len(started(here)) == 3)
    assert u.stop() == 0
    assert [n[1] for n in notes(here) if n[0] == "stop"] == ["b", "c", "a"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_stops_every_service_and_exits_0(here, up, sig):
    u = up(write(here, native(here, "web") + function(here, "worker")))
    u.running()
    pids = poll(lambda: started(here), lambda s: len(s) == 2)
    assert u.stop(sig) == 0
    assert ([p for ps in pids.values() for p in ps if alive(p)], u.err.splitlines()[-1]) == (
        [],
        f"occasional up: {here}/services.toml: every service stopped",
    )


def test_a_second_stop_signal_ends_occasional_up_and_every_service_at_once(here, up):
    u = up(write(here, native(here, "stubborn") + "shutdown = 60\n"))
    u.running()
    pid = poll(lambda: started(here), lambda s: len(s) == 1)["stubborn"][0]
    taken = snapshot(descendants(u.proc.pid))
    u.proc.send_signal(signal.SIGTERM)
    u.read_until("stopping stubborn")
    try:
        assert (u.stop(signal.SIGTERM, timeout=5), wait_until_gone(taken, timeout=2.0), alive(pid)) == (
            -signal.SIGTERM,
            [],
            False,
        )
    finally:
        reap_orphans(taken)


@pytest.mark.parametrize("kind", KINDS)
def test_a_service_killed_with_sigkill_is_started_again(here, up, kind):
    u = up(write(here, KINDS[kind](here, "web")))
    u.running()
    first = poll(lambda: started(here), lambda s: len(s.get("web", [])) == 1)["web"][0]
    os.kill(first, signal.SIGKILL)
    again = poll(lambda: started(here), lambda s: len(s.get("web", [])) == 2, timeout=10)["web"]
    assert (again[0], again[1] != first, alive(again[1])) == (first, True, True)


def test_a_service_with_its_own_backoff_waits_that_long_before_its_restart(here, up):
    u = up(write(here, native(here, "web") + "backoff = [0.5, 1]\n"))
    u.running()
    first = poll(lambda: started(here), lambda s: len(s.get("web", [])) == 1)["web"][0]
    killed_at = time.monotonic()
    os.kill(first, signal.SIGKILL)
    poll(lambda: started(here), lambda s: len(s.get("web", [])) == 2, timeout=10)
    assert time.monotonic() - killed_at >= 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_a_service_runs_in_its_cwd_with_its_env_added_to_the_inherited_one(here, up, kind):
    (here / "work").mkdir()
    u = up(
        write(here, KINDS[kind](here, "where") + 'cwd = "work"\nenv = { GREETING = "hello" }\n'),
        env={**os.environ, "FROM_THE_SHELL": "kept"},
    )
    u.running()
    seen = wait_for_notes(here, lambda ns: any(n[0] == "where" for n in ns))
    assert [n[2:] for n in seen if n[0] == "where"] == [[str(here / "work"), "hello", "kept"]]


@pytest.mark.parametrize("kind", KINDS)
def test_a_services_stdout_file_is_rotated_by_size_between_lines(here, up, kind):
    # 40 lines of 29 bytes into files of at most 100 bytes: 3 lines a file, 14 files.
    u = up(
        write(
            here,
            KINDS[kind](here, "chatty", 40) + 'stdout = { path = "logs/out.log", max_bytes = 100, backups = 20 }\n',
        )
    )
    u.running()
    wait_for_notes(here, lambda ns: any(n[0] == "printed" for n in ns))
    expected = b"".join(b"line %03d %s\n" % (i, b"x" * 20) for i in range(40))

    def oldest_first():
        try:
            return [(here / "logs" / f"out.log.{i}").read_bytes() for i in range(13, 0, -1)] + [
                (here / "logs" / "out.log").read_bytes()
            ]
        except FileNotFoundError:  # not written yet, or being rotated
            return []

    files = poll(oldest_first, lambda fs: b"".join(fs) == expected)
    names = {p.name for p in here.glob("logs/out.log*")}
    torn_or_too_big = [f for f in files if len(f) > 100 or not f.endswith(b"\n")]
    assert (b"".join(files) == expected, names, torn_or_too_big) == (
        True,
        {"out.log", *(f"out.log.{i}" for i in range(1, 14))},
        [],
    )


def test_a_service_that_keeps_failing_makes_the_supervisor_give_up_and_occasional_up_exit_1(here, up):
    u = up(write(here, 'intensity = 2\nperiod = 30\n[services.broken]\nargv = ["false"]\n'))
    assert u.proc.wait(30) == 1
    u.err += u.proc.stderr.read().decode()
    assert "the supervisor gave up, every service is stopped: " in u.err and "'broken'" in u.err


def test_sigkill_of_occasional_up_leaves_no_service_process_within_2_seconds(here, up):
    u = up(write(here, native(here, "web") + function(here, "worker")))
    u.running()
    poll(lambda: started(here), lambda s: len(s) == 2)
    taken = snapshot(descendants(u.proc.pid))
    assert len(taken) >= 5  # central, forkserver, supervisor, the port and its executable, the worker
    u.proc.kill()
    u.proc.wait()
    try:
        assert wait_until_gone(taken, timeout=2.0) == []
    finally:
        reap_orphans(taken)
        assert survivors(taken) == []


# ---------------------------------------------------------------- the example


def test_the_example_runs_a_web_server_and_a_worker_that_gets_answers_from_it(tmp_path, up):
    import shutil
    import socket

    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    with socket.socket() as s:  # a free port instead of the README's 8000
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    with open(os.path.join(examples, "services.toml")) as f:
        text = f.read()
    assert ", 2.0]" in text
    (tmp_path / "services.toml").write_text(text.replace("8000", port).replace(", 2.0]", ", 0.1]"))  # poll faster
    shutil.copy(os.path.join(examples, "services_worker.py"), tmp_path)
    u = up(tmp_path / "services.toml")
    u.running()
    log = tmp_path / "logs" / "worker.log"
    polled = poll(
        lambda: log.read_text() if log.exists() else "",
        lambda text: f"GET http://127.0.0.1:{port}/ -> 200" in text,
        timeout=15,
    )
    assert ("-> 200" in polled, u.stop()) == (True, 0)
