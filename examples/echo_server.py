"""A TCP echo server: one acceptor, a handler process per connection under a
simple_one_for_one supervisor (API.md section 12).

The acceptor owns the listening socket; for each connection it starts a
handler and hands it the socket itself (``net.controlling_process``). A
handler that crashes, or is killed with -9, drops only its own client: the
socket closes with its owner, and every other client keeps talking.

    python examples/echo_server.py              # the demo: two clients, kill -9 of one handler
    python examples/echo_server.py serve PORT   # serve on 127.0.0.1:PORT until Ctrl-C

With ``serve``, talk to it from another terminal (``nc 127.0.0.1 PORT``),
find the handlers with ``occasional ps`` and ``kill -9`` one of them.
"""

import os
import signal
import sys

import occasional as occ
from occasional import net


def handler(sock: net.Socket) -> None:
    """Echo each line back until the client goes (then end normally)."""
    while True:
        _, (kind, data) = occ.receive((sock, occ.ANY))
        if kind != "tcp":
            return
        net.send(sock, b"echo: " + data)


def acceptor(listener: net.Listener, handlers: occ.Pid) -> None:
    while True:
        sock = net.accept(listener)
        pid = occ.Supervisor.start_child(handlers, (sock,))
        net.controlling_process(sock, pid)


def start(port: int) -> tuple[int, occ.Pid]:
    """The server: the handlers' supervisor, then the acceptor; the port it listens on, and the supervisor."""
    handlers = occ.Supervisor.start(
        [{"id": "handler", "function": handler, "restart": "temporary"}], strategy="simple_one_for_one"
    )
    listener = net.listen(port, framing="line")
    net.controlling_process(listener, occ.spawn_link(acceptor, listener, handlers))
    assert listener.port is not None
    return listener.port, handlers


def demo() -> None:
    port, handlers = start(0)
    alice = net.connect("127.0.0.1", port, framing="line", active=False)
    bob = net.connect("127.0.0.1", port, framing="line", active=False)
    for who, sock in (("alice", alice), ("bob", bob)):
        net.send(sock, f"hello from {who}".encode())
        print(f"  {who} got {net.recv(sock, timeout=5)!r}")
    # Alice connected first, so hers is the handler started first (pids order by start).
    first = min(child[1] for child in occ.Supervisor.which_children(handlers))
    print(f"  kill -9 of alice's handler <occ {first.os_pid}>")
    os.kill(first.os_pid, signal.SIGKILL)
    try:
        net.recv(alice, timeout=5)
    except EOFError:
        print("  alice: the server closed her connection")
    net.send(bob, b"still there?")
    print(f"  bob got {net.recv(bob, timeout=5)!r}")


def serve(port: int) -> None:
    print(f"  echo server on 127.0.0.1:{start(port)[0]}; Ctrl-C stops it", flush=True)
    occ.receive("never sent")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        occ.run(serve, int(sys.argv[2]))
    else:
        occ.run(demo)
