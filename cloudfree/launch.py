"""The ``cloudfree`` command's entry point: a Ctrl-C while the command's libraries load (about
half a second, before any work) ends it with one line and exit code 130, like one during the
work, instead of Python's traceback of the interrupted import. It also sets what must be set
before the libraries load or the threads start: OpenBLAS's threads, glibc's heap arenas."""

from __future__ import annotations

import os
import resource
import sys

from cloudfree.memory import limit_heap_arenas

#: Address space the command maps once its libraries are loaded, before any work: VmSize after
#: importing ``cloudfree.cli`` and ``cloudfree.remove_scene`` measured 0.36 GiB (PyTorch, loaded
#: only for a network, adds about 0.45 GiB; the run's own check counts it). Under a lower
#: ``ulimit -v`` the imports fail at random, some in native threads that abort.
LOADED_ADDRESS_SPACE = 0.4 * 2**30
#: Threads of NumPy's OpenBLAS, unless the user sets them: the command runs its own threads
#: (estimation windows, chunks), one per core, and OpenBLAS's threads beside them spin on the
#: same cores. The shift refinement's matrix products took 10x the CPU with OpenBLAS's default
#: threads on 2 busy cores (47 ms against 4.5 ms of CPU a window, same results).
OPENBLAS_THREADS = "1"


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", OPENBLAS_THREADS)  # read when NumPy loads
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < LOADED_ADDRESS_SPACE:
        print(f"Error: out of memory: the address-space limit (ulimit -v) of {soft / 2**30:.1f} "
              f"GiB is below the {LOADED_ADDRESS_SPACE / 2**30:.2f} GiB cloudfree maps once its "
              "libraries are loaded; raise the limit", file=sys.stderr, flush=True)
        sys.exit(1)
    limit_heap_arenas()  # before any thread allocates
    try:
        from cloudfree.cli import main as cli
    except KeyboardInterrupt:
        print("Interrupted (SIGINT) while starting; nothing was done.", file=sys.stderr,
              flush=True)
        # os._exit, not sys.exit: with the interrupt in the later imports, sys.exit(130) was
        # seen to end by SIGINT (-2) all the same (Python's unhandled-interrupt flag)
        os._exit(130)
    cli()
