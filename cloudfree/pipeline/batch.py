"""Run ``remove`` or ``mask`` over many scenes, on local worker processes or a Dask cluster.

Every scene runs in isolation: an error becomes a ``failed`` row of the report and the other
scenes go on. Outputs appear only by rename (see :func:`cloudfree.output.atomic.atomic_output`),
so ``resume`` can skip any scene whose output exists.

Dask: ``dask_scheduler`` is the address of a running ``dask.distributed`` scheduler (or its
scheduler JSON file). Each worker imports cloudfree and opens the inputs and writes the outputs
itself, so workers need the same cloudfree version and the same paths (a shared file system).
Start one worker process per GPU, with one thread each, e.g. ``dask cuda worker`` or
``CUDA_VISIBLE_DEVICES=i dask worker ADDRESS --nthreads 1``; with ``device="auto"`` each worker
uses the GPU it sees.
"""

from __future__ import annotations

import csv
import json
import logging
import logging.handlers
import math
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.contrib.logging import logging_redirect_tqdm

from cloudfree.core.arguments import check_kind, check_path, check_switch, check_whole
from cloudfree.core.errors import CloudfreeError, UsageError, spelled
from cloudfree.core.paths import check_folder_output, check_input, input_problem, new_folder, taken
from cloudfree.core.progress import progress
from cloudfree.core.stop import (
    Interrupted,
    as_interrupted,
    check_stop,
    exit_with_parent,
    note_stop_signals,
    stop_handled,
    stop_requested,
    stops_held,
    stops_raise,
    task_running,
)
from cloudfree.core.threads import usable_cores
from cloudfree.inference.bundled import DEFAULT_MODEL, FILL_MODEL
from cloudfree.inference.engines import gpu_possible
from cloudfree.io.discovery import DEFAULT_S1_PATTERN, DEFAULT_S2_PATTERN, Problem, Scene, discover
from cloudfree.io.options import InputOptions
from cloudfree.output.atomic import atomic_output
from cloudfree.output.provenance import acquisition_time
from cloudfree.output.stac import CATALOG_FILE, SceneFiles, write_catalog

if TYPE_CHECKING:
    from distributed import Client

    from cloudfree.inference.engines import Engine

log = logging.getLogger("cloudfree")

COMMANDS = ("remove", "mask")
#: Options ``mask`` takes; ``remove`` takes any field of its option groups
#: (``pipeline.options``) and ``mask_params``.
MASK_OPTIONS = frozenset({"offset", "level", "creation_options", "overwrite", "cog", "bbox",
                          "bbox_crs", "thin"})
#: Options of ``mask`` that ``remove`` has not (switches).
MASK_ONLY = ("thin",)
#: batch's own remove options: also write each scene's mask, its uncertainty.
SCENE_OUTPUTS = ("masks", "uncertainty")
#: Options that say how to read each scene's own mask (``mask_pattern``), given with it.
GIVEN_MASK = ("mask_codes", "mask_threshold")
#: remove options batch sets for each scene (its outputs' names, its references).
PER_SCENE = frozenset({"mask_out", "preview", "source_out", "days_out", "uncertainty_out",
                       "references", "reference_s1", "reference_count"})
#: Worker processes a caller may ask for (``jobs``), and the most other scenes a scene takes
#: as references (``references``); the command line's ranges.
JOBS_RANGE = (1, 1024)
MAX_REFERENCES = 250
REPORT_FORMATS = (".json", ".csv")
#: Statuses of the scenes that were run or could have been (the others are files not run).
SCENE_STATUSES = ("ok", "failed", "skipped", "interrupted")
#: Failed scene names shown in the closing error line before "and N more".
SHOWN_FAILURES = 5
#: Seconds to connect to a Dask scheduler, before any output is made: a scheduler on the
#: network answers in well under a second; one not there is reported without a long wait.
DASK_CONNECT_S = 10

#: The GPU this worker process owns (set by the pool initializer), or None.
_worker_device: str | None = None
#: Threads a worker's `mask` uses (its share of the cores); None: all of them (one job).
_worker_threads: int | None = None


