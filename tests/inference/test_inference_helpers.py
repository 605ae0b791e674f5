"""sar_jax.inference: loading a run, jitted calls, units, MS-SSIM, ENL, compression ratio."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_msssim
import torch

from sar_jax.core.errors import SarJaxError
from sar_jax.inference import run as inference


@pytest.mark.parametrize("shape", [(3, 64, 64, 1), (2, 200, 170, 1), (2, 185, 165, 1)])
def test_jax_ms_ssim_matches_pytorch_msssim(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape, dtype=np.float32)
    y = np.clip(x + 0.1 * rng.standard_normal(shape).astype(np.float32), 0, 1)
    win = inference.ms_ssim_window(min(shape[1:3]))
    ours = np.asarray(inference.ms_ssim_per_image(y, x, win_size=win))
    ref = pytorch_msssim.ms_ssim(torch.from_numpy(y).permute(0, 3, 1, 2), torch.from_numpy(x).permute(0, 3, 1, 2),
                                 data_range=1.0, size_average=False, win_size=win).numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_ms_ssim_window_fits_the_four_downsamplings():
    assert inference.ms_ssim_window(256) == 11
    assert inference.ms_ssim_window(161) == 11
    assert inference.ms_ssim_window(160) == 9
    assert inference.ms_ssim_window(64) == 3
    assert inference.ms_ssim_window(32) is None


def test_units_intensity_and_amplitude_share_the_db_scale_log8_does_not():
    lin = {"mode": "intensity", "vmin": -20.0, "vmax": 5.0, "floor": 1e-6, "percentiles": [1, 99]}
    assert inference.resolve_units(lin, False)["mode"] == "intensity"
    assert inference.resolve_units(lin, False, "amplitude")["mode"] == "amplitude"
    assert inference.resolve_units(lin, True, "intensity")["mode"] == "intensity"
    with pytest.raises(SarJaxError, match="log8"):
        inference.resolve_units(lin, True)  # uint8 input, linear checkpoint
    log8 = dict(lin, mode="log8", vmin=10.0, vmax=240.0)
    assert inference.resolve_units(log8, True)["mode"] == "log8"
    with pytest.raises(SarJaxError, match="--units log8"):
        inference.resolve_units(log8, False)
    with pytest.raises(SarJaxError):
        inference.resolve_units(log8, False, "amplitude")
    assert inference.resolve_units(log8, False, "log8")["mode"] == "log8"


def test_enl_finds_homogeneous_windows_and_the_number_of_looks():
    rng = np.random.default_rng(0)
    looks = 4.0
    scene = np.ones((96, 96))
    scene[:, 48:] = np.linspace(1, 50, 48)[None, :]  # a ramp: not homogeneous
    noisy = scene * rng.gamma(looks, 1 / looks, scene.shape)
    windows = inference.homogeneous_windows(noisy)
    assert len(windows) == 3 and all(c + s <= 48 + s // 2 for _, c, s in windows)
    stats = inference.sar_statistics(noisy, scene, "intensity")
    assert stats["enl_input"] == pytest.approx(looks, rel=0.35)
    assert stats["enl_recon"] is None  # a constant reconstruction has no variance
    smooth = inference.sar_statistics(noisy, scene * rng.gamma(40, 1 / 40, scene.shape), "intensity")
    assert smooth["enl_ratio"] > 5
    assert smooth["mean_ratio"] == pytest.approx(scene.mean() / noisy.mean(), rel=0.05)
    # amplitude: ENL on the intensity
    amp = inference.sar_statistics(np.sqrt(noisy), np.sqrt(noisy), "amplitude")
    assert amp["enl_input"] == pytest.approx(stats["enl_input"], rel=1e-6) and amp["enl_ratio"] == 1.0


def test_compression_ratio():
    # 32x32 float32 image -> 2x2x4 float16 latent
    assert inference.compression_ratio((32, 32), (2, 2, 4), 32, "float16") == 128.0
    assert inference.compression_ratio((32, 32), (2, 2, 4), 8, "float32") == 16.0


def test_load_run_restores_the_best_checkpoint(intensity_run, intensity_loaded):
    run = intensity_loaded
    assert run.config["model"]["base_channels"] == 4 and run.preprocessing_params["mode"] == "intensity"
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    x_hat, z = inference.reconstruct_fn(run.model)(run.variables, x)
    assert x_hat.shape == x.shape and z.shape == (2, 2, 2, 4)
    z2 = inference.encode_fn(run.model)(run.variables, x)
    np.testing.assert_allclose(np.asarray(inference.decode_fn(run.model)(run.variables, z2)), x_hat, atol=1e-6)


def test_load_run_bad_paths(tmp_path):
    with pytest.raises(SarJaxError, match="no such run directory"):
        inference.load_run(tmp_path / "missing")
    with pytest.raises(SarJaxError, match="checkpoints"):
        inference.load_run(tmp_path)
