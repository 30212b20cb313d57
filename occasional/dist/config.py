"""A runtime that is a node (API.md section 11): its options, what every
process of it inherits, and the hook that starts its Erlang VM.

Light on purpose: ``before_fork`` runs in central before the forkserver is
forked, so what it imports every process imports.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from typing import Any

from ..core.pid import set_this_node

DEFAULT_TICKTIME = 10  # seconds; see check() for why not Erlang's 60

# Set in central before the forkserver is forked, so every process has it:
# the node's name, its VM's socket for processes, and the token a process
# proves it belongs to this runtime with.
NODE: str | None = None
SOCKET: str | None = None
TOKEN: bytes = b""
DIRECTORY: str | None = None

_NAME = re.compile(r"^[A-Za-z0-9_-]+@[A-Za-z0-9_.-]+$")


def check(call: str, options: dict[str, Any]) -> None:
    """The options of a node, checked in the caller."""
    node = options.get("node")
    cookie = options.get("cookie")
    ticktime = options.get("net_ticktime")
    if node is not None and not (type(node) is str and _NAME.match(node)):
        raise ValueError(
            f"{call}: node={node!r} is not a node name; give NAME@HOST, such as 'app@127.0.0.1' or "
            "'app@myhost' (letters, digits, '_' and '-' before the @)"
        )
    if cookie is not None:
        if node is None:
            raise ValueError(f"{call}: cookie= is the secret of a node; give node= too")
        if not (type(cookie) is str and cookie and cookie.isprintable() and " " not in cookie):
            raise ValueError(
                f"{call}: cookie={cookie!r} is not a cookie; give a non-empty string of printable characters "
                "without spaces"
            )
    if ticktime is not None:
        if node is None:
            raise ValueError(f"{call}: net_ticktime= is a setting of a node; give node= too")
        # Erlang's default of 60 s takes up to 75 s to notice a hung node;
        # the VM does nothing but distribution, so a short tick is cheap.
        if type(ticktime) is not int or not 1 <= ticktime <= 3600:
            raise ValueError(
                f"{call}: net_ticktime={ticktime!r} is not a number of seconds from 1 to 3600; a node is "
                f"declared down after 0.75 to 1.25 times it (default {DEFAULT_TICKTIME})"
            )


def before_fork(options: dict[str, Any]) -> None:
    """In central, before the forkserver: what every process of a node knows."""
    global NODE, SOCKET, TOKEN, DIRECTORY
    node = options.get("node")
    if node is None:
        return
    NODE = node
    sweep()
    # 0700: only this user reaches the socket. Named by central's pid, so the
    # next node to start removes it if this runtime is SIGKILLed.
    DIRECTORY = tempfile.mkdtemp(prefix=f"occasional-node-{os.getpid()}-")
    SOCKET = os.path.join(DIRECTORY, "vm.sock")
    TOKEN = secrets.token_hex(16).encode()
    set_this_node(node)


def sweep() -> None:
    """Remove the directories of nodes whose central services are gone (a
    runtime SIGKILLed cannot remove its own): the next node to start does,
    and so does a test that killed one."""
    import shutil

    base = tempfile.gettempdir()
    for entry in os.scandir(base):
        parts = entry.name.split("-")
        if not (entry.name.startswith("occasional-node-") and len(parts) == 4 and parts[2].isdigit()):
            continue
        try:
            if entry.is_symlink() or entry.stat().st_uid != os.getuid():
                continue
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue


def vm_socket() -> tuple[str, bytes] | None:
    """Where a process of this runtime reaches its node's VM, and its token:
    inherited from central, or (in the interpreter that started the
    runtime) told with READY."""
    if SOCKET is not None:
        return SOCKET, TOKEN
    from ..core.runtime import FACTS

    told = FACTS.get("vm")
    return None if told is None else (told[0], told[1].encode())
