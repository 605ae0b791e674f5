"""From a config's ``data`` section to streamed train/val/test loaders.

Nothing is read whole: scenes are opened (metadata), split into disjoint regions, indexed from decimated
validity masks, and the preprocessing is fitted on at most ``data.fit_pixels`` training pixels; patches
are read window by window while training (:mod:`sar_jax.data.grain_pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.grain_pipeline import PatchLoader, ReadPatches
from sar_jax.data.patches import SPLITS, Region, split_regions
from sar_jax.data.preprocess import fit_preprocessing, without_log_bias
from sar_jax.data.sampling import ValidityIndex, eval_windows, fit_sample, grid_windows, random_windows
from sar_jax.data.sources import SceneSource, open_sources


@dataclass
class Datasets:
    """The opened scenes, their split regions, each split's windows (train: the whole grid; val/test: the
    fixed evaluation sets) and the preprocessing fitted on the training split."""

    scenes: list[SceneSource]
    regions: dict[str, list[Region]]
    windows: dict[str, np.ndarray]
    validity: ValidityIndex
    preprocessing_params: dict[str, Any]
    patch_size: int
    targets: list[SceneSource] | None = None  # train.target clean / other_look: read beside each window

    @property
    def sources(self) -> list[str]:
        """Where each scene came from (file paths, or ``synthetic:SEED:I``)."""
        return [s.path for s in self.scenes]

    def patches(self, split: str, limit: int | None = None, with_target: bool = False) -> np.ndarray:
        """The first ``limit`` (default all) windows of ``split`` read and normalised, (N, P, P, 1) in [0, 1]
        (train: grid order); ``with_target``: (N, P, P, 2) with the training target after the input where
        ``train.target`` has one. For small sets: samples to show, one gradient batch, a test split to evaluate."""
        read = ReadPatches(self.scenes, self.patch_size, self.preprocessing_params,
                           targets=self.targets if with_target else None)
        return read(self.windows[split][:limit])


def build_datasets(config: dict[str, Any]) -> Datasets:
    """Open the scenes, split them (whole scenes with 3+ scenes, disjoint blocks otherwise), index the
    valid windows of each split and fit the preprocessing on (a bounded sample of) the training split."""
    data_cfg, seed = config["data"], config["train"]["seed"]
    patch = data_cfg["patch_size"]
    stride = data_cfg["stride"] or patch
    scenes, targets = open_sources(data_cfg, seed, config["train"]["target"])
    for scene in scenes:
        if scene.height < patch or scene.width < patch:
            raise SarJaxError(f"{scene.path}: image {scene.height}x{scene.width} is smaller than "
                              f"data.patch_size = {patch}")
    shapes = [(s.height, s.width) for s in scenes]
    regions = split_regions(shapes, patch, data_cfg["val_fraction"], data_cfg["test_fraction"], seed)
    validity = ValidityIndex(scenes, patch)
    windows = {}
    for split in SPLITS:
        grid = grid_windows(regions[split], patch, stride, validity, data_cfg["min_valid_fraction"])
        if len(grid) == 0:
            raise SarJaxError(f"the {split} split holds no {patch}x{patch} patch with a valid fraction >= "
                              f"{data_cfg['min_valid_fraction']}; use a smaller data.patch_size, a lower "
                              "data.min_valid_fraction or more data")
        windows[split] = grid if split == "train" else eval_windows(grid, data_cfg["eval_patches"], seed)
    per_epoch = train_patches_per_epoch(data_cfg, len(windows["train"]))
    batch = config["train"]["batch_size"]
    if per_epoch < batch:
        raise SarJaxError(f"train.batch_size = {batch} is larger than the training split "
                          f"({per_epoch} patches)")
    images, valid = fit_sample(scenes, regions["train"], data_cfg["fit_pixels"], seed)
    try:
        params = fit_preprocessing(images, scenes[0].units, data_cfg["percentiles"], data_cfg["floor"], valid)
    except SarJaxError as exc:  # name the data: a constant file, or a split left with nothing to fit
        where = data_cfg["path"] if data_cfg["source"] == "files" else "synthetic data"
        raise SarJaxError(f"{where}: {exc}") from None
    if predicts_mean(config):
        params = without_log_bias(params)
    return Datasets(scenes, regions, windows, validity, params, patch, targets)


def predicts_mean(config: dict[str, Any]) -> bool:
    """Whether the trained model predicts the log of the local MEAN (so :func:`denormalize` must add no log
    bias): trained on the speckle-free target, or with the Gamma likelihood, whose minimiser is the log of
    the mean; the MSE on a speckled target (input, other_look) gives the mean of the logs instead."""
    return config["train"]["target"] == "clean" or config["loss"]["kind"] == "log_gamma"


def train_patches_per_epoch(data_cfg: dict[str, Any], n_grid: int) -> int:
    """Patches in one training epoch: ``data.patches_per_epoch`` (grid: at most the grid), default the grid's size."""
    limit = data_cfg["patches_per_epoch"]
    if limit is None:
        return n_grid
    return limit if data_cfg["sampling"] == "random" else min(limit, n_grid)


def make_loaders(datasets: Datasets, config: dict[str, Any],
                 shard: tuple[int, int] = (0, 1)) -> dict[str, PatchLoader]:
    """Train (``data.sampling``: the shuffled grid or random windows, drop_last) and val/test (fixed
    windows in order, the last batch padded to full size) loaders; ``shard=(process index, process
    count)`` gives each host its rows of every global batch."""
    data_cfg, batch, seed = config["data"], config["train"]["batch_size"], config["train"]["seed"]
    common = {"workers": data_cfg["workers"], "prefetch": data_cfg["prefetch"], "seed": seed}
    grid = datasets.windows["train"]
    per_epoch = train_patches_per_epoch(data_cfg, len(grid))
    if data_cfg["sampling"] == "random":
        train_regions, validity = datasets.regions["train"], datasets.validity

        def train_windows(epoch: int) -> np.ndarray:
            return random_windows(train_regions, datasets.patch_size, per_epoch, validity,
                                  data_cfg["min_valid_fraction"], np.random.default_rng([seed, epoch, 11]),
                                  block=data_cfg["shuffle_block"])
    else:
        def train_windows(epoch: int) -> np.ndarray:
            return grid

    def read(pad: bool) -> ReadPatches:
        return ReadPatches(datasets.scenes, datasets.patch_size, datasets.preprocessing_params, shard=shard,
                           pad_to=batch if pad else None, targets=datasets.targets)

    loaders = {"train": PatchLoader(train_windows, per_epoch, read(False), batch,
                                    shuffle=data_cfg["sampling"] == "grid", drop_last=True,
                                    shuffle_block=data_cfg["shuffle_block"], **common)}
    for split in ("val", "test"):
        fixed = datasets.windows[split]
        loaders[split] = PatchLoader(lambda epoch, w=fixed: w, len(fixed), read(True), batch, shuffle=False,
                                     drop_last=False, **common)
    return loaders
