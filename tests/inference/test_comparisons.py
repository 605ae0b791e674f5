"""Despeckling comparisons on a homogeneous speckled scene, where the truth and the filters' effect are known."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.data.preprocess import normalize
from sar_jax.inference.comparisons import comparison_rows, filtered

PARAMS = {"mode": "intensity", "vmin": -15.0, "vmax": 10.0, "floor": 1e-6, "percentiles": [1.0, 99.0]}


def test_filters_recover_a_flat_truth_and_multiply_the_enl():
    looks = 4.0
    rng = np.random.default_rng(0)
    truth = np.full((3, 64, 64), 0.5, np.float32)
    x_lin = truth * rng.gamma(looks, 1 / looks, truth.shape).astype(np.float32)
    x = normalize(x_lin, PARAMS)[..., None]
    clean = normalize(truth, PARAMS)[..., None]
    rows = comparison_rows(x, x, x_lin, x_lin, PARAMS, clean=clean, baselines=True, looks=looks,
                           ssim_window=11, ms_window=3, batch=2)
    by = {r["method"]: r for r in rows}
    noisy = by["input (unfiltered)"]
    for name in ("boxcar 5x5", "boxcar 7x7", "Lee 5x5", "Lee 7x7"):
        assert by[name]["psnr_vs_clean"] > noisy["psnr_vs_clean"] + 6, name
    # boxcar N x N of independent L-look speckle: ENL N^2 L (windows of 16 px, borders reflected)
    assert by["boxcar 5x5"]["enl_ratio"] == pytest.approx(25, rel=0.25)
    assert by["boxcar 7x7"]["enl_ratio"] == pytest.approx(49, rel=0.3)
    assert 0.5 * 25 < by["Lee 5x5"]["enl_ratio"] <= 1.1 * 25


def test_filtered_works_on_intensity_whatever_the_units():
    rng = np.random.default_rng(1)
    power = rng.gamma(1.0, 1.0, (1, 32, 32))
    ref = filtered(power, "intensity", "boxcar", 5, 1.0)
    np.testing.assert_allclose(filtered(np.sqrt(power), "amplitude", "boxcar", 5, 1.0) ** 2, ref, rtol=1e-5)
    np.testing.assert_allclose(10 ** (filtered(10 * np.log10(power), "db", "boxcar", 5, 1.0) / 10), ref, rtol=1e-4)
