"""train.target: the training target read beside each window as a second channel (clean reflectivity,
another look, or same-named files under data.target_path), and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.core.config import load_config
from sar_jax.core.errors import SarJaxError
from sar_jax.data.pipeline import build_datasets, make_loaders
from sar_jax.data.preprocess import normalize
from sar_jax.data.synthetic import synthetic_scene_pair, synthetic_scenes_with_reflectivity

SEED = 0


def _config(*overrides: str) -> dict:
    return load_config("tiny", ["data.num_scenes=4", *overrides])[0]


def _windows(datasets, split: str = "train") -> list[tuple[int, int, int]]:
    return [tuple(w) for w in np.asarray(datasets.windows[split]).tolist()]


def test_clean_target_is_the_normalised_reflectivity_of_the_same_window():
    config = _config('train.target="clean"')
    datasets = build_datasets(config)
    batch = datasets.patches("train", 8, with_target=True)
    assert batch.shape == (8, 32, 32, 2)
    p, params = datasets.patch_size, datasets.preprocessing_params
    pairs = synthetic_scenes_with_reflectivity(4, 64, 4.0, SEED)
    for k, (scene, row, col) in enumerate(_windows(datasets)[:8]):
        speckled, refl = pairs[scene]
        np.testing.assert_array_equal(batch[k, ..., 0], normalize(speckled[row:row + p, col:col + p], params))
        np.testing.assert_array_equal(batch[k, ..., 1], normalize(refl[row:row + p, col:col + p], params))
    # the input alone without with_target, and the loaders' batches carry both channels
    assert datasets.patches("train", 2).shape[-1] == 1
    loaders = make_loaders(datasets, config)
    assert next(iter(loaders["train"].epoch(1))).shape[-1] == 2
    assert next(iter(loaders["val"].epoch(0))).shape[-1] == 2


def test_other_look_is_another_speckle_draw_of_the_same_reflectivity():
    datasets = build_datasets(_config('train.target="other_look"', "data.looks=1.0"))
    batch = datasets.patches("train", None, with_target=True)
    p, params = datasets.patch_size, datasets.preprocessing_params
    pairs = [synthetic_scene_pair((SEED, i), 64, 1.0) for i in range(4)]
    ratios, a_speckle, b_speckle = [], [], []
    for k, (scene, row, col) in enumerate(_windows(datasets)):
        look_a, look_b, refl = (arr[row:row + p, col:col + p] for arr in pairs[scene])
        np.testing.assert_array_equal(batch[k, ..., 0], normalize(look_a, params))
        np.testing.assert_array_equal(batch[k, ..., 1], normalize(look_b, params))
        ratios.append(look_b.mean() / look_a.mean())
        a_speckle.append((look_a / refl).ravel())
        b_speckle.append((look_b / refl).ravel())
    # the input is synthetic_scene's speckled scene (as with train.target input)
    np.testing.assert_array_equal(pairs[1][0], synthetic_scenes_with_reflectivity(4, 64, 1.0, SEED)[1][0])
    a, b = np.concatenate(a_speckle), np.concatenate(b_speckle)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.05)  # the same reflectivity
    assert a.mean() == pytest.approx(1.0, abs=0.03) and b.mean() == pytest.approx(1.0, abs=0.03)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05  # independent speckle
    assert not np.array_equal(batch[..., 0], batch[..., 1])


@pytest.fixture
def file_pair(tmp_path):
    """Two input scenes and same-named targets (their reflectivity), float32 intensity .npy files."""
    inputs, targets = tmp_path / "in", tmp_path / "target"
    inputs.mkdir()
    targets.mkdir()
    for i, (speckled, refl) in enumerate(synthetic_scenes_with_reflectivity(3, 64, 4.0, 7)):
        np.save(inputs / f"scene_{i}.npy", speckled)
        np.save(targets / f"scene_{i}.npy", refl)
    return inputs, targets


def _files_config(inputs, targets, target: str = "clean") -> dict:
    overrides = ['data.source="files"', f'data.path="{inputs}"', 'data.units="intensity"', f'train.target="{target}"']
    if targets is not None:
        overrides.append(f'data.target_path="{targets}"')
    return load_config("tiny", overrides)[0]


def test_files_with_target_path(file_pair):
    inputs, targets = file_pair
    datasets = build_datasets(_files_config(inputs, targets))
    assert [t.path for t in datasets.targets] == [str(targets / f"scene_{i}.npy") for i in range(3)]
    batch = datasets.patches("val", None, with_target=True)
    p, params = datasets.patch_size, datasets.preprocessing_params
    for k, (scene, row, col) in enumerate(_windows(datasets, "val")):
        refl = np.load(targets / f"scene_{scene}.npy")[row:row + p, col:col + p]
        np.testing.assert_array_equal(batch[k, ..., 1], normalize(refl, params))


def test_files_target_errors_name_the_file(file_pair):
    inputs, targets = file_pair
    (targets / "scene_1.npy").unlink()
    with pytest.raises(SarJaxError, match=r"no target for 1 input file\(s\), e\.g\. .*scene_1\.npy") as info:
        build_datasets(_files_config(inputs, targets))
    assert "\n" not in str(info.value)
    np.save(targets / "scene_1.npy", np.ones((64, 48), np.float32))
    with pytest.raises(SarJaxError, match=r"target .*scene_1\.npy: 64x48 intensity, but its input .*scene_1\.npy "
                                          r"is 64x64") as info:
        build_datasets(_files_config(inputs, targets))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("target", ["clean", "other_look"])
def test_validate_refuses_a_files_target_without_target_path(file_pair, target):
    inputs, _ = file_pair
    with pytest.raises(SarJaxError, match=f'train.target "{target}" on files needs data.target_path') as info:
        _files_config(inputs, None, target)
    assert "\n" not in str(info.value)
