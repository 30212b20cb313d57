"""Port line throughput: ``cat`` echoing 100-byte lines, lines/s back at the owner.

Every side sends N lines of 100 bytes (99 bytes and the newline) through
``cat`` and counts them as they come back, each line its own ``bytes`` object;
the clock runs from the first line sent to the last line received, with
``cat`` already started.

- baseline, in the same run: ``subprocess.Popen(["cat"], stdin=PIPE,
  stdout=PIPE)``, a writer thread writing each line to ``proc.stdin`` (a
  buffered writer, as Popen makes it: 8 KiB, about 80 lines, per write) and
  the main thread iterating ``proc.stdout``, which returns each line as a new
  bytes object. (It keeps the newline, where the port strips it: a little
  less work for the baseline.)
- occasional, ``framing="lines"`` (issue 15, batched delivery): ``port =
  occasional.ports.open_port(["cat"], framing="lines")``; every line of one
  read comes in one message ``(port, ("lines", [line, ...]))``. The owner
  keeps ``--window`` lines in flight, sending them ``--chunk`` lines per
  ``occ.send(port, b"\n".join(chunk))`` (the port appends the last newline),
  as the baseline's buffered writer does; for each message it counts the
  lines and tops the window up (one process cannot send from a second
  thread, and sending everything first would measure the port's buffering).
- occasional, ``framing="line"`` (the default, one message
  ``(port, ("data", line))`` per line): the same sends and window, one
  receive per line.
- info: ``framing="line"`` with one ``occ.send`` per line, as this benchmark
  did before issue 15 (the owner then pays a message each way per line).
- info: that per-line loop against an occasional process that answers
  each bytes message ``m`` with ``(its pid, ("data", m))``: the message
  passing alone, without cat, the pipes or the port's framing.

Targets (issue 15): ``"lines"`` >= 0.5x the raw pipe reader; ``"line"`` >=
300,000 lines/s (its ratio to raw is info). Rounds alternate the sides; the
ratio is the median of the rounds' ratios.

Run: .venv/bin/python bench/port_lines.py [--rounds 5] [--n 200000] [--window 1000] [--chunk 100]
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from collections.abc import Callable

import occasional as occ

import _bench

TARGET_LINES_RATIO = 0.5  # framing="lines" vs the raw reader
TARGET_LINE_RATE = 300_000  # framing="line", lines/s
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


def occ_batched_main(payloads: list[bytes], window: int, chunk: int, framing: str) -> float:
    """lines/s through a port running cat: ``chunk`` lines per send, ``window`` in flight."""
    import occasional.ports as ports

    n = len(payloads)
    chunk = max(1, min(chunk, window))
    sends = [b"\n".join(payloads[i : i + chunk]) for i in range(0, n, chunk)]  # the port adds the last newline
    port = ports.open_port(["cat"], framing=framing)
    send, receive = occ.send, occ.receive  # a port is a process: bytes sent to it are written to stdin
    # One line there and back first, so cat is running before the clock starts.
    send(port, payloads[0])
    first = receive()
    assert first in ((port, ("data", payloads[0])), (port, ("lines", [payloads[0]]))), first
    batched = framing == "lines"
    sent = got = 0  # lines
    k = 0  # sends made
    last = b""
    t0 = time.perf_counter()
    while k < len(sends) and sent < window:
        send(port, sends[k])
        sent += min(chunk, n - sent)
        k += 1
    while got < n:
        _, (tag, what) = receive()
        if batched:
            if tag != "lines":
                raise AssertionError(f"cat's port sent {tag!r} before all lines came back")
            got += len(what)
            last = what[-1]
        else:
            if tag != "data":
                raise AssertionError(f"cat's port sent {tag!r} before all lines came back")
            got += 1
            last = what
        while k < len(sends) and sent - got <= window - chunk:
            send(port, sends[k])
            sent += min(chunk, n - sent)
            k += 1
    dt = time.perf_counter() - t0
    assert got == n and last == payloads[-1], (got, last[:20])
    ports.close(port)
    msg = receive()
    assert msg == (port, ("exit_status", 0)), msg
    return n / dt


def occ_main(payloads: list[bytes], window: int) -> float:
    """lines/s through a port running cat, one send per line, `window` lines in flight (info)."""
    import occasional.ports as ports

    n = len(payloads)
    port = ports.open_port(["cat"], framing="line")
    send, receive = occ.send, occ.receive
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


def _sample(
    why: dict[str, str], key: str, samples: list[float], f: Callable[..., float], *args: object
) -> float | None:
    """One occasional sample into ``samples``; after a failure, the side has no figure (``why``)."""
    if key in why:
        return None
    try:
        x = occ.run(f, *args)
    except Exception as e:
        why[key] = f"failed: {e!r}"
        return None
    samples.append(x)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=_bench.sized(5, 2))
    ap.add_argument("--n", type=int, default=_bench.sized(200_000, 50_000), help="lines per round and side")
    ap.add_argument("--window", type=int, default=1000, help="lines the occasional owner keeps in flight")
    ap.add_argument("--chunk", type=int, default=100, help="lines per send in the batched-send rows")
    args = ap.parse_args()
    _bench.header("port line throughput: cat echoing 100-byte lines")
    print(
        f"{args.rounds} rounds; each round {args.n:,} lines raw, then occasional (window {args.window}, "
        f"{args.chunk} lines per send); figure = median lines/s, ratio = median of the rounds' ratios"
    )
    payloads = lines(args.n)
    why: dict[str, str] = {}  # why a side has no figure
    raw: list[float] = []
    batched: list[float] = []
    single: list[float] = []
    per_send: list[float] = []
    echoes: list[float] = []
    ratios: dict[str, list[float]] = {"lines": [], "line": [], "per_send": []}
    for _ in range(args.rounds):
        r = raw_round(payloads)
        raw.append(r)
        for key, samples, f, extra in (
            ("lines", batched, occ_batched_main, (args.window, args.chunk, "lines")),
            ("line", single, occ_batched_main, (args.window, args.chunk, "line")),
            ("per_send", per_send, occ_main, (args.window,)),
        ):
            x = _sample(why, key, samples, f, payloads, *extra)
            if x is not None:
                ratios[key].append(x / r)
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
    lines_label = f"occasional open_port(['cat'], framing='lines'), {args.chunk} lines per send"
    lines_figure = "port line throughput, cat, 100-byte lines, framing='lines' (a read's lines per message)"
    if batched:
        ratio = _bench.median(ratios["lines"])
        met = ratio >= TARGET_LINES_RATIO
        rows.append(
            [
                lines_label,
                f"{_bench.median(batched):,.0f}",
                f"{ratio:.2f}x",
                f">= {TARGET_LINES_RATIO}x",
                _bench.verdict(met),
                _bench.spread(batched),
            ]
        )
        out.append(
            {
                "figure": lines_figure,
                "measured": f"{_bench.median(batched):,.0f} lines/s",
                "baseline": f"{base:,.0f} lines/s (raw subprocess pipe)",
                "ratio": round(ratio, 2),
                "target": f">= {TARGET_LINES_RATIO}x raw",
                "met": met,
            }
        )
    else:
        reason = why.get("lines", "no samples")
        rows.append([lines_label, "-", "-", f">= {TARGET_LINES_RATIO}x", "-", reason])
        out.append(
            {
                "figure": lines_figure,
                "measured": reason,
                "baseline": f"{base:,.0f} lines/s (raw subprocess pipe)",
                "ratio": None,
                "target": f">= {TARGET_LINES_RATIO}x raw",
                "met": False,
            }
        )
    line_label = f"occasional open_port(['cat'], framing='line'), one message per line, {args.chunk} lines per send"
    line_figure = "port line throughput, cat, 100-byte lines, framing='line' (one message per line)"
    line_target = f">= {TARGET_LINE_RATE:,} lines/s"
    if single:
        rate = _bench.median(single)
        met = rate >= TARGET_LINE_RATE
        rows.append(
            [
                line_label,
                f"{rate:,.0f}",
                f"{_bench.median(ratios['line']):.2f}x (info)",
                line_target,
                _bench.verdict(met),
                _bench.spread(single),
            ]
        )
        out.append(
            {
                "figure": line_figure,
                "measured": f"{rate:,.0f} lines/s",
                "baseline": f"{base:,.0f} lines/s (raw subprocess pipe; ratio for info)",
                "ratio": round(_bench.median(ratios["line"]), 2),
                "target": line_target,
                "met": met,
            }
        )
    else:
        reason = why.get("line", "no samples")
        rows.append([line_label, "-", "-", line_target, "-", reason])
        out.append(
            {
                "figure": line_figure,
                "measured": reason,
                "baseline": f"{base:,.0f} lines/s (raw subprocess pipe)",
                "ratio": None,
                "target": line_target,
                "met": False,
            }
        )
    per_send_label = "occasional framing='line', one send per line (as before issue 15; info)"
    if per_send:
        rows.append(
            [
                per_send_label,
                f"{_bench.median(per_send):,.0f}",
                f"{_bench.median(ratios['per_send']):.2f}x",
                "(info)",
                "-",
                _bench.spread(per_send),
            ]
        )
    else:
        rows.append([per_send_label, "-", "-", "(info)", "-", why.get("per_send", "no samples")])
    rows.append(
        [
            "occasional, an echo process instead of a port, one send per line (no cat, no pipes; info)",
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
    for key, label in (("lines", "'lines'"), ("line", "'line'")):
        if ratios[key]:
            print(f"ratio per round, {label}: {', '.join(f'{x:.2f}' for x in ratios[key])}")
    _bench.result("port_lines", out)


if __name__ == "__main__":
    main()
