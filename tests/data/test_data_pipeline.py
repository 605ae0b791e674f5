"""From config to streamed datasets and loaders (sar_jax.data.pipeline, sampling, grain_pipeline)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sar_jax.core.config import load_config
from sar_jax.core.errors import SarJaxError
from sar_jax.data.patches import split_regions
from sar_jax.data.pipeline import build_datasets, make_loaders
from sar_jax.data.preprocess import fit_preprocessing
from sar_jax.data.sampling import ValidityIndex, block_shuffled, fit_sample, random_windows
from sar_jax.data.synthetic import synthetic_scenes

TINY = ["data.num_scenes=5", "data.scene_size=64", "data.patch_size=32", "data.stride=null",
        "train.batch_size=2", "train.seed=1", "data.prefetch=0"]


def _check_patches(ds, counts, patch):
    for split, n in zip(("train", "val", "test"), counts):
        arr = ds.patches(split)
        assert arr.shape == (n, patch, patch, 1), (split, arr.shape)
        assert arr.dtype == np.float32
        assert arr.min() >= 0.0 and arr.max() <= 1.0
        assert arr.std() > 0.05


def test_tiny_synthetic_config():
    config, _ = load_config("baseline", TINY)
    ds = build_datasets(config)
    # 5 scenes -> 3 train, 1 val, 1 test; each 64x64 scene gives 2x2 patches of 32
    _check_patches(ds, (12, 4, 4), 32)
    assert ds.sources == [f"synthetic:1:{i}" for i in range(5)]
    train = ds.patches("train")
    assert train.min() == 0.0 and train.max() == 1.0  # the train clip range is reached
    params = ds.preprocessing_params
    assert params["mode"] == "intensity" and params["vmin"] < params["vmax"]
    # a smaller stride gives overlapping patches: 3x3 per scene
    _check_patches(build_datasets(load_config("baseline", TINY + ["data.stride=16"])[0]), (27, 9, 9), 32)
    np.testing.assert_array_equal(build_datasets(config).patches("train"), train)  # deterministic

    loaders = make_loaders(ds, config)
    assert len(loaders["train"]) == 6 and len(loaders["val"]) == 2 and len(loaders["test"]) == 2
    epoch1 = list(loaders["train"].epoch(1))
    assert all(b.shape == (2, 32, 32, 1) and b.dtype == np.float32 for b in epoch1)
    np.testing.assert_array_equal(np.concatenate(list(loaders["val"].epoch(0))), ds.patches("val"))
    # one epoch is a permutation of the grid, seeded per epoch
    got = np.sort(np.concatenate(epoch1).reshape(12, -1).sum(1))
    np.testing.assert_allclose(got, np.sort(train.reshape(12, -1).sum(1)), rtol=1e-6)
    again = list(make_loaders(build_datasets(config), config)["train"].epoch(1))
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(epoch1))
    assert not np.array_equal(np.concatenate(list(loaders["train"].epoch(2))), np.concatenate(epoch1))


def test_random_sampling_and_bounded_eval_sets():
    config, _ = load_config("baseline", TINY + ["data.sampling=random", "data.patches_per_epoch=7",
                                                "data.eval_patches=3"])
    ds = build_datasets(config)
    assert len(ds.windows["val"]) == 3 and len(ds.windows["test"]) == 3  # of 4 grid patches each
    assert set(map(tuple, ds.windows["val"])) < set(map(tuple, build_datasets(load_config(
        "baseline", TINY)[0]).windows["val"]))
    loaders = make_loaders(ds, config)
    assert len(loaders["train"]) == 3 and loaders["val"].valid_counts() == [2, 1]
    e1, e2 = (np.concatenate(list(loaders["train"].epoch(e))) for e in (1, 2))
    assert e1.shape == (6, 32, 32, 1) and not np.array_equal(e1, e2)
    np.testing.assert_array_equal(np.concatenate(list(make_loaders(ds, config)["train"].epoch(1))), e1)
    rows = [loaders["train"].windows(e)[:, 1:] for e in (1, 2, 3)]
    assert any((r % 32).any() for r in rows)  # any pixel offset, not only the grid


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
    total = sum(len(ds.windows[s]) for s in ("train", "val", "test"))
    assert total == 4 + 6 + 6  # whole scenes per split (3 files)
    for split in ("train", "val", "test"):
        arr = ds.patches(split)
        assert len(arr) in (4, 6) and arr.shape[1:] == (32, 32, 1) and arr.dtype == np.float32
        assert 0.0 <= arr.min() and arr.max() <= 1.0


def test_data_folder_with_an_image_smaller_than_a_patch(tmp_path):
    folder = _png_folder(tmp_path, [(64, 64), (64, 64), (20, 64)])
    config, _ = load_config("baseline", ["data.patch_size=32"], data_path=str(folder))
    with pytest.raises(SarJaxError, match=r"scene_2\.png: image 20x64 is smaller than data\.patch_size = 32"):
        build_datasets(config)


def test_constant_training_split_is_refused(tmp_path):
    Image.fromarray(np.full((64, 200), 7, np.uint8)).save(tmp_path / "flat.png")
    config, _ = load_config("baseline", ["data.patch_size=32"], data_path=str(tmp_path / "flat.png"))
    with pytest.raises(SarJaxError, match="constant"):
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
    _check_patches(ds, (47, 9, 9), 128)
    assert ds.preprocessing_params["mode"] == "log8"
    with pytest.raises(SarJaxError, match="too small to split"):  # scene b is 760 < 3 x 256 wide
        build_datasets(load_config("baseline", data_path=str(shared_sar_dir))[0])


# ---------------------------------------------------------------------- no-data, fit, splits, shards


def _grd_like(tmp_path, name="grd.npy", shape=(96, 400), seed=0):
    """A uint16 amplitude scene with GRD-like zero no-data margins: 19 rows on top, a slanted swath edge on
    the left (37 px wide at the top, 1 px more every 3 rows) and a slanted corner bottom right."""
    rng = np.random.default_rng(seed)
    dn = rng.integers(50, 4000, shape).astype(np.uint16)
    dn[:19] = 0
    for r in range(shape[0]):
        dn[r, :37 + r // 3] = 0
        dn[r, shape[1] - max(0, r - shape[0] // 2) // 2:] = 0
    np.save(tmp_path / name, dn)
    return dn


@pytest.mark.parametrize("sampling", ["grid", "random"])
def test_nodata_margins_are_never_sampled(tmp_path, sampling):
    dn = _grd_like(tmp_path)
    overrides = ["data.patch_size=16", "data.stride=4", "train.batch_size=4", "data.prefetch=0",
                 f"data.sampling={sampling}", "data.patches_per_epoch=200"]
    config, _ = load_config("baseline", overrides, data_path=str(tmp_path / "grd.npy"))
    ds = build_datasets(config)
    loaders = make_loaders(ds, config)
    windows = np.concatenate([loaders["train"].windows(1), loaders["train"].windows(2), ds.windows["val"],
                              ds.windows["test"]])
    assert len(windows) > 400
    valid = dn > 0
    assert all(valid[r:r + 16, c:c + 16].all() for _, r, c in windows)
    assert min(np.concatenate(list(loaders["train"].epoch(1))).reshape(-1, 256).min(1)) >= 0.0
    # with a lower bar, windows reaching into the margins are indexed: the check above can fail
    loose, _ = load_config("baseline", overrides + ["data.min_valid_fraction=0.5"], data_path=str(tmp_path / "grd.npy"))
    wider = build_datasets(loose).windows["train"]
    assert len(wider) > len(ds.windows["train"])
    assert not all(valid[r:r + 16, c:c + 16].all() for _, r, c in wider)


def test_sample_fitted_percentiles_equal_the_exact_ones_on_small_data():
    config, _ = load_config("baseline", TINY)
    d, seed = config["data"], 1
    scenes = synthetic_scenes(d["num_scenes"], d["scene_size"], d["looks"], seed)
    regions = split_regions([s.shape for s in scenes], 32, d["val_fraction"], d["test_fraction"], seed)
    whole = [scenes[r.scene][r.r0:r.r1, r.c0:r.c1] for r in regions["train"]]
    exact = fit_preprocessing(whole, "intensity", d["percentiles"], d["floor"])
    assert build_datasets(config).preprocessing_params == exact  # 3 x 64 x 64 pixels < data.fit_pixels
    # a bound below the split's size: the fit is made on seeded windows of at most that many pixels
    bounded = build_datasets(load_config("baseline", TINY + ["data.fit_pixels=6000"])[0])
    images, valid = fit_sample(bounded.scenes, bounded.regions["train"], 6000, seed)
    assert 4000 <= sum(i.size for i in images) <= 6000 and all(i.shape[0] >= 16 for i in images)
    assert bounded.preprocessing_params == fit_preprocessing(images, "intensity", d["percentiles"], d["floor"], valid)
    assert bounded.preprocessing_params != exact
    other, _ = fit_sample(bounded.scenes, bounded.regions["train"], 6000, seed + 1)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(images, other))


@pytest.mark.parametrize("sampling", ["grid", "random"])
def test_streamed_splits_are_disjoint_at_the_pixel_level(tmp_path, sampling):
    for k in range(2):  # two scenes: every scene is cut into train | val | test blocks
        _grd_like(tmp_path, f"s{k}.npy", shape=((160, 320), (352, 256))[k], seed=k)  # cut along columns, rows
    config, _ = load_config("baseline", ["data.patch_size=16", "data.stride=8", "train.batch_size=4",
                                         "data.min_valid_fraction=0.3", f"data.sampling={sampling}",
                                         "data.patches_per_epoch=300"], data_path=str(tmp_path))
    ds = build_datasets(config)
    loaders = make_loaders(ds, config)
    covered = {s: [np.zeros((sc.height, sc.width), bool) for sc in ds.scenes] for s in ("train", "val", "test")}
    train = np.concatenate([loaders["train"].windows(e) for e in (1, 2, 3)])
    for split, windows in (("train", train), ("val", ds.windows["val"]), ("test", ds.windows["test"])):
        assert len(windows)
        for s, r, c in windows:
            covered[split][s][r:r + 16, c:c + 16] = True
    for k in range(2):
        t, v, e = (covered[s][k] for s in ("train", "val", "test"))
        assert t.any() and v.any() and e.any()
        assert not (t & v).any() and not (t & e).any() and not (v & e).any()


def test_process_shards_cover_each_global_batch_once():
    config, _ = load_config("baseline", TINY + ["train.batch_size=6", "data.stride=16"])
    ds = build_datasets(config)
    whole = {s: list(loader.epoch(3)) for s, loader in make_loaders(ds, config).items()}
    shards = [{s: list(loader.epoch(3)) for s, loader in make_loaders(ds, config, shard=(i, 3)).items()}
              for i in range(3)]
    for split in ("train", "val", "test"):
        assert len(whole[split]) >= 2
        for b, batch in enumerate(whole[split]):
            parts = [shard[split][b] for shard in shards]
            assert all(p.shape[0] == 2 for p in parts)  # each process reads only its 6 / 3 rows
            np.testing.assert_array_equal(np.concatenate(parts), batch)


def test_worker_processes_give_the_in_process_batches():
    config, _ = load_config("baseline", TINY + ["data.prefetch=2"])
    ds = build_datasets(config)
    inline = make_loaders(ds, config)
    config["data"]["workers"] = 2
    workers = make_loaders(ds, config)
    a, b = list(inline["train"].epoch(4)), list(workers["train"].epoch(4))  # batches alternate between workers
    assert len(a) == len(b) == len(inline["train"])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_block_shuffle_is_a_permutation_square_by_square():
    rng = np.random.default_rng(0)
    grid = np.array([(s, r, c) for s in range(3) for r in range(0, 1024, 64) for c in range(0, 1024, 64)], np.int64)
    order = block_shuffled(grid, 256, np.random.default_rng(1))
    assert sorted(map(tuple, order)) == sorted(map(tuple, grid))  # every window once
    squares = [tuple(w) for w in np.stack([order[:, 0], order[:, 1] // 256, order[:, 2] // 256], 1)]
    runs = [squares[0]] + [b for a, b in zip(squares, squares[1:]) if a != b]
    assert len(runs) == len(set(runs)) == 3 * 16  # each square's 16 windows come together, once
    assert runs != sorted(runs)  # the squares in random order ...
    first = order[:16, 1:].tolist()
    assert first != sorted(first)  # ... and the windows inside a square too
    again = block_shuffled(grid, 256, np.random.default_rng(1))
    np.testing.assert_array_equal(again, order)  # seeded
    assert not np.array_equal(block_shuffled(grid, 256, np.random.default_rng(2)), order)
    randoms = rng.integers(0, 1000, (500, 3))
    assert sorted(map(tuple, block_shuffled(randoms, 300, rng))) == sorted(map(tuple, randoms))


@pytest.mark.parametrize("sampling", ["grid", "random"])
def test_block_shuffled_epochs_read_one_square_after_another(sampling):
    extra = ["data.stride=8", "data.scene_size=128", "data.shuffle_block=64", "train.batch_size=4",
             f"data.sampling={sampling}", "data.patches_per_epoch=200"]
    config, _ = load_config("baseline", TINY + extra)
    ds = build_datasets(config)
    loader = make_loaders(ds, config)["train"]
    seed = int(np.random.SeedSequence([1, 1]).generate_state(1)[0])
    order = block_shuffled(loader.windows(1), 64, np.random.default_rng(seed))
    batches = list(loader.epoch(1))
    read = make_loaders(ds, config)["val"].read
    expected = [read(order[k * 4:(k + 1) * 4])[:4] for k in range(len(batches))]
    for got, want in zip(batches, expected):
        np.testing.assert_array_equal(got, want)
    squares = np.stack([order[:, 0], order[:, 1] // 64, order[:, 2] // 64], 1)[:len(batches) * 4]
    changes = int((np.diff(squares, axis=0) != 0).any(1).sum())
    assert changes + 1 == len(np.unique(squares, axis=0)) > 4  # one run per square
    with pytest.raises(SarJaxError, match="data.shuffle_block"):
        load_config("baseline", TINY + ["data.shuffle_block=8"])


def test_clustered_random_windows_are_uniform_and_come_square_by_square():
    from sar_jax.data.patches import Region
    from sar_jax.data.sources import ArrayScene

    scenes = [ArrayScene(f"s{k}", np.ones((300, 200), np.float32)) for k in range(2)]
    regions = [Region(0, 10, 290, 0, 200), Region(1, 0, 100, 50, 150)]
    validity = ValidityIndex(scenes, 32)
    rng = np.random.default_rng(0)
    flat = random_windows(regions, 32, 40_000, validity, 1.0, rng)
    clustered = random_windows(regions, 32, 40_000, validity, 1.0, rng, block=64)
    for w in (flat, clustered):
        assert len(w) == 40_000
        for reg in regions:  # every window inside its region
            mine = w[w[:, 0] == reg.scene]
            assert mine[:, 1].min() >= reg.r0 and mine[:, 1].max() <= reg.r1 - 32
            assert mine[:, 2].min() >= reg.c0 and mine[:, 2].max() <= reg.c1 - 32
        # uniform over the regions' top-left positions: each scene's share is its share of positions
        share = (249 * 169) / (249 * 169 + 69 * 69)  # rows 10..258 x cols 0..168 vs 69 x 69
        assert abs((w[:, 0] == 0).mean() - share) < 0.02
        rows = w[w[:, 0] == 0, 1]
        hist = np.bincount((rows - 10) // 83)  # 3 equal thirds of the 249 rows
        assert len(hist) == 3 and hist.min() > 0.9 * hist.mean()
        assert abs(rows.mean() - 134) < 3 and abs(rows.std() - np.sqrt((249 ** 2 - 1) / 12)) < 3
    # clusters: 4 windows (= (64 // 32)**2) at a time share one 64 x 64 square of top-left corners
    squares = np.stack([clustered[:, 0], clustered[:, 1] // 64, clustered[:, 2] // 64], 1)
    same = (squares[:-1] == squares[1:]).all(1)
    assert same.reshape(-1)[: 4 * 9999].reshape(-1, 4)[:, :3].all()
    flat_squares = np.stack([flat[:, 0], flat[:, 1] // 64, flat[:, 2] // 64], 1)
    assert (flat_squares[:-1] == flat_squares[1:]).all(1).mean() < 0.2
