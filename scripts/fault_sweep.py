"""A quick sweep of faults across every subcommand, on the real samples.

Paths: for each subcommand and each of its path options, puts a symbolic link loop, a dangling
link, a FIFO, an immutable file (root only) or nothing there, runs the command with a time limit,
and checks what a user must see: a non-zero exit with one line (no traceback, no hang), or
success; then a SIGTERM in the middle of each long-running command (exit 143, one line, no
partial).

Families: bad data (an all-NaN Sentinel-1 to train on, a band file short of the grid or cut
off, a band of reflectance among digital numbers, band descriptions naming no band, an offset
the data does not carry, a percent-encoded STAC href, a scene a few percent clear), bad options
(a diverging learning rate, ``--workers 100000``, a crop larger than the samples, ``--tile 16``,
``-o o.tif/``), Dask schedulers that are missing, not a scheduler file, not there or not Dask,
address-space limits too low for PyTorch, and kills (SIGKILL of ``batch --jobs 2`` and of
``train`` before its first epoch, SIGTERM while the command loads). Each case expects a one-line
failure, a warning, or success; the processes of each run are watched until they end.

Prints one row per run, then the counts: runs, tracebacks (or native aborts, or an error not
in one line), silent results (exit 0 where a failure or a warning was due, or a stop that ended
the run without a word), refused (a failure where the input is good), leftovers (outputs or
folders left by a failed or killed run), orphans (processes of a run alive 15 s after it
ended), hangs.

    python scripts/fault_sweep.py [--part paths|families|all] [--only mask,remove] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

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


def message_lines(err: str) -> list[str]:
    """The lines of ``err`` that are no log line and no part of click's usage hint."""
    return [line for line in err.strip().splitlines()
            if line.strip() and not line.startswith(("cloudfree: ", "Usage: ", "Try '"))]


def verdict(code: int | None, err: str, folder: Path, expect_fail: bool) -> str:
    """'' when the run kept the rules, else what it broke."""
    lines = message_lines(err)
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


# --- families -------------------------------------------------------------------------------


@dataclass
class Case:
    """One run of a family: what it runs, what must come of it, what it must not leave."""

    family: str
    args: list
    #: "fail" (non-zero, one line), "warn" (exit 0 with ``needle``), "ok", "any" (exit 0 or
    #: one line), "stop" (a stop signal: its exit code and one line, or 0 when the work was
    #: done before it came)
    expect: str
    needle: str = ""
    left: tuple = ()  # paths a failed or killed run must not leave
    limit_as: int | None = None  # address-space limit (bytes)
    kill: tuple | None = None  # (when, signal): when a line holding text, "partial:DIR" or secs
    code: str | None = None  # run ``python -c code ARGS`` instead of ``python -m cloudfree``
    limit_s: float = LIMIT_S


def _process_group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _await_kill(proc: subprocess.Popen, when, err: Path) -> None:
    """Wait for the moment ``when`` names: a line of stderr holding a text, a partial output
    in a folder (``partial:DIR``), or a number of seconds."""
    deadline = time.monotonic() + LIMIT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if isinstance(when, float | int):
            time.sleep(when)
            return
        if when.startswith("partial:"):
            folder = Path(when[8:])
            if folder.is_dir() and any(".partial" in q.name for q in folder.iterdir()):
                return
        elif when in err.read_text(errors="replace"):
            time.sleep(0.5)
            return
        time.sleep(0.02)


