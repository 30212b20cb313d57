"""Port line throughput: ``cat`` echoing 100-byte lines, lines/s back at the owner.

Every side sends N lines of 100 bytes (99 bytes and the newline) through
``cat`` and counts them as they come back, each line its own ``bytes`` object;
the clock runs from the first line sent to the last line received, with
``cat`` already started.

- occasional: ``port = occasional.ports.open_port(["cat"], framing="line")``;
  the owner keeps ``--window`` lines in flight: it sends that many with
  ``occ.send(port, line)``, then for each ``(port, ("data",
  line))`` it receives, sends the next (one process cannot send from a second
  thread, and sending everything first would measure the port's buffering).
- baseline, in the same run: ``subprocess.Popen(["cat"], stdin=PIPE,
  stdout=PIPE)``, a writer thread writing each line to ``proc.stdin`` (a
  buffered writer, as Popen makes it) and the main thread iterating
  ``proc.stdout``, which returns each line as a new bytes object. (It keeps the
  newline, where the port strips it: a little less work for the baseline.)
- info: the owner's same loop against an occasional process that answers
  each bytes message ``m`` with ``(its pid, ("data", m))``: the message
  passing a port needs, without cat, the pipes or the port's framing.

Target (issue 5): occasional >= 0.8x the raw pipe reader. Rounds alternate the
sides; the ratio is the median of the rounds' ratios.

Run: .venv/bin/python bench/port_lines.py [--rounds 5] [--n 200000] [--window 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time

import occasional as occ

import _bench

TARGET_RATIO = 0.8
LINE = b"%099d"  # 99 bytes; the newline makes 100


def lines(n: int) -> list[bytes]:
    return [LINE % i for i in range(n)]


def raw_round(payloads: list[bytes]) -> float:
    """lines/s through cat with a writer thread and a reading main thread."""
    n = len(payloads)
    data = [p + b"\n" for p in payloads]
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def writer() -> None:
        write = stdin.write
        for line in data:
            write(line)
        stdin.close()

    t = threading.Thread(target=writer)
    got = 0
    last = b""
    t0 = time.perf_counter()
    t.start()
    for line in stdout:
        got += 1
        last = line
    dt = time.perf_counter() - t0
    t.join()
    proc.wait()
    assert got == n and last == data[-1], (got, last[:20])
    return n / dt


def occ_main(payloads: list[bytes], window: int) -> float:
    """lines/s through a port running cat, owner keeping `window` lines in flight."""
    import occasional.ports as ports

    n = len(payloads)
    port = ports.open_port(["cat"], framing="line")
    send, receive = occ.send, occ.receive  # a port is a process: bytes sent to it are frames for stdin
    # One line there and back first, so cat is running before the clock starts.
    send(port, payloads[0])
    assert receive() == (port, ("data", payloads[0]))
    sent = got = 0
    last = b""
    t0 = time.perf_counter()
    while sent < min(window, n):
        send(port, payloads[sent])
        sent += 1
    while got < n:
        _, (tag, last) = receive()
        if tag != "data":
            raise AssertionError(f"cat's port sent {tag!r} before all lines came back")
        got += 1
        if sent < n:
            send(port, payloads[sent])
            sent += 1
    dt = time.perf_counter() - t0
    assert last == payloads[-1], last[:20]
    ports.close(port)
    msg = receive()
    assert msg == (port, ("exit_status", 0)), msg
    return n / dt


def echo(owner: occ.Pid) -> None:
    """What a port's driver does per line, minus cat and the pipes: bytes in, (me, ("data", bytes)) out."""
    me, send, receive = occ.slf(), occ.send, occ.receive
    while True:
        line = receive()
        if line is None:
            return
        send(owner, (me, ("data", line)))


def occ_echo_main(payloads: list[bytes], window: int) -> float:
    """The same loop as occ_main against an echo process: the message passing alone (info)."""
    n = len(payloads)
    peer = occ.spawn(echo, occ.slf())
    send, receive = occ.send, occ.receive
    send(peer, payloads[0])
    assert receive() == (peer, ("data", payloads[0]))
    sent = got = 0
    last = b""
    t0 = time.perf_counter()
    while sent < min(window, n):
        send(peer, payloads[sent])
        sent += 1
    while got < n:
        _, (tag, last) = receive()
        got += 1
        if sent < n:
            send(peer, payloads[sent])
            sent += 1
    dt = time.perf_counter() - t0
    assert last == payloads[-1], last[:20]
    send(peer, None)
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=200_000, help="lines per round and side")
    ap.add_argument("--window", type=int, default=1000, help="lines the occasional owner keeps in flight")
    args = ap.parse_args()
    _bench.header("port line throughput: cat echoing 100-byte lines")
    print(
        f"{args.rounds} rounds; each round {args.n:,} lines raw, then occasional (window {args.window}); "
        "figure = median lines/s, ratio = median of the rounds' ratios"
    )
    payloads = lines(args.n)
    why: str | None = None  # why the occasional side has no figure
    raw: list[float] = []
    o: list[float] = []
    echoes: list[float] = []
    ratios: list[float] = []
    for _ in range(args.rounds):
        r = raw_round(payloads)
        raw.append(r)
        if why is None:
            try:
                x = occ.run(occ_main, payloads, args.window)
            except Exception as e:
                why = f"failed: {e!r}"
            else:
                o.append(x)
                ratios.append(x / r)
        echoes.append(occ.run(occ_echo_main, payloads, args.window))

    base = _bench.median(raw)
    rows = [
        [
            "raw Popen(['cat']) pipe, writer thread + reading main (baseline)",
            f"{base:,.0f}",
            "-",
            "-",
            "-",
            _bench.spread(raw),
        ]
    ]
    out = []
    if o:
        ratio = _bench.median(ratios)
        met = ratio >= TARGET_RATIO
        rows.append(
            [
                "occasional open_port(['cat'], framing='line')",
                f"{_bench.median(o):,.0f}",
                f"{ratio:.2f}x",
                f">= {TARGET_RATIO}x",
                _bench.verdict(met),
                _bench.spread(o),
            ]
        )
        out.append(
            {
                "figure": "port line throughput, cat, 100-byte lines",
                "measured": f"{_bench.median(o):,.0f} lines/s",
                "baseline": f"{base:,.0f} lines/s (raw subprocess pipe)",
                "ratio": round(ratio, 2),
                "target": f">= {TARGET_RATIO}x raw",
                "met": met,
            }
        )
    else:
        rows.append(
            ["occasional open_port(['cat'], framing='line')", "-", "-", f">= {TARGET_RATIO}x", "-", why or "no samples"]
        )
        out.append(
            {
                "figure": "port line throughput, cat, 100-byte lines",
                "measured": why,
                "baseline": f"{base:,.0f} lines/s (raw subprocess pipe)",
                "ratio": None,
                "target": f">= {TARGET_RATIO}x raw",
                "met": False,
            }
        )
    rows.append(
        [
            "occasional, an echo process instead of a port (no cat, no pipes; info)",
            f"{_bench.median(echoes):,.0f}",
            f"{_bench.median(echoes) / base:.2f}x",
            "(info)",
            "-",
            _bench.spread(echoes),
        ]
    )
    _bench.table(
        ["cat echoing 100-byte lines", "lines/s", "ratio vs raw", "target", "verdict", "samples (lines/s)"], rows
    )
    if ratios:
        print(f"ratio per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    _bench.result("port_lines", out)


if __name__ == "__main__":
    main()
