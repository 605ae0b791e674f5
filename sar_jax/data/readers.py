"""Readers for SAR rasters: GeoTIFF (tifffile), ``.npy`` and 8-bit PNG/JPEG renderings.

Every reader returns a :class:`SarImage`: a 2-D float32 array plus what its values
are (``intensity``, ``amplitude`` or ``log8`` for an already log-scaled 8-bit view).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError

TIFF_EXTENSIONS = (".tif", ".tiff")
NPY_EXTENSIONS = (".npy",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SUPPORTED_EXTENSIONS = TIFF_EXTENSIONS + NPY_EXTENSIONS + IMAGE_EXTENSIONS
KINDS = ("intensity", "amplitude", "log8")


@dataclass
class SarImage:
    """A single-band SAR raster in linear (or 8-bit log) units."""

    data: np.ndarray  # (H, W) float32
    kind: str  # one of KINDS
    path: str
    meta: dict[str, Any] = field(default_factory=dict)  # format-specific (e.g. TIFF tags)


def list_sar_files(path: str | Path) -> list[Path]:
    """A file, or the supported files directly inside a folder (sorted)."""
    p = Path(path)
    if not p.exists():
        raise SarJaxError(f"data path {p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise SarJaxError(f"{p}: unsupported extension '{p.suffix}'; expected one of "
                              f"{', '.join(SUPPORTED_EXTENSIONS)}")
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS)
    if not files:
        raise SarJaxError(f"data folder {p}: no SAR files ({', '.join(SUPPORTED_EXTENSIONS)})")
    return files


def _split_bands(arr: np.ndarray, path: Path, band: int | None) -> tuple[np.ndarray, bool]:
    """Reduce a 3-D array to one band; returns (array, is_iq_pair)."""
    if arr.ndim == 2:
        if band not in (None, 0):
            raise SarJaxError(f"{path}: data.band = {band} but the raster has a single band")
        return arr, False
    if arr.ndim != 3:
        raise SarJaxError(f"{path}: expected a 2-D raster or bands x H x W, got shape {arr.shape}")
    axis = 0 if arr.shape[0] <= arr.shape[-1] else 2
    nb = arr.shape[axis]
    if nb > 16:
        raise SarJaxError(f"{path}: expected a 2-D raster or at most 16 bands, got shape {arr.shape}")
    if band is not None:
        if band >= nb:
            raise SarJaxError(f"{path}: data.band = {band} but the raster has {nb} bands")
        return np.take(arr, band, axis=axis), False
    if nb == 1:
        return np.take(arr, 0, axis=axis), False
    if nb == 2 and not np.iscomplexobj(arr):
        i, q = (np.take(arr, k, axis=axis).astype(np.float64) for k in (0, 1))
        return np.sqrt(i * i + q * q), True
    raise SarJaxError(f"{path}: {nb} bands; choose one with data.band (0..{nb - 1})")


def _to_float(arr: np.ndarray, path: Path, strict: bool) -> np.ndarray:
    data = np.asarray(arr, dtype=np.float32)
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad:
        if strict:
            raise SarJaxError(f"{path}: {n_bad} NaN/Inf pixels (data.strict is true)")
        finite = data[~bad]
        if finite.size == 0:
            raise SarJaxError(f"{path}: every pixel is NaN/Inf")
        data = np.where(bad, np.float32(np.median(finite)), data)
        warnings.warn(f"{path}: replaced {n_bad} NaN/Inf pixels by the median", stacklevel=3)
    if data.size == 0:
        raise SarJaxError(f"{path}: empty raster")
    return data


def _read_tiff(path: Path, band: int | None) -> tuple[np.ndarray, str, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            arr = tif.asarray()
            page = tif.pages[0]
            tags = {tag.name: tag.value for tag in page.tags.values()
                    if tag.name.startswith(("Model", "GeoKey", "GeoAscii", "GeoDouble", "GDAL"))}
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise SarJaxError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from None
    meta = {"tiff_tags": tags, "dtype": str(arr.dtype)}
    if np.iscomplexobj(arr):
        arr, _ = _split_bands(arr, path, band)
        return np.abs(arr), "amplitude", meta
    arr, _ = _split_bands(arr, path, band)
    return arr, ("log8" if arr.dtype == np.uint8 else "amplitude"), meta


def _read_npy(path: Path, band: int | None) -> tuple[np.ndarray, str, dict[str, Any]]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise SarJaxError(f"{path}: cannot read NPY ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):  # e.g. an .npz archive renamed to .npy
        raise SarJaxError(f"{path}: not a single NPY array ({type(arr).__name__})")
    if arr.dtype.kind not in "biufc":
        raise SarJaxError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        arr, _ = _split_bands(arr, path, band)
        return np.abs(arr), "amplitude", {"dtype": str(arr.dtype)}
    arr, _ = _split_bands(np.asarray(arr), path, band)
    return arr, ("log8" if arr.dtype == np.uint8 else "amplitude"), {"dtype": str(arr.dtype)}


def _read_image(path: Path, strict: bool) -> tuple[np.ndarray, str, dict[str, Any]]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                if strict:
                    raise SarJaxError(f"{path}: colour image (mode {mode}); expected 8-bit grayscale"
                                      " (data.strict is true)")
                warnings.warn(f"{path}: colour image (mode {mode}) converted to grayscale",
                              stacklevel=3)
                img = img.convert("L")
            arr = np.array(img)
    except SarJaxError:
        raise
    except Exception as exc:
        raise SarJaxError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 2:
        raise SarJaxError(f"{path}: expected a single-band image, got shape {arr.shape}")
    return arr, ("log8" if arr.dtype == np.uint8 else "amplitude"), {"mode": mode}


def read_sar(path: str | Path, band: int | None = None, strict: bool = False) -> SarImage:
    """Read one SAR raster as float32 plus its kind of values.

    - ``.tif/.tiff``: real (amplitude; uint8 is a log8 view), complex SLC (-> amplitude),
      I/Q band pairs (-> amplitude), any band chosen with ``band``.
    - ``.npy``: 2-D real, complex, or HxWx2 / 2xHxW I/Q.
    - ``.png/.jpg``: 8-bit amplitude renderings, already log-scaled (``log8``).
    NaN/Inf pixels are replaced by the median with a warning, or refused when ``strict``.
    """
    p = Path(path)
    if not p.is_file():
        raise SarJaxError(f"{p}: no such file")
    ext = p.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        arr, kind, meta = _read_tiff(p, band)
    elif ext in NPY_EXTENSIONS:
        arr, kind, meta = _read_npy(p, band)
    elif ext in IMAGE_EXTENSIONS:
        arr, kind, meta = _read_image(p, strict)
    else:
        raise SarJaxError(f"{p}: unsupported extension '{p.suffix}'; expected one of "
                          f"{', '.join(SUPPORTED_EXTENSIONS)}")
    data = _to_float(arr, p, strict)
    if float(data.min()) < 0 and kind != "log8":
        raise SarJaxError(f"{p}: negative values in a {kind} raster; expected linear units >= 0")
    return SarImage(data=data, kind=kind, path=str(p), meta=meta)
