"""SSIM / combined loss identities and agreement with pytorch-msssim."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as torch_ssim

from sar_jax.metrics.psnr import psnr
from sar_jax.metrics.ssim import ssim
from sar_jax.training.losses import combined_loss, per_image_metrics


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 32, 32, 1)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    return x, y


def test_identical_images(images):
    x, _ = images
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    loss, metrics = combined_loss(x, x)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert float(metrics["mse"]) == 0.0


def test_anti_correlated_is_clamped_to_zero(images):
    x, _ = images
    assert float(ssim(1.0 - x, x)) == 0.0
    loss, _ = combined_loss(1.0 - x, x)
    assert float(loss) == pytest.approx(0.5 * np.mean((1 - 2 * x) ** 2) + 0.5, rel=1e-5)


def test_matches_pytorch_msssim(images):
    x, y = images
    ref = torch_ssim(torch.from_numpy(y.transpose(0, 3, 1, 2)), torch.from_numpy(x.transpose(0, 3, 1, 2)),
                     data_range=1.0, win_size=11, size_average=True, nonnegative_ssim=True)
    assert abs(float(ssim(y, x)) - float(ref)) < 1e-5


def test_psnr_and_per_image_metrics(images):
    x, y = images
    mse = np.mean((x - y) ** 2)
    assert float(psnr(y, x)) == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    per = per_image_metrics(y, x)
    assert per["loss"].shape == (3,)
    np.testing.assert_allclose(np.asarray(per["mse"]), ((x - y) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    loss, metrics = combined_loss(y, x)
    assert float(loss) == pytest.approx(float(jnp.mean(per["loss"])), rel=1e-5)
    assert float(metrics["ssim"]) == pytest.approx(float(jnp.mean(per["ssim"])), rel=1e-6)


def test_log_gamma_expected_loss_is_smallest_at_the_true_reflectivity():
    from sar_jax.training.losses import log_gamma_per_image

    rng = np.random.default_rng(0)
    reflectivity_db, vmin, db_range = 0.0, -40.0, 60.0
    intensity = 10 ** (reflectivity_db / 10) * rng.gamma(1.0, 1.0, (128, 128))  # single-look speckle, mean 1
    target = ((10 * np.log10(intensity) - vmin) / db_range).astype(np.float32)
    grid_db = np.arange(-6.0, 3.0 + 1e-9, 0.05)
    x_hat = np.broadcast_to(((grid_db - vmin) / db_range).astype(np.float32)[:, None, None, None],
                            (len(grid_db), 128, 128, 1))
    x = np.broadcast_to(target[None, ..., None], x_hat.shape)
    losses = np.asarray(log_gamma_per_image(jnp.asarray(x_hat), jnp.asarray(x), db_range=db_range,
                                            window_size=11)["loss"])
    best = grid_db[np.argmin(losses)]
    mean_of_logs = float(np.mean(10 * np.log10(intensity)))  # about -2.5 dB: what an MSE on logs fits
    assert abs(best - reflectivity_db) <= 0.1
    assert abs(best - 10 * np.log10(intensity.mean())) <= 0.05  # the exact minimiser: log of the sample mean
    assert mean_of_logs < reflectivity_db - 2.0 and abs(best - mean_of_logs) > 2.0
    assert np.all(np.diff(losses[grid_db <= best]) < 0) and np.all(np.diff(losses[grid_db >= best]) > 0)


def test_rate_distortion_bpp_and_loss():
    from sar_jax.core.config import load_config
    from sar_jax.training.losses import make_loss

    config = load_config("tiny", ['model.kind="factorized"', 'loss.kind="rate_distortion"', "loss.lmbda=50"])[0]
    batch_loss, per_image = make_loss(config)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 32, 32, 1)).astype(np.float32)
    x_hat = (x + rng.normal(0, 0.3, x.shape)).astype(np.float32)  # partly outside [0, 1]
    likelihoods = {"y": rng.uniform(1e-3, 1, (3, 2, 2, 8)).astype(np.float32),
                   "z": rng.uniform(1e-3, 1, (3, 1, 1, 8)).astype(np.float32)}
    bits = sum(-np.log2(p.astype(np.float64)).sum(axis=(1, 2, 3)) for p in likelihoods.values())
    loss, metrics = batch_loss(jnp.asarray(x_hat), likelihoods, jnp.asarray(x))
    d = np.mean((x_hat.astype(np.float64) - x) ** 2)  # on the unclipped output
    assert float(metrics["bpp"]) == pytest.approx(bits.sum() / (3 * 32 * 32), rel=1e-5)
    assert float(loss) == pytest.approx(50 * d + bits.sum() / (3 * 32 * 32), rel=1e-5)
    clipped = np.mean((np.clip(x_hat, 0, 1) - x) ** 2)
    assert float(metrics["mse"]) == pytest.approx(clipped, rel=1e-5) and clipped < d
    per = per_image(jnp.asarray(x_hat), likelihoods, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(per["bpp"]), bits / (32 * 32), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(per["loss"]), 50 * ((x_hat - x) ** 2).mean(axis=(1, 2, 3)) + bits / 1024,
                               rtol=1e-5)


@pytest.mark.parametrize("target, loss_kind, bias_free", [
    ("input", "combined", False), ("other_look", "combined", False),
    ("clean", "combined", True), ("input", "log_gamma", True), ("other_look", "log_gamma", True),
])
def test_denormalize_bias_follows_what_the_model_predicts(target, loss_kind, bias_free):
    from sar_jax.core.config import load_config
    from sar_jax.data.pipeline import build_datasets, predicts_mean
    from sar_jax.data.preprocess import denormalize, log_bias_db

    config = load_config("tiny", [f'train.target="{target}"', f'loss.kind="{loss_kind}"', "data.num_scenes=3"])[0]
    assert predicts_mean(config) is bias_free
    params = build_datasets(config).preprocessing_params
    measured = build_datasets(load_config("tiny", ["data.num_scenes=3"])[0]).preprocessing_params
    assert measured["log_bias_db"] > 0.3  # 4-look speckle: about 0.56 dB
    assert {k: params[k] for k in ("vmin", "vmax")} == {k: measured[k] for k in ("vmin", "vmax")}  # fit on inputs
    if bias_free:
        assert params["log_bias_db"] == 0.0 and set(params["log_bias_db_by_units"].values()) == {0.0}
        assert set(params["log_bias_db_by_units"]) == set(measured["log_bias_db_by_units"])
        for units in ("intensity", "amplitude"):
            mid = np.array([0.5], np.float32)
            p = dict(params, mode=units)
            assert log_bias_db(p) == 0.0
            assert denormalize(mid, p)[0] == denormalize(mid, p, bias_correction=False)[0]
    else:
        assert params == measured


def test_without_log_bias_zeroes_every_unit_and_keeps_the_rest():
    from sar_jax.data.preprocess import without_log_bias

    params = {"mode": "intensity", "vmin": -20.0, "vmax": 10.0, "log_bias_db": 0.56,
              "log_bias_db_by_units": {"intensity": 0.56, "amplitude": 0.28}}
    out = without_log_bias(params)
    assert out == dict(params, log_bias_db=0.0, log_bias_db_by_units={"intensity": 0.0, "amplitude": 0.0})
    assert params["log_bias_db"] == 0.56 and params["log_bias_db_by_units"]["amplitude"] == 0.28  # not mutated
    assert without_log_bias({"mode": "db", "log_bias_db": 0.0}) == {"mode": "db", "log_bias_db": 0.0}
