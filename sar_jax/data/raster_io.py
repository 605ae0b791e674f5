"""The reader's file formats: GeoTIFF/COG through rasterio (GDAL) with a per-process cache of open
datasets, ``.npy`` (memory-mapped) and 8-bit PNG/JPEG through Pillow; metadata, handles, GDAL's logging.

Used by :mod:`sar_jax.data.readers` only; rasterio is imported lazily.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sar_jax.core.errors import SarJaxError

if TYPE_CHECKING:
    from sar_jax.data.readers import Raster

#: Metadata keys (GDAL dataset or band tags, case-insensitive) that may say what float values are.
UNIT_TAG_KEYS = ("units", "unit", "sar_units", "calibration")
#: GDAL's decoded-block cache per process, in MB, unless the user sets GDAL_CACHEMAX: GDAL's own default
#: (5% of RAM) lets a streaming reader's memory grow with the file; 128 MB holds two rows of 512 px tiles
#: of a 25,000 px wide float32 scene (measured: 8192^2 float32 DEFLATE file, peak RSS 208 MB vs 338 MB).
GDAL_CACHE_MB = 128
_MAX_BANDS = 16
_CACHE_SIZE = 8
_local = threading.local()
_INHERITED: list[OrderedDict] = []  # a forked process's copies of its parent's open handles


def rasterio_module() -> Any:
    """rasterio, imported lazily, with GDAL's block cache bounded (:data:`GDAL_CACHE_MB`)."""
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    import rasterio

    return rasterio


