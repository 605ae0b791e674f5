"""Property-based fuzz of the SAR readers: whatever the bytes, shapes or dtypes, only the
project's error type comes out, and nothing hangs."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_jax.core.errors import SarJaxError
from sar_jax.data.readers import SarImage, read_sar

FUZZ = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _read(name: str, payload: bytes, strict: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(payload)
        try:
            image = read_sar(path, strict=strict)
        except SarJaxError:
            return
        assert isinstance(image, SarImage)
        assert image.data.ndim == 2 and image.data.dtype == np.float32
        assert np.isfinite(image.data).all()


@FUZZ
@given(ext=st.sampled_from([".tif", ".tiff", ".npy", ".png", ".jpg"]), payload=st.binary(max_size=600))
def test_random_bytes(ext, payload):
    _read("scene" + ext, payload)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _tif_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


arrays = st.tuples(
    st.sampled_from([np.uint8, np.int16, np.uint16, np.float32, np.float64, np.complex64, np.bool_]),
    st.lists(st.integers(0, 9), min_size=0, max_size=4),
    st.sampled_from([0.0, np.nan, np.inf, -1.0]),
)


@FUZZ
@given(spec=arrays, fmt=st.sampled_from(["npy", "tif"]), cut=st.floats(0.0, 1.0), strict=st.booleans())
def test_random_arrays_and_truncations(spec, fmt, cut, strict):
    dtype, shape, special = spec
    arr = (np.random.default_rng(0).random(shape) * 10).astype(dtype)
    if arr.size and np.issubdtype(arr.dtype, np.floating):
        arr.flat[0] = special
    try:
        payload = _npy_bytes(arr) if fmt == "npy" else _tif_bytes(arr)
    except Exception:
        return  # a shape the writer itself refuses
    if cut < 0.5:
        payload = payload[: int(len(payload) * cut * 2)]
    _read("scene." + fmt, payload, strict=strict)
