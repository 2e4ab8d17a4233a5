"""Stop requests (SIGINT, SIGTERM, SIGHUP) as exceptions, so every ``with`` block cleans up on
the way out.

SIGTERM is what ``timeout``, Slurm and Kubernetes send; SIGHUP comes when the terminal or the SSH
session of a run closes. Raised as :class:`Interrupted`, a ``KeyboardInterrupt``, each unwinds
exactly like Ctrl-C: temporary outputs are removed by :func:`cloudfree.output.atomic.atomic_output`,
and the command exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP),
as shells report a process killed by that signal.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # Windows has no SIGHUP
#: Seconds after which a signal that came inside a ``__del__`` is sent again.
RETRY_S = 0.05
#: Seconds between a worker process's checks that the process that started it still lives.
PARENT_POLL_S = 0.5
#: Seconds a worker whose parent died gives its running task to unwind (remove its partial
#: output) before it exits all the same.
ORPHAN_GRACE_S = 60


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``message`` says what was finished, if anything
    (default: the outputs already put in place, see :func:`note_written`)."""

    def __init__(self, signum: int = signal.SIGINT, message: str | None = None) -> None:
        message = _message() if message is None else message
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


#: The first stop signal received, if any (a handler's exception can be swallowed, e.g. when
#: it fires inside a ``__del__``; this flag is not).
_requested: int | None = None


#: Outputs put in place since stop signals began to raise: a stop after that leaves them.
_written: list[Path] = []


def note_written(paths: Iterable[Path]) -> None:
    """Outputs now complete at their paths: a stop from now on says they are kept (noted only
    while stops raise here, so a long-lived library process keeps no list)."""
    if signal.getsignal(signal.SIGINT) is _raise:
        # each once: a run may replace its own outputs (train, every epoch)
        _written.extend([p for p in dict.fromkeys(paths) if p not in _written])


def _message() -> str:
    return f"{', '.join(map(str, _written))} complete and kept" if _written else ""


def stop_requested() -> int | None:
    """The signal number of the first stop request of this process, or None."""
    return _requested


