"""The target predicted from its clear pixels whose other dates look most alike.

A group of dates regressed all at once (``joint_fit.py``) learns one linear change per band
over the scene; a field harvested since one date and another sown since it change in ways no
single line follows. The clear pixels of the target whose dates show the same sequence of
spectra (a field that went through the same stages) say more directly what such a pixel looks
like now: the target at a masked pixel is the inverse-distance weighted mean of the target at
its ``NEIGHBOURS`` nearest clear pixels, in the space of its dates' bands (each feature
standardised, then projected on its first ``COMPONENTS`` principal components for a fast
k-d tree search). This is the similar-pixel idea of the neighbourhood similar pixel
interpolator (Chen, Zhu, Vogelmann, Gao and Jin, Remote Sensing of Environment 115, 2011),
taken over the whole scene and over all the group's dates.

The pixels searched are a regular sample of the scene's clear pixels (every ``stride``-th row
and column, at most about ``SAMPLE`` pixels), gathered in the references' statistics pass. The
fill (``fill.py``) takes a fixed share of this prediction (``SIMILAR``): weighed against the
dates' predictions by its error on the sample, each pixel left out of its own search, it
counted too much, as a clear pixel finds near twins beside it where one deep in a cloud does
not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import spatial

from cloudfree.core.threads import usable_cores
from cloudfree.dates.radiometry import MIN_PIXELS

#: Share of the fill taken from the target's clear pixels whose dates look alike (the dates:
#: the group of the nearest mostly clear ones, ``joint_fit.WHOLE_CLEAR``), where all those
#: dates are clear and the agreement check dropped none; the weighted predictions keep the
#: rest. None: not used (nor their sample gathered).
SIMILAR: float | None = 0.3
#: Neighbours averaged.
NEIGHBOURS = 5
#: Most pixels searched (the sample's stride grows with the scene).
SAMPLE = 16384
#: Dimensions of the search: principal components of the standardised features.
COMPONENTS = 16
#: The search is approximate: each neighbour found lies within (1 + ``APPROXIMATE``) times the
#: distance of the true one (``cKDTree.query``'s ``eps``). On the pool's SEN12MS-CR-TS series
#: (four dates predicting a fifth from 16384 pixels, ``benchmarks/similar_search.py``) 3
#: searched about 8 times faster than an exact search for 5 % more RMS error, and 5 took 26 %
#: less CPU than 3 for another 5 %. The fill takes ``SIMILAR`` of it: with 5 (and the residual's
#: shorter reach, ``residual.TRUNCATE``) the other dates' and the L2A benchmarks moved by -0.03
#: and -0.04 dB on the mean on either half, no case by more than 0.13 dB, for 11 % less CPU
#: (docs/benchmarks/speed.md).
APPROXIMATE = 5.0
#: Added to the distances (in standardised units) before their inverse weighs a neighbour.
NEAR = 1e-3
#: Pixels predicted at once: bounds the search's temporaries (about 14 MB with eight 13-band
#: dates).
PIXELS = 16384


def sample_stride(height: int, width: int) -> int:
    """Every how many rows and columns the scene's pixels are sampled (about ``SAMPLE``)."""
    return max(1, math.ceil(math.sqrt(height * width / SAMPLE)))


def sample_grid(top: int, left: int, height: int, width: int, stride: int) -> np.ndarray:
    """The pixels [h, w] of a block on the scene's sample grid (rows and columns multiple of
    ``stride``)."""
    rows = (np.arange(top, top + height) % stride) == 0
    cols = (np.arange(left, left + width) % stride) == 0
    return rows[:, None] & cols[None, :]


@dataclass
class SimilarPixels:
    """A fitted search: the dates (reference indices, nearest first), the features' mean and
    scale [f], the projection [f, COMPONENTS], the tree of the sample's projected features and
    the sample's target values [n, bands]."""

    dates: tuple[int, ...]
    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray
    tree: spatial.cKDTree
    targets: np.ndarray

    @classmethod
    def fit(cls, dates: tuple[int, ...], features: np.ndarray, targets: np.ndarray
            ) -> SimilarPixels | None:
        """From the sample's dates' features [n, f] (the dates' bands, nearest date first) and
        target values [n, bands]; None with fewer than ``MIN_PIXELS`` pixels."""
        if len(features) < max(MIN_PIXELS, NEIGHBOURS + 1):
            return None
        features = features.astype(np.float64)
        mean, scale = features.mean(0), features.std(0) + 1e-6
        standard = (features - mean) / scale
        basis = np.linalg.svd(standard, full_matrices=False)[2][:COMPONENTS].T
        return cls(dates, mean, scale, basis, spatial.cKDTree(standard @ basis),
                   targets.astype(np.float32))

    def predict(self, dates: list[np.ndarray], where: np.ndarray) -> np.ndarray:
        """The target [bands, n] at the ``where`` pixels [h, w] of the dates' reflectance
        [bands, h, w] (nearest date first), ``PIXELS`` at a time, searched on every core (the
        references' fill runs one block at a time)."""
        rows, cols = np.nonzero(where)
        out = np.empty((self.targets.shape[1], len(rows)), np.float32)
        for start in range(0, len(rows), PIXELS):
            part = slice(start, start + PIXELS)
            features = np.concatenate([d[:, rows[part], cols[part]] for d in dates]).T
            projected = ((features - self.mean) / self.scale) @ self.basis
            distance, index = self.tree.query(projected, NEIGHBOURS, eps=APPROXIMATE,
                                              workers=usable_cores())
            out[:, part] = _weighted(distance, index, self.targets).T
        return out


def _weighted(distance: np.ndarray, index: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The inverse-distance weighted mean [n, bands] of the ``targets`` of each row's
    neighbours (``distance`` and ``index`` [n, k])."""
    weight = 1 / (distance + NEAR)
    weight /= weight.sum(1, keepdims=True)
    return np.einsum("nk,nkb->nb", weight, targets[index]).astype(np.float32)
