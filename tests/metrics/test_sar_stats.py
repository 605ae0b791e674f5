"""sar_jax.metrics.sar_stats: unbiased ENL on pure L-look speckle, units, no-data, mean ratio, bit rates."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.metrics import sar_stats


@pytest.mark.parametrize("looks", [1, 4, 16])
def test_enl_is_unbiased_on_pure_l_look_speckle(looks):
    values = []
    for seed in range(3):
        x = np.random.default_rng(seed).gamma(looks, 1 / looks, (512, 512))
        values.append(sar_stats.enl(x, sar_stats.homogeneous_windows(x)))
    assert np.mean(values) == pytest.approx(looks, rel=0.03), values


def test_choosing_windows_on_their_own_samples_would_be_biased():
    # what the independent half avoids: lowest-variance windows measured on the same pixels overestimate L
    x = np.random.default_rng(0).gamma(1, 1.0, (512, 512))
    blocks = x.reshape(32, 16, 32, 16).transpose(0, 2, 1, 3).reshape(-1, 256)
    cv = blocks.std(axis=1) / blocks.mean(axis=1)
    low = blocks[np.argsort(cv)[:len(cv) // 4]]
    naive = float(np.mean(low.mean(axis=1) ** 2 / low.var(axis=1)))
    ours = sar_stats.enl(x, sar_stats.homogeneous_windows(x))
    assert naive > 1.1 and abs(ours - 1) < 0.05


def test_enl_picks_homogeneous_areas_of_a_textured_scene():
    rng = np.random.default_rng(1)
    scene = np.ones((128, 128))
    scene[:, 64:] = np.kron(np.exp(rng.normal(0, 1, (32, 16))), np.ones((4, 4)))  # texture: not homogeneous
    noisy = scene * rng.gamma(4, 0.25, scene.shape)
    windows = sar_stats.homogeneous_windows(noisy)
    assert windows and all(c + s <= 64 for _, c, s in windows)
    assert sar_stats.enl(noisy, windows) == pytest.approx(4, rel=0.15)


def test_enl_in_linear_intensity_whatever_the_units():
    x = np.random.default_rng(2).gamma(4, 0.25, (256, 256))
    ref = sar_stats.sar_statistics(x, x, "intensity")
    amp = sar_stats.sar_statistics(np.sqrt(x), np.sqrt(x), "amplitude")
    db = sar_stats.sar_statistics(10 * np.log10(x), 10 * np.log10(x), "db")
    assert ref["enl_input"] == pytest.approx(4, rel=0.05)
    assert amp["enl_input"] == pytest.approx(ref["enl_input"], rel=1e-9)
    assert db["enl_input"] == pytest.approx(ref["enl_input"], rel=1e-9)
    assert db["mean_ratio"] == pytest.approx(1.0) and amp["enl_ratio"] == pytest.approx(1.0)


def test_log8_gets_no_enl_and_a_reason():
    x = np.random.default_rng(3).integers(0, 255, (64, 64)).astype(np.float32)
    stats = sar_stats.sar_statistics(x, x, "log8")
    assert stats["enl_input"] is None and stats["enl_ratio"] is None and stats["mean_ratio"] == 1.0
    assert "no calibration" in sar_stats.enl_unavailable_reason("log8")
    assert sar_stats.enl_unavailable_reason("intensity") is None


def test_no_data_is_left_out_of_windows_and_means():
    rng = np.random.default_rng(4)
    x = rng.gamma(4, 0.25, (128, 128))
    valid = np.ones(x.shape, bool)
    valid[:, :40] = False
    x[:, :40] = 0.0  # a no-data margin
    windows = sar_stats.homogeneous_windows(x, valid)
    assert windows and all(c >= 40 for _, c, _ in windows)
    recon = x.copy()
    recon[:, :40] = 123.0  # whatever the model put there does not count
    stats = sar_stats.sar_statistics(x, recon, "intensity", valid)
    assert stats["mean_ratio"] == pytest.approx(1.0) and stats["enl_input"] == pytest.approx(4, rel=0.2)


def test_bits_per_pixel_from_the_dtype_and_from_bytes_on_disk():
    assert [sar_stats.bits_per_pixel(d) for d in ("uint8", "uint16", "float32", "complex64")] == [8, 16, 32, 64]
    # 32x32 image, 2x2x4 float16 latent: 256 bits / 1024 px
    assert sar_stats.latent_bits_per_pixel(1024, latent_elements=16, latent_dtype="float16") == 0.25
    assert sar_stats.latent_bits_per_pixel(1000, file_bytes=250) == 2.0
