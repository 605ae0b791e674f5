"""python -m benchmarks.despeckle at tiny size: every method scored against the truth at L = 1 and 4, the
noisy input's PSNR as computed directly, a filter above the noisy input, the real-scene checks, the files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from benchmarks import despeckle
from sar_jax.data.preprocess import normalize
from sar_jax.data.synthetic import synthetic_scenes_with_reflectivity
from sar_jax.inference.run import load_run

TINY = ["model.unet_features=4", "model.unet_depth=2", "model.base_channels=4", "data.patch_size=32",
        "data.stride=16", "data.num_scenes=5", "data.scene_size=64", "train.epochs=1", "train.batch_size=4",
        "data.patches_per_epoch=8", "data.eval_patches=4", "logging.progress=false"]


def test_filter_windows_are_picked_by_validation_psnr():
    noisy, truth = synthetic_scenes_with_reflectivity(1, 64, 1.0, despeckle.VAL_SEED)[0]
    ref = {"mode": "intensity", "vmin": -30.0, "vmax": 5.0, "floor": 1e-6}
    chosen = despeckle.best_windows(1.0, (3, 7), (noisy, truth), ref)
    assert sorted(chosen) == sorted(despeckle.FILTERS)
    for c in chosen.values():
        assert c["window"] == max(c["val_psnr_db"], key=c["val_psnr_db"].get)
        assert set(c["val_psnr_db"]) == {3, 7}


@pytest.mark.slow
def test_tiny_study_scores_every_method_and_writes_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(despeckle, "QUICK", dataclasses.replace(despeckle.QUICK, test_scenes=1, scene_size=64,
                                                                windows=(3, 5)))
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    level = np.where(np.arange(96)[None, :] < 48, 40.0, 120.0) * np.sqrt(rng.gamma(1.0, 1.0, (96, 96)))
    Image.fromarray(np.clip(level, 1, 255).astype(np.uint8)).save(real / "scene.png")
    out = tmp_path / "study"
    argv = ["--quick", "--data", str(real), "--out", str(out)] + [a for o in TINY for a in ("--set", o)]
    assert despeckle.main(argv) == 0

    for name in ("despeckle.json", "despeckle.md", "despeckle.png", "despeckle-panel.png", "despeckle-ratio.png"):
        assert (out / name).stat().st_size > 0
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "despeckle.json").read_text())
    labels = [m.label for m in despeckle.QUICK.models]
    assert sorted(result["models"]) == sorted(m.name for m in despeckle.QUICK.models)
    for s in result["synthetic"]:
        looks = s["looks"]
        methods = [r["method"] for r in s["rows"]]
        windows = {n: c["window"] for n, c in s["filter_windows"].items()}
        assert methods == (["noisy input", "boxcar 5x5", "boxcar 7x7"]
                           + [f"{despeckle.FILTER_LABELS[n]} {w}x{w}" for n, w in windows.items()] + labels)
        for r in s["rows"]:
            assert set(despeckle.METRICS) <= set(r)
        # the noisy input's PSNR, computed here directly in the reference checkpoint's dB domain
        noisy, truth = synthetic_scenes_with_reflectivity(1, 64, looks, despeckle.TEST_SEED)[0]
        ref = load_run(result["models"][s["reference_model"]]["run_dir"]).preprocessing_params
        mse = np.mean((normalize(noisy, ref) - normalize(truth, ref)) ** 2)
        row = s["rows"][0]
        assert row["psnr_db"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
        assert row["mean_ratio"] == pytest.approx(noisy.sum() / truth.sum(), rel=1e-5)
        assert s["clipped_truth"]["mean_ratio"] <= 1 + 1e-6  # clipping to [vmin, vmax] loses bright targets
        assert row["epi"] < 0.9  # speckle buries the edges (point targets keep some Laplacian correlation)
        if looks == 1.0:
            best = max(r["psnr_db"] for r in s["rows"] if r["kind"] == "filter")
            assert best > row["psnr_db"] + 3
            assert row["enl_flat"] is None or row["enl_flat"] == pytest.approx(1.0, abs=0.5)
    (scene,) = result["real"]
    assert scene["scene"] == "scene.png" and scene["units_read_as"] == "amplitude"
    box = next(r for r in scene["rows"] if r["method"] == "boxcar 7x7")
    assert box["mean_ratio"] == pytest.approx(1.0, abs=0.01)  # the boxcar keeps the mean
    assert box["enl"] > 5 * scene["enl_input"]
    assert "## Synthetic, L = 1" in (out / "despeckle.md").read_text()
    # the runs are recognised as finished: a second study would reuse them
    for spec in despeckle.QUICK.models:
        assert despeckle.finished(out / spec.name, despeckle.run_config(spec, despeckle.QUICK, TINY))
