"""Whole-scene input and output for inference: lazy row reads, atomic writes, GeoTIFF tags.

Input (:func:`open_scene`): a 2-D real ``.npy`` or an uncompressed, memory-mappable TIFF is read
lazily, rows on demand from a memory map; anything else (PNG/JPEG, compressed or multi-band
TIFF, complex or I/Q data) is read whole through :func:`sar_jax.data.readers.open_raster`.
Output (:class:`SceneWriter`): ``.npy`` is written row block by row block straight to disk;
``.tif/.tiff`` and ``.png`` are assembled in memory (one value per pixel) and written at the
end. Either way the file first gets a temporary name beside the target and is renamed onto it
(``os.replace``) only when complete, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.readers import SUPPORTED_EXTENSIONS, TIFF_EXTENSIONS, open_raster

OUTPUT_EXTENSIONS = (".tif", ".tiff", ".npy", ".png")
#: GeoTIFF and GDAL tags passed through from input to output.
GEO_TAG_CODES = {
    33550: "ModelPixelScaleTag", 33922: "ModelTiepointTag", 34264: "ModelTransformationTag",
    34735: "GeoKeyDirectoryTag", 34736: "GeoDoubleParamsTag", 34737: "GeoAsciiParamsTag",
    42112: "GDAL_METADATA", 42113: "GDAL_NODATA",
}
_SAMPLE_ROWS = 256


@dataclass
class Scene:
    """A single-band scene whose rows can be read on demand (float32, non-finite replaced)."""

    path: str
    shape: tuple[int, int]
    is_8bit: bool
    source_dtype: str
    read: Callable[[np.ndarray], np.ndarray]  # scene row indices -> (len, W) raw values
    lazy: bool
    fill: float  # replaces NaN/Inf
    geotags: list[list[Any]] = field(default_factory=list)  # [code, dtype, count, value]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        data = np.asarray(self.read(rows), dtype=np.float32)
        bad = ~np.isfinite(data)
        if bad.any():
            data = np.where(bad, np.float32(self.fill), data)
        return data


def tiff_geotags(path: str | Path) -> list[list[Any]]:
    """The GeoTIFF/GDAL tags of the first page as ``[code, datatype, count, value]`` (JSON-able)."""
    import tifffile

    out = []
    try:
        with tifffile.TiffFile(path) as tif:
            for tag in tif.pages[0].tags.values():
                if tag.code in GEO_TAG_CODES:
                    value = tag.value
                    if isinstance(value, bytes):
                        value = value.decode("latin-1")
                    elif isinstance(value, (tuple, list, np.ndarray)):
                        value = [v.item() if hasattr(v, "item") else v for v in value]
                    out.append([int(tag.code), int(tag.dtype), int(tag.count), value])
    except Exception as exc:
        raise SarJaxError(f"{path}: cannot read TIFF tags ({type(exc).__name__}: {exc})") from None
    return out


def _lazy_array(path: Path) -> np.ndarray | None:
    """A read-only memory map of a 2-D real array, or None when the file is not mappable so."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            import tifffile

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = tifffile.memmap(path, mode="r")
    except Exception:
        return None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.dtype.kind not in "biuf" or arr.size == 0:
        return None
    return arr


def _fill_value(sample: np.ndarray, path: Path, strict: bool) -> float:
    finite = np.isfinite(sample)
    if finite.all():
        return float(np.median(sample))
    if strict:
        raise SarJaxError(f"{path}: NaN/Inf pixels (data.strict is true)")
    if not finite.any():
        raise SarJaxError(f"{path}: every sampled pixel is NaN/Inf")
    warnings.warn(f"{path}: NaN/Inf pixels replaced by the median of the finite ones", stacklevel=3)
    return float(np.median(sample[finite]))


