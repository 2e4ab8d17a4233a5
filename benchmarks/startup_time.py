"""How long the `cloudfree` command takes to start: `cloudfree remove --help` (every library the
command loads, no work), this checkout against another git revision, alternating.

    python benchmarks/startup_time.py                  # against main, 10 rounds
    python benchmarks/startup_time.py --ref HEAD~1 --rounds 20
    python benchmarks/startup_time.py --remove-imports   # what a `remove` run loads first
    python benchmarks/startup_time.py --exit --model cloudfree-fillnet   # how a run ends

Each round runs `python -m cloudfree remove --help` once with this checkout's `cloudfree`,
then with REV's (its ``cloudfree/`` unpacked, as `remove_equality.py` does), in fresh
processes, after one untimed round. Printed: the median and every round's wall and CPU
seconds (user and system). `python -X importtime -m cloudfree remove --help` shows where the
time goes, module by module.

``--help`` loads no pipeline; ``--remove-imports`` times instead what a `remove` run imports
before any work (the command's modules and the pipeline's, the launcher's deferred modules
left unloaded as it leaves them), the same way. ``--exit`` times instead how a `remove` run on
the bundled sample ends: the wall seconds from its result line to the process's end (and the
whole run's CPU seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remove_pipeline import ROOT, unpack
from safe_speed import run

#: What `cloudfree remove` imports before its work, with the launcher's deferred modules.
REMOVE_IMPORTS = ("from cloudfree.cli.launch import DEFERRED, defer\n"
                  "for name in DEFERRED:\n    defer(name)\n"
                  "import cloudfree.cli.commands, cloudfree.pipeline.remove")


def after_result(cmd: list[str], package: Path) -> tuple[float, float, float]:
    """As ``safe_speed.run``, but the wall seconds from the command's first line on stdout (the
    result line) to its end."""
    proc = subprocess.Popen(cmd, cwd=package, env={**os.environ, "PYTHONPATH": str(package)},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline()
    start = time.perf_counter()
    _, status, use = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) or not line:
        sys.exit(f"{' '.join(cmd)} failed ({os.waitstatus_to_exitcode(status)})")
    proc.stdout.close()
    return wall, use.ru_utime + use.ru_stime, use.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--remove-imports", action="store_true",
                        help="time what a remove run imports, not remove --help")
    parser.add_argument("--exit", action="store_true",
                        help="time how a remove run on the bundled sample ends")
    parser.add_argument("--model", default="median-fill", help="with --exit: remove's model")
    args = parser.parse_args()
    sample = ROOT / "examples" / "data"
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "cloudfree", "remove", "--help"]
        if args.remove_imports:
            command = [sys.executable, "-c", REMOVE_IMPORTS]
        if args.exit:
            command = [sys.executable, "-m", "cloudfree", "remove", "--s2", str(sample / "s2.tif"),
                       "--s1", str(sample / "s1.tif"), "-o", str(Path(tmp) / "out.tif"),
                       "--model", args.model, "--overwrite", "--quiet"]
        timed = after_result if args.exit else run
        trees = {"this checkout": ROOT, args.ref: unpack(args.ref, Path(tmp) / "ref")}
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
        for i in range(args.rounds + 1):
            for name, package in trees.items():
                timing = timed(command, package)
                if i:  # the first round warms the page cache
                    figures[name].append(timing)
    print("| cloudfree | wall s (median) | CPU s (median) | wall s (rounds) |\n|---|---|---|---|")
    for name, rows in figures.items():
        wall, cpu, _ = zip(*rows, strict=True)
        print(f"| {name} | {statistics.median(wall):.3f} | {statistics.median(cpu):.3f} | "
              f"{', '.join(f'{w:.2f}' for w in wall)} |")


if __name__ == "__main__":
    main()
