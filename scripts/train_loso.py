"""Leave-one-scene-out folds of candidate fill networks: ``train_default.py --holdout`` per scene.

    python scripts/train_loso.py --data DATA [DATA ...] --out RUNS \\
        --candidates fillnet:small fillnet:paper [--epochs 20] [--samples 400] [--jobs 5] \\
        [--device cuda] [--amp] [--workers 2] [--threads 1] [--scenes SCENE ...] \\
        [--deadline SECONDS] [--seed 0]

Every (candidate, scene) pair is one run of ``scripts/train_default.py --holdout SCENE``, in its
own process group, ``--jobs`` at a time, writing ``RUNS/<arch>-<preset>/<scene>/`` (``last.pt``,
``train_state.pt``, ``log.csv`` and the run's output in ``train.log``). The scenes are by default
the real triplets that ``remove``'s mask finds cloud on (those ``benchmarks/fill_quality.py
--loso RUNS`` scores, each with the run that never saw it). Runs go candidate by candidate.

A run whose checkpoint holds ``--epochs`` epochs is skipped and a half-done one resumes
(``--resume``), so a second call continues the first. ``--deadline`` seconds after the start no
run is launched and the running ones are stopped (SIGTERM to their process group, SIGKILL 10 s
later); their checkpoints of finished epochs stay, to resume. Workers and threads per run
default to a share of the cores: ``cores // jobs`` each, on a GPU one torch thread and the rest
data-loading processes, on the CPU all torch threads and no loader process. Prints one line per
finished run with its wall time, then what is missing; the exit status is 1 when anything is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from train_default import has_cloud, real_triplets, triplet_records

from cloudfree.core.threads import usable_cores
from cloudfree.inference.checkpoint import load_checkpoint
from cloudfree.networks import get_architecture
from cloudfree.training.loop import CHECKPOINT, STATE

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
#: Seconds a stopped run gets between SIGTERM and SIGKILL.
GRACE = 10


@dataclass
class Run:
    """One fold: a candidate trained without one scene."""

    arch: str
    preset: str
    scene: str
    out: Path
    process: subprocess.Popen | None = None
    started: float = 0.0

    @property
    def name(self) -> str:
        """``<arch>-<preset>/<scene>``, the run's folder under ``--out``."""
        return f"{self.arch}-{self.preset}/{self.scene}"

    @property
    def folder(self) -> Path:
        """Where the run writes."""
        return self.out / self.name


def run_epochs(folder: Path) -> tuple[int, int]:
    """(epochs done, epochs asked) of the run in ``folder``; (0, 0) before its first epoch."""
    if not (folder / CHECKPOINT).is_file():
        return 0, 0
    training = load_checkpoint(folder / CHECKPOINT).metadata["training"]
    return training["epoch"], training["epochs"]


def cloudy_scenes(folders: list[Path]) -> list[str]:
    """The real triplets' scenes, both splits, on which ``remove``'s mask finds cloud."""
    records = triplet_records(folders)
    return [r["scene"] for r, s in zip(records, real_triplets(records), strict=True)
            if has_cloud(s)]


