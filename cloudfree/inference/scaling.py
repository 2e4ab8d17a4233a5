"""Network input scaling conventions, carried by every checkpoint.

- ``glfcr`` (GLF-CR and most peers): S2 reflectance clipped to [0, 1] (DN [0, 10000] / 10000);
  S1 VV clipped to [-25, 0] dB and VH to [-32.5, 0] dB, then min-max to [0, 1].
- ``dsen2cr`` (DSen2-CR, Meraner et al. 2020): S2 DN / 2000 (reflectance x 5) after clipping to
  [0, 10000]; S1 clipped as above and mapped to [0, 2].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cloudfree.core.errors import CloudfreeError


@dataclass(frozen=True)
class Scaling:
    """How reflectance and S1 dB map to network inputs, and back."""

    name: str = "glfcr"
    s2_max: float = 1.0  # reflectance clipped to [0, s2_max]
    s2_factor: float = 1.0  # network value = reflectance * s2_factor
    s1_min: tuple[float, float] = (-25.0, -32.5)  # VV, VH lower clip in dB
    s1_max: tuple[float, float] = (0.0, 0.0)
    s1_range: float = 1.0  # clipped dB mapped min-max onto [0, s1_range]

    def scale_s2(self, reflectance: np.ndarray) -> np.ndarray:
        """Reflectance [13, ...] -> network input."""
        scaled = np.clip(reflectance, 0.0, self.s2_max)
        if self.s2_factor != 1:  # in place: one array per call, not three
            scaled *= self.s2_factor
        return scaled.astype(np.float32, copy=False)

    def unscale_s2(self, values: np.ndarray) -> np.ndarray:
        """Network output -> reflectance, in place where ``values`` is float32."""
        if values.dtype != np.float32:
            return (values / np.float32(self.s2_factor)).astype(np.float32)
        if self.s2_factor != 1:
            values /= np.float32(self.s2_factor)
        return values

    def scale_s1(self, db: np.ndarray) -> np.ndarray:
        """S1 in dB [2, ...] (VV, VH) -> network input; NaN (nodata) becomes the lower bound."""
        lo = np.asarray(self.s1_min, np.float32).reshape(2, *([1] * (db.ndim - 1)))
        hi = np.asarray(self.s1_max, np.float32).reshape(lo.shape)
        clipped = np.clip(np.nan_to_num(db, nan=-1e9), lo, hi)
        return ((clipped - lo) / (hi - lo) * self.s1_range).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scaling:
        try:
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            return cls(**fields)
        except TypeError as exc:
            raise CloudfreeError(f"checkpoint scaling is not understood: {exc}") from None


SCALINGS: dict[str, Scaling] = {
    "glfcr": Scaling(),
    "dsen2cr": Scaling(name="dsen2cr", s2_factor=5.0, s1_range=2.0),
}
