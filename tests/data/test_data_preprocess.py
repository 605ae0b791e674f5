"""Preprocessing (sar_jax.data.preprocess) and its train-only fit inside build_datasets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import digamma, gamma

from sar_jax.core.config import default_config, load_config, validate
from sar_jax.core.errors import SarJaxError
from sar_jax.data.patches import split_regions
from sar_jax.data.pipeline import build_datasets
from sar_jax.data.preprocess import (
    denormalize,
    fit_preprocessing,
    from_log,
    log_bias_db,
    normalize,
    to_log,
)
from sar_jax.data.synthetic import synthetic_scenes, synthetic_scenes_with_reflectivity

DB_E = 10.0 * np.log10(np.e)


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
    back = denormalize(x, params, bias_correction=False)
    np.testing.assert_allclose(back[inside], test[inside], rtol=1e-5)
    # the default adds the fitted log bias (none for log8)
    gain = 10 ** (params["log_bias_db"] / (20.0 if mode == "amplitude" else 10.0)) if mode != "log8" else 1.0
    assert (params["log_bias_db"] > 1.0) == (mode != "log8")
    np.testing.assert_allclose(denormalize(x, params)[inside], test[inside] * gain, rtol=1e-5)
    # and the other way round: [0, 1] -> units -> [0, 1]
    grid = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(normalize(denormalize(grid, params, bias_correction=False), params), grid, atol=1e-5)
    # clipped values come back as the clip bounds
    np.testing.assert_allclose(back[test <= lo], lo, rtol=1e-5)
    # params from before the bias correction existed: none is applied
    old = {k: v for k, v in params.items() if not k.startswith("log_bias")}
    np.testing.assert_array_equal(denormalize(x, old), back)
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
    with pytest.raises(SarJaxError, match="mode 'sigma0'"):
        fit_preprocessing([np.ones((4, 4))], "sigma0", [1, 99], 1e-6)
    with pytest.raises(SarJaxError, match="no valid training pixels"):
        fit_preprocessing([], "intensity", [1, 99], 1e-6)
    with pytest.raises(SarJaxError, match="no valid training pixels"):
        fit_preprocessing([np.ones((4, 4))], "intensity", [1, 99], 1e-6, valid=[np.zeros((4, 4), bool)])
    with pytest.raises(SarJaxError, match="train_images: expected 2-D arrays"):
        fit_preprocessing([np.arange(1.0, 100.0)], "intensity", [1, 99], 1e-6)
    with pytest.warns(UserWarning, match="log_bias_db = 0"):  # windows too small to measure the bias in
        small = fit_preprocessing([np.arange(1.0, 101.0).reshape(10, 10)], "intensity", [1, 99], 1e-6)
    assert small["log_bias_db"] == 0


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
    np.testing.assert_allclose(datasets.patches("train", 1)[0, ..., 0], normalize(train_patch0, expected), atol=1e-6)


# ---------------------------------------------------------------------- no-data in the fit


def test_invalid_pixels_do_not_move_the_clip_range():
    rng = np.random.default_rng(5)
    scene = (0.2 * rng.gamma(4.0, 0.25, (128, 128))).astype(np.float32)
    interior = scene[:, 45:].copy()
    scene[:, :45] = 0.0  # a 35% zero no-data border
    valid = scene > 0
    assert 0.34 < 1 - valid.mean() < 0.36
    fitted = fit_preprocessing([scene], "intensity", [1, 99], 1e-6, valid=[valid])
    exact = fit_preprocessing([interior], "intensity", [1, 99], 1e-6)
    assert fitted["vmin"] == pytest.approx(exact["vmin"], abs=1e-9)
    assert fitted["vmax"] == pytest.approx(exact["vmax"], abs=1e-9)
    assert fitted["log_bias_db"] == pytest.approx(exact["log_bias_db"], abs=0.1)
    assert fit_preprocessing([scene], "intensity", [1, 99], 1e-6)["vmin"] == pytest.approx(-60.0)  # unmasked


def test_zero_margins_of_a_grd_file_stay_out_of_the_fit(tmp_path):
    import rasterio

    rng = np.random.default_rng(6)
    dn = rng.integers(50, 4000, (64, 192)).astype(np.uint16)  # amplitude DN >= 50: >= 34 dB
    dn[:, :40] = 0
    dn[:12, :] = 0
    config, _ = load_config("baseline", ["data.patch_size=32", "train.batch_size=1"],
                            data_path=str(tmp_path / "grd.tif"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a plain TIFF, no CRS
        with rasterio.open(tmp_path / "grd.tif", "w", driver="GTiff", height=64, width=192, count=1,
                           dtype="uint16") as dst:
            dst.write(dn, 1)
        params = build_datasets(config).preprocessing_params
    assert params["mode"] == "amplitude"
    assert 20 * np.log10(50) <= params["vmin"] < params["vmax"] <= 20 * np.log10(4000)


# ---------------------------------------------------------------------- log-domain bias


def _speckle(looks: float, size: int = 512, mean: float = 0.3, seed: int = 0) -> np.ndarray:
    """Pure L-look intensity speckle (Gamma, ENL = L) on a constant reflectivity ``mean``."""
    return (mean * np.random.default_rng(seed).gamma(looks, 1.0 / looks, (size, size))).astype(np.float32)


def _smooth(x01: np.ndarray, window: int = 16) -> np.ndarray:
    """What a model that removes unpredictable speckle outputs: the local mean of its [0, 1] input."""
    h, w = x01.shape
    blocks = x01.reshape(h // window, window, w // window, window).mean(axis=(1, 3), keepdims=True)
    return np.broadcast_to(blocks, (h // window, window, w // window, window)).reshape(h, w)


@pytest.mark.parametrize("looks", [1, 4, 16])
def test_log_bias_of_pure_speckle_matches_theory_and_restores_the_mean(looks):
    x = _speckle(looks)
    params = fit_preprocessing([x], "intensity", [1, 99], 1e-6)
    theory = DB_E * (np.log(looks) - digamma(looks))  # E[10 log10 I] = 10 log10 E[I] - theory
    assert params["log_bias_db"] == pytest.approx(theory, rel=0.03)
    smooth = _smooth(normalize(x, params))
    corrected = denormalize(smooth, params).mean() / x.mean()
    uncorrected = denormalize(smooth, params, bias_correction=False).mean() / x.mean()
    assert abs(corrected - 1) < 0.03, corrected
    assert uncorrected == pytest.approx(10 ** (-theory / 10), rel=0.03)  # 0.56 at L = 1
    assert abs(uncorrected - 1) > 3 * abs(corrected - 1)


@pytest.mark.parametrize("looks", [1, 4])
def test_log_bias_of_amplitude_data_is_in_amplitude_db(looks):
    intensity = _speckle(looks, seed=1)
    amplitude = np.sqrt(intensity)
    # E[20 log10 A] = 20 log10 E[A] - theory, with E[A] = Gamma(L + 1/2) / (Gamma(L) sqrt(L)) sqrt(mean)
    mean_amplitude = gamma(looks + 0.5) / (gamma(looks) * np.sqrt(looks))  # E[A] / sqrt(mean I)
    theory = DB_E * (np.log(looks) - digamma(looks)) + 20 * np.log10(mean_amplitude)
    params = fit_preprocessing([amplitude], "amplitude", [1, 99], 1e-6)
    assert params["log_bias_db"] == pytest.approx(theory, rel=0.03)
    smooth = _smooth(normalize(amplitude, params))
    assert denormalize(smooth, params).mean() / amplitude.mean() == pytest.approx(1.0, abs=0.03)
    # a checkpoint fitted on one linear unit corrects the other one in that unit's dB too
    from_intensity = fit_preprocessing([intensity], "intensity", [1, 99], 1e-6)
    assert from_intensity["log_bias_db_by_units"]["amplitude"] == pytest.approx(theory, rel=0.03)
    as_amplitude = dict(from_intensity, mode="amplitude")
    assert log_bias_db(as_amplitude) == from_intensity["log_bias_db_by_units"]["amplitude"]
    assert params["log_bias_db_by_units"]["intensity"] == pytest.approx(from_intensity["log_bias_db"], rel=0.03)


def test_no_log_bias_for_db_and_log8():
    rng = np.random.default_rng(2)
    db = (10 * np.log10(_speckle(1.0, size=64))).astype(np.float32)
    params = fit_preprocessing([db], "db", [1, 99], 1e-6)
    assert params["mode"] == "db" and params["log_bias_db"] == 0.0 and log_bias_db(params) == 0.0
    assert params["vmin"] == pytest.approx(np.percentile(db, 1))  # dB values are used as they are
    x = normalize(db, params)
    np.testing.assert_allclose(denormalize(x, params), np.clip(db, params["vmin"], params["vmax"]), atol=1e-4)
    log8 = fit_preprocessing([rng.integers(0, 256, (64, 64)).astype(np.float32)], "log8", [1, 99], 1e-6)
    assert log8["log_bias_db"] == 0.0 and "log_bias_db_by_units" not in log8


def test_log_bias_ignores_point_targets():
    looks, rng = 4, np.random.default_rng(3)
    x = _speckle(looks, seed=3)
    rows, cols = rng.integers(0, 512, (2, 512))
    x[rows, cols] = 100 * x.mean()  # a bright scatterer in about every other 16 x 16 block
    theory = DB_E * (np.log(looks) - digamma(looks))
    assert fit_preprocessing([x], "intensity", [1, 99], 1e-6)["log_bias_db"] == pytest.approx(theory, rel=0.1)


@pytest.mark.parametrize("looks", [1.0, 4.0])
def test_log_bias_restores_the_mean_of_an_ideal_despeckler_on_synthetic_scenes(looks):
    """Textured fields, edges, lines and point targets: a model that outputs E[dB | reflectivity]
    (the MSE-optimal despeckled image) is too dark without the correction and about right with it."""
    pairs = synthetic_scenes_with_reflectivity(3, 256, looks, 0)
    params = fit_preprocessing([i for i, _ in pairs], "intensity", [1, 99], 1e-6)
    ideal = [normalize(r * np.exp(digamma(looks) - np.log(looks)), params) for _, r in pairs]
    total = sum(float(i.astype(np.float64).sum()) for i, _ in pairs)
    ratio = {on: sum(float(denormalize(x, params, bias_correction=on).astype(np.float64).sum()) for x in ideal) / total
             for on in (True, False)}
    assert abs(ratio[True] - 1) < 0.06, ratio
    assert abs(ratio[False] - 1) > 0.15, ratio


def test_the_training_data_is_measured_against_its_own_fit():
    """#18 item 1 on the training side: the share of valid training pixels that the clip range moves."""
    rng = np.random.default_rng(3)
    img = rng.gamma(4.0, 0.25, (256, 256)).astype(np.float32)
    assert fit_preprocessing([img], "intensity", [1.0, 99.0], 1e-6)["clipped_fraction"] == pytest.approx(0.02, abs=2e-3)
    assert fit_preprocessing([img], "intensity", [0.0, 100.0], 1e-6)["clipped_fraction"] == 0.0
    assert fit_preprocessing([img], "intensity", [5.0, 95.0], 1e-6)["clipped_fraction"] == pytest.approx(0.1, abs=5e-3)
