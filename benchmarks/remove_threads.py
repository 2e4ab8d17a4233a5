"""How busy `cloudfree remove`'s threads keep the cores, and what holds them back.

    python benchmarks/remove_threads.py S2 S1 OUT [--model NAME] [--interval S] [--bucket S]

Runs the command (every default, COG output) as a child whose Python threads carry their names into
the system's (``pthread_setname_np``; a pool's threads are ``cloudfree-P_i``, pool P in the order
the pools start; a thread GDAL starts takes the name of the one that started it), and reads each
thread's scheduler statistics (Linux's ``/proc/PID/task/TID/schedstat``: nanoseconds on a CPU and
waiting on the run queue) every ``--interval`` seconds. For each group of threads (a pool; the main
thread; the memory watcher; the threads no Python code named, GDAL's) it prints when it ran, its
CPU seconds, its seconds runnable but waiting for a core (the other threads of the command, and
other jobs, had them) and its seconds blocked: asleep on a lock, a queue, a disk or the
interpreter's GIL (a thread waiting for the GIL sleeps on a condition). Blocked time, unlike CPU
time per wall second, does not depend on what else runs on the machine, so it tells what holds a
pool's threads back on a busy machine too. The timeline gives, per ``--bucket`` seconds, the cores
the command's threads wanted (on a CPU or waiting for one): below the machine's cores, the command
had no more work ready.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

#: Runs ``cloudfree``'s command line with each Python thread named in the system as in Python
#: (the first 15 characters), then as ``python -m cloudfree`` does.
CHILD = """
import ctypes, threading, sys
_setname = ctypes.CDLL(None).pthread_setname_np
_setname.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
_setname(threading.get_ident(), b"main")
_run = threading.Thread.run
def run(self):
    _setname(threading.get_ident(), self.name.encode()[:15])
    _run(self)
threading.Thread.run = run
sys.argv = ["cloudfree", *sys.argv[1:]]
from cloudfree.cli.launch import main
main()
"""


def group(name: str, tid: int, pid: int) -> str:
    """A pool's threads together (``cloudfree-P_i`` -> ``cloudfree-P``); the threads no Python
    code starts (GDAL's) take the name of the thread that started them: those the main thread
    started apart from it."""
    if tid == pid:
        return "main thread"
    if name == "main":
        return "GDAL's, from the main thread"
    return name.rsplit("_", 1)[0] if name.startswith("cloudfree-") else name


def sample(pid: int) -> dict[int, tuple[str, int, int]]:
    """Each live thread of ``pid``: (name, ns on a CPU, ns waiting on the run queue)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run, wait, _ = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
        out[int(tid)] = (name, run, wait)
    return out


def watch(cmd: list[str], interval: float) -> tuple[float, list[tuple[float, dict]], int]:
    """Run ``cmd``; its wall seconds, the samples (seconds from its start, ``sample``) and its
    process id."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples = []
    while child.poll() is None:
        samples.append((time.perf_counter() - start, sample(child.pid)))
        time.sleep(interval)
    if child.returncode:
        sys.exit(f"the command failed ({child.returncode}): {' '.join(cmd)}")
    return time.perf_counter() - start, samples, child.pid


def report(wall: float, samples: list[tuple[float, dict]], pid: int, bucket: float) -> None:
    """The groups' table and the timeline of cores wanted (markdown)."""
    first: dict[int, tuple[float, int, int]] = {}
    last: dict[int, tuple[float, str, int, int]] = {}
    for t, snap in samples:
        for tid, (name, run, wait) in snap.items():
            first.setdefault(tid, (t, run, wait))
            last[tid] = (t, name, run, wait)
    rows: dict[str, list[float]] = defaultdict(lambda: [0, 1e9, 0.0, 0.0, 0.0, 0.0])
    for tid, (t1, name, run1, wait1) in last.items():
        t0, run0, wait0 = first[tid]
        row = rows[group(name, tid, pid)]
        row[0] += 1
        row[1], row[2] = min(row[1], t0), max(row[2], t1)
        row[3] += t1 - t0
        row[4] += (run1 - run0) / 1e9
        row[5] += (wait1 - wait0) / 1e9
    print(f"wall {wall:.2f} s; CPU {sum(r[4] for r in rows.values()):.2f} s over the threads "
          "(sampled)\n")
    print("| threads | how many | from s | to s | alive s (summed) | CPU s | waiting for a core s "
          "| blocked s | blocked share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (n, t0, t1, alive, run, wait) in sorted(rows.items(), key=lambda r: r[1][1]):
        blocked = max(alive - run - wait, 0.0)
        print(f"| {name} | {n} | {t0:.1f} | {t1:.1f} | {alive:.2f} | {run:.2f} | {wait:.2f} | "
              f"{blocked:.2f} | {blocked / max(alive, 1e-9):.0%} |")
    print(f"\nCores wanted (on a CPU or waiting for one) per {bucket:g} s, by group "
          "(a thread's wait is counted when it gets its core)\n")
    print("| from s | cores used | cores wanted | by group |")
    print("|---|---|---|---|")
    seen: dict[int, tuple[int, int]] = {}
    edge, used, wanted = bucket, defaultdict(int), defaultdict(int)
    for t, snap in samples:
        while t >= edge:
            if used or wanted:
                parts = " ".join(f"{k} {v / 1e9 / bucket:.2f}"
                                 for k, v in sorted(wanted.items()) if v > 0.02e9 * bucket)
                print(f"| {edge - bucket:.1f} | {sum(used.values()) / 1e9 / bucket:.2f} | "
                      f"{sum(wanted.values()) / 1e9 / bucket:.2f} | {parts} |")
            used, wanted, edge = defaultdict(int), defaultdict(int), edge + bucket
        for tid, (name, run, wait) in snap.items():
            run0, wait0 = seen.get(tid, (run, wait))
            used[group(name, tid, pid)] += run - run0
            wanted[group(name, tid, pid)] += run - run0 + wait - wait0
            seen[tid] = (run, wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("s2", type=Path)
    parser.add_argument("s1", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="median-fill")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between two looks at the threads")
    parser.add_argument("--bucket", type=float, default=0.5,
                        help="seconds per line of the timeline")
    args = parser.parse_args()
    cmd = [sys.executable, "-c", CHILD, "remove", "--s2", str(args.s2), "--s1", str(args.s1),
           "-o", str(args.out), "--model", args.model, "--quiet", "--overwrite"]
    report(*watch(cmd, args.interval), args.bucket)


if __name__ == "__main__":
    main()
