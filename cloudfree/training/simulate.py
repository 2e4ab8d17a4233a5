"""Simulated clouds: real cloud fields laid over clear scenes, for training without clear pairs.

A cloud field is a real cloudy Sentinel-2 image and its cloud score (``cloudfree.mask.classify``,
CARF eq. 13-16). Its opacity is alpha = clip((score - 0.05) / 0.45, 0, 1) times a random strength in
[0.6, 1.4] (clipped to 1), so thick cores are opaque (their pixels are the real cloud's radiance
and carry nothing of the surface), edges translucent and clear pixels stay clear; the simulated
cloudy image is clear * (1 - alpha) + cloud_field * alpha, per band.

Cloud shadows: the opacity, displaced by a random 8-32 px in a random direction (sun and cloud
height), darkens the surface it falls on by a random depth in [0.3, 0.7] (a shadow keeps the
diffuse skylight, so it is never black), outside the cloud itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cloudfree.inference.scaling import Scaling
from cloudfree.mask.classify import MaskParams
from cloudfree.training.datasets import LoadedSample, cloud_mask, network_arrays, random_view

SCORE_CLEAR, SCORE_OPAQUE = 0.05, 0.5
STRENGTH = (0.6, 1.4)
SHADOW_SHIFT = (8, 32)
SHADOW_DEPTH = (0.3, 0.7)


def opacity(score: np.ndarray) -> np.ndarray:
    """Cloud opacity [H, W] from the cloud score (NaN -> 0)."""
    a = (np.nan_to_num(score) - SCORE_CLEAR) / (SCORE_OPAQUE - SCORE_CLEAR)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def overlay(clear: np.ndarray, cloud: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend a cloud field [C, H, W] over a clear image [C, H, W]."""
    return (clear * (1 - alpha[None]) + cloud * alpha[None]).astype(np.float32)


def shadow_of(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The darkening [H, W] (0 none, up to the depth) cast by clouds of opacity ``alpha``."""
    distance = rng.uniform(*SHADOW_SHIFT)
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = int(round(distance * np.sin(angle))), int(round(distance * np.cos(angle)))
    h, w = alpha.shape
    cast = np.zeros_like(alpha)
    cast[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        alpha[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return (rng.uniform(*SHADOW_DEPTH) * cast * (1 - alpha)).astype(np.float32)


@dataclass
class Scene:
    """A clear image (reflectance), its S1 in dB on the same grid, and where it may be trusted."""

    clear: np.ndarray
    s1_db: np.ndarray
    valid: np.ndarray


@dataclass
class CloudField:
    """A real cloudy image (reflectance) and its opacity."""

    cloudy: np.ndarray
    alpha: np.ndarray


def simulate(scene: Scene, field: CloudField, strength: float = 1.0,
             params: MaskParams = MaskParams(),
             rng: np.random.Generator | None = None) -> LoadedSample:
    """A cloudy/clear sample from same-size crops of a scene and a cloud field; with ``rng``,
    the clouds cast shadows."""
    alpha = np.minimum(field.alpha * strength, 1.0)
    surface = scene.clear if rng is None else scene.clear * (1 - shadow_of(alpha, rng))[None]
    cloudy = overlay(surface, field.cloudy, alpha)
    return LoadedSample(cloudy, scene.clear, scene.s1_db, scene.valid,
                        cloud_mask(cloudy, scene.valid, params))


class SimulatedClouds(torch.utils.data.Dataset):
    """``length`` random crops of random scenes under random crops of random cloud fields."""

    def __init__(self, scenes: list[Scene], fields: list[CloudField], scaling: Scaling,
                 crop: int, length: int, params: MaskParams = MaskParams()) -> None:
        self.scenes, self.fields, self.scaling = scenes, fields, scaling
        self.crop, self.length, self.params = crop, length, params

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, ())))
        scene = self.scenes[rng.integers(len(self.scenes))]
        field = self.fields[rng.integers(len(self.fields))]
        s = random_view({"clear": scene.clear, "s1": scene.s1_db,
                         "valid": scene.valid[None].astype(np.float32)}, rng, self.crop)
        f = random_view({"cloudy": field.cloudy, "alpha": field.alpha[None]}, rng, self.crop)
        sample = simulate(Scene(s["clear"], s["s1"], s["valid"][0] > 0),
                          CloudField(f["cloudy"], f["alpha"][0]), rng.uniform(*STRENGTH),
                          self.params, rng)
        return {k: torch.from_numpy(v) for k, v in network_arrays(sample, self.scaling).items()}