def open_scene(path: str | Path, band: int | None = None, strict: bool = False) -> Scene:
    """Open a SAR scene for tiled inference (see the module docstring for what is lazy)."""
    p = Path(path)
    if not p.is_file():
        raise SarJaxError(f"input {p}: no such file")
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise SarJaxError(f"input {p}: unsupported extension '{p.suffix}'; expected one of "
                          f"{', '.join(SUPPORTED_EXTENSIONS)}")
    geotags = tiff_geotags(p) if ext in TIFF_EXTENSIONS else []
    arr = _lazy_array(p) if ext in (".npy",) + TIFF_EXTENSIONS and band in (None, 0) else None
    if arr is not None:
        h, w = arr.shape
        step = max(1, h // _SAMPLE_ROWS)
        sample = np.asarray(arr[::step], np.float32)
        fill = _fill_value(sample, p, strict)
        is_8bit = arr.dtype == np.uint8
        return Scene(str(p), (h, w), is_8bit, str(arr.dtype), lambda rows: arr[rows], True, fill, geotags)
    data, is_8bit, source_dtype = read_raw_values(p, band, strict)
    return Scene(str(p), data.shape, is_8bit, source_dtype, lambda rows: data[rows], False, 0.0, geotags)


def read_raw_values(path: Path, band: int | None, strict: bool) -> tuple[np.ndarray, bool, str]:
    """The stored values of a whole raster as float32 (complex and I/Q pairs as |z|), whether it is
    8-bit, and its stored dtype; NaN/Inf replaced by the median of the valid values, with a warning."""
    probe = open_raster(path, band=band, units="amplitude", strict=strict)
    is_8bit = probe.source_dtype == "uint8" and not probe.phase_dropped
    raster = open_raster(path, band=band, units="log8", strict=strict) if is_8bit else probe
    data, valid = raster.read()
    bad = ~np.isfinite(data)
    if bad.any():
        warnings.warn(f"{path}: {int(bad.sum())} NaN/Inf pixels replaced by the median of the valid ones",
                      stacklevel=3)
        data = np.where(bad, np.float32(np.median(data[valid])), data)
    return data, is_8bit, raster.source_dtype


def check_output_path(path: str | Path, units: str) -> Path:
    """The output's format comes from its extension; PNG holds only 8-bit (log8) values."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise SarJaxError(f"--output {p}: unsupported extension '{p.suffix}'; expected one of "
                          f"{', '.join(OUTPUT_EXTENSIONS)}")
    if ext == ".png" and units != "log8":
        raise SarJaxError(f"--output {p}: PNG holds 8-bit values but the output is {units} (float); "
                          "use .tif or .npy")
    if not p.parent.exists():
        raise SarJaxError(f"--output {p}: folder {p.parent} does not exist")
    if p.is_dir():
        raise SarJaxError(f"--output {p}: is a directory")
    return p


def temp_path(path: Path) -> Path:
    """A hidden name beside ``path`` with the same extension."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


class SceneWriter:
    """Receives row blocks (in order) and writes the output atomically on :meth:`commit`."""

    def __init__(self, path: str | Path, shape: tuple[int, int], dtype: Any,
                 geotags: list[list[Any]] | None = None) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.geotags = geotags or []
        self.tmp = temp_path(self.path)
        self.ext = self.path.suffix.lower()
        self.rows_written = 0
        self._file = None
        self._array = None
        if self.ext == ".npy":
            self._file = open(self.tmp, "wb")
            np.lib.format.write_array_header_2_0(
                self._file, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                             "shape": self.shape})
        else:
            self._array = np.zeros(self.shape, self.dtype)

    def write(self, r0: int, block: np.ndarray) -> None:
        if r0 != self.rows_written:
            raise RuntimeError(f"rows written out of order ({r0} after {self.rows_written})")
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if self._file is not None:
            self._file.write(block.tobytes())
        else:
            self._array[r0:r0 + len(block)] = block
        self.rows_written += len(block)

    def commit(self) -> Path:
        if self.rows_written != self.shape[0]:
            raise RuntimeError(f"{self.rows_written} of {self.shape[0]} rows written")
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self.ext in (".tif", ".tiff"):
            import tifffile

            extratags = [(code, dtype, 0 if dtype == 2 else count,
                          tuple(value) if isinstance(value, list) else value, True)
                         for code, dtype, count, value in self.geotags]
            tifffile.imwrite(self.tmp, self._array, photometric="minisblack", extratags=extratags)
        else:
            from PIL import Image

            Image.fromarray(self._array).save(self.tmp, format="PNG")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.tmp.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename onto ``path``; the temp file is removed on failure."""
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
