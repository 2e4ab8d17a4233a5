"""The ordered thread map behind `mask --threads`: order, bounded look-ahead, errors; the
turnstile that lets numbered work through in order."""

from __future__ import annotations

import threading
import time

import pytest

from cloudfree.core.threads import Turnstile, join_started, ordered_map


@pytest.mark.parametrize("threads", [1, 3])
def test_results_in_input_order(threads):
    assert list(ordered_map(lambda x: x * x, range(40), threads)) == [x * x for x in range(40)]


def test_look_ahead_is_bounded_and_work_runs_on_other_threads():
    started, names = [], set()

    def work(x):
        started.append(x)
        names.add(threading.current_thread().name)
        return x

    results = ordered_map(work, range(100), 2)
    assert next(results) == 0
    assert len(started) <= 4  # 2 x threads submitted before the first result is handed out
    results.close()
    assert len(started) < 100 and all(n.startswith("cloudfree") for n in names)


def test_an_error_in_a_worker_reaches_the_caller():
    def work(x):
        if x == 5:
            raise ValueError("window 5 is broken")
        return x

    with pytest.raises(ValueError, match="window 5 is broken"):
        list(ordered_map(work, range(20), 2))


def test_join_started_waits_for_a_thread_still_starting():
    """A thread whose start a signal interrupted runs a moment later: it is joined, and one
    that never starts does not hang the shutdown."""
    done: list[int] = []
    late = threading.Thread(target=lambda: (time.sleep(0.05), done.append(1)))
    threading.Timer(0.05, late.start).start()
    join_started(late)
    assert done == [1] and not late.is_alive()
    started = time.monotonic()
    join_started(threading.Thread(target=done.append, args=(2,)), patience=0.1)
    assert done == [1] and time.monotonic() - started < 1


def test_the_turnstile_lets_work_through_in_its_order_whatever_comes_first():
    # the work arrives latest first; number 2 does not come (past), number 4 fails inside:
    # the others go through in order, one at a time, and none waits for ever
    turnstile, gone, inside = Turnstile(), [], []

    def work(number):
        time.sleep(0.01 * (6 - number))
        if number == 2:
            turnstile.past(number)
            return
        try:
            with turnstile.through(number):
                inside.append(number)
                time.sleep(0.01)
                assert inside == [number]
                inside.remove(number)
                gone.append(number)
                if number == 4:
                    raise ValueError("this one fails")
        except ValueError:
            pass
        finally:
            turnstile.past(number)  # said again after going through: nothing changes

    threads = [threading.Thread(target=work, args=(n,)) for n in range(7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert gone == [0, 1, 3, 4, 5, 6]
