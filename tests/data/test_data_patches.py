"""Patch extraction and splitting (sar_jax.data.patches)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sar_jax.core.errors import SarJaxError
from sar_jax.data.patches import Region, extract_patches, split_by_scene, split_regions
from sar_jax.data.readers import list_sar_files, open_raster


def test_extract_patches_counts_and_content():
    image = np.arange(10 * 13, dtype=np.float64).reshape(10, 13)
    full = Region(0, 0, 10, 0, 13)
    p = extract_patches(image, full, 4, 4)
    assert p.shape == (2 * 3, 4, 4) and p.dtype == np.float32  # rows 0,4; cols 0,4,8 (ragged edge dropped)
    order = [(r, c) for r in (0, 4) for c in (0, 4, 8)]
    for k, (r, c) in enumerate(order):
        np.testing.assert_array_equal(p[k], image[r:r + 4, c:c + 4])
    assert extract_patches(image, full, 4, 2).shape == (4 * 5, 4, 4)
    assert extract_patches(image, full, 10, 1).shape == (4, 10, 10)
    # windows stay inside the region
    sub = Region(0, 2, 10, 3, 13)
    q = extract_patches(image, sub, 4, 3)
    assert q.shape == (2 * 3, 4, 4)
    np.testing.assert_array_equal(q[0], image[2:6, 3:7])
    np.testing.assert_array_equal(q[-1], image[5:9, 9:13])
    assert q.min() >= image[2, 3] and q.max() <= image[9, 12]
    assert extract_patches(image, Region(0, 0, 3, 0, 13), 4, 4).shape == (0, 4, 4)


@pytest.mark.parametrize("n", [3, 4, 5, 7, 10, 24, 50])
@pytest.mark.parametrize("val, test", [(0.15, 0.15), (0.2, 0.2), (0.01, 0.3), (0.45, 0.3)])
def test_split_by_scene_disjoint_covering_nonempty(n, val, test):
    split = split_by_scene(n, val, test, seed=0)
    assert set(split) == {"train", "val", "test"}
    ids = split["train"] + split["val"] + split["test"]
    assert sorted(ids) == list(range(n))  # covering, and no scene twice
    assert all(len(v) >= 1 for v in split.values())
    assert split == split_by_scene(n, val, test, seed=0)


def test_split_by_scene_sizes_and_seed():
    split = split_by_scene(20, 0.15, 0.15, seed=0)
    assert (len(split["val"]), len(split["test"]), len(split["train"])) == (3, 3, 14)
    assert any(split_by_scene(20, 0.15, 0.15, seed=s)["val"] != split["val"] for s in range(1, 4))
    with pytest.raises(SarJaxError, match="at least 3 scenes"):
        split_by_scene(2, 0.15, 0.15, seed=0)


def _masks(regions, shapes):
    masks = {s: [np.zeros(shape, int) for shape in shapes] for s in regions}
    for split, rs in regions.items():
        for r in rs:
            masks[split][r.scene][r.r0:r.r1, r.c0:r.c1] += 1
    return masks


def _check_block_split(shapes, patch, val, test):
    regions = split_regions(shapes, patch, val, test, seed=0)
    masks = _masks(regions, shapes)
    for i, shape in enumerate(shapes):
        count = sum(masks[s][i] for s in regions)
        assert count.max() == 1, "a pixel belongs to two splits (or a region repeats)"
        assert count.min() == 1, "block split should cover the scene"
        for split in regions:
            assert masks[split][i].sum() > 0
    for split, rs in regions.items():
        assert len(rs) == len(shapes)
        for r in rs:
            assert r.r1 - r.r0 >= patch and r.c1 - r.c0 >= patch
            assert 0 <= r.r0 < r.r1 <= shapes[r.scene][0] and 0 <= r.c0 < r.c1 <= shapes[r.scene][1]
    return regions


@pytest.mark.parametrize("shape", [(100, 400), (400, 100), (256, 256), (97, 333)])
def test_single_scene_block_split_is_disjoint(shape):
    regions = _check_block_split([shape], 32, 0.15, 0.15)
    long_axis = 0 if shape[0] >= shape[1] else 1
    (train,), (val,) = regions["train"], regions["val"]
    # cut along the longer side: train first, then val, then test
    if long_axis == 0:
        assert (train.c0, train.c1) == (0, shape[1]) and train.r1 == val.r0
    else:
        assert (train.r0, train.r1) == (0, shape[0]) and train.c1 == val.c0


@settings(max_examples=60, deadline=None)
@given(h=st.integers(16, 300), w=st.integers(16, 300), patch=st.sampled_from([16, 32, 48]),
       val=st.floats(0.01, 0.45), test=st.floats(0.01, 0.3), n=st.integers(1, 2))
def test_block_split_property(h, w, patch, val, test, n):
    shapes = [(h, w), (w, h)][:n]
    try:
        regions = _check_block_split(shapes, patch, val, test)
    except SarJaxError as exc:
        assert "too small" in str(exc)
        length = max(h, w)
        n_val = max(patch, round(val * length))
        n_test = max(patch, round(test * length))
        assert min(h, w) < patch or length - n_val - n_test < patch
        return
    patches = {s: sum(len(extract_patches(np.zeros(shapes[r.scene]), r, patch, patch)) for r in rs)
               for s, rs in regions.items()}
    assert all(v >= n for v in patches.values())


def test_image_smaller_than_a_patch_is_refused():
    with pytest.raises(SarJaxError, match="too small"):
        split_regions([(100, 20)], 32, 0.15, 0.15, seed=0)
    with pytest.raises(SarJaxError, match="too small"):
        split_regions([(64, 64)], 32, 0.15, 0.15, seed=0)  # cannot hold 3 blocks of 32


def test_three_scenes_split_whole_scenes():
    shapes = [(64, 64), (80, 96), (64, 128), (70, 70)]
    regions = split_regions(shapes, 32, 0.25, 0.25, seed=1)
    scenes = [r.scene for rs in regions.values() for r in rs]
    assert sorted(scenes) == [0, 1, 2, 3]
    for rs in regions.values():
        for r in rs:
            assert (r.r0, r.r1, r.c0, r.c1) == (0, shapes[r.scene][0], 0, shapes[r.scene][1])


def test_real_scene_folder_split_is_disjoint(shared_sar_dir):
    files = list_sar_files(shared_sar_dir)
    assert len(files) == 2
    shapes = [(r.height, r.width) for r in map(open_raster, files)]
    regions = _check_block_split(shapes, 128, 0.15, 0.15)
    # 605x1600 is cut along its width, 664x760 along its width too
    assert all(r.r0 == 0 and r.r1 == shapes[r.scene][0] for rs in regions.values() for r in rs)
