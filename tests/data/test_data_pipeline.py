"""From config to datasets and loaders (sar_jax.data.pipeline)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sar_jax.core.config import load_config
from sar_jax.core.errors import SarJaxError
from sar_jax.data.pipeline import build_datasets, make_loaders

TINY = ["data.num_scenes=5", "data.scene_size=64", "data.patch_size=32", "data.stride=null",
        "train.batch_size=2", "train.seed=1", "data.prefetch=0"]


def _check_arrays(ds, counts, patch):
    for split, n in zip(("train", "val", "test"), counts):
        arr = ds.split(split)
        assert arr.shape == (n, patch, patch, 1), (split, arr.shape)
        assert arr.dtype == np.float32
        assert arr.min() >= 0.0 and arr.max() <= 1.0
        assert arr.std() > 0.05


def test_tiny_synthetic_config():
    config, _ = load_config("baseline", TINY)
    ds = build_datasets(config)
    # 5 scenes -> 3 train, 1 val, 1 test; each 64x64 scene gives 2x2 patches of 32
    _check_arrays(ds, (12, 4, 4), 32)
    assert ds.sources == [f"synthetic:1:{i}" for i in range(5)]
    assert ds.train.min() == 0.0 and ds.train.max() == 1.0  # the train clip range is reached
    params = ds.preprocessing_params
    assert params["mode"] == "intensity" and params["vmin"] < params["vmax"]
    # a smaller stride gives overlapping patches: 3x3 per scene
    ds2 = build_datasets(load_config("baseline", TINY + ["data.stride=16"])[0])
    _check_arrays(ds2, (27, 9, 9), 32)
    np.testing.assert_array_equal(build_datasets(config).train, ds.train)  # deterministic

    loaders = make_loaders(ds, config)
    assert len(loaders["train"]) == 6 and len(loaders["val"]) == 2 and len(loaders["test"]) == 2
    train_batches = list(loaders["train"].epoch(0))
    assert all(b.shape == (2, 32, 32, 1) and b.dtype == np.float32 for b in train_batches)
    np.testing.assert_array_equal(np.concatenate(list(loaders["val"].epoch(0))), ds.val)
    got = np.sort(np.concatenate(train_batches).reshape(12, -1).sum(1))
    np.testing.assert_allclose(got, np.sort(ds.train.reshape(12, -1).sum(1)), rtol=1e-6)


def test_batch_larger_than_training_split_is_refused():
    config, _ = load_config("baseline", TINY + ["train.batch_size=13"])
    with pytest.raises(SarJaxError, match=r"train\.batch_size = 13 is larger than the training split \(12"):
        build_datasets(config)


def _png_folder(tmp_path, shapes):
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(shapes):
        arr = np.clip(rng.normal(60 + 40 * k, 30, (h, w)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"scene_{k}.png")
    return tmp_path


def test_data_folder_of_pngs(tmp_path):
    folder = _png_folder(tmp_path, [(64, 64), (64, 96), (96, 64)])
    config, _ = load_config("baseline", ["data.patch_size=32", "train.batch_size=2", "data.prefetch=0"],
                            data_path=str(folder))
    assert config["data"]["source"] == "files"
    ds = build_datasets(config)
    assert ds.preprocessing_params["mode"] == "log8"
    assert sorted(ds.sources) == sorted(str(p) for p in folder.glob("*.png"))
    total = sum(len(ds.split(s)) for s in ("train", "val", "test"))
    assert total == 4 + 6 + 6  # whole scenes per split (3 files)
    for split in ("train", "val", "test"):
        arr = ds.split(split)
        assert len(arr) in (4, 6) and arr.shape[1:] == (32, 32, 1) and arr.dtype == np.float32
        assert 0.0 <= arr.min() and arr.max() <= 1.0


def test_data_folder_with_an_image_smaller_than_a_patch(tmp_path):
    folder = _png_folder(tmp_path, [(64, 64), (64, 64), (20, 64)])
    config, _ = load_config("baseline", ["data.patch_size=32"], data_path=str(folder))
    with pytest.raises(SarJaxError, match=r"scene_2\.png: image 20x64 is smaller than data\.patch_size = 32"):
        build_datasets(config)


def test_constant_file_is_refused(tmp_path):
    Image.fromarray(np.full((64, 200), 7, np.uint8)).save(tmp_path / "flat.png")
    config, _ = load_config("baseline", ["data.patch_size=32"], data_path=str(tmp_path / "flat.png"))
    with pytest.raises(SarJaxError, match="constant image"):
        build_datasets(config)


def test_mixed_units_are_refused(tmp_path):
    _png_folder(tmp_path, [(64, 64)])  # uint8: log8
    np.save(tmp_path / "amp.npy", np.random.default_rng(0).integers(1, 900, (64, 64)).astype(np.uint16))  # amplitude
    config, _ = load_config("baseline", ["data.patch_size=32"], data_path=str(tmp_path))
    with pytest.raises(SarJaxError, match="mix units"):
        build_datasets(config)


def test_real_scene_folder(shared_sar_dir):
    config, _ = load_config("baseline", ["data.patch_size=128", "train.batch_size=4"],
                            data_path=str(shared_sar_dir))
    ds = build_datasets(config)
    # scene a 605x1600: blocks 1120 | 240 | 240 wide; scene b 664x760: 504 | 128 | 128
    # stride 128 -> train 4*8 + 5*3, val 4*1 + 5*1, test 4*1 + 5*1
    _check_arrays(ds, (47, 9, 9), 128)
    assert ds.preprocessing_params["mode"] == "log8"
    with pytest.raises(SarJaxError, match="too small to split"):  # scene b is 760 < 3 x 256 wide
        build_datasets(load_config("baseline", data_path=str(shared_sar_dir))[0])
