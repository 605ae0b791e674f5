"""Tile geometry and blending without a model: exact partition of unity, any scene size."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.core.errors import SarJaxError
from sar_jax.inference.tiling import (
    Blender,
    TileGrid,
    batched_apply,
    blend_window,
    check_tiling,
    input_tiles,
    reflect_index,
)


def _identity_blend(img: np.ndarray, tile: int, overlap: int, batch: int = 5) -> tuple[np.ndarray, TileGrid]:
    grid = TileGrid.create(*img.shape, tile, overlap)
    cols = grid.col_indices()
    out = np.full(img.shape, np.nan, np.float32)
    blocks = []

    def write(r0, block):
        blocks.append(r0)
        out[r0:r0 + len(block)] = block

    blender = Blender(grid, write)
    for (i, j), (t,) in batched_apply(input_tiles(grid, lambda i: img[grid.row_indices(i)][:, cols]),
                                      lambda b: b * 1.0, batch):
        blender.add(i, j, t)
    assert blender.finished
    assert blocks == sorted(blocks)  # rows are emitted in order, once
    return out, grid


@pytest.mark.parametrize("shape,tile,overlap", [((100, 37), 256, 32), ((300, 517), 64, 16), ((37, 100), 32, 8),
                                                 ((1, 1), 16, 0), ((5, 700), 32, 8), ((517, 300), 48, 20)])
def test_blending_identity_tiles_reproduces_any_scene(shape, tile, overlap):
    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    out, grid = _identity_blend(img, tile, overlap)
    np.testing.assert_allclose(out, img, atol=1e-6)
    assert grid.tile_h % 16 == 0 and grid.tile_w % 16 == 0
    assert grid.padded_h >= shape[0] + 2 * grid.margin and grid.padded_w >= shape[1] + 2 * grid.margin


def test_small_scenes_get_one_shrunk_tile():
    grid = TileGrid.create(100, 37, 256, 32)
    assert (grid.rows, grid.cols, grid.tile_h, grid.tile_w) == (1, 1, 144, 80)


def test_blend_window_is_a_partition_of_unity_and_never_zero():
    w = blend_window(64, 16)
    assert w.min() > 0 and w.max() == 1.0
    np.testing.assert_allclose(w[:16] + w[-16:], 1.0, atol=1e-6)  # ramps of neighbours cross-fade
    assert np.all(np.diff(w[:16]) > 0)
    np.testing.assert_array_equal(blend_window(32, 0), 1.0)


def test_reflect_index_matches_numpy_reflect_padding():
    for n in (2, 3, 7):
        a = np.arange(n)
        idx = reflect_index(np.arange(-20, n + 20), n)
        np.testing.assert_array_equal(a[idx], np.pad(a, 20, mode="reflect"))
    np.testing.assert_array_equal(reflect_index(np.arange(-3, 4), 1), 0)


@pytest.mark.parametrize("tile,overlap", [(100, 8), (0, 0), (8, 0), (64, 32), (64, -1), (64, 40)])
def test_bad_tiling_is_refused(tile, overlap):
    with pytest.raises(SarJaxError):
        check_tiling(tile, overlap)