@dataclass(frozen=True)
class Task:
    """One scene to run, picklable for worker processes and Dask."""

    command: str
    scene: Scene
    output: Path
    options: dict
    #: How errors name the options: {name: (flag, switch)} (see ``errors.spelled``).
    flags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SceneResult:
    """One row of the run report."""

    scene: str
    status: str  # ok, failed, skipped, interrupted, unpaired, ignored
    seconds: float | None = None
    cloud_fraction: float | None = None
    error: str = ""
    s2: str = ""
    s1: str = ""
    output: str = ""

    @classmethod
    def of(cls, task: Task, status: str, **values) -> SceneResult:
        s1 = str(task.scene.s1) if task.scene.s1 else ""
        return cls(task.scene.name, status, s2=str(task.scene.s2), s1=s1,
                   output=str(task.output), **values)


@dataclass(frozen=True)
class BatchResult:
    """All rows of a run, in scene-name order, and its wall time."""

    results: list[SceneResult]
    seconds: float

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def scenes(self) -> int:
        """Rows that are scenes (not unpaired or ignored files)."""
        return sum(self.count(s) for s in SCENE_STATUSES)

    def summary(self) -> str:
        statuses = ("ok", "failed", "skipped") + (("interrupted",) if self.count("interrupted")
                                                  else ())
        counts = ", ".join(f"{self.count(s)} {s}" for s in statuses)
        extra = ", ".join(f"{self.count(s)} {s} file(s)" for s in ("unpaired", "ignored")
                          if self.count(s))
        return f"batch: {counts}{'; ' + extra if extra else ''} in {self.seconds:.1f} s"

    def check(self) -> None:
        """Raise a one-line CloudfreeError naming the failed scenes, if any."""
        if self.failed:
            names = [r.scene for r in self.failed]
            more = len(names) - SHOWN_FAILURES
            shown = ", ".join(names[:SHOWN_FAILURES]) + (f" and {more} more" if more > 0 else "")
            errors = {r.error for r in self.failed}
            common = f" (all: {errors.pop()})" if len(names) > 1 and len(errors) == 1 else ""
            raise CloudfreeError(
                f"{len(names)} of {self.scenes} scene(s) failed: {shown}{common}")


#: What follows the scene's name in each output's file name: remove's image, the mask (of
#: mask, or beside remove's image) and remove's uncertainty.
SUFFIXES = {"remove": "", "mask": "_mask", "uncertainty": "_uncertainty"}


def output_path(out_dir: Path, name: str, kind: str) -> Path:
    """``OUT/<scene>.tif`` for remove, ``OUT/<scene>_mask.tif`` for mask (``SUFFIXES``)."""
    return Path(out_dir) / f"{name}{SUFFIXES[kind]}.tif"


def scene_options(options: dict, out_dir: Path, name: str) -> dict:
    """The options of one scene: ``masks`` becomes remove's ``mask_out`` for it, and
    ``uncertainty`` its ``uncertainty_out``."""
    options = dict(options)
    if options.pop("masks", False):
        options["mask_out"] = output_path(out_dir, name, "mask")
    if options.pop("uncertainty", False):
        options["uncertainty_out"] = output_path(out_dir, name, "uncertainty")
    return options


def reference_options(scene: Scene, scenes: list[Scene], count: int) -> dict:
    """``remove_scene`` keywords giving ``scene`` up to ``count`` of the others as references,
    nearest acquisition date first (undated scenes last, by name), each with its S1: all the
    others in that order, of which the scene takes the first ``count`` that overlap it and can
    be read (``reference_count``; the rest are skipped with a warning)."""
    if not count:
        return {}
    when = acquisition_time(scene.s2)

    def distance(other: Scene) -> tuple[float, str]:
        other_time = acquisition_time(other.s2)
        if when is None or other_time is None:
            return math.inf, other.name
        return abs((other_time - when).total_seconds()), other.name

    ordered = sorted((o for o in scenes if o.s2 != scene.s2), key=distance)
    # the change check compares S1 of both dates: none without the scene's own
    reference_s1 = [o.s1 for o in ordered] if scene.s1 is not None else []
    return {"references": [o.s2 for o in ordered], "reference_s1": reference_s1,
            "reference_count": count}


