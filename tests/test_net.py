"""Sockets owned by processes, as gen_tcp (API.md section 12, issue 14): loopback only."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from typing import Any

import pytest

import occasional as occ
from occasional import net

pytestmark = pytest.mark.timeout(30)


# -- processes of the tests -------------------------------------------------------------------


def upper(sock: net.Socket) -> Any:
    """A handler: answer every frame with its upper case; return how the connection ended."""
    while True:
        _, (kind, data) = occ.receive((sock, occ.ANY))
        if kind != "tcp":
            return kind
        if data == b"crash":
            raise RuntimeError("asked to crash")
        net.send(sock, data.upper())


def acceptor(listener: net.Listener) -> None:
    """Accept for ever; each connection goes to a handler of its own."""
    while True:
        sock = net.accept(listener)
        net.controlling_process(sock, occ.spawn(upper, sock))


def serve(framing: str = "line") -> int:
    """An acceptor of its own on a fresh port; the port."""
    listener = net.listen(0, framing=framing)
    port = listener.port
    assert port is not None
    net.controlling_process(listener, occ.spawn(acceptor, listener))
    return port


def client(port: int, n: int, rounds: int, to: occ.Pid) -> None:
    sock = net.connect("127.0.0.1", port, framing="line", active=False)
    got = []
    for i in range(rounds):
        net.send(sock, f"client {n} says {i}".encode())
        got.append(net.recv(sock, timeout=10))
    occ.send(to, ("done", n, got))


# -- the tests ------------------------------------------------------------------------------


def test_twenty_concurrent_clients_each_get_only_their_own_replies():
    def main() -> list[bool]:
        port = serve()
        for n in range(20):
            occ.spawn(client, port, n, 10, occ.slf())
        results = [occ.receive(("done", occ.ANY, occ.ANY), timeout=20) for _ in range(20)]
        return [got == [f"CLIENT {n} SAYS {i}".encode() for i in range(10)] for _, n, got in results]

    assert occ.run(main) == [True] * 20


def test_a_crashing_handler_drops_only_its_own_client():
    def main() -> tuple[Any, bytes]:
        port = serve()
        doomed = net.connect("127.0.0.1", port, framing="line")
        other = net.connect("127.0.0.1", port, framing="line", active=False)
        net.send(doomed, b"crash")
        ended = occ.receive((doomed, occ.ANY), timeout=10)
        net.send(other, b"still here")
        return ended, net.recv(other, timeout=10)

    ended, reply = occ.run(main)
    assert (ended[1], reply) == (("tcp_closed", None), b"STILL HERE")


def test_line_framing_reassembles_lines_written_in_pieces():
    def main() -> list[Any]:
        listener = net.listen(0, framing="line")
        raw = socket.create_connection(("127.0.0.1", listener.port))
        sock = net.accept(listener, timeout=10)
        for piece in (b"ab", b"c\nde", b"f\n", b"g"):
            raw.sendall(piece)
            time.sleep(0.01)  # separate writes on purpose: partial frames must wait
        raw.close()
        return [occ.receive((sock, occ.ANY), timeout=10)[1] for _ in range(3)]

    assert occ.run(main) == [("tcp", b"abc"), ("tcp", b"def"), ("tcp_closed", None)]


def test_packet_framing_delivers_whole_packets_across_partial_writes():
    def main() -> list[Any]:
        listener = net.listen(0, framing="packet")
        raw = socket.create_connection(("127.0.0.1", listener.port))
        sock = net.accept(listener, timeout=10)
        data = b"\x00\x00\x00\x05hello\x00\x00\x00\x03abc"
        for i in range(0, len(data), 3):
            raw.sendall(data[i : i + 3])
            time.sleep(0.005)
        return [occ.receive((sock, occ.ANY), timeout=10)[1] for _ in range(2)]

    assert occ.run(main) == [("tcp", b"hello"), ("tcp", b"abc")]


def test_active_once_delivers_one_message_until_setopts():
    def main() -> tuple[Any, Any, Any]:
        listener = net.listen(0, framing="line", active="once")
        raw = socket.create_connection(("127.0.0.1", listener.port))
        sock = net.accept(listener, timeout=10)
        raw.sendall(b"one\ntwo\n")
        first = occ.receive((sock, occ.ANY), timeout=10)[1]
        try:
            occ.receive((sock, occ.ANY), timeout=0.2)
            held = "a second message came"
        except TimeoutError:
            held = "held"
        net.setopts(sock, active="once")
        return first, held, occ.receive((sock, occ.ANY), timeout=10)[1]

    assert occ.run(main) == (("tcp", b"one"), "held", ("tcp", b"two"))


def test_a_socket_closes_when_its_owner_is_killed():
    def holder(port: int, to: occ.Pid) -> None:
        net.connect("127.0.0.1", port)
        occ.send(to, ("connected", os.getpid()))
        occ.receive("never sent")

    def main() -> Any:
        listener = net.listen(0)
        occ.spawn(holder, listener.port, occ.slf())
        sock = net.accept(listener, timeout=10)
        _, os_pid = occ.receive(("connected", occ.ANY), timeout=10)
        os.kill(os_pid, signal.SIGKILL)
        return occ.receive((sock, occ.ANY), timeout=10)[1]

    assert occ.run(main) == ("tcp_closed", None)


def test_bytes_that_break_the_framing_end_that_socket_after_every_complete_frame():
    def main() -> list[Any]:
        listener = net.listen(0, framing="packet")
        raw = socket.create_connection(("127.0.0.1", listener.port))
        sock = net.accept(listener, timeout=10)
        raw.sendall(b"\x00\x00\x00\x02ok" + b"\xff\xff\xff\xff")  # then a header over the limit
        first = occ.receive((sock, occ.ANY), timeout=10)[1]
        kind, why = occ.receive((sock, occ.ANY), timeout=10)[1]
        return [first, kind, "over the limit" in why]

    assert occ.run(main) == [("tcp", b"ok"), "tcp_error", True]


def test_a_unix_socket_path_listens_and_connects(tmp_path):
    path = str(tmp_path / "s.sock")

    def main() -> bytes:
        listener = net.listen(path=path, framing="line")
        net.controlling_process(listener, occ.spawn(acceptor, listener))
        sock = net.connect(path=path, framing="line", active=False)
        net.send(sock, b"unix")
        return net.recv(sock, timeout=10)

    assert occ.run(main) == b"UNIX"


def test_a_refused_connection_raises_in_the_caller():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused

    def main() -> None:
        net.connect("127.0.0.1", port)

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    assert isinstance(info.value.reason[1], ConnectionRefusedError)


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (lambda: net.listen(70000), ValueError, r"^net\.listen\(\): port=70000 is out of range"),
        (lambda: net.listen("80"), TypeError, r"^net\.listen\(\): port='80' is not a port number"),
        (lambda: net.listen(0, framing="lines"), ValueError, r"^net\.listen\(\): framing='lines' is not a framing"),
        (
            lambda: net.controlling_process("sock", occ.slf()),
            TypeError,
            r"^net\.controlling_process\(\): 'sock' is not a socket",
        ),
    ],
    ids=["port-out-of-range", "port-not-int", "unknown-framing", "not-a-socket"],
)
def test_bad_input_is_refused_naming_the_value(call, error, says):
    def main() -> None:
        call()

    with pytest.raises(occ.ProcessExit) as info:
        occ.run(main)
    assert isinstance(info.value.reason[1], error)
    assert re.match(says, str(info.value.reason[1])), str(info.value.reason[1])


def _sockets_of(pid: int | str) -> set[str]:
    """The sockets among a process's open fds, as /proc names them (``socket:[inode]``)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _own_sockets() -> list[str]:
    return sorted(_sockets_of("self"))


