"""Two nodes on one machine: a registered process on each, messages both
ways, and a node killed with -9 (API.md section 11).

Each node is a runtime of its own (here, its own interpreter) started with
``node="NAME@HOST"``; its central services run an Erlang VM beside them,
and the nodes talk through Erlang's own distribution. Alice is started as a
second interpreter; this one is bob. Bob and alice chat; then alice's whole
runtime is killed with -9, and bob's monitor of alice's chat process says
``noconnection``, after every message alice had sent.

    python examples/two_nodes_chat.py             # the demo: alice, bob, kill -9
    python examples/two_nodes_chat.py node NAME   # a chat node NAME@127.0.0.1, until killed

An Erlang shell with the same cookie talks to a chat node too (README, "Nodes").
The demo runs its own EPMD (Erlang's name server) on a free port and stops
it at the end; without ERL_EPMD_PORT, erl starts the system's on port 4369
and leaves it running, as Erlang does.
"""

import os
import signal
import socket
import subprocess
import sys

import occasional as occ

COOKIE = "chat"
HOST = "127.0.0.1"


def chat() -> None:
    """Registered as "chat": print what arrives, and answer it."""
    while True:
        frm, text = occ.receive((occ.ANY, occ.ANY))
        text = text.decode() if isinstance(text, bytes) else text
        print(f"  {occ.node()}: {text!r} from {frm.node}", flush=True)
        occ.send(frm, (occ.Atom("ack"), text, occ.slf()))


def node(name: str) -> None:
    def main() -> None:
        occ.register("chat", occ.spawn(chat))
        print(f"  {occ.node()}: up", flush=True)
        occ.receive("never")

    occ.run(main, node=f"{name}@{HOST}", cookie=COOKIE)


def demo() -> None:
    alice = f"alice@{HOST}"
    child = subprocess.Popen([sys.executable, __file__, "node", "alice"], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    print(child.stdout.readline(), end="", flush=True)  # "alice@127.0.0.1: up"

    try:
        occ.run(bob, alice, child.pid, node=f"bob@{HOST}", cookie=COOKIE)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def bob(alice: str, alice_os_pid: int) -> None:
    """Chat with alice, then kill her node and watch the DOWN arrive."""
    occ.send(("chat", alice), (occ.slf(), "hello alice"))
    _, text, alice_chat = occ.receive((occ.Atom("ack"), occ.ANY, occ.ANY), timeout=10)
    print(f"  {occ.node()}: {alice_chat.node}'s chat process {alice_chat} acknowledged {text!r}")
    ref = occ.monitor(alice_chat)
    for n in range(3):
        occ.send(alice_chat, (occ.slf(), f"message {n}"))
    for _ in range(3):  # alice's answers: messages the other way
        occ.receive((occ.Atom("ack"), occ.ANY, occ.ANY), timeout=10)
    print(f"  {occ.node()}: alice answered all three; kill -9 of alice's whole runtime", flush=True)
    os.killpg(alice_os_pid, signal.SIGKILL)
    _, _, _, reason = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
    print(f"  {occ.node()}: DOWN of alice's chat process: {reason}")
    print(f"  {occ.node()}: connected to alice: {alice in occ.nodes()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    if sys.argv[1:2] == ["node"]:
        os.setpgid(0, 0)  # one process group: the demo kills the whole runtime with one signal
        node(sys.argv[2])
    else:
        port = _free_port()
        epmd = subprocess.Popen(["epmd", "-port", str(port)])
        os.environ["ERL_EPMD_PORT"] = str(port)
        try:
            demo()
        finally:
            epmd.kill()
            epmd.wait()