def finished_files(batch: BatchResult, out_dir: Path, command: str) -> list[SceneFiles]:
    """The outputs of every scene done now or before (ok or skipped), and the masks and
    uncertainties beside them."""
    files = []
    for r in batch.results:
        if r.status not in ("ok", "skipped") or not Path(r.output).exists():
            continue
        mask, sigma = (output_path(out_dir, r.scene, kind) for kind in ("mask", "uncertainty"))
        mask = mask if mask.exists() else None
        sigma = sigma if sigma.exists() else None
        files.append(SceneFiles(r.scene, Path(r.output), mask, sigma) if command == "remove"
                     else SceneFiles(r.scene, mask=Path(r.output)))
    return files


def run_scene(task: Task) -> SceneResult:
    """Run one scene; every error becomes a failed result (one line), never an exception."""
    start = time.perf_counter()
    try:
        summary = _call(task)
    except CloudfreeError as exc:
        error = spelled(exc, task.flags)
    except Exception as exc:  # isolation: whatever breaks one scene must not stop the batch
        error = f"{type(exc).__name__}: {exc}"
    else:
        return SceneResult.of(task, "ok", seconds=round(time.perf_counter() - start, 3),
                              cloud_fraction=summary.get("cloud_fraction"))
    return SceneResult.of(task, "failed", seconds=round(time.perf_counter() - start, 3),
                          error=" ".join(error.split()))


def _call(task: Task) -> dict:
    if task.command == "mask":
        from cloudfree.pipeline.mask import mask_scene

        return mask_scene(task.scene.s2, task.output, quiet=True,
                          **{"threads": _worker_threads, **task.options})
    from cloudfree.pipeline.options import split_options
    from cloudfree.pipeline.remove import remove_scene

    options = dict(task.options)
    if _worker_device and options.get("device", "auto") in ("auto", "cuda"):
        options["device"] = _worker_device
    return remove_scene(task.scene.s2, task.scene.s1, task.output, quiet=True,
                        **split_options(options))


def run_worker_scene(task: Task) -> SceneResult:
    """run_scene in a pool worker; after a stop signal (its partial output removed) this scene
    and the ones still queued come back interrupted, and the pool shuts down as usual."""
    if stop_requested():
        return SceneResult.of(task, "interrupted")
    try:
        with task_running, stops_raise():
            return run_scene(task)
    except KeyboardInterrupt:
        return SceneResult.of(task, "interrupted")


def _init_worker(devices, threads: int, torch_too: bool, messages=None,
                 level: int = logging.WARNING, parent: int | None = None) -> None:
    """Pool initializer: take one GPU from the queue, or set the CPU threads mask (and torch,
    for remove, once a network loads it) may use; send the messages to the batch's process
    (``messages``, a queue), which shows them as its own, each once; exit once the batch's
    process (``parent``, its id) is gone."""
    global _worker_device, _worker_threads
    _worker_threads = threads or None
    if messages is not None:
        log.handlers[:] = [logging.handlers.QueueHandler(messages)]
        log.filters[:] = []
        log.setLevel(level)
        log.propagate = False
    note_stop_signals()
    exit_with_parent(parent)
    if devices is not None:
        _worker_device = devices.get()
    elif threads and torch_too:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # torch's threads, read when it loads


