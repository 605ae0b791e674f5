"""Preprocessing (sar_jax.data.preprocess) and its train-only fit inside build_datasets."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.core.config import default_config, validate
from sar_jax.core.errors import SarJaxError
from sar_jax.data.patches import split_regions
from sar_jax.data.pipeline import build_datasets
from sar_jax.data.preprocess import (
    denormalize,
    fit_preprocessing,
    from_log,
    normalize,
    to_log,
)
from sar_jax.data.synthetic import synthetic_scenes


def test_db_conversion_and_round_trip():
    x = np.array([1e-3, 0.01, 0.5, 1.0, 2.0, 100.0], np.float32)
    np.testing.assert_allclose(to_log(x, "intensity", 1e-6), 10 * np.log10(x.astype(np.float64)),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(to_log(x, "amplitude", 1e-6), 20 * np.log10(x.astype(np.float64)),
                               rtol=1e-6, atol=1e-5)
    assert to_log(np.float32(100.0), "intensity", 1e-6) == pytest.approx(20.0)
    assert to_log(np.float32(100.0), "amplitude", 1e-6) == pytest.approx(40.0)
    # amplitude sqrt(I) and intensity I are the same number of dB
    np.testing.assert_allclose(to_log(np.sqrt(x), "amplitude", 1e-9), to_log(x, "intensity", 1e-9),
                               atol=1e-4)
    for mode in ("intensity", "amplitude"):
        back = from_log(to_log(x, mode, 1e-6), mode)
        assert back.dtype == np.float32
        np.testing.assert_allclose(back, x, rtol=1e-5)


def test_floor_is_applied():
    x = np.array([0.0, 1e-12, 1e-6, 1e-3], np.float32)
    np.testing.assert_allclose(to_log(x, "intensity", 1e-6), [-60, -60, -60, -30], atol=1e-4)
    np.testing.assert_allclose(to_log(x, "amplitude", 1e-3), [-60, -60, -60, -60], atol=1e-4)


def test_log8_passes_through():
    x = np.arange(0, 256, 17, dtype=np.uint8)
    np.testing.assert_array_equal(to_log(x, "log8", 1e-6), x.astype(np.float32))
    np.testing.assert_array_equal(from_log(x.astype(np.float32), "log8"), x.astype(np.float32))


@pytest.mark.parametrize("mode", ["intensity", "amplitude", "log8"])
def test_normalize_denormalize_exact_inverse_inside_range(mode):
    rng = np.random.default_rng(3)
    if mode == "log8":
        train = rng.integers(0, 256, (64, 64)).astype(np.float32)
    else:
        train = rng.gamma(1.0, 0.3, (64, 64)).astype(np.float32)
    params = fit_preprocessing([train], mode, [2.0, 98.0], 1e-6)
    assert params["mode"] == mode and params["vmin"] < params["vmax"]
    assert params["percentiles"] == [2.0, 98.0]
    lo, hi = from_log(np.array([params["vmin"], params["vmax"]]), mode)
    test = rng.gamma(1.0, 0.3, (50, 50)).astype(np.float32) if mode != "log8" else \
        rng.integers(0, 256, (50, 50)).astype(np.float32)
    x = normalize(test, params)
    assert x.dtype == np.float32 and x.shape == test.shape
    assert x.min() == 0.0 and x.max() == 1.0  # values beyond the clip range exist and are clipped
    inside = (test > lo * 1.0001) & (test < hi * 0.9999) if mode != "log8" else (test > lo) & (test < hi)
    assert inside.sum() > 1000
    back = denormalize(x, params)
    np.testing.assert_allclose(back[inside], test[inside], rtol=1e-5)
    # and the other way round: [0, 1] -> units -> [0, 1]
    grid = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(normalize(denormalize(grid, params), params), grid, atol=1e-5)
    # clipped values come back as the clip bounds
    np.testing.assert_allclose(back[test <= lo], lo, rtol=1e-5)
    np.testing.assert_allclose(back[test >= hi], hi, rtol=1e-5)


def test_percentiles_fitted_from_the_data():
    values = np.arange(1, 1001, dtype=np.float64)  # log8 mode: values are used as they are
    params = fit_preprocessing([values[:500].reshape(20, 25), values[500:].reshape(20, 25)], "log8",
                               [10, 90], 1e-6)
    assert params["vmin"] == pytest.approx(np.percentile(values, 10))
    assert params["vmax"] == pytest.approx(np.percentile(values, 90))


def test_constant_images_and_bad_mode_are_rejected():
    with pytest.raises(SarJaxError, match="constant"):
        fit_preprocessing([np.full((32, 32), 0.5, np.float32)], "intensity", [1, 99], 1e-6)
    with pytest.raises(SarJaxError, match="constant"):  # everything below the floor
        fit_preprocessing([np.zeros((32, 32), np.float32)], "amplitude", [1, 99], 1e-6)
    with pytest.raises(SarJaxError, match="mode 'db'"):
        fit_preprocessing([np.ones((4, 4))], "db", [1, 99], 1e-6)
    with pytest.raises(SarJaxError, match="no training pixels"):
        fit_preprocessing([], "intensity", [1, 99], 1e-6)


def tiny_synthetic_config(**data):
    config = default_config()
    config["data"].update(num_scenes=5, scene_size=64, patch_size=32, stride=None, looks=2.0)
    config["data"].update(data)
    config["train"].update(batch_size=2, seed=3)
    validate(config)
    return config


def test_preprocessing_is_fitted_on_the_train_split_only():
    config = tiny_synthetic_config()
    datasets = build_datasets(config)
    d = config["data"]
    scenes = synthetic_scenes(d["num_scenes"], d["scene_size"], d["looks"], config["train"]["seed"])
    regions = split_regions([s.shape for s in scenes], d["patch_size"], d["val_fraction"],
                            d["test_fraction"], config["train"]["seed"])
    train = [scenes[r.scene][r.r0:r.r1, r.c0:r.c1] for r in regions["train"]]
    expected = fit_preprocessing(train, "intensity", d["percentiles"], d["floor"])
    everything = fit_preprocessing(scenes, "intensity", d["percentiles"], d["floor"])
    got = datasets.preprocessing_params
    assert got["mode"] == "intensity" and got["floor"] == d["floor"]
    assert got["vmin"] == pytest.approx(expected["vmin"], abs=1e-9)
    assert got["vmax"] == pytest.approx(expected["vmax"], abs=1e-9)
    assert abs(got["vmin"] - everything["vmin"]) + abs(got["vmax"] - everything["vmax"]) > 0.1
    # the train patches were normalised with those parameters
    train_patch0 = scenes[regions["train"][0].scene][:32, :32]
    np.testing.assert_allclose(datasets.train[0, ..., 0], normalize(train_patch0, expected), atol=1e-6)
