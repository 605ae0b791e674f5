"""A scene's latent as ONE GeoTIFF (rasterio): ``latent_channels`` bands of ceil(H/16) x ceil(W/16).

The raster carries the input's CRS with its transform scaled by 16 (one latent pixel covers 16 x 16
input pixels) and, as dataset tags, everything needed to decode it: the preprocessing parameters,
units, the model config, the checkpoint's fingerprint (:func:`fingerprint`) and the scene's size.
Storage (``latent_dtype``), always ZSTD-compressed with a lossless predictor so the file's size is
a real bit rate:

- ``float32``: exact;
- ``float16``: rounded to half precision (IEEE binary16, stored through GDAL's ``NBITS=16`` on a
  Float32 band, which any GDAL reader expands back to float32); values are rounded by numpy
  first so the stored values are exactly ``z.astype(float16)``;
- ``int8``: per band ``z ~ offset + scale * q`` with ``q`` in [-127, 127], scale and offset fitted
  on the scene's own range and stored as the bands' GDAL scale/offset (``gdalinfo`` shows them,
  ``gdal_translate -unscale`` applies them).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import temp_path
from sar_jax.inference.scene_io import write_error

LATENT_FORMAT = "sar_jax-latent-v2"
LATENT_DTYPES = ("float32", "float16", "int8")
_INT8_MAX = 127


def fingerprint(variables: dict[str, Any]) -> str:
    """``sha256:`` + the first 16 hex digits of the SHA-256 of a model's parameters and BatchNorm
    statistics (float32 bytes, in key order)."""
    import jax

    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0], key=lambda kv: str(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return f"sha256:{h.hexdigest()[:16]}"


def quantize(z: np.ndarray, latent_dtype: str) -> tuple[np.ndarray, list[float], list[float]]:
    """``(stored, scales, offsets)`` for a (h, w, C) float32 latent; ``stored`` is (C, h, w)."""
    bands = np.moveaxis(np.asarray(z, np.float32), -1, 0)
    c = bands.shape[0]
    if latent_dtype == "float32":
        return bands, [1.0] * c, [0.0] * c
    if latent_dtype == "float16":
        return bands.astype(np.float16).astype(np.float32), [1.0] * c, [0.0] * c
    if latent_dtype != "int8":
        raise SarJaxError(f"latent_dtype {latent_dtype}: expected one of {', '.join(LATENT_DTYPES)}")
    lo = bands.reshape(c, -1).min(axis=1).astype(np.float64)
    hi = bands.reshape(c, -1).max(axis=1).astype(np.float64)
    offsets = (hi + lo) / 2
    scales = np.where(hi > lo, (hi - lo) / (2 * _INT8_MAX), 1.0)
    q = np.rint((bands - offsets[:, None, None]) / scales[:, None, None])
    return np.clip(q, -_INT8_MAX, _INT8_MAX).astype(np.int8), scales.tolist(), offsets.tolist()


def dequantize(stored: np.ndarray, scales: list[float], offsets: list[float]) -> np.ndarray:
    """(C, h, w) stored values -> (h, w, C) float32."""
    s = np.asarray(scales, np.float64)[:, None, None]
    o = np.asarray(offsets, np.float64)[:, None, None]
    return np.moveaxis((stored.astype(np.float64) * s + o).astype(np.float32), 0, -1)


def payload_bytes(stored: np.ndarray) -> int:
    """Bit-rate bytes of a quantised latent ``(C, h, w)`` (:func:`quantize`): its values DEFLATE-compressed
    plus a float32 scale and offset per band, without the GeoTIFF container (header and tags, ~1-2 KB a
    file, which dominate small patches); what codec comparisons count, as JPEG 2000 is counted without
    its JP2 boxes."""
    return len(zlib.compress(np.ascontiguousarray(stored).tobytes(), 9)) + 8 * stored.shape[0]


def write_latent(path: str | Path, z: np.ndarray, latent_dtype: str, *, crs: Any = None, transform: Any = None,
                 tags: dict[str, Any]) -> int:
    """Write the (h, w, C) latent atomically; returns the file's size in bytes."""
    import rasterio
    from rasterio.transform import Affine

    from sar_jax.inference.scene_io import geotiff_profile

    p = Path(path)
    stored, scales, offsets = quantize(z, latent_dtype)
    extra = {"compress": "zstd", "transform": (transform or Affine.identity()) @ Affine.scale(16), "crs": crs}
    if latent_dtype == "float16":
        extra["nbits"] = 16
    profile = geotiff_profile(stored.dtype, stored.shape[1:], stored.shape[0], **extra)
    if crs is None:
        profile.pop("crs")
        if transform is None:
            profile.pop("transform")
    text = {"SAR_JAX_FORMAT": LATENT_FORMAT, "LATENT_DTYPE": latent_dtype,
            **{k.upper(): v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()}}
    tmp = temp_path(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning
            with rasterio.open(tmp, "w", **profile) as ds:
                ds.write(stored)
                ds.update_tags(**text)
                if latent_dtype == "int8":
                    ds.scales, ds.offsets = scales, offsets
        os.replace(tmp, p)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(p, exc) from None
    return p.stat().st_size


REQUIRED_TAGS = ("scene_shape", "preprocessing_params", "model_config", "checkpoint_fingerprint", "checkpoint")


def _tag_value(text: str) -> Any:
    """A tag written by :func:`write_latent`: JSON for structured values, plain text for strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class LatentRaster:
    """An opened latent file: its metadata (:attr:`info`) and row bands read on demand."""

    def __init__(self, path: str | Path) -> None:
        import rasterio

        self.path = Path(path)
        if not self.path.is_file():
            raise SarJaxError(f"latent {self.path}: no such file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._ds = rasterio.open(self.path)
        except rasterio.errors.RasterioError as exc:
            raise SarJaxError(f"latent {self.path}: cannot read ({str(exc).splitlines()[0][:200]})") from None
        tags = self._ds.tags()
        if tags.get("SAR_JAX_FORMAT") != LATENT_FORMAT:
            self._ds.close()
            raise SarJaxError(f"latent {self.path}: not a sar_jax latent raster "
                              f"(no SAR_JAX_FORMAT={LATENT_FORMAT} tag)")
        self.info = {k.lower(): _tag_value(v) for k, v in tags.items()
                     if k not in ("SAR_JAX_FORMAT", "LATENT_DTYPE", "AREA_OR_POINT")}
        missing = [k for k in REQUIRED_TAGS if k not in self.info]
        if missing:
            self._ds.close()
            raise SarJaxError(f"latent {self.path}: missing metadata tags {', '.join(k.upper() for k in missing)}")
        self.info["latent_dtype"] = tags["LATENT_DTYPE"]
        self.scales, self.offsets = list(self._ds.scales), list(self._ds.offsets)
        self.shape = (self._ds.height, self._ds.width, self._ds.count)
        self.crs = self._ds.crs
        self.transform = self._ds.transform if self._ds.crs else None

    def read_rows(self, r0: int, n: int) -> np.ndarray:
        """Latent rows ``[r0, r0 + n)``, (n, w, C) float32, dequantized."""
        from rasterio.windows import Window

        stored = self._ds.read(window=Window(0, r0, self.shape[1], n))
        return dequantize(stored, self.scales, self.offsets)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> LatentRaster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
