"""Central's errors that say more, and its extension surface (issue 11).

- ``NameTaken`` names the process that holds the name: its message, and
  ``exc.holder``, the holder's Pid.
- A layer handles only op codes it claimed: ``protocol.add_ops`` refuses a
  code another layer holds, and ``central.add_ops`` (called by a hook that
  runs inside central) refuses a code its caller has not claimed.
- A spawn the forkserver could not fork says why, with the errno.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import occasional as occ
from occasional.core import protocol as P, runtime as _runtime


def idle() -> None:
    occ.receive()


def noop() -> None:
    pass


# --- NameTaken names the holder -----------------------------------------------------------


def test_spawning_under_a_taken_name_raises_name_taken_naming_the_holder():
    def main():
        holder = occ.spawn(idle, name="db")
        try:
            occ.spawn(idle, name="db")
        except occ.NameTaken as exc:
            return str(exc), exc.name, exc.holder, holder

    message, name, got, holder = occ.run(main)
    assert re.match(
        rf"^the name 'db' is taken by <occ {holder.os_pid}>; pick another name or unregister it first$", message
    )
    assert (name, got, got.os_pid) == ("db", holder, holder.os_pid)


def test_registering_a_taken_name_raises_name_taken_naming_the_holder():
    def main():
        holder = occ.spawn(idle, name="db")
        try:
            occ.register("db")
        except occ.NameTaken as exc:
            return str(exc), exc.holder, holder

    message, got, holder = occ.run(main)
    assert re.match(
        rf"^the name 'db' is taken by <occ {holder.os_pid}>; pick another name or unregister it first$", message
    )
    assert (got, got.os_pid) == (holder, holder.os_pid)


# --- op codes: each layer handles only its own -----------------------------------------------


def test_claiming_an_op_code_core_holds_is_refused_naming_the_code_and_its_holder():
    with pytest.raises(ValueError, match=rf"^nodes: op code {P.SPAWN} is core's already; pick an unused one$"):
        P.add_ops("nodes", {}, others=(P.SPAWN,))
    assert P.OWNERS[P.SPAWN] == "core"


def test_claiming_an_op_code_durable_holds_is_refused_naming_the_code_and_its_holder():
    from occasional.durable import protocol as D

    with pytest.raises(ValueError, match=rf"^nodes: op code {D.D_SPAWN} is durable's already; pick an unused one$"):
        P.add_ops("nodes", {}, others=(D.D_SPAWN,))
    assert P.OWNERS[D.D_SPAWN] == "durable"


HOOK = "occasional_test_ops_hook:install"
HOOK_MODULE = textwrap.dedent(
    """\
    def install(central, options):
        central.add_ops({owner!r}, {{{code}: lambda p, msg: None}})
    """
)


@contextlib.contextmanager
def central_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str, code: int) -> Iterator[None]:
    """A hook that runs inside central and hands ``central.add_ops`` a handler for ``code``."""
    (tmp_path / "occasional_test_ops_hook.py").write_text(HOOK_MODULE.format(owner=owner, code=code))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # central imports the hook; it inherits our environment
    _runtime.add_central_hook(HOOK, (), lambda call, options: None)
    try:
        yield
    finally:
        del _runtime.CENTRAL_HOOKS[HOOK]


def test_central_refuses_a_handler_for_an_op_code_no_layer_claimed(tmp_path, monkeypatch):
    unclaimed = next(op for op in range(127, 0, -1) if op not in P.OWNERS)
    with (
        central_hook(tmp_path, monkeypatch, "nodes", unclaimed),
        pytest.raises(
            ValueError,
            match=rf"^nodes: op code {unclaimed} is claimed by no layer; "
            r"claim it first with occasional\.core\.protocol\.add_ops$",
        ),
    ):
        occ.run(noop)


def test_central_refuses_a_handler_for_an_op_code_of_another_layer(tmp_path, monkeypatch):
    with (
        central_hook(tmp_path, monkeypatch, "nodes", P.SPAWN),
        pytest.raises(
            ValueError,
            match=rf"^nodes: op code {P.SPAWN} is claimed by core; "
            r"handle only codes nodes claimed with occasional\.core\.protocol\.add_ops$",
        ),
    ):
        occ.run(noop)


# --- a failed fork gives the errno -------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _named(pids: list[int], comm: str) -> int:
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    return pid
        except OSError:
            continue
    raise LookupError(f"no process named {comm!r} among {pids}")


_PIDS_CGROUP = Path("/sys/fs/cgroup/pids")  # cgroup v1's pids controller


@contextlib.contextmanager
def unable_to_fork(pid: int) -> Iterator[None]:
    """Make every fork() of process ``pid`` fail with EAGAIN.

    Not root: RLIMIT_NPROC 0 on it. Root is exempt from RLIMIT_NPROC, so it
    moves the process into a pids cgroup that holds only that process.
    """
    if os.geteuid() != 0:
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NPROC)
        resource.prlimit(pid, resource.RLIMIT_NPROC, (0, hard))
        try:
            yield
        finally:
            resource.prlimit(pid, resource.RLIMIT_NPROC, (soft, hard))
        return
    if not os.access(_PIDS_CGROUP / "cgroup.procs", os.W_OK):
        pytest.skip("running as root (exempt from RLIMIT_NPROC) without cgroup v1's pids controller to limit forks")
    group = _PIDS_CGROUP / f"occasional-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "pids.max").write_text("1")
        (group / "cgroup.procs").write_text(str(pid))
        try:
            yield
        finally:
            (_PIDS_CGROUP / "cgroup.procs").write_text(str(pid))
    finally:
        group.rmdir()


def test_a_spawn_the_forkserver_could_not_fork_raises_an_error_with_the_errno():
    with occ.runtime():
        central = _named(_children(os.getpid()), "central")
        forkserver = _named(_children(central), "forkserver")
        with unable_to_fork(forkserver), pytest.raises(RuntimeError) as caught:
            occ.spawn(noop)
    assert re.match(
        r"^cannot spawn \S+: the forkserver could not fork: "
        r"\[Errno 11\] Resource temporarily unavailable \(EAGAIN\)$",
        str(caught.value),
    ), str(caught.value)
