"""A quick sweep of path and stop faults across every subcommand, on the real samples.

For each subcommand and each of its path options, puts a symbolic link loop, a dangling link, a
FIFO, an immutable file (root only) or nothing there, runs the command with a time limit, and
checks what a user must see: a non-zero exit with one line (no traceback, no hang), or success;
then a SIGTERM in the middle of each long-running command (exit 143, one line, no partial).
Prints one row per run and a count of the runs that broke a rule.

    python scripts/fault_sweep.py [--only mask,remove] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEN12 = ROOT.parent / "shared" / "data" / "sen12mscr"
S2 = SEN12 / "ROIs1868_summer_19_p30_s2_cloudy.tif"
S1 = SEN12 / "ROIs1868_summer_19_p30_s1.tif"
WINTER = SEN12 / "ROIs2017_winter_112_p797_s2_cloudy.tif"
LIMIT_S = 120

#: Per command: its arguments, with ``{in:NAME}`` and ``{out:NAME}`` where a fault can go.
COMMANDS = {
    "mask": ["mask", "{in:s2}", "-o", "{out:o.tif}", "--score", "{out:s.tif}"],
    "remove": ["remove", "--s2", "{in:s2}", "--s1", "{in:s1}", "-o", "{out:o.tif}",
               "--mask-out", "{out:m.tif}", "--preview", "{out:p.png}"],
    "coregister": ["coregister", "--s2", "{in:s2}", "--s1", "{in:s1}", "-o", "{out:o.tif}",
                   "--report", "{out:r.json}"],
    "evaluate": ["evaluate", "{in:data}", "--model", "median-fill", "--report", "{out:r.json}",
                 "--csv", "{out:r.csv}"],
    "batch": ["batch", "{in:scenes}", "-o", "{out:outs}", "--command", "mask", "--report",
              "{out:run.json}"],
    "train": ["train", "{in:data}", "--epochs", "3", "--crop", "32", "-o", "{out:run}"],
    "export-onnx": ["export-onnx", "--model", "cloudfree-fillnet", "-o", "{out:x.onnx}"],
}
FAULTS = ("loop", "dangling", "fifo", "immutable")


def inputs(folder: Path) -> dict[str, Path]:
    """The real inputs, in a folder of their own (the data folder holds one twin triplet)."""
    data = folder / "data"
    data.mkdir()
    for src in SEN12.glob("ROIs2017_winter_112_p797_*.tif"):
        shutil.copy(src, data / src.name)
    scenes = folder / "scenes" / "a"
    scenes.mkdir(parents=True)
    for src in (S2, S1):
        shutil.copy(src, scenes / src.name)
    return {"s2": S2, "s1": S1, "data": data, "scenes": scenes.parent}


def place(fault: str, path: Path) -> bool:
    """Put ``fault`` at ``path``; False when this machine cannot (immutable without root)."""
    if fault == "loop":
        path.symlink_to(path.name)
    elif fault == "dangling":
        path.symlink_to(path.name + ".missing")
    elif fault == "fifo":
        os.mkfifo(path)
    else:
        shutil.copy(WINTER, path)
        return subprocess.run(["chattr", "+i", path], capture_output=True).returncode == 0
    return True


def run(args: list[str], stop_after: float | None = None) -> tuple[int | None, str]:
    """Exit code (None: hung past the limit) and stderr of ``cloudfree ARGS``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cloudfree", *args], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stop_after is not None:
        time.sleep(stop_after)
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None, proc.communicate()[1]
    return proc.returncode, err


def verdict(code: int | None, err: str, folder: Path, expect_fail: bool) -> str:
    """'' when the run kept the rules, else what it broke."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("cloudfree: ")]
    problems = []
    if code is None:
        problems.append("hung")
    if "Traceback" in err:
        problems.append("traceback")
    if code not in (None, 0) and len(lines) != 1:
        problems.append(f"{len(lines)} lines")
    if expect_fail and code == 0:
        problems.append("exit 0")
    if code in (-6, 134, -9, 137):
        problems.append(f"crash {code}")
    if any(".partial" in p.name for p in folder.rglob("*")):
        problems.append("partial left")
    return ", ".join(problems)


def expand(args: list[str], slots: dict[str, Path]) -> list[str]:
    out = []
    for arg in args:
        if arg.startswith("{"):
            kind, name = arg[1:-1].split(":")
            out.append(str(slots.get(f"{kind}:{name}")))
        else:
            out.append(arg)
    return out


def sweep(names: list[str], keep: Path | None) -> int:
    broken = 0
    base = Path(tempfile.mkdtemp(prefix="cloudfree-sweep-", dir=keep))
    given = inputs(base)
    for name in names:
        args = COMMANDS[name]
        slots = [a[1:-1] for a in args if a.startswith("{")]
        for slot in slots:
            for fault in FAULTS:
                folder = base / f"{name}-{slot.replace(':', '-')}-{fault}"
                folder.mkdir()
                paths = {s: (given[s.split(":")[1]] if s.startswith("in:")
                             else folder / s.split(":")[1]) for s in slots}
                if slot.startswith("in:"):
                    paths[slot] = folder / f"bad{Path(str(given[slot[3:]])).suffix}"
                if not place(fault, paths[slot]):
                    continue
                # an immutable output is only in the way with --overwrite
                extra = ["--overwrite"] if fault == "immutable" and slot.startswith("out:") else []
                code, err = run(expand(args, paths) + extra)
                # an immutable input can be read: it may well work
                readable = fault == "immutable" and slot.startswith("in:")
                problem = verdict(code, err, folder, expect_fail=not readable)
                broken += bool(problem)
                last = err.strip().splitlines()[-1] if err.strip() else ""
                print(f"{name:12} {slot:14} {fault:10} exit {code}: {problem or 'ok'}: {last}")
                if fault == "immutable":
                    subprocess.run(["chattr", "-i", paths[slot]], capture_output=True)
        folder = base / f"{name}-sigterm"
        folder.mkdir()
        paths = {s: (given[s.split(":")[1]] if s.startswith("in:") else folder / s.split(":")[1])
                 for s in slots}
        code, err = run(expand(args, paths), stop_after=4.0)
        problem = verdict(code, err, folder, expect_fail=False)
        if code not in (0, 143):
            problem = ", ".join(filter(None, [problem, f"exit {code} on SIGTERM"]))
        broken += bool(problem)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        print(f"{name:12} {'SIGTERM':14} {'':10} exit {code}: {problem or 'ok'}: {last}")
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{broken} run(s) broke a rule")
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="Comma-separated subcommands (default: all).")
    parser.add_argument("--keep", type=Path, help="Keep the runs' folders under this folder.")
    options = parser.parse_args()
    names = options.only.split(",") if options.only else list(COMMANDS)
    sys.exit(1 if sweep(names, options.keep) else 0)


if __name__ == "__main__":
    main()
