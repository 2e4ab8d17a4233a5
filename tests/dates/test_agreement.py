"""The agreement check's candidates (agreement.py): the best-weighted predictions kept."""

from __future__ import annotations

import numpy as np
from helpers import WINTER_CLEAR, WINTER_S2

from cloudfree.dates.agreement import SLOTS, Candidates
from cloudfree.io.sentinel2 import open_sentinel2


def test_each_pixel_keeps_the_predictions_of_its_best_weighted_dates():
    # six dates offered in turn over the winter patches (each a patch scaled by its own gain,
    # its weight varying from pixel to pixel, some pixels not taken): at every pixel the
    # candidates hold the SLOTS dates of the largest weights, each with its own prediction,
    # variance and time factor, whatever the order they came in
    with open_sentinel2(WINTER_CLEAR) as s2:
        clear = s2.read()[0][:, :64, :96]
    with open_sentinel2(WINTER_S2) as s2:
        hazy = s2.read()[0][:, :64, :96]
    dates = 6
    rng = np.random.default_rng(7)
    predictions = [(clear if d % 2 else hazy) * np.float32(0.9 + 0.05 * d) for d in range(dates)]
    variances = [np.full_like(clear, 1e-4 * (d + 1)) for d in range(dates)]
    scores = rng.random((dates, *clear.shape[1:])).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = 0
    factors = [np.float32(0.5 + 0.1 * d) if d % 2 else rng.random(clear.shape[1:]).astype(
        np.float32) for d in range(dates)]
    candidates = Candidates(len(clear), *clear.shape[1:])
    for d in range(dates):
        candidates.offer(d + 1, scores[d], predictions[d], variances[d], factors[d])

    best = np.sort(scores, axis=0)[::-1][:SLOTS]
    np.testing.assert_array_equal(np.sort(candidates.score, axis=0)[::-1], best)
    for slot in range(SLOTS):
        taken = candidates.score[slot] > 0
        date = candidates.index[slot].astype(int) - 1
        assert (date[taken] >= 0).all()
        rows, cols = np.nonzero(taken)
        chosen = date[rows, cols]
        np.testing.assert_array_equal(candidates.score[slot, rows, cols],
                                      scores[chosen, rows, cols])
        np.testing.assert_array_equal(candidates.prediction[slot, :, rows, cols],
                                      np.stack(predictions)[chosen, :, rows, cols])
        np.testing.assert_array_equal(candidates.variance[slot, :, rows, cols],
                                      np.stack(variances)[chosen, :, rows, cols])
        factor = np.stack([np.broadcast_to(f, clear.shape[1:]) for f in factors])
        np.testing.assert_array_equal(candidates.factor[slot, rows, cols],
                                      factor[chosen, rows, cols])
