"""Scene sources of the streamed pipeline: rasters opened by the reader, or synthetic scenes held in memory.

Both offer what the pipeline needs and nothing more: ``height``, ``width``, ``units``, ``path``,
``read(window) -> (values, valid)`` and ``validity(step)`` (see /README "Data pipeline").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.synthetic import synthetic_scenes

Window = tuple[int, int, int, int]  # (row, col, height, width)


class SceneSource(Protocol):
    """What the pipeline reads from: a :class:`sar_jax.data.readers.Raster` or an :class:`ArrayScene`."""

    path: str
    height: int
    width: int
    units: str

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def validity(self, step: int) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayScene:
    """A scene held in memory (synthetic data), read through the same window interface as a raster."""

    path: str
    data: np.ndarray  # (H, W) float32, linear units
    units: str = "intensity"

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(values, valid) of ``window`` = (row, col, height, width); None = the whole scene."""
        r, c, h, w = window if window is not None else (0, 0, self.height, self.width)
        values = np.asarray(self.data[r:r + h, c:c + w], np.float32)
        return values, self._valid(values)

    def validity(self, step: int) -> np.ndarray:
        """Validity at every ``step``-th pixel in both directions."""
        return self._valid(np.asarray(self.data[::step, ::step], np.float32))

    def _valid(self, values: np.ndarray) -> np.ndarray:
        """Finite, and non-zero in linear units (zero margins are no-data)."""
        valid = np.isfinite(values)
        return valid & (values != 0) if self.units in ("intensity", "amplitude") else valid


def open_sources(data_cfg: dict[str, Any], seed: int) -> list[SceneSource]:
    """The scenes of a config's ``data`` section (synthetic in memory, or every file under ``data.path``),
    all in the same units."""
    if data_cfg["source"] == "synthetic":
        scenes = synthetic_scenes(data_cfg["num_scenes"], data_cfg["scene_size"], data_cfg["looks"], seed)
        return [ArrayScene(f"synthetic:{seed}:{i}", s) for i, s in enumerate(scenes)]
    from sar_jax.data.readers import list_sar_files, open_raster

    sources = [open_raster(f, band=data_cfg["band"], units=data_cfg["units"], strict=data_cfg["strict"])
               for f in list_sar_files(data_cfg["path"])]
    units = {s.units for s in sources}
    if len(units) > 1:
        raise SarJaxError(f"data path {data_cfg['path']}: files mix units "
                          f"({', '.join(sorted(units))}); use one kind per dataset (data.units)")
    return sources