def run_case(case: Case, folder: Path) -> dict:
    """Run ``case`` in its own process group; what came of it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    head = [sys.executable, "-c", case.code] if case.code else [sys.executable, "-m", "cloudfree"]

    def limit() -> None:
        if case.limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (case.limit_as, case.limit_as))

    err = folder / "stderr.txt"
    with open(err, "w") as errors:
        proc = subprocess.Popen([*head, *map(str, case.args)], env=env, stdout=subprocess.DEVNULL,
                                stderr=errors, start_new_session=True, preexec_fn=limit)
    if case.kill is not None:
        _await_kill(proc, case.kill[0], err)
        if proc.poll() is None:
            proc.send_signal(case.kill[1])
    try:
        code = proc.wait(timeout=case.limit_s)
    except subprocess.TimeoutExpired:
        code = None
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while _process_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = _process_group(proc.pid)
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    return {"code": code, "stderr": err.read_text(errors="replace"), "orphans": orphans}


def judge(case: Case, got: dict) -> dict[str, bool]:
    """Which rules the run broke, by count."""
    code, stderr = got["code"], got["stderr"]
    lines = message_lines(stderr)
    failed = code not in (0, None)
    killed = case.kill is not None and case.kill[1] == signal.SIGKILL
    return {
        "tracebacks": "Traceback" in stderr or code in (-6, 134)
        or (failed and not killed and case.expect != "stop" and len(lines) != 1),
        "silent": (code == 0 and (case.expect == "fail"
                                  or (case.expect == "warn" and case.needle not in stderr)))
        or (case.expect == "stop" and code != 0 and "Interrupted" not in stderr),
        "refused": failed and case.expect in ("ok", "warn") and not killed,
        "leftovers": (failed or code is None or killed)
        and any(os.path.lexists(q) for q in case.left),
        "orphans": bool(got["orphans"]),
        "hangs": code is None,
    }


def _data(folder: Path, nan_s1: bool = False) -> Path:
    """The winter triplet in a training folder of its own, its S1 all NaN if asked."""
    folder.mkdir(parents=True)
    for src in SEN12.glob("ROIs2017_winter_112_p797_*.tif"):
        shutil.copy(src, folder / src.name)
    if nan_s1:
        with rasterio.open(folder / "ROIs2017_winter_112_p797_s1.tif", "r+") as ds:
            ds.write(np.full((ds.count, ds.height, ds.width), np.nan, np.float32))
    return folder


def _bands(folder: Path, change=None) -> Path:
    """A folder of per-band files of the summer scene's top-left 120 px; ``change(B04 path)``
    rewrites its B04."""
    from s2_builders import coarsen_like_l1c, read_stack, write_band_folder

    from cloudfree.io.sentinel2 import BANDS

    data, profile = read_stack(S2, 120)
    write_band_folder(folder, coarsen_like_l1c(data), profile, BANDS)
    if change is not None:
        change(folder / "B04.tif")
    return folder


def _rewrite_b04(path: Path, rows: int | None = None, dtype: str | None = None) -> None:
    with rasterio.open(path) as ds:
        profile, data = ds.profile, ds.read()
    if rows is not None:
        data = data[:, :rows]
    if dtype is not None:
        data = data.astype(dtype) / 10000
    profile.update(height=data.shape[1], dtype=data.dtype)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _stac_percent(folder: Path) -> Path:
    """A STAC item of per-band files whose B04 href is percent-encoded (``B04%20v2.tif``)."""
    from s2_builders import write_stac_item

    from cloudfree.io.sentinel2 import BANDS

    files = _bands(folder / "assets")
    with rasterio.open(files / "B02.tif") as ds:
        bbox = tuple(ds.bounds)
    item = write_stac_item(folder / "item.json", {b: files / f"{b}.tif" for b in BANDS}, bbox, {})
    shutil.move(files / "B04.tif", files / "B04 v2.tif")
    found = json.loads(item.read_text())
    found["assets"]["B04"]["href"] = "assets/B04%20v2.tif"
    item.write_text(json.dumps(found))
    return item


def _described(path: Path) -> Path:
    with rasterio.open(S2) as ds:
        profile, data = ds.profile, ds.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for band in range(1, dst.count + 1):
            dst.set_band_description(band, "foo")
    return path


def _few_clear(path: Path) -> Path:
    """The summer scene's cloud cores repeated over it, but for a 56 px square of the clear
    winter land (a few percent of the scene clear)."""
    from cloudfree.io.sentinel2 import open_sentinel2
    from cloudfree.mask.classify import CLOUD, MaskParams, classify

    with open_sentinel2(S2) as s2:
        classes, score = classify(s2.read()[0], None, MaskParams())
    with rasterio.open(S2) as ds:
        summer, profile = ds.read(), ds.profile
    with rasterio.open(SEN12 / "ROIs2017_winter_112_p797_s2_cloudfree.tif") as ds:
        land = ds.read()
    cores = summer[:, (classes == CLOUD) & (score > 0.5)]
    image = cores[:, np.arange(summer[0].size) % cores.shape[1]].reshape(summer.shape)
    image[:, 100:156, 100:156] = land[:, 100:156, 100:156]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    return path


def _junk_server() -> str:
    """The address of a local server that answers in HTTP, not Dask's protocol."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 8)

    threading.Thread(target=answer, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}"


