"""Exact tiling: the derived halo, tile geometry, and tiled == one whole-scene pass (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.core.errors import SarJaxError
from sar_jax.data.preprocess import normalize
from sar_jax.inference import run as inference
from sar_jax.inference.reconstruct import reconstruct_scene
from sar_jax.inference.tiling import AxisTiles, TileGrid, default_halo, dependency_radius, reflect_index


def _scene(shape, seed=0):
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(0, 1, (shape[0] // 8 + 2, shape[1] // 8 + 2)))
    base = np.kron(base, np.ones((8, 8)))[:shape[0], :shape[1]]
    return (base * rng.gamma(4.0, 0.25, shape)).astype(np.float32)


def _whole(run, img):
    """The reference: the scene padded once (reflect) to a multiple of 16, one model call, cropped."""
    h, w = img.shape
    ph, pw = -(-h // 16) * 16, -(-w // 16) * 16
    x = np.pad(normalize(img, run.preprocessing_params), ((0, ph - h), (0, pw - w)), mode="reflect")
    x_hat, z = inference.reconstruct_fn(run.model)(run.variables, x[None, ..., None])
    return np.asarray(x_hat)[0, :h, :w, 0], np.asarray(z)[0]


def test_dependency_radius_is_derived_from_the_architecture():
    assert dependency_radius(5, 4) == 60 and default_halo({"kernel_size": 5}) == 64
    assert dependency_radius(3, 4) < dependency_radius(5, 4) < dependency_radius(7, 4)
    assert dependency_radius(5, 3) < dependency_radius(5, 4)


def test_one_pixel_perturbation_stays_within_the_radius(random_run):
    fn = inference.reconstruct_fn(random_run.model)
    x = np.random.default_rng(0).random((1, 256, 256, 1), np.float32)
    base = np.asarray(fn(random_run.variables, x)[0])[0, ..., 0]
    reach = 0
    for p in range(128, 144, 3):  # several phases on the 16 px grid
        x2 = x.copy()
        x2[0, p, p, 0] += 1.0
        changed = np.argwhere(np.asarray(fn(random_run.variables, x2)[0])[0, ..., 0] != base)
        reach = max(reach, int(np.abs(changed - p).max()))
    radius = dependency_radius(5, 4)
    assert radius - 16 < reach <= radius, (reach, radius)  # the bound holds and is not loose by a tile step


def test_axis_tiles_cover_the_padded_axis_on_the_latent_grid():
    for length, tile, halo in ((1000, 128, 64), (37, 256, 64), (300, 64, 32), (16, 16, 0), (2000, 512, 64)):
        ax = AxisTiles(length, tile, halo)
        covered = np.zeros(ax.padded, int)
        for a, n, s in ax.tiles():
            assert a % 16 == n % 16 == s % 16 == 0
            assert s <= a and a + n <= s + ax.window <= ax.padded
            # a window edge is the scene's edge or at least the halo away from the tile
            assert s == 0 or a - s >= halo
            assert s + ax.window == ax.padded or s + ax.window - (a + n) >= halo
            covered[a:a + n] += 1
        assert (covered == 1).all()
    assert AxisTiles(300, 256, 64).tiles() == [(0, 304, 0)]  # fits one window: one tile


def test_default_tiling_computes_at_most_1_6x_the_pixels():
    grid = TileGrid.create(20000, 20000, 512, 64)
    assert grid.computed_pixels() / 20000**2 <= 1.6


@pytest.mark.parametrize("shape,tile,batch", [((100, 183), 32, 3), ((100, 183), 48, 1), ((300, 217), 64, 4),
                                              ((37, 21), 256, 2)])
def test_tiled_equals_the_whole_scene_pass(random_run, tmp_path, shape, tile, batch):
    img = _scene(shape, seed=tile)
    np.save(tmp_path / "in.npy", img)
    summary = reconstruct_scene(random_run, tmp_path / "in.npy", tmp_path / "out.npy", tile=tile, batch_size=batch,
                                save_latent=tmp_path / "z.tif", latent_dtype="float32", units="intensity",
                                progress=False)
    ref, z_ref = _whole(random_run, img)
    out = normalize(np.load(tmp_path / "out.npy"), random_run.preprocessing_params)
    assert out.shape == shape and np.abs(out - ref).max() <= 1e-5
    import rasterio

    with rasterio.open(tmp_path / "z.tif") as ds:
        z = np.moveaxis(ds.read(), 0, -1)
    assert z.shape == (-(-shape[0] // 16), -(-shape[1] // 16), 4)
    np.testing.assert_allclose(z, z_ref, atol=1e-5)  # the latent is the whole-scene encoder's output
    assert summary["tiles"] >= 1 and summary["halo"] == 64


def test_too_small_a_halo_is_not_exact(random_run, tmp_path):
    img = _scene((300, 217), seed=1)
    np.save(tmp_path / "in.npy", img)
    reconstruct_scene(random_run, tmp_path / "in.npy", tmp_path / "out.npy", tile=64, halo=32, units="intensity",
                      progress=False)
    out = normalize(np.load(tmp_path / "out.npy"), random_run.preprocessing_params)
    assert np.abs(out - _whole(random_run, img)[0]).max() > 1e-3  # the test above can fail


def test_reflect_index_matches_numpy_reflect_padding():
    for n in (2, 3, 7):
        a = np.arange(n)
        idx = reflect_index(np.arange(-20, n + 20), n)
        np.testing.assert_array_equal(a[idx], np.pad(a, 20, mode="reflect"))
    np.testing.assert_array_equal(reflect_index(np.arange(-3, 4), 1), 0)


@pytest.mark.parametrize("tile,halo", [(100, 64), (0, 64), (8, 0), (64, 8), (64, -16)])
def test_bad_tiling_is_refused(tile, halo):
    with pytest.raises(SarJaxError):
        TileGrid.create(100, 100, tile, halo)
