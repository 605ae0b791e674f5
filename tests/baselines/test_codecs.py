"""Classical codecs: sizes are real encoded bytes, quality rises with rate."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.baselines.codecs import bicubic_upsample, block_means, jpeg, jpeg2000
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


def test_block_means_and_bicubic_upsampling(image):
    means = block_means(image, 8)
    assert means.shape == (16, 16)
    assert means[0, 0] == pytest.approx(float(image[:8, :8].mean()), abs=1e-6)
    up = bicubic_upsample(means, image.shape)
    assert up.shape == image.shape and 0 <= up.min() and up.max() <= 1
    # a constant image comes back exactly; a smooth ramp nearly so
    assert np.abs(bicubic_upsample(block_means(np.full((64, 64), 0.5, np.float32), 4), (64, 64)) - 0.5).max() < 1e-6
    ramp = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32), (64, 1))
    assert np.abs(bicubic_upsample(block_means(ramp, 4), (64, 64)) - ramp)[:, 4:-4].max() < 0.01
    with pytest.raises(SarJaxError, match="factor = 3"):
        block_means(image, 3)
