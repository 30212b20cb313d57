"""Many processes alive at once: 2,000 that each wait for a message and answer it.

occasional: main spawns 2,000 processes one after another, timing each block
of 100 spawns (the time per spawn must stay flat from the first block to the
last), then sends each one ("ping", main, i) and checks that every one
answers ("pong", i). While all are alive, it sums Pss from
/proc/<pid>/smaps_rollup over the user processes and divides by their count.
Baseline, in the same run: a small Python interpreter (``python -c``) that
forks the same number of raw os.fork() children, each blocked in os.read() on
a pipe, measured the same way.

Target (ARCHITECTURE.md, "Performance budget"): 2,000 processes, each
reachable, spawn time flat; PSS <= 2 MiB per process.
"Flat" is judged here as: the slowest block of 100 takes at most 1.5x the
first block's time per spawn.

Mind the fd limit: main holds one socket per process it talks to, central two
per process (`ulimit -n` of 20,000 is plenty for 2,000).

Run: .venv/bin/python bench/many.py [--n 2000] [--block 100]
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import subprocess
import sys
import time

import occasional as occ

import _bench

TARGET_PSS_MIB = 2.0
FLAT = 1.5


def pss_kib(pid: int) -> int | None:
    """Pss of one process in KiB, from smaps_rollup; None if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_per_process(pids: list[int]) -> tuple[float, int]:
    """(MiB per process, how many were measured)."""
    got = [k for k in (pss_kib(p) for p in pids) if k is not None]
    return sum(got) / len(got) / 1024, len(got)


