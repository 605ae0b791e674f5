"""Scene input and output for inference: windowed reads, streamed atomic writes, georeferencing.

Input is read through :func:`sar_jax.data.readers.open_raster` (windows on demand); this module
holds the output side. :class:`SceneWriter`: blocks of rows arrive in order; ``.npy`` and ``.tif/.tiff``
(a tiled, DEFLATE-compressed GeoTIFF written through rasterio, window by window, carrying the
input's CRS, transform, tags and no-data value) go straight to disk, ``.png`` (8-bit only) is
assembled in memory. The file gets a temporary name beside the target and is renamed onto it
(``os.replace``) only when complete, so a failed run leaves nothing half-written; a failed
write (unwritable folder, disk full) is one :class:`SarJaxError` line naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import atomic_path, temp_path

OUTPUT_EXTENSIONS = (".tif", ".tiff", ".npy", ".png")


def output_name(input_path: str | Path, suffix: str = "") -> str:
    """The output file name of a scene in folder mode: its name, ``suffix``, its extension (JPEG -> PNG)."""
    p = Path(input_path)
    ext = ".png" if p.suffix.lower() in (".jpg", ".jpeg") else p.suffix
    return f"{p.stem}{suffix}{ext}"


def check_output_path(path: str | Path, units: str, what: str = "output") -> Path:
    """The output's format comes from its extension; PNG holds only 8-bit (log8) values."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise SarJaxError(f"{what} {p}: unsupported extension '{p.suffix}'; expected one of "
                          f"{', '.join(OUTPUT_EXTENSIONS)}")
    if ext == ".png" and units != "log8":
        raise SarJaxError(f"{what} {p}: PNG holds 8-bit values but the output is {units} (float); use .tif or .npy")
    return check_writable(p, what)


def check_writable(path: str | Path, what: str) -> Path:
    """``path`` can be created: its folder exists and is writable, and it is not a folder itself."""
    p = Path(path)
    if not p.parent.is_dir():
        raise SarJaxError(f"{what} {p}: folder {p.parent} does not exist")
    if p.is_dir():
        raise SarJaxError(f"{what} {p}: is a directory")
    if not os.access(p.parent, os.W_OK):
        raise SarJaxError(f"{what} {p}: folder {p.parent} is not writable")
    return p


def write_error(path: Path, exc: BaseException) -> SarJaxError:
    """One line for a failed write of ``path`` (OSError: its strerror, e.g. 'No space left on device')."""
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200] or type(exc).__name__
    return SarJaxError(f"output {path}: cannot write ({reason})")


def geotiff_profile(dtype: Any, shape: tuple[int, int], count: int = 1, **extra: Any) -> dict[str, Any]:
    """A tiled, DEFLATE-compressed GeoTIFF profile (predictor 2 for integers, 3 for floats)."""
    dt = np.dtype(dtype)
    tiled = shape[0] >= 256 and shape[1] >= 256
    profile = {"driver": "GTiff", "height": shape[0], "width": shape[1], "count": count, "dtype": dt.name,
               "compress": "deflate", "predictor": 3 if dt.kind == "f" else 2, "tiled": tiled}
    if tiled:
        profile.update(blockxsize=256, blockysize=256)
    if shape[0] * shape[1] * count * dt.itemsize > 3 << 30:
        profile["BIGTIFF"] = "YES"
    profile.update(extra)
    return profile


class SceneWriter:
    """Receives row blocks (in order) and writes the output atomically on :meth:`commit`."""

    def __init__(self, path: str | Path, shape: tuple[int, int], dtype: Any, *, crs: Any = None,
                 transform: Any = None, tags: dict[str, str] | None = None, nodata: float | None = None) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.tmp = temp_path(self.path)
        self.ext = self.path.suffix.lower()
        self.rows_written = 0
        self._file: Any = None
        self._array: np.ndarray | None = None
        try:
            if self.ext == ".npy":
                self._file = open(self.tmp, "wb")
                np.lib.format.write_array_header_2_0(
                    self._file, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                                 "shape": self.shape})
            elif self.ext in (".tif", ".tiff"):
                import rasterio

                profile = geotiff_profile(self.dtype, self.shape, crs=crs, transform=transform, nodata=nodata)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # NotGeoreferencedWarning
                    self._file = rasterio.open(self.tmp, "w", **profile)
                if tags:
                    self._file.update_tags(**tags)
            else:
                self._array = np.zeros(self.shape, self.dtype)
        except (OSError, Exception) as exc:
            self.abort()
            raise write_error(self.path, exc) from None

    def write(self, r0: int, block: np.ndarray) -> None:
        if r0 != self.rows_written:
            raise RuntimeError(f"rows written out of order ({r0} after {self.rows_written})")
        block = np.ascontiguousarray(block, dtype=self.dtype)
        try:
            if self._array is not None:
                self._array[r0:r0 + len(block)] = block
            elif self.ext == ".npy":
                self._file.write(block.tobytes())
            else:
                from rasterio.windows import Window

                self._file.write(block, 1, window=Window(0, r0, block.shape[1], block.shape[0]))
        except Exception as exc:
            self.abort()
            raise write_error(self.path, exc) from None
        self.rows_written += len(block)

    def commit(self) -> Path:
        if self.rows_written != self.shape[0]:
            raise RuntimeError(f"{self.rows_written} of {self.shape[0]} rows written")
        try:
            if self._file is not None:
                self._file.close()
                self._file = None
            else:
                from PIL import Image

                Image.fromarray(self._array).save(self.tmp, format="PNG")
            os.replace(self.tmp, self.path)
        except Exception as exc:
            self.abort()
            raise write_error(self.path, exc) from None
        return self.path

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # closing a file on a full disk fails too; it is removed next
                pass
            self._file = None
        self.tmp.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename onto ``path`` (:func:`sar_jax.core.files.atomic_path`); a failed
    write is one line naming ``path``."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as exc:
        raise write_error(path, exc) from None