def test_a_socket_is_inherited_by_no_process_and_no_port():
    from occasional import ports

    def main() -> tuple[list[str], list[str], bytes]:
        listener = net.listen(0)
        sock = net.connect("127.0.0.1", listener.port)
        net.accept(listener, timeout=10)
        mine = _sockets_of("self")
        assert sock is not None and len(mine) >= 3
        in_process = occ.spawn(lambda to: occ.send(to, ("fds", _own_sockets())), occ.slf())
        _, theirs = occ.receive(("fds", occ.ANY), timeout=10)
        del in_process
        port = ports.open_port(["ls", "-l", "/proc/self/fd"], framing="raw")
        out = b""
        while True:
            _, (kind, data) = occ.receive((port, occ.ANY), timeout=10)
            if kind != "data":
                break
            out += data
        return sorted(mine & set(theirs)), [s for s in mine if s.encode() in out], out

    shared_with_process, shared_with_port, listing = occ.run(main)
    assert (shared_with_process, shared_with_port) == ([], [])
    assert listing.startswith(b"total ")  # the listing ran


def test_data_an_owner_received_before_a_handover_goes_with_the_socket_in_order():
    def keep(to: occ.Pid) -> None:
        sock = occ.receive(("take", occ.ANY))[1]
        occ.send(to, ("got", [occ.receive((sock, occ.ANY), timeout=10)[1] for _ in range(3)]))

    def main() -> Any:
        listener = net.listen(0, framing="line")
        raw = socket.create_connection(("127.0.0.1", listener.port))
        sock = net.accept(listener, timeout=10)
        raw.sendall(b"one\ntwo\n")
        occ.receive((sock, ("tcp", b"two")), timeout=10)  # "one" arrived too, and stays in the mailbox
        taker = occ.spawn(keep, occ.slf())
        net.controlling_process(sock, taker)
        occ.send(taker, ("take", sock))
        raw.sendall(b"three\n")
        raw.close()
        return occ.receive(("got", occ.ANY), timeout=10)[1]

    assert occ.run(main) == [("tcp", b"one"), ("tcp", b"three"), ("tcp_closed", None)]


def test_an_fd_a_process_attaches_to_a_request_that_takes_none_is_closed_by_central():
    from occasional.core import protocol as P, runtime as _runtime
    from occasional.core.context import current

    with occ.runtime():
        rt = _runtime._runtime
        assert rt is not None
        central = f"/proc/{rt.central.pid}/fd"
        ctx = current("test")
        ctx.wait_reply(ctx.request(P.REGISTERED), None)
        before = len(os.listdir(central))
        r, w = os.pipe()
        for _ in range(50):
            ctx.wait_reply(ctx.request_with_fd(r, P.REGISTERED), None)
        os.close(r)
        os.close(w)
        after = len(os.listdir(central))
    assert after - before <= 2  # it was one more fd in central per request