def fault_us(mib: int = 128) -> float:
    """Microseconds to fault in one fresh 4 KiB page, touching ``mib`` MiB.

    Spawning is mostly page faults (the fork's page tables, copy-on-write in
    the forkserver and in the new process), so the machine's own fault cost
    is printed before and after: on a VM it can change as memory fills up.
    """
    size = mib << 20
    m = mmap.mmap(-1, size)
    try:
        t0 = time.perf_counter()
        m[::4096] = b"\x01" * (size // 4096)
        return (time.perf_counter() - t0) / (size // 4096) * 1e6
    finally:
        m.close()


# -- raw baseline ---------------------------------------------------------------------

RAW_PARENT = """
import os, sys
n = int(sys.argv[1])
r, w = os.pipe()
kids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
os.close(r)
print(" ".join(map(str, kids)), flush=True)
sys.stdin.read()
os.close(w)
for pid in kids:
    os.waitpid(pid, 0)
"""


def raw_baseline(n: int) -> tuple[float, int, float, float]:
    """(PSS MiB per child, children measured, PSS MiB of the parent, seconds per fork)."""
    t0 = time.perf_counter()
    parent = subprocess.Popen(
        [sys.executable, "-c", RAW_PARENT, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        kids = [int(x) for x in parent.stdout.readline().split()]  # type: ignore[union-attr]  # stdout=PIPE: never None
        per_fork = (time.perf_counter() - t0) / n
        per_child, measured = pss_per_process(kids)
        parent_pss = (pss_kib(parent.pid) or 0) / 1024
    finally:
        parent.stdin.close()  # type: ignore[union-attr]  # stdin=PIPE: never None
        parent.wait()
    return per_child, measured, parent_pss, per_fork


# -- occasional ---------------------------------------------------------------------


def waiter() -> None:
    tag, boss, i = occ.receive()
    occ.send(boss, ("pong", i))
    occ.receive()  # stay alive until the runtime ends


def occ_main(n: int, block: int) -> dict[str, object]:
    spawn, perf = occ.spawn, time.perf_counter
    # The runtime's own processes: the forkserver is every user process's
    # parent, central is the forkserver's parent.
    fs = os.getppid()
    with open(f"/proc/{fs}/stat") as f:
        central = int(f.read().rsplit(")", 1)[1].split()[1])
    me_os = os.getpid()

    def cpu() -> list[float]:
        return [_bench.cpu_seconds(p) for p in (me_os, central, fs)]

    pids: list[occ.Pid] = []
    blocks: list[float] = []
    cpu_blocks: list[list[float]] = []  # CPU seconds per spawn of main, central, forkserver
    faults: list[float] = []  # the machine's page fault cost after each block
    t_all = perf()
    for _ in range(n // block):
        c0 = cpu()
        t0 = perf()
        for _ in range(block):
            pids.append(spawn(waiter))
        blocks.append((perf() - t0) / block)
        cpu_blocks.append([(b - a) / block for a, b in zip(c0, cpu(), strict=True)])
        faults.append(fault_us(32))  # outside the timed part
    spawn_total = perf() - t_all
    fault_after = fault_us()
    os_pids = [p.os_pid for p in pids]
    idle_pss, idle_measured = pss_per_process(os_pids)

    me = occ.slf()
    t0 = perf()
    for i, p in enumerate(pids):
        occ.send(p, ("ping", me, i))
    answered = set()
    try:
        while len(answered) < n:
            tag, i = occ.receive(("pong", occ.ANY), timeout=30)
            answered.add(i)
    except TimeoutError:
        pass
    answer_time = perf() - t0
    busy_pss, busy_measured = pss_per_process(os_pids)
    child_cpu = [_bench.cpu_seconds(p) for p in os_pids]
    return {
        "blocks": blocks,
        "cpu_blocks": cpu_blocks,
        "spawn_total": spawn_total,
        "answered": len(answered),
        "answer_time": answer_time,
        "idle_pss": idle_pss,
        "idle_measured": idle_measured,
        "busy_pss": busy_pss,
        "busy_measured": busy_measured,
        "child_cpu": sum(child_cpu) / len(child_cpu),
        "fault_after": fault_after,
        "faults": faults,
        "child_cpu_blocks": [sum(child_cpu[i : i + block]) / block for i in range(0, len(child_cpu), block)],
        "main_pss": (pss_kib(me_os) or 0) / 1024,
        "fs_pss": (pss_kib(fs) or 0) / 1024,
        "central_pss": (pss_kib(central) or 0) / 1024,
        "fds_main": len(os.listdir("/proc/self/fd")),
        "fds_central": len(os.listdir(f"/proc/{central}/fd")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=_bench.sized(2000, 500))
    ap.add_argument("--block", type=int, default=_bench.sized(100, 50))
    args = ap.parse_args()
    n, block = args.n, args.block
    _bench.header(f"{n:,} processes alive at once")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"fd limit: soft {soft}, hard {hard}")
    if soft < 2 * n + 100:
        sys.exit(f"many.py: the fd limit ({soft}) is too low for {n} processes; run `ulimit -n {4 * n}` first")

    fault_before = fault_us()
    raw_pss, raw_measured, raw_parent, raw_fork = raw_baseline(n)
    t0 = time.perf_counter()
    o = occ.run(occ_main, n, block)
    run_total = time.perf_counter() - t0

    blocks: list[float] = o["blocks"]
    cpu_blocks: list[list[float]] = o["cpu_blocks"]
    child_blocks: list[float] = o["child_cpu_blocks"]
    faults: list[float] = o["faults"]
    print(
        f"\nper block of {block} spawns (occasional spawn(), one at a time): wall time per spawn, and CPU per spawn "
        "of main, central and the forkserver while the block ran, and of each new process (its whole life, read at the end); "
        "last column: the machine's cost of faulting in a fresh page, probed after the block"
    )
    _bench.table(
        [
            "processes",
            "wall per spawn",
            "CPU main",
            "CPU central",
            "CPU forkserver",
            "CPU of the new process",
            "page fault",
        ],
        [
            [
                f"{i * block + 1}-{(i + 1) * block}",
                _bench.ms(b),
                *(_bench.ms(c) for c in cb),
                _bench.ms(cc),
                f"{f:.1f} us",
            ]
            for i, (b, cb, cc, f) in enumerate(zip(blocks, cpu_blocks, child_blocks, faults, strict=False))
        ],
    )
    first, worst, last = blocks[0], max(blocks), blocks[-1]
    flat = worst / first <= FLAT
    # The same, over the blocks before the machine's page faults got dearer
    # (more than twice the cost measured before the run): on a VM, memory
    # the guest has not used lately can cost several times more to fault in.
    calm = [b for b, f in zip(blocks, faults, strict=True) if f <= 2 * fault_before]
    calm_worst = max(calm) if calm else float("nan")
    answered = o["answered"]
    busy_pss: float = o["busy_pss"]
    idle_pss: float = o["idle_pss"]
    print()
    rows = [
        ["spawn time per process, first block", _bench.ms(first), "-", "-", "-", "-"],
        ["spawn time per process, last block", _bench.ms(last), "-", f"{last / first:.2f}x of first", "-", "-"],
        ["spawn time per process, slowest block", _bench.ms(worst), "-", f"{worst / first:.2f}x of first", f"<= {FLAT}x of first", _bench.verdict(flat)],
        [f"  same, over the {len(calm)} blocks before page faults got dearer", _bench.ms(calm_worst), "-",
         f"{calm_worst / first:.2f}x of first", "(info)", "-"],
        ["processes that answered", f"{answered:,} of {n:,}", "-", "-", f"all {n:,}", _bench.verdict(answered == n)],
        ["PSS per process, all waiting", f"{idle_pss:.2f} MiB", f"{raw_pss:.2f} MiB", f"{idle_pss / raw_pss:.2f}x", "(info)", "-"],
        ["PSS per process, after answering", f"{busy_pss:.2f} MiB", f"{raw_pss:.2f} MiB", f"{busy_pss / raw_pss:.2f}x",
         f"<= {TARGET_PSS_MIB} MiB", _bench.verdict(busy_pss <= TARGET_PSS_MIB)],
    ]  # fmt: skip
    _bench.table(["figure", "occasional", "raw os.fork() child", "ratio", "target", "verdict"], rows)
    print(f"\nmeasured PSS of {o['busy_measured']} occasional processes and {raw_measured} raw children")
    print(f"raw: {raw_fork * 1e3:.3f} ms per os.fork() (incl. interpreter start), parent {raw_parent:.1f} MiB PSS")
    print(
        f"occasional: {n} spawns in {o['spawn_total']:.2f} s; all {n} pinged and answered in {o['answer_time']:.2f} s; "
        f"occ.run total {run_total:.2f} s (incl. start and stop)"
    )
    print(
        f"page fault cost of this machine (fresh 4 KiB page): {fault_before:.1f} us before, "
        f"{o['fault_after']:.1f} us with all {n} processes alive"
    )
    print(f"CPU each user process used to start, answer and wait (mean): {o['child_cpu'] * 1e3:.2f} ms")
    print(
        f"runtime's own PSS: main {o['main_pss']:.1f} MiB, central {o['central_pss']:.1f} MiB, forkserver {o['fs_pss']:.1f} MiB; "
        f"open fds: main {o['fds_main']}, central {o['fds_central']}"
    )
    _bench.result(
        "many",
        [
            {
                "figure": f"{n} processes: spawn time flat (slowest / first block of {block})",
                "measured": f"{worst * 1e3:.2f} ms vs {first * 1e3:.2f} ms",
                "baseline": "-",
                "ratio": round(worst / first, 2),
                "target": f"<= {FLAT}x",
                "met": flat,
            },
            {
                "figure": f"{n} processes: spawn time flat, blocks before the VM's page faults got dearer ({len(calm)} of {len(blocks)})",
                "measured": f"{calm_worst * 1e3:.2f} ms vs {first * 1e3:.2f} ms",
                "baseline": "-",
                "ratio": round(calm_worst / first, 2),
                "target": "(info)",
                "met": None,
            },
            {
                "figure": f"{n} processes: every one answers",
                "measured": f"{answered}/{n}",
                "baseline": "-",
                "ratio": None,
                "target": f"{n}/{n}",
                "met": answered == n,
            },
            {
                "figure": "PSS per process",
                "measured": f"{busy_pss:.2f} MiB",
                "baseline": f"{raw_pss:.2f} MiB (raw os.fork() child)",
                "ratio": round(busy_pss / raw_pss, 2),
                "target": f"<= {TARGET_PSS_MIB} MiB",
                "met": busy_pss <= TARGET_PSS_MIB,
            },
        ],
    )


if __name__ == "__main__":
    main()
