"""Opening the reference dates of a target scene (``remove --reference``, ``mask --reference``)
and running their statistics pass (``statistics.py``).

Each reference is registered to the target first (``references.register``); one given twice is
used once, and one without a date is warned about (it weighs as the farthest dated one,
``weights.py``).
"""

from __future__ import annotations

import filecmp
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from pathlib import Path

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import as_url, check_input
from cloudfree.coregister.s1_to_s2 import coregister_to_grid
from cloudfree.dates.references import Reference, open_reference, register, settle
from cloudfree.dates.statistics import DateStatistics
from cloudfree.dates.target_mask import TargetMask
from cloudfree.io.decoded_scene import DecodedScene, ScratchRoom
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import Sentinel2, open_sentinel2
from cloudfree.mask.classify import MaskParams, ShadowThresholds

log = logging.getLogger("cloudfree")


def check_references(paths: Sequence[Path | str], reference_s1: Sequence[Path | str | None],
                     has_s1: bool, target: Path | str | None = None) -> None:
    """Refuse reference options that cannot go together, or missing files, before any work."""
    for what, path in [("reference", p) for p in paths] + [("reference S1", p)
                                                           for p in reference_s1 if p]:
        check_input(path, what, url=True)
    if as_url(target) is not None and target in paths:
        raise UsageError(f"reference {target} is the target scene itself: give other dates of "
                         "the place", "references", "s2_path")
    if target is not None and as_url(target) is None and Path(target).exists():
        for path in (p for p in paths if as_url(p) is None):
            if Path(path).samefile(target):
                raise UsageError(f"reference {Path(path).name} is the target scene itself: give "
                                 "other dates of the place", "references", "s2_path")
            if Path(path).is_file() and Path(target).is_file() and filecmp.cmp(path, target,
                                                                               shallow=False):
                raise UsageError(f"reference {Path(path).name} is a copy of the target scene "
                                 "(the same bytes): give other dates of the place",
                                 "references", "s2_path")
    if reference_s1 and len(reference_s1) != len(paths):
        raise UsageError(f"{len(reference_s1)} reference_s1=S1 for {len(paths)} references: give "
                         "one per reference, in the same order (none for a reference without "
                         "S1)", "reference_s1")
    if any(p is not None for p in reference_s1) and not has_s1:
        raise UsageError("reference_s1=S1 needs the target's Sentinel-1 too (s1_path=PATH): the "
                         "change check compares the two dates", "reference_s1", "s1_path")


def open_references(paths: Sequence[Path | str], target: Sentinel2, params: MaskParams,
                    shadow: ShadowThresholds | None, inputs: InputOptions = InputOptions(), *,
                    s1=None, reference_s1: Sequence[Path | str | None] = (),
                    quiet: bool = False, count: int | None = None,
                    bands: Sequence[str] | None = None, temporal: bool = False,
                    tie_shadows: bool = False,
                    scratch: Path | str | None = None, decoded: DecodedScene | None = None,
                    room: ScratchRoom | None = None, fills: bool = True) -> DateStatistics:
    """Open every reference (and its S1) on the target grid, read as ``inputs`` say, and run
    the statistics pass: :func:`open_dates`, then :func:`fit_dates`.

    ``reference_s1`` pairs an S1 file (or None) with each reference, in order (checked by
    :func:`check_references`); the change check needs the target's S1 too (``s1``). With
    ``count``, only the first ``count`` references that can serve are opened: one that does
    not overlap the target or cannot be read is skipped with a warning (batch's nearest dates,
    where one scene must not fail another); without, such a reference is an error.
    ``bands``: the target's bands the fill reads and returns, in order (default: all of them).
    With ``temporal``, the dates also judge the target's clouds (``temporal_mask.py``);
    ``tie_shadows``: the target's shadows are those its clouds cast (``TargetMask``).
    ``scratch``: the output beside which a JPEG2000 reference is kept decoded
    (``references.open_reference``); ``decoded``: the target as a first pass decoded it,
    read back rather than decoded again where it holds ``bands``; ``room``: which references
    the run keeps decoded (``ScratchRoom``; default: each one that has room when it comes).
    Without ``fills`` (a mask alone), nothing only the fill takes is gathered
    (``DateStatistics``).
    """
    opened = open_dates(paths, target, params, inputs, reference_s1=reference_s1, quiet=quiet,
                        count=count, bands=bands, scratch=scratch, decoded=decoded, room=room)
    return fit_dates(opened, target, params, shadow, s1=s1, quiet=quiet, bands=bands,
                     temporal=temporal, tie_shadows=tie_shadows, decoded=decoded, fills=fills)


@dataclass
class OpenedDates:
    """The references opened and registered on the target grid (``open_dates``), and those
    passed over: path, reason."""

    references: list[Reference]
    skipped: list[dict]

    def close(self) -> None:
        for ref in self.references:
            ref.close()


