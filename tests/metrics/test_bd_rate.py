"""Bjontegaard delta rate (the `bjontegaard` package, cubic fit in log rate) on curves whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from bjontegaard import bd_psnr, bd_rate

# Published example curves of the bjontegaard package (ffmpeg libx265, two presets).
RATE_A = np.array([9487.76, 4593.60, 2486.44, 1358.24])
PSNR_A = np.array([40.037, 38.615, 36.845, 34.851])
RATE_B = np.array([9787.80, 4469.00, 2451.52, 1356.24])
PSNR_B = np.array([40.121, 38.651, 36.970, 34.987])


def _vceg_m33_bd_rate(ra, da, rb, db) -> float:
    """VCEG-M33's formula written out: cubic fits of log rate over quality, integrated exactly
    over the common quality interval."""
    pa, pb = np.polyfit(da, np.log(ra), 3), np.polyfit(db, np.log(rb), 3)
    lo, hi = max(da.min(), db.min()), min(da.max(), db.max())
    ia, ib = np.polyint(pa), np.polyint(pb)
    avg = ((np.polyval(ib, hi) - np.polyval(ib, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    return (np.exp(avg) - 1) * 100


def test_published_example_equals_the_vceg_m33_formula():
    got = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method="cubic")
    assert got == pytest.approx(_vceg_m33_bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B), abs=1e-6)
    assert -5 < got < 0  # the second preset saves a few percent


def test_a_codec_needing_80_percent_of_the_rate_everywhere_is_minus_20_percent():
    assert bd_rate(RATE_A, PSNR_A, 0.8 * RATE_A, PSNR_A, method="cubic") == pytest.approx(-20.0, abs=1e-9)
    assert bd_psnr(RATE_A, PSNR_A, RATE_A, PSNR_A + 0.5, method="cubic") == pytest.approx(0.5, abs=1e-9)
