"""Patch extraction and train/val/test splitting (by scene, or by disjoint spatial blocks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sar_jax.core.errors import SarJaxError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Region:
    """A rectangle ``[r0, r1) x [c0, c1)`` of scene ``scene`` assigned to one split."""

    scene: int
    r0: int
    r1: int
    c0: int
    c1: int


def extract_patches(image: np.ndarray, region: Region, patch: int, stride: int) -> np.ndarray:
    """All ``patch x patch`` windows of ``image`` inside ``region`` at ``stride`` -> (N, patch, patch)."""
    sub = image[region.r0:region.r1, region.c0:region.c1]
    h, w = sub.shape
    if h < patch or w < patch:
        return np.zeros((0, patch, patch), np.float32)
    rows = range(0, h - patch + 1, stride)
    cols = range(0, w - patch + 1, stride)
    return np.stack([sub[r:r + patch, c:c + patch] for r in rows for c in cols]).astype(np.float32)


def split_by_scene(n_scenes: int, val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, list[int]]:
    """Shuffle scene indices (seeded) and cut them into train/val/test, each non-empty."""
    if n_scenes < 3:
        raise SarJaxError(f"splitting by scene needs at least 3 scenes, got {n_scenes}")
    order = np.random.default_rng([seed, 7]).permutation(n_scenes).tolist()
    n_val = max(1, round(val_fraction * n_scenes))
    n_test = max(1, round(test_fraction * n_scenes))
    if n_val + n_test >= n_scenes:
        n_val, n_test = 1, 1
    return {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}


def split_regions(shapes: list[tuple[int, int]], patch: int, val_fraction: float,
                  test_fraction: float, seed: int) -> dict[str, list[Region]]:
    """Assign disjoint regions of the scenes to the splits.

    Three or more scenes: whole scenes per split. Fewer: each scene is cut along its
    longer side into three disjoint blocks (train | val | test), each at least one patch wide.
    """
    if len(shapes) >= 3:
        by_scene = split_by_scene(len(shapes), val_fraction, test_fraction, seed)
        return {s: [Region(i, 0, shapes[i][0], 0, shapes[i][1]) for i in sorted(idx)]
                for s, idx in by_scene.items()}
    out: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for i, (h, w) in enumerate(shapes):
        length = max(h, w)
        n_val = max(patch, int(round(val_fraction * length)))
        n_test = max(patch, int(round(test_fraction * length)))
        n_train = length - n_val - n_test
        if min(h, w) < patch or n_train < patch:
            raise SarJaxError(f"scene {i} of size {h}x{w} is too small to split into train/val/test"
                              f" blocks of at least {patch} px (data.patch_size); use a smaller"
                              " patch or more files")
        cuts = [0, n_train, n_train + n_val, length]
        for split, a, b in zip(SPLITS, cuts[:-1], cuts[1:]):
            out[split].append(Region(i, a, b, 0, w) if h >= w else Region(i, 0, h, a, b))
    return out