#: A stop while the command's libraries load: ``python -c`` starting the CLI as its entry point.
LAUNCH = "import sys; from cloudfree.cli.launch import main; sys.argv[0] = 'cloudfree'; main()"


def families(base: Path) -> list[tuple[Case, Path]]:
    """Every case of every family, each with a folder of its own holding its inputs."""
    sys.path.insert(0, str(ROOT / "tests"))  # the Sentinel-2 builders of the tests
    cases: list[tuple[Case, Path]] = []

    def add(family: str, make) -> None:
        folder = base / f"{len(cases):02d}-{family}"
        folder.mkdir()
        cases.append((make(folder), folder))

    mib = 2**20
    fillnet = ["remove", "--s2", S2, "--s1", S1, "--model", "cloudfree-fillnet"]
    add("train-nan-s1", lambda f: Case("train-nan-s1", [
        "train", _data(f / "d", True), "--epochs", "1", "--crop", "32", "-o", f / "run"],
        "fail", left=(f / "run",)))
    add("train-nan-s1-workers", lambda f: Case("train-nan-s1", [
        "train", _data(f / "d", True), "--epochs", "1", "--crop", "32", "--workers", "2",
        "-o", f / "run"], "fail", left=(f / "run",)))
    add("train-lr", lambda f: Case("train-lr", [
        "train", _data(f / "d"), "--epochs", "1", "--crop", "32", "--lr", "1e30",
        "-o", f / "run"], "fail", left=(f / "run",)))
    add("train-workers", lambda f: Case("train-workers", [
        "train", _data(f / "d"), "--epochs", "1", "--crop", "32", "--workers", "100000",
        "-o", f / "run"], "warn", "data-loading processes asked for", limit_s=60))
    add("train-crop", lambda f: Case("train-crop", [
        "train", _data(f / "d"), "--epochs", "1", "--crop", "512", "-o", f / "run"],
        "warn", "is larger than sample"))
    add("train-killed", lambda f: Case("train-killed", [
        "train", _data(f / "d"), "--epochs", "1", "--crop", "128", "-o", f / "run"],
        "ok", left=(f / "run",), kill=("training dsen2cr", signal.SIGKILL)))
    add("train-workers-killed", lambda f: Case("train-workers", [
        "train", _data(f / "d"), "--epochs", "1", "--crop", "32", "--workers", "100000",
        "-o", f / "run"], "ok", left=(f / "run",), kill=(3.0, signal.SIGKILL)))

    def batch_killed(f: Path) -> Case:
        from helpers import mosaic

        for name in ("a", "b"):
            (f / "s" / name).mkdir(parents=True)
            mosaic(S2, f / "s" / name / "s2.tif", 8)
        return Case("batch-killed", ["batch", f / "s", "-o", f / "out", "--command", "mask",
                                     "--jobs", "2"], "ok",
                    kill=(f"partial:{f / 'out'}", signal.SIGKILL))
    add("batch-killed", batch_killed)

    scenes = base / "scenes"
    (scenes / "a").mkdir(parents=True)
    shutil.copy(S2, scenes / "a" / "s2.tif")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        nobody = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    for name, scheduler in (("missing", lambda f: f / "none.json"),
                            ("garbage", lambda f: _write(f / "s.json", b"\x00garbage{")),
                            ("unreachable", lambda f: nobody),
                            ("not-dask", lambda f: _junk_server())):
        add(f"dask-{name}", lambda f, scheduler=scheduler: Case("dask", [
            "batch", scenes, "-o", f / "out", "--command", "mask", "--dask-scheduler",
            scheduler(f)], "fail", left=(f / "out",), limit_s=30))

    for name, args in (("remove", [*fillnet, "-o", "{f}/o.tif"]),
                       ("train", ["train", SEN12, "--epochs", "1", "--crop", "32", "-o",
                                  "{f}/run"]),
                       ("export-onnx", ["export-onnx", "--model", "cloudfree-fillnet", "-o",
                                        "{f}/o.onnx"])):
        for limit in (680, 780):
            add(f"ulimit-{name}-{limit}", lambda f, args=args, limit=limit: Case(
                "ulimit-v", [str(a).format(f=f) for a in args], "any", limit_as=limit * mib,
                left=(f / "o.tif", f / "run", f / "o.onnx")))

    add("band-short", lambda f: Case("band-file", [
        "mask", _bands(f / "b", lambda p: _rewrite_b04(p, rows=100)), "-o", f / "m.tif"],
        "fail", left=(f / "m.tif",)))
    add("band-cut", lambda f: Case("band-file", [
        "mask", _bands(f / "b", _cut), "-o", f / "m.tif"], "fail", left=(f / "m.tif",)))
    add("band-float", lambda f: Case("band-file", [
        "mask", _bands(f / "b", lambda p: _rewrite_b04(p, dtype="float32")), "-o",
        f / "m.tif"], "fail", left=(f / "m.tif",)))
    add("described-foo", lambda f: Case("band-names", [
        "mask", _described(f / "foo.tif"), "-o", f / "m.tif"], "warn",
        "name no Sentinel-2 band"))
    add("offset-1000", lambda f: Case("offset", [
        "mask", S2, "--offset", "1000", "-o", f / "m.tif"], "warn",
        "below the radiometric offset"))
    add("stac-percent", lambda f: Case("stac-href", [
        "mask", _stac_percent(f), "-o", f / "m.tif"], "ok"))
    add("tile-16", lambda f: Case("tile", [*fillnet, "--tile", "16", "-o", f / "o.tif"],
                                  "warn", "narrower than what this model sees"))
    add("trailing-slash", lambda f: Case("output-path", [
        "mask", S2, "-o", f"{f / 'o.tif'}/"], "fail", left=(f / "o.tif",)))
    add("few-clear", lambda f: Case("few-clear", [
        "remove", "--s2", _few_clear(f / "s2.tif"), "--model", "median-fill", "-o",
        f / "o.tif"], "warn", "of the scene is clear"))
    for after in (0.25, 0.4, 0.6):
        add(f"sigterm-at-{after}s", lambda f, after=after: Case("sigterm-start", [
            "mask", S2, "-o", f / "m.tif"], "stop", left=(f / "m.tif",), code=LAUNCH,
            kill=(after, signal.SIGTERM)))
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