def tiff_info(path: Path) -> dict[str, Any]:
    rasterio = rasterio_module()
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with quiet_gdal(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                hints = [u for u in ds.units if u]
                for tags in [ds.tags(b + 1) for b in range(ds.count)] + [ds.tags()]:
                    hints += [v for k, v in tags.items() if k.lower() in UNIT_TAG_KEYS]
                georeferenced = ds.crs is not None or not ds.transform.is_identity
                return {"format": "tiff", "height": ds.height, "width": ds.width, "dtypes": list(ds.dtypes),
                        "nodata": None if ds.nodata is None else float(ds.nodata), "crs": ds.crs,
                        "transform": ds.transform if georeferenced else None, "tags": dict(ds.tags()),
                        "unit_hints": hints}
    except Exception as exc:  # RasterioIOError and GDAL's CPLE_* for corrupt/truncated files
        raise SarJaxError(f"{path}: cannot read TIFF ({type(exc).__name__}: {one_line(exc)})") from None


def npy_array(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise SarJaxError(f"{path}: cannot read NPY ({type(exc).__name__}: {one_line(exc)})") from None
    if not isinstance(arr, np.ndarray):  # e.g. an .npz archive renamed to .npy
        raise SarJaxError(f"{path}: not a single NPY array ({type(arr).__name__})")
    return arr


def npy_info(path: Path) -> dict[str, Any]:
    arr = npy_array(path)
    if arr.ndim == 2:
        h, w, nb, axis = arr.shape[0], arr.shape[1], 1, None
    elif arr.ndim == 3:
        axis = 0 if arr.shape[0] <= arr.shape[-1] else 2
        nb = arr.shape[axis]
        h, w = (arr.shape[1], arr.shape[2]) if axis == 0 else (arr.shape[0], arr.shape[1])
        if nb > _MAX_BANDS:
            raise SarJaxError(f"{path}: expected a 2-D raster or at most {_MAX_BANDS} bands, got shape {arr.shape}")
    else:
        raise SarJaxError(f"{path}: expected a 2-D raster or bands x H x W, got shape {arr.shape}")
    dtype = str(arr.dtype) if arr.dtype.kind in "uifc" else f"{arr.dtype} (not numeric)"
    return {"format": "npy", "height": h, "width": w, "dtypes": [dtype] * nb, "nodata": None, "crs": None,
            "transform": None, "tags": {}, "unit_hints": [], "band_axis": axis}


def image_array(path: Path, strict: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                if strict:
                    raise SarJaxError(f"{path}: colour image (mode {mode}); expected 8-bit grayscale"
                                      " (data.strict is true)")
                warnings.warn(f"{path}: colour image (mode {mode}) converted to grayscale", stacklevel=4)
                img = img.convert("L")
            arr = np.array(img)
    except SarJaxError:
        raise
    except Exception as exc:
        raise SarJaxError(f"{path}: cannot read image ({type(exc).__name__}: {one_line(exc)})") from None
    if arr.ndim != 2:
        raise SarJaxError(f"{path}: expected a single-band image, got shape {arr.shape}")
    return arr


def image_info(path: Path, strict: bool) -> dict[str, Any]:
    arr = image_array(path, strict)
    _cache()[_cache_key(str(path), "image")] = arr  # decoded once; read() takes windows of it
    return {"format": "image", "height": arr.shape[0], "width": arr.shape[1], "dtypes": [str(arr.dtype)],
            "nodata": None, "crs": None, "transform": None, "tags": {}, "unit_hints": []}


# ---------------------------------------------------------------------- handles


def _cache() -> OrderedDict:
    """This thread's open handles: rasterio datasets are not thread-safe, and a forked worker must not
    share its parent's file offsets, so a new process starts with an empty cache (the inherited
    handles are left to the parent)."""
    if getattr(_local, "pid", None) != os.getpid():
        if getattr(_local, "handles", None):
            _INHERITED.append(_local.handles)  # kept alive, never closed here: they belong to the parent
        _local.pid, _local.handles = os.getpid(), OrderedDict()
    return _local.handles


def _cache_key(path: str, fmt: str) -> tuple[str, str, int, int]:
    """Path, format, modification time and size: a rewritten file is reopened, not read from a stale handle."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SarJaxError(f"{path}: cannot read ({exc.strerror})") from None
    return path, fmt, st.st_mtime_ns, st.st_size


def dataset_handle(raster: Raster) -> Any:
    """An open dataset (tiff), memory map (npy) or decoded array (image) for ``raster``, LRU-cached."""
    cache = _cache()
    key = _cache_key(raster.path, raster._format)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    path = Path(raster.path)
    if raster._format == "tiff":
        rasterio = rasterio_module()
        from rasterio.errors import NotGeoreferencedWarning

        try:
            with quiet_gdal(), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                handle = rasterio.open(path)
        except Exception as exc:
            raise SarJaxError(f"{path}: cannot read TIFF ({type(exc).__name__}: {one_line(exc)})") from None
    elif raster._format == "npy":
        handle = npy_array(path)
    else:
        handle = image_array(path, raster.strict)
    cache[key] = handle
    while len(cache) > _CACHE_SIZE:
        _, old = cache.popitem(last=False)
        if hasattr(old, "close"):
            old.close()
    return handle


class quiet_gdal:
    """Silence rasterio's logging of GDAL messages while it works: its errors become one SarJaxError
    line, and a stray log line must not precede it. Re-entrant across threads (a depth count)."""

    _lock = threading.Lock()
    _depth = 0
    _saved_level = logging.NOTSET

    def __enter__(self) -> None:
        with quiet_gdal._lock:
            logger = logging.getLogger("rasterio")
            if quiet_gdal._depth == 0:
                quiet_gdal._saved_level = logger.level
                logger.setLevel(logging.CRITICAL + 1)
            quiet_gdal._depth += 1

    def __exit__(self, *exc: Any) -> None:
        with quiet_gdal._lock:
            quiet_gdal._depth -= 1
            if quiet_gdal._depth == 0:
                logging.getLogger("rasterio").setLevel(quiet_gdal._saved_level)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, with GDAL's underlying error (rasterio chains it) when it has one."""
    text = " ".join(str(exc).split())
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{' '.join(str(cause).split())}; {text}"
    return text
