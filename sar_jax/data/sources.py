"""Scene sources of the streamed pipeline: rasters opened by the reader, or synthetic scenes held in memory.

Both offer what the pipeline needs and nothing more: ``height``, ``width``, ``units``, ``path``,
``read(window) -> (values, valid)`` and ``validity(step)`` (see /README "Data pipeline").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.synthetic import synthetic_scene_pair, synthetic_scenes_with_reflectivity

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


def open_sources(data_cfg: dict[str, Any], seed: int,
                 target: str = "input") -> tuple[list[SceneSource], list[SceneSource] | None]:
    """The scenes of a config's ``data`` section (synthetic in memory, or every file under ``data.path``),
    all in the same units, and the training targets of ``train.target`` beside them (None for
    ``input``): on synthetic data the speckle-free reflectivity (``clean``) or a second, independent
    speckle realisation (``other_look``); on files the file of the same name under ``data.target_path``."""
    if data_cfg["source"] == "synthetic":
        n, size, looks, psf = (data_cfg[k] for k in ("num_scenes", "scene_size", "looks", "psf_oversampling"))
        targets = None
        if target == "other_look":
            pairs = [synthetic_scene_pair((seed, i), size, looks, psf) for i in range(n)]
            scenes = [a for a, _, _ in pairs]
            targets = [ArrayScene(f"synthetic:{seed}:{i}:other_look", b) for i, (_, b, _) in enumerate(pairs)]
        else:
            pairs = synthetic_scenes_with_reflectivity(n, size, looks, seed, psf)
            scenes = [s for s, _ in pairs]
            if target == "clean":
                targets = [ArrayScene(f"synthetic:{seed}:{i}:clean", r) for i, (_, r) in enumerate(pairs)]
        return [ArrayScene(f"synthetic:{seed}:{i}", s) for i, s in enumerate(scenes)], targets
    from sar_jax.data.readers import list_sar_files, open_raster

    def open_all(files: list[Path]) -> list[SceneSource]:
        return [open_raster(f, band=data_cfg["band"], units=data_cfg["units"], strict=data_cfg["strict"])
                for f in files]

    files = list_sar_files(data_cfg["path"])
    sources = open_all(files)
    units = {s.units for s in sources}
    if len(units) > 1:
        raise SarJaxError(f"data path {data_cfg['path']}: files mix units "
                          f"({', '.join(sorted(units))}); use one kind per dataset (data.units)")
    if target == "input":
        return sources, None
    root = Path(data_cfg["target_path"])
    base = Path(data_cfg["path"])
    named = [root / (f.relative_to(base) if base.is_dir() else f.name) for f in files]
    missing = [str(f) for f in named if not f.is_file()]
    if missing:
        raise SarJaxError(f"data.target_path {root}: no target for {len(missing)} input file(s), e.g. {missing[0]} "
                          "(expected one file of the same name per input)")
    targets = open_all(named)
    for s, t in zip(sources, targets):
        if (t.height, t.width) != (s.height, s.width) or t.units != s.units:
            raise SarJaxError(f"target {t.path}: {t.height}x{t.width} {t.units}, but its input {s.path} is "
                              f"{s.height}x{s.width} {s.units} (expected a co-registered raster in the same units)")
    return sources, targets
