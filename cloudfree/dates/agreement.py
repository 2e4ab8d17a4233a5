"""Per-pixel agreement of the references: drop a date whose prediction the others contradict.

Where several references are clear at a masked pixel, each predicts the target through its
radiometric fit, with the fit's residual variance ``v`` there (``radiometry.py``). A date on
which that one place changed (a field harvested, a pond filled) still fits its cell well and
can carry most of the weight, while the other dates agree with each other. So the ``SLOTS``
predictions with the largest weights at each pixel are kept while the references are read
(memory does not grow with their number), and afterwards each is compared with the
precision-weighted mean of the others (weights 1 / v):

    d2_j = mean over bands of (p_j - m_-j)^2 / (v_j + 1 / sum_-j 1 / v + s_-j)

with m_-j and s_-j the others' precision-weighted mean and scatter (weighted variance about
m_-j): about 1 when the dates differ by what their residuals and their own disagreement
explain, so that nothing is dropped where the others do not agree among themselves either.
Where at least three are kept, the largest ``d2`` exceeds the threshold and the others
together weigh at least ``OUTWEIGHED`` of that date, it is dropped at that pixel and the fill
there becomes the weighted mean of the other kept dates (``weights.py``'s weights;
dates beyond the ``SLOTS`` best, whose weights are small by then, are left out there).
Elsewhere the fill is left exactly as it was.
"""

from __future__ import annotations

import numpy as np

#: Predictions kept per pixel (the largest weights).
SLOTS = 4
#: Columns of a strip compared at once (``Candidates.disagreement``): the dozen arrays of 13
#: bands of them its passes use stay in a core's cache (2 MiB here), where those of a whole
#: strip were read from memory in every pass.
PIXELS = 4096
#: Fewest kept predictions for a comparison: the one tested and at least two others.
MIN_AGREEING = 3
#: Weight of the others' own scatter in the spread (0: their residual variances alone). With 0
#: the residual variances alone explain too little of how dates differ at one pixel: at a
#: threshold of 4 the benchmark lost 1.4 dB on 7 of its even-half cases, against 0.6 dB on 28
#: with the scatter.
SCATTER = 1.0
#: Least share of a date's weight that the other kept dates must carry together for it to be
#: dropped (0: any). Where they weigh much less, the fill's own weights say they predict the
#: target far worse, and their agreement is more likely an error they share than a change of
#: the one date (on a fast-changing month, the next month's fields against three others). On
#: the L2A benchmark's targets at odd places in time order (35 cases), 0 gave 29.88 dB on
#: average, 0.1, 0.25 and 1 30.14 (two of June's cases 24.4 and 26.0 dB with 0, 29.0 and 29.7).
OUTWEIGHED = 0.25


