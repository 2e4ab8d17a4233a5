"""The legend strip below the ``remove --preview`` panels, on a synthetic scene."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, SNOW
from cloudfree.output.preview import GAP, LEGEND, SIGMA_HIGH, SIGMA_LOW, Preview

BANDS = ("B02", "B03", "B04", "B08")


def preview(confidence):
    """A 90 x 120 scene with each class and, with confidence, sigma spanning the ramp."""
    refl = np.random.default_rng(0).uniform(0, 0.3, (4, 90, 120)).astype(np.float32)
    classes = np.full((90, 120), CLEAR, np.uint8)
    classes[10:30, 10:40], classes[40:50, :20], classes[60:, 80:] = CLOUD, SHADOW, SNOW
    classes[:5, -5:] = NODATA
    sigma = np.zeros_like(refl)
    sigma[:, classes == CLOUD] = SIGMA_LOW / 2
    sigma[:, classes == SNOW] = SIGMA_HIGH * 2
    result = Preview(90, 120, BANDS, confidence=confidence)
    result.add(0, 0, refl, classes, refl / 2, sigma if confidence else None)
    return result, classes


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a PNG
@pytest.mark.parametrize("confidence", [False, True])
def test_legend_adds_rows_below_unchanged_panels(tmp_path, confidence):
    made, classes = preview(confidence)
    n = 4 if confidence else 3
    with rasterio.open(made.write(tmp_path / "p.png", overwrite=False)) as ds:
        image = ds.read()
    assert image.shape == (3, 90 + LEGEND, n * 120 + (n - 1) * GAP)
    panels = made.panels()
    assert np.array_equal(image[:, :90], panels)  # the panels, byte for byte
    mask = panels[:, :, 120 + GAP:240 + GAP]
    assert (mask[:, classes == CLOUD] == 255).all() and (mask[:, classes == NODATA] == 0).all()
    assert (mask[:, classes == SHADOW].T == (90, 60, 140)).all()
    legend = image[:, 90:].reshape(3, -1).T
    colours = {tuple(c) for c in legend}
    assert {(255, 255, 255), (90, 60, 140), (0, 200, 255)} <= colours  # the three swatches
    assert ((0, 255, 0) in colours) == confidence  # the ramp's ends
    assert ((255, 0, 0) in colours) == confidence


def test_ramp_lies_under_the_confidence_panel_green_to_red():
    made, classes = preview(True)
    image = made.image()
    x = 3 * (120 + GAP)
    ramp = image[:, 90 + GAP, x:x + 120]
    assert tuple(ramp[:, 0]) == (0, 255, 0) and tuple(ramp[:, -1]) == (255, 0, 0)
    assert (ramp[2] == 0).all() and (np.diff(ramp[0].astype(int)) >= 0).all()
    confidence = image[:, :90, x:]  # the panel's ends are the ramp's
    assert (confidence[:, classes == CLOUD].T == (0, 255, 0)).all()
    assert (confidence[:, classes == SNOW].T == (255, 0, 0)).all()
    below = image[:, 90 + GAP + 8:90 + GAP + 12]  # the ticks at both ends, nothing between
    assert (below[:, :, x] < 128).all() and (below[:, :, x + 119] < 128).all()
    assert (below[:, :, x + 1:x + 119] == 255).all()