def share(jobs: int, device: str) -> tuple[int, int]:
    """(loader workers, torch threads) per run so that ``jobs`` runs share the cores."""
    cores = max(1, usable_cores() // jobs)
    return (0, cores) if device == "cpu" else (max(1, cores - 1), 1)


def command(run: Run, args: argparse.Namespace, resume: bool) -> list[str]:
    """The ``train_default.py`` command line of one run."""
    cmd = [sys.executable, str(SCRIPTS / "train_default.py"), "--data", *map(str, args.data),
           "--out", str(run.folder), "--holdout", run.scene, "--preset", run.preset,
           "--epochs", str(args.epochs), "--samples", str(args.samples), "--device",
           args.device, "--workers", str(args.workers), "--threads", str(args.threads),
           "--seed", str(args.seed)]
    return cmd + ["--amp"] * args.amp + ["--resume"] * resume


def launch(run: Run, args: argparse.Namespace) -> None:
    """Start a run in its own process group; a half-done one resumes, debris is cleared."""
    done = run_epochs(run.folder)[0]
    resume = done > 0 and (run.folder / STATE).is_file()
    if not resume:
        shutil.rmtree(run.folder, ignore_errors=True)
    run.folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(run.folder / "train.log", "a") as log:
        run.process = subprocess.Popen(command(run, args, resume), stdout=log,
                                       stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                       start_new_session=True)
    run.started = time.monotonic()
    print(f"started {run.name}" + (f" (resuming after epoch {done})"
                                                    if resume else ""), flush=True)


def stop(run: Run) -> None:
    """SIGTERM to the run's process group, SIGKILL after ``GRACE`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(run.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            run.process.wait(GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def report(run: Run, args: argparse.Namespace) -> None:
    """One line on a run that ended; the tail of its log when it failed."""
    wall = time.monotonic() - run.started
    if run.process.returncode == 0:
        print(f"finished {run.name}: {args.epochs} epochs, {wall:.0f} s",
              flush=True)
        return
    tail = (run.folder / "train.log").read_text(errors="replace").splitlines()[-5:]
    print(f"FAILED {run.name} (exit {run.process.returncode}, {wall:.0f} s):\n  "
          + "\n  ".join(tail), flush=True)


def schedule(runs: list[Run], args: argparse.Namespace, deadline: float) -> None:
    """Run ``runs``, ``--jobs`` at a time, until done or ``deadline`` (``time.monotonic``)."""
    waiting, running = deque(runs), []
    try:
        while waiting or running:
            if time.monotonic() >= deadline:
                print(f"deadline: stopping {len(running)} runs, {len(waiting)} not started",
                      flush=True)
                break
            while waiting and len(running) < args.jobs:
                running.append(waiting.popleft())
                launch(running[-1], args)
            for run in [r for r in running if r.process.poll() is not None]:
                running.remove(run)
                report(run, args)
            time.sleep(0.5)
    finally:
        for run in running:
            stop(run)


def parse_args() -> argparse.Namespace:
    """The command line, with workers and threads filled in."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--candidates", nargs="+", required=True, metavar="ARCH:PRESET")
    parser.add_argument("--scenes", nargs="+", help="default: the triplets with cloud")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=400, help="samples per epoch")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--workers", type=int, help="data-loading processes per run")
    parser.add_argument("--threads", type=int, help="torch threads per run")
    parser.add_argument("--deadline", type=float, help="seconds; then stop everything")
    parser.add_argument("--seed", type=int, default=0, help="of every run (a second draw)")
    args = parser.parse_args()
    args.candidates = [tuple(c.partition(":")[::2]) for c in args.candidates]
    for arch, preset in args.candidates:
        if arch != "fillnet" or preset not in get_architecture(arch).presets:
            parser.error(f"candidate {arch}:{preset}: train_default.py trains fillnet:PRESET "
                         f"only ({', '.join(get_architecture('fillnet').presets)})")
    workers, threads = share(args.jobs, args.device)
    args.workers = workers if args.workers is None else args.workers
    args.threads = threads if args.threads is None else args.threads
    return args


def main() -> None:
    started = time.monotonic()
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the runs on the way out
    scenes = args.scenes or cloudy_scenes(args.data)
    runs = [Run(arch, preset, scene, args.out) for arch, preset in args.candidates
            for scene in scenes]
    todo = [r for r in runs if run_epochs(r.folder)[0] < args.epochs]
    print(f"{len(runs)} runs ({len(args.candidates)} candidates x {len(scenes)} scenes), "
          f"{len(runs) - len(todo)} already finished; {args.jobs} at a time, each "
          f"{args.workers} loader workers and {args.threads} threads on {args.device}",
          flush=True)
    schedule(todo, args, started + (args.deadline or float("inf")))
    missing = [r for r in runs if run_epochs(r.folder)[0] < args.epochs]
    print(f"{len(runs) - len(missing)}/{len(runs)} runs finished in "
          f"{time.monotonic() - started:.0f} s" + "".join(
              f"\nmissing {r.name} ({run_epochs(r.folder)[0]}/{args.epochs} "
              "epochs)" for r in missing))
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
