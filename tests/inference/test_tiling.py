"""Tile grid geometry and streamed blending."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from cloudfree.inference.tiling import Blender, TileGrid, chunk_number, chunks, tiles_within


@pytest.mark.parametrize(("h", "w", "tile", "overlap", "trim", "per_chunk", "strips"),
                         [(300, 517, 64, 16, 3, 3, 1), (64, 64, 64, 16, 0, 1, 1),
                          (1000, 90, 128, 40, 10, 2, 1), (50, 70, 64, 0, 0, 4, 1),
                          (130, 140, 32, 8, 0, 16, 1), (300, 517, 64, 16, 3, 3, 2),
                          (1000, 90, 128, 40, 10, 2, 4), (50, 70, 16, 0, 0, 4, 3)])
def test_blending_reconstructs_a_consistent_field(h, w, tile, overlap, trim, per_chunk,
                                                  strips):
    """When every tile predicts the same field, the blend returns that field everywhere,
    with chunks one strip tall or several."""
    grid = TileGrid(h, w, tile, overlap, trim)
    rng = np.random.default_rng(0)
    pad = grid.tile + grid.trim
    field = rng.normal(size=(2, h + 2 * pad + grid.stride * 2, w + 2 * pad + grid.stride * 2))
    field = field.astype(np.float32)
    blender = Blender(grid, channels=2)
    out = np.full((2, h, w), np.nan, np.float32)
    weight = np.zeros((h, w), np.float32)
    for chunk in chunks(grid, per_chunk, strips):
        preds = {}
        for dy, dx in chunk.tile_offsets():
            r, c = chunk.top + dy + pad, chunk.left + dx + pad
            preds[dy, dx] = field[:, r : r + tile, c : c + tile]
        final = blender.add(chunk, preds)
        if final is not None:
            rr = slice(final.row, final.row + final.values.shape[1])
            cc = slice(final.col, final.col + final.values.shape[2])
            assert np.isnan(out[:, rr, cc]).all(), "a pixel was released twice"
            out[:, rr, cc] = final.values
            weight[rr, cc] = final.weight
    np.testing.assert_allclose(out, field[:, pad : pad + h, pad : pad + w], rtol=1e-5, atol=1e-5)
    assert (weight > 0).all()
    # Away from the scene edges the weights of overlapping tiles sum to one.
    inner = weight[tile:-tile, tile:-tile]
    if inner.size:
        np.testing.assert_allclose(inner, 1.0, atol=1e-5)


def test_window_zero_outside_trim_and_sums_to_one():
    grid = TileGrid(500, 500, 128, 48, 8)
    w = grid.window_1d()
    assert (w[:8] == 0).all() and (w[-8:] == 0).all()
    s = grid.stride
    np.testing.assert_allclose(w[s:] + w[: grid.tile - s], 1.0, atol=1e-12)


def test_invalid_geometry():
    with pytest.raises(ValueError, match="overlap"):
        TileGrid(100, 100, 64, 64, 0)
    with pytest.raises(ValueError, match="no blending ramp"):
        TileGrid(100, 100, 64, 16, 8)


@pytest.mark.parametrize("tile, overlap, width, tiles", [(256, 32, 1152, 5), (256, 32, 1151, 4),
                                                         (512, 64, 1152, 2), (2048, 256, 1152, 1)])
def test_tiles_within_a_width_fill_it_without_passing_it(tile, overlap, width, tiles):
    grid = TileGrid(4096, 4096, tile, overlap, overlap // 4)
    assert tiles_within(grid, width) == tiles
    widths = {c.width for c in chunks(grid, tiles)}
    assert max(widths) <= max(width, tile) and (tiles == 1 or max(widths) > width - grid.stride)


def test_blender_holds_one_carry_across_the_scene():
    """Through a strip of a wide scene, the blender keeps one band of ``overlap`` rows across
    the width (values and weight) for the next strip, not one being read and one being filled."""
    grid = TileGrid(600, 4096, 256, 32, 8)
    padded_width = grid.start(grid.cols - 1) + grid.tile + grid.trim
    carry = (13 + 1) * grid.overlap * padded_width * 4
    prediction = np.ones((13, grid.tile, grid.tile), np.float32)
    tracemalloc.start()
    try:
        blender = Blender(grid, channels=13)
        for chunk in chunks(grid, 5):
            if chunk.row == 1:  # the second strip, reading the first one's carry
                break
            blender.add(chunk, dict.fromkeys(chunk.tile_offsets(), prediction))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert carry <= held < 1.5 * carry


@pytest.mark.parametrize("strips", [1, 2, 4])
def test_chunks_of_several_strips_cover_each_tile_once_in_order(strips):
    """Chunks several strips tall hold every tile once, the last ones as many strips as are
    left, and ``chunk_number`` gives their place in the order they come in."""
    grid = TileGrid(1100, 1500, 256, 32, 0)
    tiles = []
    for number, chunk in enumerate(chunks(grid, 5, strips)):
        assert chunk_number(chunk, 5, strips) == number
        assert chunk.strips == min(strips, grid.rows - chunk.row)
        assert chunk.height == (chunk.strips - 1) * grid.stride + grid.tile
        tiles += [(chunk.top + dy, chunk.left + dx) for dy, dx in chunk.tile_offsets()]
    assert sorted(tiles) == sorted({(grid.start(r), grid.start(c))
                                    for r in range(grid.rows) for c in range(grid.cols)})
