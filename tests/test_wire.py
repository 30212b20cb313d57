"""Bad bytes end a connection with a reason, never central (API.md section 10).

Garbage can only be written through a raw socket, so these tests reach the
calling process's sockets through its context: the one place the tests use
an internal, because no public call can write a torn frame.
"""

import time

import pytest

import occasional as occ
from occasional.core.context import current
from occasional.sck.frame import Decoder, FrameError, frame


def _echo():
    while True:
        frm, msg = occ.receive()
        occ.send(frm, msg)


def test_a_process_that_writes_garbage_to_central_is_killed_with_a_reason_that_says_so():
    def vandal():
        current("test").central.sendall(b"\xff\xff\xff\xff garbage")
        time.sleep(30)

    def main():
        pid, ref = occ.spawn_monitor(vandal)
        _, _, _, reason = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
        echo = occ.spawn(_echo)
        occ.send(echo, (occ.slf(), "still here"))
        return reason, occ.receive(timeout=10)

    (kind, why), answer = occ.run(main)
    assert kind == "killed"
    assert why.startswith("its connection to central broke: peer announced a frame of 4294967295 bytes")
    assert answer == "still here"


def test_a_peer_that_sends_garbage_loses_its_connection_and_the_receiver_keeps_working():
    def vandal(victim):
        occ.send(victim, (occ.slf(), "hello"))
        assert occ.receive(timeout=10) == "hello"
        # A whole frame whose body is not a message: msgpack "a" followed by junk.
        current("test").out[victim.id].sock.sendall(frame(b"\x61\xc1\xc1"))
        return "sent garbage"

    def main():
        echo = occ.spawn(_echo)
        pid, ref = occ.spawn_monitor(vandal, echo)
        _, _, _, reason = occ.receive(("DOWN", ref, occ.ANY, occ.ANY), timeout=10)
        occ.send(echo, (occ.slf(), "after"))
        return reason, occ.receive(timeout=10), occ.process_info(echo) is not None

    assert occ.run(main) == (("ok", "sent garbage"), "after", True)


def test_a_torn_frame_at_the_end_of_a_stream_is_an_error_that_says_how_much_arrived():
    dec = Decoder()
    assert dec.feed(frame(b"whole") + frame(b"0123456789abcdef!")[:7]) == [b"whole"]
    with pytest.raises(FrameError, match=r"^peer closed the connection after 3 of 17 bytes of a frame$"):
        dec.close()


def test_a_frame_longer_than_the_limit_is_refused_before_it_is_read():
    dec = Decoder(max_frame=1024)
    assert dec.feed((1025).to_bytes(4, "big") + b"x") == []
    assert dec.error == FrameError("peer announced a frame of 1025 bytes, over the limit of 1024 bytes")
    with pytest.raises(FrameError, match=r"^peer announced a frame of 1025 bytes, over the limit of 1024 bytes$"):
        dec.feed(b"more")


def test_frames_split_anywhere_come_out_whole_and_in_order():
    data = b"".join(frame(bytes([i]) * i) for i in range(50))
    dec = Decoder()
    out = []
    for i in range(0, len(data), 7):
        out.extend(dec.feed(data[i : i + 7]))
    assert out == [bytes([i]) * i for i in range(50)]
    dec.close()
