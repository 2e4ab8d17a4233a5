"""The ordered thread map behind `mask --threads`: order, bounded look-ahead, errors."""

from __future__ import annotations

import threading

import pytest

from cloudfree.threads import ordered_map


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
