"""Classical codecs: sizes are real encoded bytes, quality rises with rate."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.baselines.codecs import block_mean, jpeg, jpeg2000
from sar_jax.core.errors import SarJaxError


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from sar_jax.data.synthetic import synthetic_scene

    intensity, _ = synthetic_scene((0, 0), 128, 4.0)
    db = 10 * np.log10(intensity)
    lo, hi = np.percentile(db, [1, 99])
    return np.clip((db - lo) / (hi - lo), 0, 1).astype(np.float32)


def _mse(a, b):
    return float(np.mean((a - b) ** 2))


def test_jpeg2000_hits_its_rate_and_improves_with_it(image):
    results = [jpeg2000(image, bpp) for bpp in (0.25, 1.0, 4.0)]
    for (decoded, nbytes), bpp in zip(results, (0.25, 1.0, 4.0)):
        assert decoded.shape == image.shape and decoded.dtype == np.float32
        assert nbytes * 8 / image.size <= bpp * 1.1
    errors = [_mse(d, image) for d, _ in results]
    assert errors[0] > errors[1] > errors[2]


def test_jpeg_sizes_are_encoded_bytes_and_quality_orders_error(image):
    lo, hi = jpeg(image, 10), jpeg(image, 90)
    assert lo[1] < hi[1]
    assert _mse(hi[0], image) < _mse(lo[0], image)
    assert _mse(hi[0], image) < 1e-3


def test_block_mean_stores_one_byte_per_block_before_deflate(image):
    decoded, nbytes = block_mean(image, 8)
    assert decoded.shape == image.shape
    assert 0 < nbytes <= (128 // 8) ** 2 + 16  # at most the raw int8 means plus zlib's framing
    # a constant image is recovered exactly (to 8-bit) and compresses to almost nothing
    flat, n_flat = block_mean(np.full((64, 64), 0.5, np.float32), 4)
    assert np.abs(flat - 0.5).max() <= 1 / 255 and n_flat < 20
    with pytest.raises(SarJaxError, match="factor = 3"):
        block_mean(image, 3)