class Candidates:
    """The ``SLOTS`` best-weighted predictions at each pixel of a strip."""

    def __init__(self, bands: int, height: int, width: int, slots: int = SLOTS) -> None:
        self.score = np.zeros((slots, height, width), np.float32)  # mean weight; 0: empty
        self.index = np.zeros((slots, height, width), np.uint8)  # the reference's index
        self.factor = np.zeros((slots, height, width), np.float32)  # its time factor
        self.prediction = np.zeros((slots, bands, height, width), np.float32)
        self.variance = np.ones((slots, bands, height, width), np.float32)

    def offer(self, index: int, score: np.ndarray, prediction: np.ndarray,
              variance: np.ndarray, factor: float | np.ndarray) -> None:
        """A reference's mean weight [h, w] (0 where it is not taken), prediction and residual
        variance [bands, h, w], and its time factor (a number, or one per pixel [h, w]): kept
        where it outweighs the weakest kept one."""
        weakest = np.argmin(self.score, axis=0)
        better = score > np.take_along_axis(self.score, weakest[None], 0)[0]
        bands = len(prediction)
        # slot by slot, by flat pixel index (indexing slots and pixels at once is slower)
        for slot in range(len(self.score)):
            at = np.flatnonzero(better & (weakest == slot))
            if not len(at):
                continue
            self.score[slot].reshape(-1)[at] = score.reshape(-1)[at]
            self.index[slot].reshape(-1)[at] = index
            self.factor[slot].reshape(-1)[at] = (
                factor if np.isscalar(factor) else np.reshape(factor, -1)[at])
            self.prediction[slot].reshape(bands, -1)[:, at] = _pixels(prediction, at)
            self.variance[slot].reshape(bands, -1)[:, at] = _pixels(variance, at)

    def disagreement(self) -> np.ndarray:
        """``d2`` [slots, h, w] of each kept prediction against the others (module docstring);
        -inf for empty slots. ``PIXELS`` columns at a time, whose arrays stay in the CPU's
        cache through the passes below."""
        d2 = np.empty(self.score.shape, np.float32)
        for start in range(0, d2.shape[-1], PIXELS):
            part = (..., slice(start, start + PIXELS))
            d2[part] = _disagreement(self.score[part] > 0, self.prediction[part],
                                     self.variance[part])
        return d2

    def drop_outlier(self, threshold: float, weight_of, total: np.ndarray,
                     weights: np.ndarray, source: np.ndarray) -> np.ndarray | None:
        """Where the worst kept prediction's ``d2`` exceeds ``threshold`` (and at least
        ``MIN_AGREEING`` are kept), refill ``total``, ``weights`` and ``source`` from the others;
        ``weight_of(variance, factor)`` gives a prediction's weights. Returns where a date was
        dropped (None: nowhere)."""
        d2 = self.disagreement()
        worst = np.argmax(d2, axis=0)
        largest = np.take_along_axis(d2, worst[None], 0)[0]
        drop = (largest > threshold) & ((self.score > 0).sum(axis=0) >= MIN_AGREEING)
        tested = np.take_along_axis(self.score, worst[None], 0)[0]
        drop &= self.score.sum(axis=0) - tested >= OUTWEIGHED * tested
        if not drop.any():
            return None
        rows, cols = np.nonzero(drop)
        total[:, rows, cols] = 0
        weights[:, rows, cols] = 0
        best = np.zeros(len(rows), np.float32)
        for slot in range(len(self.score)):
            keep = (worst[rows, cols] != slot) & (self.score[slot, rows, cols] > 0)
            r, c = rows[keep], cols[keep]
            w = weight_of(self.variance[slot, :, r, c].T, self.factor[slot, r, c])
            total[:, r, c] += w * self.prediction[slot, :, r, c].T
            weights[:, r, c] += w
            wins = keep & (self.score[slot, rows, cols] > best)
            source[rows[wins], cols[wins]] = self.index[slot, rows[wins], cols[wins]]
            best[wins] = self.score[slot, rows[wins], cols[wins]]
        return drop


def _disagreement(kept: np.ndarray, prediction: np.ndarray, variance: np.ndarray
                  ) -> np.ndarray:
    """``Candidates.disagreement`` of the slots ``kept`` [slots, h, w], their predictions and
    variances [slots, bands, h, w]. Built up slot by slot, so that few arrays exist at once
    (each slot's precision computed once)."""
    slots = range(len(kept))
    d2 = np.full(kept.shape, -np.inf, np.float32)
    precision = [np.where(kept[i], 1 / variance[i], 0) for i in slots]  # once each
    scatter = [SCATTER * p for p in precision]
    term = np.empty(prediction.shape[1:], np.float32)  # each term, in place
    for j in slots:
        if not kept[j].any():
            continue
        others = [i for i in slots if i != j]
        total = np.full(prediction.shape[1:], 1e-30, np.float32)
        mean = np.zeros(prediction.shape[1:], np.float32)
        for i in others:
            total += precision[i]
            mean += np.multiply(precision[i], prediction[i], out=term)
        mean /= total
        spread = variance[j] + 1 / total
        for i in others:  # SCATTER x precision x (prediction - mean)^2 / total
            np.square(np.subtract(prediction[i], mean, out=term), out=term)
            term *= scatter[i]
            spread += np.divide(term, total, out=term)
        mean -= prediction[j]
        mean **= 2
        mean /= spread
        d2[j] = np.where(kept[j], mean.mean(axis=0), -np.inf)
    return d2


def _pixels(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` [bands, h, w] at the pixels of flat indices ``at`` [n]: [bands, n]."""
    return values.reshape(len(values), -1).take(at, axis=1)
