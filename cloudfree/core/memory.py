"""Memory: refuse a batch of tiles, or an ONNX export, that cannot fit, and give freed heap
memory back to the operating system during a long run.

NumPy and torch free their large arrays, but glibc keeps freed blocks in its per-thread arenas,
and with a reader thread, GDAL's threads and torch's threads each holding some, a process's
resident memory creeps up chunk after chunk. ``malloc_trim(0)`` hands those pages back
(dask.distributed trims its workers the same way). Elsewhere than glibc this does nothing.
Pages handed back cost a page fault each when reused, so ``remove``'s chunks hand back only what
lies above the peak its passes over the scene already reached (:class:`HeapReleases`).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import resource
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cloudfree.core.errors import OutOfMemory, UsageError

if TYPE_CHECKING:
    from rasterio.windows import Window

#: glibc's ``mallopt`` parameter for the most heap arenas (``M_ARENA_MAX`` in malloc.h).
M_ARENA_MAX = -8
#: Heap arenas for the command (glibc's default: one more for each thread that allocates at
#: once, up to 8 per core). Each arena keeps what its threads freed for their own next arrays,
#: so with the loaders, the writer and the main thread each in an arena of their own, the
#: process holds the sum of their largest moments rather than the largest moment of their sum.
#: A default-model ``remove`` peaked at 403-433 MB at 1024^2 and 626-660 MB at 4096^2 with one
#: arena, against 521-546 and 734-793 MB with glibc's default and 685-730 MB at 4096^2 with
#: two (3 runs or more each, ``/usr/bin/time``), for the same CPU.
HEAP_ARENAS = 1


@functools.cache
def _libc_function(name: str):
    """A function of glibc (``malloc_trim``, ``mallopt``), or None where the C library has
    none of that name."""
    try:
        return getattr(ctypes.CDLL(None), name)  # the process's own C library
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return freed heap pages to the operating system; False where that is not possible."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


#: Growth of resident memory past its level after the last release (or its lowest since) at
#: which :func:`releasing_as_it_grows` releases again. Between the releases after each chunk,
#: the loaders free and allocate blocks that do not fit the holes left, so freed pages stay
#: resident. With 48 MB a default-model ``remove`` peaked at 570 MB at 4096^2 against 635, and
#: 390 against 412 at 1024^2 (``benchmarks/remove_speed.py``, medians of 3 runs), for 9.35 CPU s
#: at 2048^2 against 8.96 (system time: the pages handed back are faulted in again when used).
RELEASE_MARGIN = 48 * 2**20
#: Seconds between :func:`releasing_as_it_grows`'s looks at resident memory.
RELEASE_POLL = 0.01


#: Where Linux tells a process's memory, in pages (the second field: resident).
STATM = "/proc/self/statm"


def resident_bytes() -> int | None:
    """This process's resident memory in bytes; None where the system does not say (not
    Linux)."""
    try:
        with open(STATM, "rb", buffering=0) as statm:
            return _resident(statm.fileno())
    except OSError:
        return None


def _resident(fd: int) -> int | None:
    """``resident_bytes`` read from ``STATM`` opened as ``fd``: a watcher keeps it open, as
    opening it at each look cost several times the read (a 2048^2 ``remove``'s watcher took
    0.27-0.36 CPU s so, 0.07-0.09 reading it again)."""
    try:
        return int(os.pread(fd, 128, 0).split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapReleases:
    """When a run hands freed heap pages back (:func:`release_free_memory`): after each chunk
    (:meth:`release`) and whenever its watcher (:func:`releasing_as_it_grows`) sees resident
    memory grown past its last level. Once told the level the run has already reached
    (:meth:`hold_below_peak`, before its chunks), it releases only above it: the pages kept
    below a peak already reached raise no peak, and each page handed back costs a page fault
    when reused (a 2048^2 ``remove`` took 560 000 faults and 3.4 s of system time releasing at
    every chunk and 48 MB of growth, 130 000 and 1.9 s never releasing)."""

    def __init__(self) -> None:
        #: resident bytes below which nothing is released (0: released at every chance)
        self.held = 0

    def hold_below_peak(self) -> None:
        """From now on, release only while resident memory is above the process's peak so far
        (Linux's VmHWM; nothing changes where the system does not say)."""
        self.held = status_bytes("VmHWM") or 0

    def release(self) -> bool:
        """:func:`release_free_memory`, unless resident memory is below the level held; whether
        it released."""
        if self.held and (resident_bytes() or 0) <= self.held:
            return False
        return release_free_memory()


@contextmanager
def releasing_as_it_grows(margin: int = RELEASE_MARGIN, every: float = RELEASE_POLL
                          ) -> Iterator[HeapReleases]:
    """While the block runs, a thread releases freed heap pages (:func:`release_free_memory`)
    whenever resident memory has grown ``margin`` bytes past its level after the last release,
    or its lowest since, and is above the level the yielded :class:`HeapReleases` holds;
    nothing where that cannot be done."""
    releases = HeapReleases()
    if _libc_function("malloc_trim") is None or resident_bytes() is None:
        yield releases
        return
    stop = threading.Event()
    with open(STATM, "rb", buffering=0) as statm:  # read again at each look, not reopened
        fd = statm.fileno()

        def watch() -> None:
            floor = _resident(fd)
            while not stop.wait(every):
                now = _resident(fd)
                if now > max(floor + margin, releases.held):
                    release_free_memory()
                    floor = _resident(fd)
                else:
                    floor = min(floor, now)

        thread = threading.Thread(target=watch, name="cloudfree-release", daemon=True)
        thread.start()
        try:
            yield releases
        finally:
            stop.set()
            thread.join()


def limit_heap_arenas(arenas: int = HEAP_ARENAS) -> bool:
    """Let glibc's malloc make at most ``arenas`` heap arenas from now on (call it before any
    thread starts); False where that is not possible. A ``MALLOC_ARENA_MAX`` set by the user
    wins."""
    mallopt = _libc_function("mallopt")
    if mallopt is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def total_memory() -> int | None:
    """The machine's physical memory in bytes; None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


#: Address space a ``remove`` run maps once its model is loaded, besides the network's inputs
#: and outputs: threads, their heaps and the network's activations. VmPeak less VmSize at
#: :func:`check_batch_memory`: 0.8 GiB on the 256 px sample, 1.5 GiB on the 512 px one (9
#: tiles); a run with less is refused, one with more can still run out.
RUN_ADDRESS_SPACE = 2**30
#: Within this share of the address-space limit, a failure is taken for want of memory.
NEAR_LIMIT = 0.1


def address_space_limit() -> int | None:
    """The process's address-space limit (``ulimit -v``) in bytes; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def status_bytes(field: str) -> int | None:
    """A ``VmXxx`` field of /proc/self/status in bytes; None where there is none (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    except MemoryError:  # not even room to read it
        return sys.maxsize
    return None


#: What native libraries say when an allocation fails (onnxruntime, torch, glibc's loader,
#: protobuf, C++).
_NO_MEMORY = re.compile("|".join([
    "failed to allocate memory", "can't allocate memory", "cannot allocate memory",
    "not enough memory", "bad_alloc", "failed to map segment", "arena alloc failed",
    "out of memory"]), re.IGNORECASE)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it came from) is for want of memory, whatever its type:
    a MemoryError, an allocation failure that native code reports as its own error, or any
    failure once the address space came near its limit."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, MemoryError) or _NO_MEMORY.search(str(chain)):
            return True
        # ``raise ... from None`` replaced the error it came from with its own words
        chain = chain.__cause__ or (None if chain.__suppress_context__ else chain.__context__)
    return hit_address_limit()


def hit_address_limit() -> bool:
    """Whether this process's address space came near its limit: the likely reason of a failure
    in native code (an allocation that fails there can surface as any error)."""
    limit, peak = address_space_limit(), status_bytes("VmPeak")
    return limit is not None and peak is not None and peak >= limit * (1 - NEAR_LIMIT)


#: Address space that importing PyTorch maps: 0.46 GiB of VmSize measured (torch 2.13, CPU),
#: with a margin. Under less the import fails at random, often in native code that aborts
#: (``std::bad_alloc``) with no word the command could add.
TORCH_ADDRESS_SPACE = int(0.5 * 2**30)
#: Address space that loading a network model maps once PyTorch is there: the weights, the
#: network, the ONNX graph of its CPU runtime and the thread pools (0.23 GiB of VmSize and
#: 0.29 GiB of VmPeak measured for cloudfree-fillnet), with a margin. Under less, libgomp's
#: thread creation fails and ends the process with no word the command could add.
MODEL_ADDRESS_SPACE = int(0.35 * 2**30)


def check_room_for_torch(model: bool = False) -> None:
    """Refuse, before PyTorch loads (and a ``model`` with it), an address-space limit that
    leaves too little room: the failure would come in native code that cannot be caught."""
    limit, mapped = address_space_limit(), status_bytes("VmSize")
    if limit is None or mapped is None:
        return
    need = (0 if "torch" in sys.modules else TORCH_ADDRESS_SPACE) + model * MODEL_ADDRESS_SPACE
    if limit - mapped < need:
        what = "a network model (PyTorch and the model)" if model else "PyTorch"
        raise OutOfMemory(f"the address-space limit (ulimit -v) of {limit / 2**30:.1f} GiB leaves "
                          f"{max(limit - mapped, 0) // 2**20} MiB, and loading {what} takes "
                          f"about {need // 2**20} MiB")


def check_batch_memory(tile: int, across: int, batch_size: int, bands: int) -> None:
    """Refuse, before any work, a batch of ``tile`` px tiles whose inputs and outputs alone (the
    network's own activations come on top) exceed the machine's memory, or a run that the
    address-space limit leaves too little room (:data:`RUN_ADDRESS_SPACE`). A batch never holds
    more tiles than a row of the grid, ``across`` tiles (``tiling.chunks``)."""
    total = total_memory()
    tiles = min(batch_size, across)
    planes = bands + 2 + 1 + bands  # float32: S2 input, S1 input, fill mask, network output
    need = tiles * tile**2 * planes * 4
    limit, mapped = address_space_limit(), status_bytes("VmSize")
    if limit is not None and mapped is not None and limit - mapped < need + RUN_ADDRESS_SPACE:
        raise OutOfMemory(f"the address-space limit (ulimit -v) of {limit / 2**30:.1f} GiB leaves "
                          f"{max(limit - mapped, 0) // 2**20} MiB once the model is loaded, and "
                          f"a run needs {(need + RUN_ADDRESS_SPACE) // 2**20} MiB more at least")
    if total is not None and need > total:
        raise UsageError(f"tile={tile} with batch_size={batch_size} needs at least "
                         f"{need / 2**30:.0f} GiB for the network's inputs and outputs alone; "
                         f"this machine has {total / 2**30:.0f} GiB: give a smaller tile=SIZE or "
                         "batch_size=N", "tile", "batch_size")


#: Working memory of ``mask`` per pixel of a window being classified, per date read: 36-40 bytes
#: measured on a 2048^2 13-band scene (peak RSS over block sizes 1024 and 2048, and four threads
#: at 1024), with a margin. A reference's window is taken to cost as much as the scene's.
MASK_BYTES_PER_PIXEL = 48


def check_mask_memory(block: int, threads: int, windows: list[Window], dates: int) -> None:
    """Refuse, before any work, ``block`` x ``threads`` whose windows in flight alone exceed the
    machine's memory (the first window is a largest one)."""
    total = total_memory()
    need = (min(threads, len(windows)) * windows[0].width * windows[0].height
            * MASK_BYTES_PER_PIXEL * dates)
    if total is not None and need > total:
        raise UsageError(f"block={block} with threads={threads} needs about "
                         f"{need // 2**20} MiB for the windows classified at once; this "
                         f"machine has {total // 2**20} MiB: give a smaller block=SIZE or "
                         "threads=N", "block", "threads")


#: Memory that tracing a network for ONNX takes, per byte of the outputs of its layers in one
#: forward pass: the trace keeps every intermediate result, and more than the layers' outputs
#: (cloudfree-fillnet measured 2.3 kB per pixel for 1.8 kB of layer outputs), with a margin.
TRACE_FACTOR = 2
#: Side of the small input whose forward pass is measured (rounded up to the network's multiple).
PROBE_TILE = 64


def layer_output_bytes(network, tile: int) -> int:
    """Bytes of the outputs of every layer of ``network`` in one forward pass on one tile x tile
    input: measured on a small input, and scaled by the area (convolutional layers)."""
    import torch

    multiple = network.size_multiple
    probe = min(tile, -(-PROBE_TILE // multiple) * multiple)
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        for tensor in output if isinstance(output, tuple | list) else (output,):
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()

    hooks = [m.register_forward_hook(count) for m in network.modules()
             if not any(m.children())]
    inputs = [torch.zeros(1, c, probe, probe) for c in (13, 2, 1)[: 3 if network.uses_mask
                                                                    else 2]]
    try:
        with torch.no_grad():
            network(*inputs, return_aux=False)
    finally:
        for hook in hooks:
            hook.remove()
    return total * tile**2 // probe**2


def check_trace_memory(network, tile: int) -> None:
    """Refuse, before any work, an ONNX export whose trace cannot fit in the machine's memory
    (it grows with the tile's area), naming the largest tile that can."""
    total = total_memory()
    need = TRACE_FACTOR * layer_output_bytes(network, tile)
    if total is None or need <= total:
        return
    multiple = network.size_multiple
    largest = int(tile * math.sqrt(total / need)) // multiple * multiple
    raise UsageError(f"tile={tile} needs about {need / 2**30:.0f} GiB to export (the trace "
                     f"keeps every intermediate result); this machine has "
                     f"{total / 2**30:.0f} GiB: give tile=SIZE of at most {largest}", "tile")
