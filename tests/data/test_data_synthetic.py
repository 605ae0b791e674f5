"""Synthetic scenes (sar_jax.data.synthetic): determinism, speckle statistics (plain and correlated) and look pairs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from sar_jax.core.errors import SarJaxError
from sar_jax.data.synthetic import (
    psf_kernel,
    speckle,
    synthetic_reflectivity,
    synthetic_scene,
    synthetic_scene_pair,
    synthetic_scenes,
    synthetic_scenes_with_reflectivity,
)


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


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_existing_outputs_are_bit_identical():
    # sha256 prefixes of (intensity, reflectivity) computed before psf_oversampling and the pairs were added
    pinned = {((0, 1), 64, 4.0): ("09753c6862fc074f", "4b2102592b777b2f"),
              (7, 48, 1.0): ("47efba05014ec7c1", "d6d65be2210a4715"),
              ((3, 2), 32, 2.0): ("d5788a09ef4df6ec", "7541cf721c057e4b"),
              (11, 40, 1): ("ae7927998f762056", "424e6a811a7a95e3")}
    for args, (sha_i, sha_r) in pinned.items():
        intensity, refl = synthetic_scene(*args)
        assert (_sha(intensity), _sha(refl)) == (sha_i, sha_r), args
        np.testing.assert_array_equal(synthetic_scene(*args, psf_oversampling=1.0)[0], intensity)
    assert _sha(synthetic_reflectivity(np.random.default_rng(5), 32)) == "311beeae627ebe75"


def _neighbour_correlation(s: np.ndarray) -> tuple[float, float]:
    return (float(np.corrcoef(s[:, :-1].ravel(), s[:, 1:].ravel())[0, 1]),
            float(np.corrcoef(s[:-1].ravel(), s[1:].ravel())[0, 1]))


@pytest.mark.parametrize("psf_oversampling", [1.0, 2.0])
@pytest.mark.parametrize("looks", [1, 2, 4])
def test_speckle_on_a_homogeneous_area_has_unit_mean_and_enl_looks(looks, psf_oversampling):
    refl = 0.3
    ratio = refl * speckle(np.random.default_rng((3, looks)), (512, 512), looks, psf_oversampling) / refl
    assert abs(ratio.mean() - 1.0) < 0.02
    assert abs(ratio.mean() ** 2 / ratio.var() - looks) / looks < 0.02  # single-pixel statistics: Gamma(L, 1/L)
    rho = _neighbour_correlation(ratio)
    if psf_oversampling == 1.0:
        assert max(abs(r) for r in rho) < 0.01
    else:
        # intensity correlation of circular Gaussian speckle = |field correlation|^2 of the PSF at lag 1
        h = psf_kernel(psf_oversampling)
        expected = float(np.sum(h[1:] * h[:-1])) ** 2
        assert expected > 0.4 and all(r > 0.3 and abs(r - expected) < 0.02 for r in rho), (rho, expected)


def test_psf_kernel_has_unit_energy_and_no_blur_at_oversampling_one():
    np.testing.assert_array_equal(psf_kernel(1.0), [1.0])
    h = psf_kernel(2.0)
    assert h.size == 17 and np.sum(h * h) == pytest.approx(1.0) and np.argmax(h) == 8
    np.testing.assert_allclose(h, h[::-1])
    np.testing.assert_allclose(h[8 + 2::2], 0.0, atol=1e-12)  # sinc(n / 2) vanishes at even n != 0


@pytest.mark.parametrize("psf_oversampling", [1.0, 2.0])
def test_scene_pair_is_two_independent_looks_of_one_reflectivity(psf_oversampling):
    a, b, refl = synthetic_scene_pair((4, 2), 256, 1.0, psf_oversampling=psf_oversampling)
    intensity, refl_1 = synthetic_scene((4, 2), 256, 1.0, psf_oversampling=psf_oversampling)
    assert a.dtype == b.dtype == refl.dtype == np.float32 and a.shape == b.shape == (256, 256)
    np.testing.assert_array_equal(a, intensity)
    np.testing.assert_array_equal(refl, refl_1)
    ra, rb = a.astype(np.float64) / refl, b.astype(np.float64) / refl
    assert abs(np.corrcoef(ra.ravel(), rb.ravel())[0, 1]) < 0.02  # independent speckle
    assert abs(ra.mean() - 1) < 0.03 and abs(rb.mean() - 1) < 0.03
    # the shared scene: log a = log refl + log speckle, and 1-look log speckle has variance pi^2 / 6
    var_refl = np.log(refl).var()
    expected = var_refl / (var_refl + np.pi**2 / 6)
    assert np.corrcoef(np.log(a.ravel()), np.log(b.ravel()))[0, 1] == pytest.approx(expected, abs=0.03)


def test_bad_speckle_arguments_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(SarJaxError, match="psf_oversampling = 0.5"):
        speckle(rng, (8, 8), 1.0, 0.5)
    with pytest.raises(SarJaxError, match="looks = 1.5 is invalid with psf_oversampling = 2.0"):
        speckle(rng, (8, 8), 1.5, 2.0)
    with pytest.raises(SarJaxError, match="looks = 0"):
        synthetic_scene(0, 16, 0.0)
