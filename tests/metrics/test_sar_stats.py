"""sar_jax.metrics.sar_stats: unbiased ENL on pure L-look speckle, units, no-data, mean ratio, bit rates, flat
windows of a known truth, the edge-preservation index, the ratio image."""

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


def _step_scene(looks: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    truth = np.ones((128, 128))
    truth[:, 64:] = 10.0
    truth[40:44, 20:24] = 100.0  # a small bright target
    return truth, truth * np.random.default_rng(seed).gamma(looks, 1 / looks, truth.shape)


def test_flat_windows_are_where_the_truth_is_constant():
    truth, _ = _step_scene(1.0)
    windows = sar_stats.flat_windows(truth)
    assert windows and all(s == 16 for *_, s in windows)
    assert (0, 0, 16) in windows and (32, 16, 16) not in windows  # the target's block is left out
    assert all(truth[r:r + s, c:c + s].std() == 0 for r, c, s in windows)
    assert len(windows) == 64 - 1  # 8 x 8 blocks, the step falls on a block border, one holds the target


def test_window_mean_ratio_pools_the_windows():
    truth, noisy = _step_scene(4.0)
    windows = sar_stats.flat_windows(truth)
    assert sar_stats.window_mean_ratio(2.0 * truth, truth, windows) == pytest.approx(2.0)
    assert sar_stats.window_mean_ratio(noisy, truth, windows) == pytest.approx(1.0, abs=0.02)
    assert sar_stats.window_mean_ratio(noisy, truth, []) is None


def test_edge_preservation_index_is_1_for_the_identity_and_drops_with_blur_and_noise():
    from scipy.ndimage import uniform_filter

    truth, noisy = _step_scene(4.0)
    log_truth, log_noisy = np.log(truth), np.log(noisy)
    assert sar_stats.edge_preservation_index(log_truth, log_truth) == pytest.approx(1.0)
    assert sar_stats.edge_preservation_index(2 * log_truth + 3, log_truth) == pytest.approx(1.0)  # scale-free
    for k in (3, 7):  # the Laplacian locates an edge to the pixel: a blurred step's no longer matches
        assert sar_stats.edge_preservation_index(uniform_filter(log_truth, k), log_truth) < 0.5
    assert sar_stats.edge_preservation_index(log_noisy, log_truth) < 0.5
    mask = np.zeros(truth.shape, bool)
    mask[:, :32] = True  # pixels outside the mask, beyond the Laplacian's 1 px reach, do not count
    garbage = log_noisy.copy()
    garbage[:, 40:] = np.random.default_rng(9).normal(0, 1e3, (128, 88))
    masked = sar_stats.edge_preservation_index(log_noisy, log_truth, mask)
    assert sar_stats.edge_preservation_index(garbage, log_truth, mask) == pytest.approx(masked)
    assert masked != pytest.approx(sar_stats.edge_preservation_index(log_noisy, log_truth))


def test_ratio_image_of_the_truth_is_pure_speckle():
    truth, noisy = _step_scene(4.0, seed=1)
    ideal = sar_stats.ratio_image_statistics(noisy, truth)
    assert ideal["ratio_mean"] == pytest.approx(1.0, abs=0.01)
    assert ideal["ratio_enl"] == pytest.approx(ideal["input_enl"], rel=0.05)
    assert ideal["ratio_enl"] == pytest.approx(4.0, rel=0.15)
    assert abs(ideal["ratio_lag1"]) < 0.05 and abs(ideal["input_lag1"]) < 0.05  # white speckle
    assert abs(ideal["ratio_edge_correlation"]) < 0.1
    # a 9 x 9 boxcar blurs the step and the target into the ratio and leaves its mean at 1
    from scipy.ndimage import uniform_filter

    blurred = sar_stats.ratio_image_statistics(noisy, uniform_filter(noisy, 9, mode="reflect"))
    assert blurred["ratio_mean"] == pytest.approx(1.0, abs=0.05)
    assert blurred["ratio_edge_correlation"] > 0.3
    # an output that keeps the speckle leaves a ratio of 1: no speckle removed, an infinite ENL
    kept = sar_stats.ratio_image_statistics(noisy, noisy)
    assert kept["ratio_mean"] == pytest.approx(1.0) and kept["ratio_enl"] is None