COUNTS = ("tracebacks", "silent", "refused", "leftovers", "orphans", "hangs")


def sweep_families(keep: Path | None) -> int:
    base = Path(tempfile.mkdtemp(prefix="cloudfree-families-", dir=keep))
    totals = dict.fromkeys(COUNTS, 0)
    cases = families(base)
    for case, folder in cases:
        got = run_case(case, folder)
        broken = judge(case, got)
        for name, bad in broken.items():
            totals[name] += bad
        last = got["stderr"].strip().splitlines()[-1] if got["stderr"].strip() else ""
        problem = ", ".join(name for name, bad in broken.items() if bad) or "ok"
        print(f"{folder.name[3:]:24} exit {got['code']}: {problem}: {last[:150]}", flush=True)
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)
    print(f"families: {len(cases)} runs, " + ", ".join(f"{totals[n]} {n}" for n in COUNTS))
    return sum(totals.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("paths", "families", "all"), default="all",
                        help="Path and stop faults per subcommand, the families, or both.")
    parser.add_argument("--only", help="Comma-separated subcommands of the paths part "
                        "(default: all).")
    parser.add_argument("--keep", type=Path, help="Keep the runs' folders under this folder.")
    options = parser.parse_args()
    names = options.only.split(",") if options.only else list(COMMANDS)
    broken = 0
    if options.part in ("paths", "all"):
        broken += sweep(names, options.keep)
    if options.part in ("families", "all"):
        broken += sweep_families(options.keep)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