def gpu_devices(command: str, options: dict) -> list[str]:
    """``cuda:i`` for each visible GPU when ``remove`` may use them, else none."""
    if (command != "remove" or options.get("device", "auto") not in ("auto", "cuda")
            or not gpu_possible()):
        return []
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def run_local(tasks: list[Task], jobs: int, devices: list[str]) -> Iterator[SceneResult]:
    """Results as scenes finish: in this process for one job, else in spawned workers."""
    if jobs == 1:
        yield from map(run_scene, tasks)
        return
    ctx = multiprocessing.get_context("spawn")
    queue = None
    if devices:
        queue = ctx.Queue()
        for i in range(jobs):
            queue.put(devices[i % len(devices)])
    remove = any(t.command == "remove" for t in tasks)
    threads = max(1, usable_cores() // jobs) if not devices else 0
    messages = ctx.Queue()
    listener = logging.handlers.QueueListener(messages, _AsOwn())
    listener.start()
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(queue, threads, remove, messages,
                                         log.getEffectiveLevel(), os.getpid()))
    try:
        with stops_held():  # submit spawns the workers; each takes stops once initialised
            futures = {pool.submit(run_worker_scene, task): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the worker process died (killed, out of memory...)
                yield SceneResult.of(futures[future], "failed",
                                     error=f"worker process died: {type(exc).__name__}: {exc}")
    except (KeyboardInterrupt, GeneratorExit):  # stopped, or the caller gave up on the rest
        stop_workers()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        listener.stop()


class _AsOwn(logging.Handler):
    """Handles a worker's message as one of this process: same prefix, level and filters."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


def stop_workers() -> None:
    """Pass the stop on to the workers (SIGTERM; each removes its partial output)."""
    for worker in multiprocessing.active_children():
        worker.terminate()


def dask_address(scheduler: str) -> str:
    """The address of the Dask scheduler ``scheduler`` names: itself, or the one its scheduler
    file (``*.json``, as ``dask scheduler --scheduler-file`` writes) holds; a one-line error
    when dask.distributed is missing or the file is missing or holds no address."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise CloudfreeError(
            '--dask-scheduler needs dask.distributed: pip install "cloudfree[dask]"') from None
    if not scheduler.endswith(".json"):
        return scheduler
    path = check_input(scheduler, "Dask scheduler file", folder=False)
    try:
        address = json.loads(path.read_bytes()).get("address")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        address = None
    if not isinstance(address, str) or not address:
        raise CloudfreeError(f"Dask scheduler file {path} holds no scheduler address (JSON with "
                             '"address"): give the file the scheduler wrote '
                             "(--scheduler-file) or its address")
    return address


def dask_client(scheduler: str, address: str) -> Client:
    """A client of the Dask scheduler at ``address`` (from ``scheduler``), connected within
    ``DASK_CONNECT_S``."""
    from distributed import Client

    where = scheduler if address == scheduler else f"{address} (from {scheduler})"
    try:
        return Client(address, timeout=DASK_CONNECT_S)
    except MemoryError:  # a message length read from a reply in another protocol
        raise CloudfreeError(f"{where} answered, but not as a Dask scheduler: check the "
                             "address") from None
    except Exception as exc:  # whatever the connection raised, said in one line
        raise CloudfreeError(f"cannot reach the Dask scheduler {where}: {exc}") from None


def run_dask(tasks: list[Task], client: Client) -> Iterator[SceneResult]:
    """Results as scenes finish on the Dask cluster of ``client``, which is closed at the end."""
    from distributed import as_completed as dask_completed

    with client:
        keys = [f"cloudfree-{i}-{t.scene.name}" for i, t in enumerate(tasks)]
        task_of = dict(zip(keys, tasks, strict=True))
        futures = client.map(run_scene, tasks, key=keys, pure=False)
        for future in dask_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the worker died or the task could not run there
                yield SceneResult.of(task_of[future.key], "failed",
                                     error=f"on the Dask cluster: {type(exc).__name__}: {exc}")


def check_writable(folder: Path, what: str) -> None:
    """Refuse, before any work, to write ``what`` into ``folder`` when that is a file or
    cannot be made or written."""
    if os.path.lexists(folder):
        problem = input_problem(folder, folder=True)
        if problem is not None:
            raise UsageError(f"cannot write {what}: {folder} {problem}")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise CloudfreeError(f"cannot write {what}: folder {existing} is not writable")


