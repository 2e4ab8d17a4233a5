"""The ``cloudfree`` command's entry point: a Ctrl-C (or SIGTERM, SIGHUP) while the command's
libraries load (about half a second, before any work) ends it with one line and exit code 130
(143, 129), like one during the work, instead of Python's traceback of the interrupted import
(or, for SIGTERM and SIGHUP, no word at all). It also sets what must be set before the
libraries load or the threads start: OpenBLAS's threads, glibc's heap arenas."""

from __future__ import annotations

import importlib
import importlib.util
import os
import resource
import sys
import threading
import types
from signal import SIGINT

from cloudfree.core.memory import limit_heap_arenas
from cloudfree.core.stop import (
    Interrupted,
    end_after_exit_handlers,
    exit_status,
    raise_on_stop_signals,
    signal_name,
    stop_requested,
)

#: Address space the command maps once its libraries are loaded, before any work: VmSize after
#: importing ``cloudfree.cli.commands`` and ``cloudfree.pipeline.remove`` measured 0.36 GiB
#: (PyTorch, loaded only for a network, adds about 0.45 GiB; the run's own check counts it). Under a
#: lower ``ulimit -v`` the imports fail at random, some in native threads that abort.
LOADED_ADDRESS_SPACE = 0.4 * 2**30
#: Threads of NumPy's OpenBLAS, unless the user sets them: the command runs its own threads
#: (estimation windows, chunks), one per core, and OpenBLAS's threads beside them spin on the
#: same cores. The shift refinement's matrix products took 10x the CPU with OpenBLAS's default
#: threads on 2 busy cores (47 ms against 4.5 ms of CPU a window, same results).
OPENBLAS_THREADS = "1"
#: Modules the command's libraries import on the way to its work without using them there:
#: boto3 (rasterio, for S3 credentials; with botocore and s3transfer), NumPy's f2py (SciPy
#: lists NumPy's names), SciPy's spatial (the other dates' similar pixels) and pyproj (a shift
#: in metres on a longitude/latitude grid). Each loads when first used instead (``defer``):
#: the last two took 0.23 of the 0.78 CPU s a single-date ``remove`` spent importing before its
#: work (``benchmarks/startup_time.py --remove-imports``, medians of 10 rounds).
DEFERRED = ("boto3", "numpy.f2py", "scipy.spatial", "pyproj")


class _Deferred(types.ModuleType):
    """A module imported but not run yet: run, in place, when an attribute it lacks is first
    read (importlib's LazyLoader runs it on ``import`` itself, whose check of the module's
    ``__spec__`` reads an attribute). A thread reading it meanwhile waits for the run; reads
    from within the run find what is set so far, as in any module being imported."""

    def __getattr__(self, attr: str) -> object:
        with _RUNNING:
            if type(self) is _Deferred and self.__name__ not in _running:
                _running.add(self.__name__)
                try:
                    self.__spec__.loader.exec_module(self)
                finally:
                    _running.discard(self.__name__)
                self.__class__ = types.ModuleType
        return object.__getattribute__(self, attr)


#: Held while a deferred module runs; the modules running.
_RUNNING = threading.RLock()
_running: set[str] = set()


def defer(name: str) -> None:
    """Have ``import name`` give a module that runs when first used (``_Deferred``); nothing
    where it is not installed or already loaded."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)  # imports the parent package
    if spec is None or not hasattr(spec.loader, "exec_module"):
        return
    module = importlib.util.module_from_spec(spec)  # its __spec__, __path__, __file__ set
    module.__class__ = _Deferred
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system does: the parent's attribute, or its __getattr__ loads it
        setattr(sys.modules[parent], child, module)


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", OPENBLAS_THREADS)  # read when NumPy loads
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < LOADED_ADDRESS_SPACE:
        print(f"Error: out of memory: the address-space limit (ulimit -v) of {soft / 2**30:.1f} "
              f"GiB is below the {LOADED_ADDRESS_SPACE / 2**30:.2f} GiB cloudfree maps once its "
              "libraries are loaded; raise the limit", file=sys.stderr, flush=True)
        sys.exit(1)
    limit_heap_arenas()  # before any thread allocates
    raise_on_stop_signals()  # a SIGTERM or SIGHUP while the libraries load is said too
    end_after_exit_handlers()  # and one after the work, until the process ends
    try:
        for name in DEFERRED:
            defer(name)
        from cloudfree.cli.commands import main as cli
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt) and stop_requested() is None:
            raise
        # the stop, or an error a library raised for it (a native import broken into)
        stop = exc if isinstance(exc, Interrupted) else Interrupted(stop_requested() or SIGINT)
        print(f"Interrupted ({signal_name(stop.signum)}) while starting; nothing was done.",
              file=sys.stderr, flush=True)
        # os._exit, not sys.exit: with the interrupt in the later imports, sys.exit(130) was
        # seen to end by SIGINT (-2) all the same (Python's unhandled-interrupt flag)
        os._exit(stop.exit_code)
    try:
        cli()
    except SystemExit as done:
        exit_status(done.code)
        raise
