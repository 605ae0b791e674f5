"""From a config's ``data`` section to normalised train/val/test patch arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.batching import BatchIterator
from sar_jax.data.patches import SPLITS, extract_patches, split_regions
from sar_jax.data.preprocess import fit_preprocessing, normalize
from sar_jax.data.readers import list_sar_files, open_raster
from sar_jax.data.synthetic import synthetic_scenes


@dataclass
class Datasets:
    """Normalised patches, NHWC float32 in [0, 1], and how they were made."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    preprocessing_params: dict[str, Any]
    sources: list[str] = field(default_factory=list)

    def split(self, name: str) -> np.ndarray:
        """The array of split ``name`` (train, val or test)."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def load_scenes(data_cfg: dict[str, Any], seed: int) -> tuple[list[np.ndarray], list[np.ndarray], str, list[str]]:
    """Scenes in their units (invalid pixels filled with the scene's median valid value), their
    validity masks, their common units, and where they came from."""
    if data_cfg["source"] == "synthetic":
        scenes = synthetic_scenes(data_cfg["num_scenes"], data_cfg["scene_size"], data_cfg["looks"], seed)
        return (scenes, [np.ones(s.shape, bool) for s in scenes], "intensity",
                [f"synthetic:{seed}:{i}" for i in range(len(scenes))])
    rasters = [open_raster(f, band=data_cfg["band"], units=data_cfg["units"], strict=data_cfg["strict"])
               for f in list_sar_files(data_cfg["path"])]
    units = {r.units for r in rasters}
    if len(units) > 1:
        raise SarJaxError(f"data path {data_cfg['path']}: files mix units "
                          f"({', '.join(sorted(units))}); use one kind per dataset (data.units)")
    scenes, valids = [], []
    for raster in rasters:
        values, valid = raster.read()
        good = values[valid]
        if float(good.max()) == float(good.min()):
            raise SarJaxError(f"{raster.path}: constant image (every valid pixel {good[0]:g})")
        scenes.append(np.where(valid, values, np.float32(np.median(good))))
        valids.append(valid)
    return scenes, valids, units.pop(), [r.path for r in rasters]


def build_datasets(config: dict[str, Any]) -> Datasets:
    """Load scenes, split them (by scene or by disjoint blocks), fit preprocessing on the
    training split only, and cut normalised patches."""
    data_cfg, seed = config["data"], config["train"]["seed"]
    patch = data_cfg["patch_size"]
    stride = data_cfg["stride"] or patch
    scenes, valids, units, sources = load_scenes(data_cfg, seed)
    shapes = [s.shape for s in scenes]
    for src, (h, w) in zip(sources, shapes):
        if h < patch or w < patch:
            raise SarJaxError(f"{src}: image {h}x{w} is smaller than data.patch_size = {patch}")
    regions = split_regions(shapes, patch, data_cfg["val_fraction"], data_cfg["test_fraction"], seed)
    train_pixels = [scenes[r.scene][r.r0:r.r1, r.c0:r.c1] for r in regions["train"]]
    train_valid = [valids[r.scene][r.r0:r.r1, r.c0:r.c1] for r in regions["train"]]
    params = fit_preprocessing(train_pixels, units, data_cfg["percentiles"], data_cfg["floor"], train_valid)
    arrays = {}
    for split in SPLITS:
        parts = [extract_patches(scenes[r.scene], r, patch, stride) for r in regions[split]]
        raw = np.concatenate(parts) if parts else np.zeros((0, patch, patch), np.float32)
        if len(raw) == 0:
            raise SarJaxError(f"the {split} split holds no {patch}x{patch} patch; use a smaller"
                              " data.patch_size or more data")
        arrays[split] = normalize(raw, params)[..., None]
    batch = config["train"]["batch_size"]
    if len(arrays["train"]) < batch:
        raise SarJaxError(f"train.batch_size = {batch} is larger than the training split "
                          f"({len(arrays['train'])} patches)")
    return Datasets(arrays["train"], arrays["val"], arrays["test"], params, sources)


def make_loaders(datasets: Datasets, config: dict[str, Any],
                 shard: tuple[int, int] = (0, 1)) -> dict[str, BatchIterator]:
    """Train (shuffled, drop_last) and val/test (in order, last batch padded to full size) batch
    iterators; ``shard=(process index, process count)`` gives each host its share of each batch."""
    batch, seed = config["train"]["batch_size"], config["train"]["seed"]
    prefetch = config["data"]["prefetch"]
    return {
        "train": BatchIterator(datasets.train, batch, shuffle=True, seed=seed, drop_last=True,
                               prefetch=prefetch, shard=shard),
        "val": BatchIterator(datasets.val, batch, shuffle=False, prefetch=prefetch, pad_last=True, shard=shard),
        "test": BatchIterator(datasets.test, batch, shuffle=False, prefetch=prefetch, pad_last=True, shard=shard),
    }
