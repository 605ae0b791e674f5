"""Synthetic scenes (sar_jax.data.synthetic): determinism and speckle statistics."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.data.synthetic import synthetic_scene, synthetic_scenes, synthetic_scenes_with_reflectivity


def test_deterministic_from_the_seed():
    a, ra = synthetic_scene((0, 1), 64, 4.0)
    b, rb = synthetic_scene((0, 1), 64, 4.0)
    c, rc = synthetic_scene((0, 2), 64, 4.0)
    assert a.shape == (64, 64) and a.dtype == np.float32 and ra.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra, rb)
    assert not np.array_equal(a, c) and not np.array_equal(ra, rc)
    scenes = synthetic_scenes(3, 32, 1.0, seed=5)
    assert len(scenes) == 3 and all(s.shape == (32, 32) for s in scenes)
    np.testing.assert_array_equal(scenes[1], synthetic_scene((5, 1), 32, 1.0)[0])
    assert not np.array_equal(synthetic_scenes(3, 32, 1.0, seed=6)[0], scenes[0])
    assert all((s > 0).all() and np.isfinite(s).all() for s in scenes)


def test_speckled_scenes_unchanged_and_paired_with_their_reflectivity():
    pairs = synthetic_scenes_with_reflectivity(3, 32, 1.0, seed=5)
    scenes = synthetic_scenes(3, 32, 1.0, seed=5)
    # values of the speckled scenes from before the reflectivity was returned too (same seed, same data)
    pinned = [(552.4726676802461, 0.044294026, 0.023803204, 0.9196389),
              (552.2968580117667, 0.06548611, 0.40815338, 0.0013952452),
              (497.83886524035915, 0.03379003, 0.2446996, 0.5908531)]
    for (intensity, refl), scene, (total, a, b, c) in zip(pairs, scenes, pinned):
        np.testing.assert_array_equal(intensity, scene)
        assert float(scene.astype(np.float64).sum()) == pytest.approx(total, rel=1e-6)
        np.testing.assert_allclose([scene[3, 7], scene[31, 0], scene[10, 20]], [a, b, c], rtol=1e-6)
        assert refl.shape == scene.shape and refl.dtype == np.float32 and (refl > 0).all()
    # the reflectivity is the speckle-free map the intensity was drawn from
    intensity, refl = synthetic_scenes_with_reflectivity(2, 128, 1.0, seed=8)[1]
    np.testing.assert_array_equal(refl, synthetic_scene((8, 1), 128, 1.0)[1])
    speckle = intensity.astype(np.float64) / refl
    assert abs(speckle.mean() - 1) < 0.03 and abs(speckle.std() - 1) < 0.05  # 1-look: exponential


def _flat_windows(looks: float, win: int = 16, size: int = 256, seeds=range(3)):
    """Intensity / window-mean of every win x win window where the reflectivity is constant."""
    pooled, ratios = [], []
    for seed in seeds:
        intensity, refl = synthetic_scene((99, seed), size, looks)
        ratios.append((intensity.astype(np.float64) / refl).ravel())
        blocks_i = intensity.reshape(size // win, win, size // win, win).swapaxes(1, 2)
        blocks_r = refl.reshape(size // win, win, size // win, win).swapaxes(1, 2)
        flat = blocks_r.max(axis=(2, 3)) == blocks_r.min(axis=(2, 3))
        for w in blocks_i[flat]:
            w = w.astype(np.float64)
            pooled.append((w / w.mean()).ravel())
    return np.concatenate(pooled), np.concatenate(ratios)


@pytest.mark.parametrize("looks", [1.0, 4.0])
def test_enl_in_homogeneous_windows_matches_looks(looks):
    pooled, ratio = _flat_windows(looks)
    assert pooled.size >= 40_000  # enough pixels for a stable estimate (~2% std for L=1)
    enl = 1.0 / pooled.var()  # mean is 1 by construction
    assert abs(enl - looks) / looks < 0.10, enl
    # the speckle itself (intensity / reflectivity) has unit mean and ENL = looks everywhere
    assert abs(ratio.mean() - 1.0) < 0.02
    assert abs(ratio.mean() ** 2 / ratio.var() - looks) / looks < 0.10


def test_looks_change_only_the_speckle():
    i1, r1 = synthetic_scene(7, 64, 1.0)
    i4, r4 = synthetic_scene(7, 64, 4.0)
    np.testing.assert_array_equal(r1, r4)
    assert np.var(np.log(i1 / r1)) > np.var(np.log(i4 / r4))