def check_options(command: str, options: dict, resume: bool, out_dir: Path,
                  report: Path | None, stac: Path | None = None
                  ) -> tuple[InputOptions, Engine | None]:
    """Refuse, before any work, options that are unknown, out of range or cannot go together,
    and outputs that cannot be written: once here, rather than in every scene. Returns how
    the scenes are read and, for remove, the model (opened on the CPU)."""
    from cloudfree.pipeline.options import split_options

    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r} (use {' or '.join(COMMANDS)})")
    mask = command == "mask"
    extra = sorted(set(options) - MASK_OPTIONS if mask else set(options) & set(MASK_ONLY))
    if extra:
        given = ", ".join(f"{name}={options[name]}" for name in extra)
        raise UsageError(f"{given}: only for command={'remove' if mask else 'mask'}", *extra,
                         "command")
    for name in sorted(set(options) & PER_SCENE):
        raise UsageError(f"{name}={options[name]!r}: batch sets it for each scene; give "
                         "masks=True, uncertainty=True or references=K instead", name)
    if "mask_in" in options:
        raise UsageError(f"mask_in={options['mask_in']!r}: a mask is one scene's; give "
                         "mask_pattern=GLOB to take each scene folder's own", "mask_in")
    own = MASK_ONLY if mask else SCENE_OUTPUTS
    for name in own:
        if name in options:
            check_switch(name, options[name])
    given = {k: options[k] for k in GIVEN_MASK if k in options}
    if given:  # how each scene's mask is read: as its scene will read the one batch finds
        InputOptions(mask_in="MASK", **given)
    grouped = split_options({k: v for k, v in options.items()
                             if k not in own and k not in GIVEN_MASK})
    model = None
    if command == "remove":
        from cloudfree.pipeline.remove import check_engine_options

        model = check_engine_options(grouped["engine"])
    if resume and options.get("overwrite"):
        raise UsageError("resume=True keeps existing outputs and overwrite=True replaces them: "
                         "pick one", "resume", "overwrite")
    if report is not None:
        if report.suffix.lower() not in REPORT_FORMATS:
            raise UsageError(f"report {report}: name it .json or .csv")
        if report.is_dir():
            raise UsageError(f"report {report} is a folder: give a file name")
        if not (report.parent.is_dir() or report.parent == out_dir):  # batch makes out_dir
            raise CloudfreeError(f"cannot write report {report}: folder {report.parent} does "
                                 "not exist")
        check_writable(report.parent, f"report {report}")
        occupied = taken(report)
        if occupied and not (resume or options.get("overwrite")):
            raise UsageError(f"report {report} {occupied}: pass overwrite=True (or resume=True) "
                             "to replace it", "overwrite", "resume")
    check_writable(out_dir, f"the outputs in {out_dir}")
    if stac is not None:
        check_writable(stac, f"the STAC catalog in {stac}")
        if report is not None and _same_file(report, stac / CATALOG_FILE):
            raise UsageError(f"report {report} is the STAC catalog's file: the catalog would "
                             "replace it; give the report another name or folder")
    if stac is not None and (stac / CATALOG_FILE).exists() and not (
            resume or options.get("overwrite")):
        raise UsageError(f"STAC catalog {stac / CATALOG_FILE} exists: pass resume=True to add to "
                         "it or overwrite=True to replace it", "resume", "overwrite")
    return grouped["inputs"], model


def _same_file(a: Path, b: Path) -> bool:
    """Whether paths ``a`` and ``b`` name one file, on a file system that tells letters' case
    apart or not."""
    return os.path.normcase(os.path.abspath(a)).casefold() == \
        os.path.normcase(os.path.abspath(b)).casefold()


def check_scene_outputs(scenes: list[Scene], out_dir: Path, command: str,
                        report: Path | None, stac: Path | None) -> None:
    """Refuse, before any work, scenes whose outputs would be one file (their names equal but
    for the case of their letters: ``x_s2.tif`` and ``x_s2.TIF``), and a report that a
    scene's STAC item would replace."""
    seen: dict[str, Scene] = {}
    for scene in sorted(scenes, key=lambda s: str(s.s2)):
        first = seen.setdefault(scene.name.casefold(), scene)
        if first is not scene:
            raise CloudfreeError(
                f"{first.s2} and {scene.s2} would both be written to "
                f"{output_path(out_dir, first.name, command)} (each output is named by its "
                "scene, whatever the case of its letters); rename one of them or move it to "
                "another folder")
        if stac is not None and report is not None and _same_file(
                report, stac / scene.name / f"{scene.name}.json"):
            raise UsageError(f"report {report} is the STAC item of scene {scene.name}: the "
                             "catalog would replace it; give the report another name or folder")