def _note(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = _requested or signum


#: Whether Interrupted was raised: a second signal must not break off the clean-up.
_raised = False


def _raise(signum: int, frame: FrameType | None) -> None:
    global _raised
    _note(signum, frame)
    if _raised:
        return
    if _in_finalizer(frame):  # raised there, it would be printed as "ignored" and dropped
        threading.Timer(RETRY_S, os.kill, (os.getpid(), signum)).start()
        return
    _raised = True
    raise Interrupted(signum)


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def raise_on_stop_signals() -> None:
    """From now on the stop signals raise :class:`Interrupted` in the main thread (a no-op
    when called from another thread, where Python cannot set handlers)."""
    if threading.current_thread() is threading.main_thread():
        _written.clear()
        for signum in STOP_SIGNALS:
            signal.signal(signum, _raise)


def note_stops_after_work() -> None:
    """The command's work is done. A stop while Python code still runs (a program that called
    the CLI in-process) raises as before; once the interpreter shuts down it is only noted, and
    at exit it is said, with the exit code 128 + its number (later still, it kills the process,
    unless :func:`end_after_exit_handlers` ends it first). Raised during the shutdown, it would
    break into the clean-up with a traceback, and the run would exit 0."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _after_work)
    atexit.unregister(_exit_if_stopped)  # once, however many commands ran in this process
    atexit.register(_exit_if_stopped)


#: A stop that came while the interpreter shut down after a command's work.
_late: int | None = None


def _after_work(signum: int, frame: FrameType | None) -> None:
    global _late
    if threading.main_thread().is_alive():  # the main thread is marked done before atexit
        _raise(signum, frame)
    else:
        _late = _late or signum


def _exit_if_stopped() -> None:
    if _late is None:
        if not _ends_after_exit_handlers:  # a stop in the last of the shutdown kills, by the
            _default_stops()  # signal: not 0
        return
    _exit_stopped(_late)


def _default_stops() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def _exit_stopped(signum: int) -> None:
    sys.stdout.flush()
    print(f"Interrupted ({signal_name(signum)}); {_message() or 'its work was done'}.",
          file=sys.stderr, flush=True)
    os._exit(128 + signum)


#: Whether ``end_after_exit_handlers`` ends this process; the status it ends it with.
_ends_after_exit_handlers = False
_status: int | None = None


def end_after_exit_handlers() -> None:
    """End this process (the ``cloudfree`` command) once the exit handlers registered from now
    on have run, with the status given to :func:`exit_status`, skipping the interpreter's
    teardown: a stop during the teardown (0.17 s after ``remove``'s result line on the bundled
    sample with median-fill, 0.83 s with cloudfree-fillnet: ``benchmarks/startup_time.py
    --exit``) would kill the process by the signal, without the word a stop a moment earlier
    gets. Exit handlers registered before this call do not run: call it first thing. A process
    that gives no status (an exception escaped) ends as Python ends it."""
    global _ends_after_exit_handlers
    _ends_after_exit_handlers = True
    atexit.register(_end)


def exit_status(code: object) -> None:
    """The status of the ``SystemExit`` that ends the command: ``code`` as ``sys.exit`` takes it."""
    global _status
    _status = code if isinstance(code, int) else int(code is not None)


def _end() -> None:
    """The last exit handler: with the stop signals blocked, a stop that came after the work
    (noted, or pending) is said as :func:`note_stops_after_work` says it; then the process ends."""
    if _status is None:
        _default_stops()
        return
    pending: set[int] = set()
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pending = signal.sigpending() & set(STOP_SIGNALS)
    stop = _late or min(pending, default=None)
    if stop is not None and _status == 0:
        _exit_stopped(stop)
    status = _status if _flushed(sys.stdout) else _status or 120  # as Python's own end does
    _flushed(sys.stderr)
    os._exit(status)


def _flushed(stream) -> bool:
    """Whether ``stream`` took what it held (not when the pipe it writes to was closed)."""
    try:
        stream.flush()
    except (OSError, ValueError):
        return False
    return True


def note_stop_signals() -> None:
    """From now on the stop signals only set :func:`stop_requested` (for idle workers); one
    held back by :func:`stops_held` while this process started is noted now."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _note)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def stops_held() -> Iterator[None]:
    """Inside the block stop signals wait, blocked, and arrive at its end; processes started
    inside begin with them blocked, so a Ctrl-C cannot break into their start-up."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def stops_raise() -> Iterator[None]:
    """Inside the block stop signals raise :class:`Interrupted`; old handlers are restored."""
    _written.clear()
    previous = {signum: signal.signal(signum, _raise) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def stop_handled() -> Iterator[None]:
    """Inside the block the stop being handled is not raised again by :func:`check_stop`, so
    that what a stopped run still writes (batch's report) can be put in place."""
    global _requested
    held, _requested = _requested, None
    try:
        yield
    finally:
        _requested = _requested or held


def check_stop() -> None:
    """Raise :class:`Interrupted` if a stop was asked for (and its exception was lost)."""
    if _requested is not None:
        raise Interrupted(_requested)


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A plain KeyboardInterrupt (Python's own SIGINT handler) as an Interrupted by SIGINT."""
    return exc if isinstance(exc, Interrupted) else Interrupted(_requested or signal.SIGINT)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


#: Held by a worker process while it runs a task (see :func:`exit_with_parent`).
task_running = threading.Lock()


def exit_with_parent(parent: int | None = None) -> None:
    """Start a thread that ends this worker process once the process that started it
    (``parent``, its id as that process gave it: a worker that starts after its parent died
    sees another parent already; default: this process's parent now) is gone.

    A parent killed by SIGKILL cannot stop its workers, and they would wait for tasks forever,
    holding their memory. A task running then (``task_running`` held) is stopped as by SIGTERM,
    which removes its partial output; the process exits once it has unwound. Polling the
    parent's id works on every POSIX system (Linux's ``PR_SET_PDEATHSIG`` would only send a
    signal, which an idle worker notes without exiting).
    """
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        if not task_running.acquire(blocking=False):
            os.kill(os.getpid(), signal.SIGTERM)
            task_running.acquire(timeout=ORPHAN_GRACE_S)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
