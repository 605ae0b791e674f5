"""One reader for SAR rasters: GeoTIFF/COG through rasterio, ``.npy`` (memory-mapped), 8-bit PNG/JPEG.

:func:`open_raster` reads only metadata and returns a :class:`Raster`; :meth:`Raster.read` returns
``(values, valid)`` for a window, in the raster's units (see READER_API.md / the README's "Data
formats"). rasterio (GDAL) is imported lazily, so synthetic-data training never needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.raster_io import (
    dataset_handle,
    image_info,
    npy_info,
    one_line,
    quiet_gdal,
    tiff_info,
)

TIFF_EXTENSIONS = (".tif", ".tiff")
NPY_EXTENSIONS = (".npy",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SUPPORTED_EXTENSIONS = TIFF_EXTENSIONS + NPY_EXTENSIONS + IMAGE_EXTENSIONS
UNITS = ("intensity", "amplitude", "db", "log8")
LINEAR_UNITS = ("intensity", "amplitude")
_INTENSITY_WORDS = ("intensity", "power", "sigma0", "sigma_0", "sigmanought", "beta0", "beta_0", "betanought",
                    "gamma0", "gamma_0", "gammanought")
_AMPLITUDE_WORDS = ("amplitude", "magnitude")


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


@dataclass(frozen=True)
class Raster:
    """An opened single-band SAR raster (metadata only; pixels come from :meth:`read`).

    Holds plain data only (picklable), so it can be sent to data-loader worker processes; each
    process/thread keeps its own small cache of open file handles.
    """

    path: str
    height: int
    width: int
    units: str  # what read() returns, one of UNITS
    source_dtype: str  # stored dtype of one sample ("complex_int16" for GDAL CInt16)
    bits_per_pixel: int  # stored bits per pixel of what is read (all bands used)
    phase_dropped: bool  # complex or I/Q input reduced to intensity/amplitude
    nodata: float | None
    crs: Any | None
    transform: Any | None
    tags: dict[str, str] = field(hash=False)  # (a dict: left out of the hash, so a Raster can be a key)
    strict: bool = False
    _format: str = field(default="tiff", repr=False)  # tiff | npy | image
    _bands: tuple[int, ...] = field(default=(0,), repr=False)  # 0-based bands read (2 for an I/Q pair)
    _band_axis: int | None = field(default=None, repr=False)  # npy only: axis of the bands (0 or 2)
    _is_complex: bool = field(default=False, repr=False)

    def read(self, window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(values, valid)`` for rows ``r0:r0+h`` and columns ``c0:c0+w`` of ``window=(r0, c0, h, w)``
        (None: the whole raster). ``values`` float32 in :attr:`units`; ``valid`` bool: finite, not the
        nodata value, and not 0 for linear units. Invalid pixels' values are unspecified."""
        r0, c0, h, w = (0, 0, self.height, self.width) if window is None else (int(v) for v in window)
        if h < 0 or w < 0 or r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width:
            raise SarJaxError(f"{self.path}: window {window} is outside the {self.height}x{self.width} raster")
        values, valid = self._convert(self._read_raw(r0, c0, h, w, 1))
        if window is None and not valid.any():
            raise SarJaxError(f"{self.path}: every pixel is invalid (nodata, NaN/Inf or 0 in linear units)")
        return values, valid

    def validity(self, step: int) -> np.ndarray:
        """Decimated validity, shape ``(ceil(H/step), ceil(W/step))``; never reads the whole raster at once.

        A TIFF with overviews no coarser than ``step`` is read from them (GDAL picks the level; each
        output pixel is one pixel of its step x step block, so masks are exact only away from the
        edges of invalid regions); otherwise it is a strided read (every ``step``-th row only) that
        equals ``read()[1][::step, ::step]``. An all-False mask is returned as such (a coarse step can
        miss sparse valid pixels)."""
        if step < 1:
            raise SarJaxError(f"{self.path}: validity step = {step}; expected >= 1")
        if self._format == "tiff" and step > 1:
            handle = dataset_handle(self)
            factors = handle.overviews(self._bands[0] + 1)
            if factors and min(factors) <= step:
                from rasterio.enums import Resampling

                shape = (len(self._bands), -(-self.height // step), -(-self.width // step))
                try:
                    with quiet_gdal():
                        raw = handle.read([b + 1 for b in self._bands], out_shape=shape, resampling=Resampling.nearest)
                except Exception as exc:
                    raise SarJaxError(f"{self.path}: cannot read overviews, truncated or corrupt? "
                                      f"({type(exc).__name__}: {one_line(exc)})") from None
                return self._convert(raw)[1]
        rows = [self._convert(self._read_raw(r, 0, 1, self.width, step))[1] for r in range(0, self.height, step)]
        return np.concatenate(rows)

    # ------------------------------------------------------------------ internals

    def _read_raw(self, r0: int, c0: int, h: int, w: int, col_step: int) -> np.ndarray:
        """Stored samples of the used bands, (bands, h, ceil(w / col_step)), columns strided."""
        handle = dataset_handle(self)
        try:
            if self._format == "tiff":
                from rasterio.windows import Window

                with quiet_gdal():
                    raw = handle.read([b + 1 for b in self._bands], window=Window(c0, r0, w, h))
                return raw[:, :, ::col_step]
            if self._format == "npy":
                if self._band_axis is None:
                    return np.asarray(handle[r0:r0 + h, c0:c0 + w:col_step])[None]
                if self._band_axis == 0:
                    return np.asarray(handle[list(self._bands), r0:r0 + h, c0:c0 + w:col_step])
                return np.moveaxis(np.asarray(handle[r0:r0 + h, c0:c0 + w:col_step, list(self._bands)]), -1, 0)
            return handle[None, r0:r0 + h, c0:c0 + w:col_step]
        except SarJaxError:
            raise
        except Exception as exc:  # GDAL decode errors (truncated tiles), mmap errors
            raise SarJaxError(f"{self.path}: cannot read pixels, truncated or corrupt? ({type(exc).__name__}: "
                              f"{one_line(exc)})") from None

    def _convert(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored samples -> (float32 values in self.units, valid)."""
        nodata = self.nodata
        if self._is_complex or len(self._bands) == 2:
            if self._is_complex:
                re, im = raw[0].real.astype(np.float64), raw[0].imag.astype(np.float64)
            else:
                re, im = raw[0].astype(np.float64), raw[1].astype(np.float64)
            power = re * re + im * im
            values = (power if self.units == "intensity" else np.sqrt(power)).astype(np.float32)
            finite = np.isfinite(re) & np.isfinite(im)
            valid = finite & (power > 0) & np.isfinite(values)  # |z|^2 beyond float32: not a usable value
            if nodata is not None and not math.isnan(nodata):
                valid &= ~((re == nodata) & (im == (0 if self._is_complex else nodata)))
        else:
            stored = raw[0]
            values = stored.astype(np.float32)
            finite = np.isfinite(values)
            valid = finite.copy()
            if nodata is not None and not math.isnan(nodata):
                valid &= stored != nodata
            if self.units in LINEAR_UNITS:
                valid &= values != 0
                negative = valid & (values < 0)
                if negative.any():
                    raise SarJaxError(f"{self.path}: negative values in a {self.units} raster (e.g. "
                                      f"{float(values[negative][0]):g}); expected linear units >= 0, or pass "
                                      "units='db' if the values are in dB")
        if self.strict and not finite.all() and not (nodata is not None and math.isnan(nodata)):
            raise SarJaxError(f"{self.path}: {int((~finite).sum())} NaN/Inf pixels (data.strict is true)")
        return values, valid


# ---------------------------------------------------------------------- open


def open_raster(path: str | Path, *, band: int | None = None, units: str = "auto", strict: bool = False) -> Raster:
    """Open a SAR raster (metadata only). ``units``: ``"auto"`` or one of :data:`UNITS`.

    Complex (SLC, CInt16) and 2-band I/Q data: intensity = |z|^2, amplitude = |z| (auto: intensity).
    uint8: an 8-bit log view (``log8``) unless ``units`` is given. uint16 (GRD DN): auto = amplitude.
    Other real data: auto reads the units from the file's metadata (a GDAL band unit or a tag named
    one of :data:`UNIT_TAG_KEYS`) and otherwise refuses to guess. ``band`` picks one band (0-based).
    """
    p = Path(path)
    if units != "auto" and units not in UNITS:
        raise SarJaxError(f"units = {units!r}: expected auto or one of {', '.join(UNITS)}")
    if not p.is_file():
        raise SarJaxError(f"{p}: no such file")
    ext = p.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        info = tiff_info(p)
    elif ext in NPY_EXTENSIONS:
        info = npy_info(p)
    elif ext in IMAGE_EXTENSIONS:
        info = image_info(p, strict)
    else:
        raise SarJaxError(f"{p}: unsupported extension '{p.suffix}'; expected one of "
                          f"{', '.join(SUPPORTED_EXTENSIONS)}")
    height, width, dtypes = info["height"], info["width"], info["dtypes"]
    if height == 0 or width == 0:
        raise SarJaxError(f"{p}: empty raster ({height}x{width})")
    nb = len(dtypes)
    if band is not None and band >= nb:
        raise SarJaxError(f"{p}: band={band} requested but the raster has {nb} band{'s' if nb > 1 else ''}")
    if band is None and nb > 2:
        raise SarJaxError(f"{p}: {nb} bands; choose one with band=0..{nb - 1}")
    bands = (band,) if band is not None else tuple(range(nb))
    kinds = {_dtype_kind(dtypes[b]) for b in bands}
    if len(kinds) > 1 or kinds & {"unsupported"}:
        raise SarJaxError(f"{p}: unsupported data type {', '.join(sorted({dtypes[b] for b in bands}))}; expected "
                          "real (u)int, float or complex samples")
    kind = kinds.pop()
    is_complex = kind == "complex"
    if len(bands) == 2 and is_complex:
        raise SarJaxError(f"{p}: 2 complex bands; choose one with band=0 or band=1")
    pair = len(bands) == 2 or is_complex
    source_dtype = dtypes[bands[0]]
    resolved = _resolve_units(p, units, source_dtype, pair, info["unit_hints"])
    bits = sum(_dtype_bits(dtypes[b]) for b in bands)
    return Raster(path=str(p), height=height, width=width, units=resolved, source_dtype=source_dtype,
                  bits_per_pixel=bits, phase_dropped=pair, nodata=info["nodata"], crs=info["crs"],
                  transform=info["transform"], tags=info["tags"], strict=strict, _format=info["format"],
                  _bands=bands, _band_axis=info.get("band_axis"), _is_complex=is_complex)


def _dtype_kind(dtype: str) -> str:
    if dtype.startswith("complex"):
        return "complex"
    try:
        kind = np.dtype(dtype).kind
    except Exception:  # "complex_int16"-like GDAL names are handled above; anything else is not numeric
        return "unsupported"
    return {"u": "real", "i": "real", "f": "real"}.get(kind, "unsupported")


def _dtype_bits(dtype: str) -> int:
    if dtype == "complex_int16":
        return 32
    if dtype == "complex_int32":
        return 64
    return np.dtype(dtype).itemsize * 8


def _resolve_units(path: Path, units: str, dtype: str, pair: bool, hints: list[str]) -> str:
    """The units ``read()`` returns (see :func:`open_raster`)."""
    if pair:
        if units in ("db", "log8"):
            raise SarJaxError(f"{path}: complex/I-Q data cannot be read as {units}; use intensity (|z|^2) or "
                              "amplitude (|z|)")
        return "intensity" if units == "auto" else units
    if units != "auto":
        return units
    if dtype == "uint8":
        return "log8"
    for hint in hints:
        found = _units_from_text(hint)
        if found is not None:
            return found
    if dtype == "uint16":
        return "amplitude"
    raise SarJaxError(f"{path}: {dtype} values of unknown units (no units tag in the file); say what they are: "
                      "units = intensity, amplitude or db (data.units in a training config)")


def _units_from_text(text: str) -> str | None:
    t = text.strip().lower().replace(" ", "")
    if "db" in t or "decibel" in t:
        return "db"
    if any(w in t for w in _INTENSITY_WORDS):
        return "intensity"
    if any(w in t for w in _AMPLITUDE_WORDS):
        return "amplitude"
    return None