def check_scenes(scenes: list[Scene], inputs: InputOptions, model: Engine | None) -> None:
    """Refuse, before any work, a ``bbox`` that misses every scene, and an ONNX ``model``'s
    fixed tile far larger than every scene the box meets (``check_fixed_tile``, as ``remove``
    refuses it), reading the scenes' headers until one that runs: a scene refused alone
    fails on its own."""
    tile = model.tile if model is not None else None
    if inputs.bbox is None and tile is None:
        return
    if tile is not None:  # remove's module, which opened the model
        from cloudfree.pipeline.remove import check_fixed_tile
    misses: list[UsageError] = []
    oversized: list[UsageError] = []
    for scene in scenes:
        try:
            with inputs.open_scene(scene.s2) as s2:
                size = s2.height, s2.width
        except UsageError as exc:
            misses.append(exc)
            continue
        except Exception:  # unreadable here: that scene fails on its own when run
            return
        if tile is None:
            return
        try:
            check_fixed_tile(tile, size, model.size_multiple)
        except UsageError as exc:
            oversized.append(exc)
        else:
            return
    if oversized:
        the_box = " the box meets" if misses else ""
        refused, lead = oversized, (f"this ONNX model's {tile} px tiles are far too large for "
                                    f"each of the {len(oversized)} scenes{the_box}")
    else:
        refused, lead = misses, f"the box meets none of the {len(misses)} scenes"
    if len(refused) == 1:
        raise refused[0]
    if refused:
        raise UsageError(f"{lead}; the first: {refused[0]}", *refused[0].params)


def check_existing(tasks: list[Task], out_dir: Path) -> None:
    """Refuse, before any work, outputs that exist (with neither ``resume`` nor
    ``overwrite``): each would fail its scene after the others ran."""
    found = [path for t in tasks
             for path in (t.output, t.options.get("mask_out"), t.options.get("uncertainty_out"))
             if path is not None and taken(path)]
    if found:
        more = len(found) - SHOWN_FAILURES
        names = ", ".join(p.name for p in found[:SHOWN_FAILURES]) + (
            f" and {more} more" if more > 0 else "")
        raise UsageError(f"{len(found)} output(s) exist in {out_dir} ({names}): pass "
                         "resume=True to skip their scenes or overwrite=True to replace them",
                         "resume", "overwrite")


def write_report(path: Path, batch: BatchResult, command: str) -> None:
    """The run report: CSV rows, or JSON with the counts and the same rows."""
    rows = [asdict(r) for r in batch.results]
    # replaced as a whole (checked at the start), also at a stop: the report of a stopped run
    # is wanted
    with atomic_output(path, overwrite=True) as tmp:
        if path.suffix.lower() == ".csv":
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, [fld.name for fld in fields(SceneResult)])
                writer.writeheader()
                writer.writerows(rows)
        else:
            counts = {s: batch.count(s) for s in (*SCENE_STATUSES, "unpaired", "ignored")}
            tmp.write_text(json.dumps({"command": command, "seconds": round(batch.seconds, 3),
                                       "counts": counts, "scenes": rows}, indent=2) + "\n")


def _problem_result(problem: Problem) -> SceneResult:
    log.warning("%s: %s: %s", problem.name, problem.status, problem.error)
    return SceneResult(problem.name, problem.status, error=problem.error)


def _logged(results: Iterable[SceneResult]) -> Iterator[SceneResult]:
    for result in results:
        if result.status == "failed":
            log.warning("%s: failed: %s", result.scene, result.error)
        yield result


