"""Property-based fuzz of the SAR reader: whatever the bytes, shapes, dtypes or units, only the
project's error type comes out, and what does come out has the promised shapes and types."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_jax.core.errors import SarJaxError
from sar_jax.data.readers import UNITS, open_raster

FUZZ = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
units_choice = st.sampled_from(("auto",) + UNITS)


def _read(name: str, payload: bytes, strict: bool = False, units: str = "auto") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(payload)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. colour PNGs converted to grayscale
                raster = open_raster(path, strict=strict, units=units)
                values, valid = raster.read()
                mask = raster.validity(3)
        except SarJaxError as exc:
            assert "\n" not in str(exc)
            return
        assert raster.units in UNITS and raster.bits_per_pixel > 0
        assert values.shape == valid.shape == (raster.height, raster.width)
        assert values.dtype == np.float32 and valid.dtype == bool and valid.any()
        assert np.isfinite(values[valid]).all()
        np.testing.assert_array_equal(mask, valid[::3, ::3])


@FUZZ
@given(ext=st.sampled_from([".tif", ".tiff", ".npy", ".png", ".jpg"]), payload=st.binary(max_size=600),
       units=units_choice)
def test_random_bytes(ext, payload, units):
    _read("scene" + ext, payload, units=units)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _tif_bytes(arr: np.ndarray, tiled: bool) -> bytes:
    from rasterio.io import MemoryFile

    bands = arr if arr.ndim == 3 else arr[None]
    profile = {"driver": "GTiff", "count": bands.shape[0], "height": bands.shape[1], "width": bands.shape[2],
               "dtype": bands.dtype.name}
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with MemoryFile() as mem:
            with mem.open(**profile) as dst:
                dst.write(bands)
            return mem.read()


arrays = st.tuples(
    st.sampled_from([np.uint8, np.int16, np.uint16, np.float32, np.float64, np.complex64, np.bool_]),
    st.lists(st.integers(0, 9), min_size=0, max_size=4),
    st.sampled_from([0.0, np.nan, np.inf, -1.0]),
)


@FUZZ
@given(spec=arrays, fmt=st.sampled_from(["npy", "tif", "tiled"]), cut=st.floats(0.0, 1.0), strict=st.booleans(),
       units=units_choice)
def test_random_arrays_and_truncations(spec, fmt, cut, strict, units):
    dtype, shape, special = spec
    arr = (np.random.default_rng(0).random(shape) * 10).astype(dtype)
    if arr.size and np.issubdtype(arr.dtype, np.floating):
        arr.flat[0] = special
    try:
        payload = _npy_bytes(arr) if fmt == "npy" else _tif_bytes(arr, tiled=fmt == "tiled")
    except Exception:
        return  # a shape or dtype the writer itself refuses
    if cut < 0.5:
        payload = payload[: int(len(payload) * cut * 2)]
    _read("scene." + ("npy" if fmt == "npy" else "tif"), payload, strict=strict, units=units)