def open_dates(paths: Sequence[Path | str], target: Sentinel2, params: MaskParams,
               inputs: InputOptions = InputOptions(), *,
               reference_s1: Sequence[Path | str | None] = (), quiet: bool = False,
               count: int | None = None, bands: Sequence[str] | None = None,
               scratch: Path | str | None = None, decoded: DecodedScene | None = None,
               room: ScratchRoom | None = None, ready: Callable[[], object] | None = None,
               abandon: threading.Event | None = None) -> OpenedDates:
    """Every reference (and its S1) opened on the target grid and registered to it, as
    :func:`open_references` says. They need nothing of the target's first pass but the target
    itself, so ``remove`` runs this beside that pass: ``ready`` is waited for before the first
    registration (the pass filling ``decoded``, which the registrations read back); once
    ``abandon`` is set (the pass failed), it raises CancelledError before the next
    reference."""
    bands = tuple(bands or target.bands)
    references: list[Reference] = []
    skipped: list[dict] = []
    try:
        for position, path in enumerate(paths):
            if count is not None and len(references) == count:
                break
            if abandon is not None and abandon.is_set():
                raise CancelledError
            twin = next((r.path for r in references if same_file(r.path, Path(path))), None)
            if twin is not None:
                log.warning("%s: reference %s is the same as %s: used once",
                            target.path.name, Path(path).name, twin.name)
                skipped.append({"path": str(path), "reason": f"the same as {twin}"})
                continue
            s1_path = reference_s1[position] if reference_s1 else None
            try:
                references.append(open_one(len(references) + 1, path, s1_path, target, params,
                                           inputs, quiet, bands=bands,
                                           count=min(count or len(paths), len(paths)),
                                           scratch=scratch, decoded=decoded, room=room,
                                           ready=ready))
            except UsageError:
                raise
            except CloudfreeError as exc:
                if count is None:
                    raise
                log.warning("%s: reference %s skipped, the next one taken: %s",
                            target.path.name, Path(path).name, exc)
                skipped.append({"path": str(path), "reason": str(exc)})
    except BaseException:
        OpenedDates(references, skipped).close()
        raise
    return OpenedDates(references, skipped)


def fit_dates(opened: OpenedDates, target: Sentinel2, params: MaskParams,
              shadow: ShadowThresholds | None, *, s1=None, quiet: bool = False,
              bands: Sequence[str] | None = None, temporal: bool = False,
              tie_shadows: bool = False, decoded: DecodedScene | None = None,
              fills: bool = True) -> DateStatistics:
    """The statistics pass of the ``opened`` references (``DateStatistics.fit``), which take
    the target's shadow thresholds (``shadow``), as :func:`open_references` says; they are
    closed if it fails."""
    bands = tuple(bands or target.bands)
    try:
        # the dates judge the target's edges: no single-date growth into them
        target_params = replace(params, edges=False)
        dates = DateStatistics(TargetMask(target, bands, target_params, shadow, decoded,
                                          tie_shadows),
                               opened.references, s1, opened.skipped, temporal, fills)
    except BaseException:
        opened.close()
        raise
    try:
        dates.fit(quiet)
    except BaseException:
        dates.close()
        raise
    return dates


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are one file, or two files with the same bytes."""
    if a.exists() and b.exists() and a.samefile(b):
        return True
    return a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size and \
        filecmp.cmp(a, b, shallow=False)


def open_one(index: int, path: Path | str, s1_path: Path | str | None, target: Sentinel2,
             params: MaskParams, inputs: InputOptions, quiet: bool, *,
             bands: Sequence[str] | None = None, count: int = 1,
             scratch: Path | str | None = None, decoded: DecodedScene | None = None,
             room: ScratchRoom | None = None, ready: Callable[[], object] | None = None
             ) -> Reference:
    """One reference (and its S1, if given) on the target grid, read in ``bands``, registered
    to it (the target read back from ``decoded``, when given, once ``ready`` returns); one of
    ``count`` opened together (kept decoded beside ``scratch``: see ``open_reference``)."""
    scene = open_sentinel2(path, inputs.offset, inputs.level, what="reference")
    try:
        ref = open_reference(index, scene, target, params, bands, count, scratch, quiet, room)
        if ready is not None:
            ready()
        register(ref, target, params, decoded=decoded)
        settle(ref, quiet)
    except BaseException:
        scene.close()
        raise
    if ref.acquired is None:
        log.warning("%s: reference %s has no date (in its name or tags): it weighs as the "
                    "farthest dated one", target.path.name, ref.path.name)
    if s1_path is not None:
        try:
            ref.s1 = coregister_to_grid(s1_path, target, inputs, quiet=quiet)
        except BaseException:
            ref.close()
            raise
    return ref