def run_batch(
    scenes: Path | str,
    out_dir: Path | str,
    *,
    command: str = "remove",
    jobs: int | None = None,
    resume: bool = False,
    report: Path | str | None = None,
    dask_scheduler: str | None = None,
    s2_pattern: str = DEFAULT_S2_PATTERN,
    s1_pattern: str = DEFAULT_S1_PATTERN,
    options: dict | None = None,
    stac: Path | str | None = None,
    quiet: bool = False,
    references: int = 0,
    flags: dict[str, tuple[str, bool | str]] | None = None,
    mask_pattern: str | None = None,
) -> BatchResult:
    """Run ``command`` on every scene under ``scenes`` into ``out_dir``; write the report.

    Parameters
    ----------
    scenes : path
        A folder of scene folders, or of S1/S2 file pairs matched by footprint and date.
    out_dir : path
        Output folder: ``<scene>.tif`` (remove) or ``<scene>_mask.tif`` (mask).
    command : {"remove", "mask"}
        What to run on each scene. Default: ``"remove"``.
    jobs : int, optional
        Local worker processes, 1 to 1024. Default: one per GPU for remove, else 1.
    resume : bool
        Skip scenes whose output exists (outputs only appear when complete); without it or
        ``overwrite``, existing outputs are refused before any scene runs. Default: False.
    report : path, optional
        Write a run report, ``.json`` or ``.csv``. Default: none.
    dask_scheduler : str, optional
        Run on this Dask scheduler (``tcp://host:8786`` or a scheduler JSON file) instead of
        local processes. Default: none.
    s2_pattern : str
        Case-insensitive glob of the S2 file in a scene folder. Default: ``"*s2*.tif"``.
    s1_pattern : str
        Case-insensitive glob of the S1 file in a scene folder. Default: ``"*s1*.tif"``.
    mask_pattern : str, optional
        remove: case-insensitive glob of each scene folder's own mask, which its scene is
        filled by as with ``InputOptions(mask_in=...)`` (scene folders only; a folder with no
        such file, or several, fails). Default: none, each scene's clouds are found.
    options : dict, optional
        The options of each scene by name: for remove, ``mask_params`` and the fields of its
        option groups (``EngineOptions``, ``FillOptions``, ``InputOptions``,
        ``ReferenceOptions``, ``OutputOptions``: ``{"model": "cloudfree-fillnet", "tile":
        512}``) but the outputs' paths and the references, which batch sets for each scene;
        for mask, ``offset``, ``level``, ``creation_options``, ``overwrite``, ``cog`` and
        ``thin``.
        None values are dropped, and ``masks=True`` makes remove also write
        ``<scene>_mask.tif`` and ``uncertainty=True`` ``<scene>_uncertainty.tif``. A name
        that is no option, or a value out of range, fails before any scene. Default: none.
    stac : path, optional
        Folder for a STAC catalog of the finished scenes; with ``resume`` an existing one is
        added to. Default: none.
    quiet : bool
        No progress bar. Default: False.
    references : int
        remove: each scene takes up to this many (0 to 250) of the other scenes (of the same
        area) as references, nearest acquisition dates first, each with its S1 for the change
        check (``ReferenceOptions(references=..., reference_s1=...)``). Default: 0.
    flags : dict, optional
        How the scenes' errors name options: ``{name: (flag, whether a switch)}``, e.g. the
        command line's ``{"overwrite": ("--overwrite", True)}``. Default: ``name=value``.

    Returns
    -------
    BatchResult
        One row per scene (status, output, seconds, error) and the wall time.
    """
    start, started_at = time.perf_counter(), time.time()
    for name, path in (("scenes", scenes), ("out_dir", out_dir), ("report", report),
                       ("stac", stac)):
        check_path(name, path, optional=name in ("report", "stac"))
    check_kind("options", options, Mapping | None, "a dict of options by name, or None")
    for name, value in (("resume", resume), ("quiet", quiet)):
        check_switch(name, value)
    for name, value in (("s2_pattern", s2_pattern), ("s1_pattern", s1_pattern)):
        check_kind(name, value, str, "a file name pattern (a str such as '*_s2.tif')")
    check_kind("mask_pattern", mask_pattern, str | None,
               "a file name pattern (a str such as '*_mask.tif'), or None")
    if mask_pattern is not None and command != "remove":
        raise UsageError(f"mask_pattern={mask_pattern!r}: only for command=remove (mask finds "
                         "the clouds)", "mask_pattern", "command")
    for name in GIVEN_MASK:
        if mask_pattern is None and options and options.get(name) is not None:
            raise UsageError(f"{name}={options[name]}: how to read the masks mask_pattern=GLOB "
                             "finds, and none is given", name, "mask_pattern")
    if mask_pattern is not None and options and options.get("temporal_mask"):
        raise UsageError("temporal_mask=True has the dates find the clouds instead of the "
                         f"masks mask_pattern={mask_pattern!r} finds: give one of them",
                         "temporal_mask", "mask_pattern")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    report = Path(report) if report is not None else None
    stac = Path(stac) if stac is not None else None
    if jobs is not None:
        check_whole("jobs", jobs, *JOBS_RANGE)
    check_whole("references", references, 0, MAX_REFERENCES)
    if references and command != "remove":
        raise UsageError(f"references={references}: only for command=remove", "references",
                         "command")
    if options.get("temporal_mask") and not references:
        raise UsageError("temporal_mask=True needs references=K: the temporal mask compares "
                         "each scene with other dates", "temporal_mask", "references")
    if options.get("dehaze") and not references:
        raise UsageError("dehaze=True needs references=K: the other dates judge each scene's "
                         "haze", "dehaze", "references")
    out_dir = check_folder_output(out_dir, "batch")
    inputs, model = check_options(command, options, resume, out_dir, report, stac)
    check_kind("dask_scheduler", dask_scheduler, str | None, "an address or a JSON file's path")
    if dask_scheduler is not None and not dask_scheduler.strip():
        raise UsageError("dask_scheduler='' is empty: give the scheduler's address or JSON file, "
                         "or leave it out to run here", "dask_scheduler")
    address = dask_address(dask_scheduler) if dask_scheduler else None
    # remove runs without S1 where it can: with references, or with the network-free model
    network = options.get("checkpoint") or options.get("onnx") or (
        options.get("model") or DEFAULT_MODEL) != FILL_MODEL
    optional = bool(references) or not network
    found = discover(scenes, s2_pattern=s2_pattern, s1_pattern=s1_pattern,
                     need_s1=command == "remove" and not optional,
                     use_s1=command == "remove", exclude=out_dir, mask_pattern=mask_pattern)
    if not found.scenes and not found.problems:
        raise CloudfreeError(f"no scenes in {scenes}: no scene folders, no S1/S2 rasters")
    check_scene_outputs(found.scenes, out_dir, command, report, stac)
    check_scenes(found.scenes, inputs, model)
    results = [_problem_result(p) for p in found.problems]
    tasks = [Task(command, s, output_path(out_dir, s.name, command),
                  {**scene_options(options, out_dir, s.name),
                   **reference_options(s, found.scenes, references),
                   **({} if s.mask is None else {"mask_in": s.mask})}, flags or {})
             for s in found.scenes]
    if resume:
        results += [SceneResult.of(t, "skipped") for t in tasks if t.output.exists()]
        tasks = [t for t in tasks if not t.output.exists()]
    elif not options.get("overwrite"):
        check_existing(tasks, out_dir)
    client = dask_client(dask_scheduler, address) if address and tasks else None
    with new_folder(out_dir, "batch"):  # kept only where a scene's output went in
        try:
            make_folder(out_dir)  # once the cluster answered
        except BaseException:
            if client is not None:
                client.close()
            raise
        if tasks:
            if client is not None:
                running = run_dask(tasks, client)
            else:
                devices = gpu_devices(command, options)
                jobs = min(jobs or max(1, len(devices)), len(tasks))
                running = run_local(tasks, jobs, devices)
            try:
                with logging_redirect_tqdm(loggers=[log]):
                    for result in progress(_logged(running), total=len(tasks), desc="scenes",
                                           quiet=quiet, unit="scene"):
                        results.append(result)
                check_stop()
            except KeyboardInterrupt as exc:
                running.close()  # now: stop the workers and wait for their clean-up
                results = [r for r in results if r.status != "interrupted"]
                results += _unfinished(tasks, results, started_at)
                batch = BatchResult(sorted(results, key=lambda r: r.scene),
                                    time.perf_counter() - start)
                if report is not None:
                    with stop_handled():
                        write_report(report, batch, command)
                raise Interrupted(as_interrupted(exc).signum, _stopped_message(batch, out_dir)) \
                    from None
        batch = BatchResult(sorted(results, key=lambda r: r.scene), time.perf_counter() - start)
        if report is not None:
            write_report(report, batch, command)
        if stac is not None:
            write_catalog(stac, finished_files(batch, out_dir, command), update=resume)
        return batch


def make_folder(folder: Path) -> None:
    """Make the output folder ``folder`` with its missing parents; when the system refuses,
    one line naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise CloudfreeError(f"cannot make the output folder {folder}: {reason}; give a folder "
                             "you can write to, or make it first") from None


def _unfinished(tasks: list[Task], results: list[SceneResult], started: float
                ) -> list[SceneResult]:
    """Rows for the scenes without a result at a stop: ok if their output appeared during the
    run (outputs appear only by rename, when complete), else interrupted."""
    reported = {r.output for r in results}
    return [SceneResult.of(t, "ok" if t.output.exists() and t.output.stat().st_mtime >= started
                           else "interrupted")
            for t in tasks if str(t.output) not in reported]


def _stopped_message(batch: BatchResult, out_dir: Path) -> str:
    """What a stopped batch leaves: the finished outputs, and no partial ones."""
    done = batch.count("ok")
    return (f"{done} scene(s) finished before the stop (outputs in {out_dir}), "
            f"{batch.count('interrupted')} stopped with no output left behind")
