"""python -m sar_jax.sweep: a tiny grid trained, scored, tabulated; re-runs skip; failures go on."""

from __future__ import annotations

import json

import pytest

from sar_jax.core.cli import process_share
from sar_jax.core.errors import SarJaxError
from sar_jax.training import sweep


def test_grid_parsing_and_names():
    grid = sweep.parse_grid(["loss.ssim_weight=0,0.5", "data.source=synthetic"])
    assert grid == [("loss.ssim_weight", [0, 0.5]), ("data.source", ["synthetic"])]
    points = sweep.grid_points(grid)
    assert [sweep.run_name(p) for p in points] == ["loss.ssim_weight=0,data.source=synthetic",
                                                   "loss.ssim_weight=0.5,data.source=synthetic"]
    for bad in (["loss.ssim_weight"], ["loss.ssim_weight=0,"], ["a.b=1", "a.b=2"], []):
        with pytest.raises(SarJaxError):
            sweep.parse_grid(bad)
    zipped = sweep.parse_grid(["loss.ssim_weight=0,0.5,1", "loss.mse_weight=1,0.5,0"])
    assert sweep.grid_points(zipped, zipped=True) == [{"loss.ssim_weight": w, "loss.mse_weight": 1 - w}
                                                      for w in (0, 0.5, 1)]
    assert len(sweep.grid_points(zipped)) == 9
    with pytest.raises(SarJaxError, match="as many values"):
        sweep.grid_points(sweep.parse_grid(["a.b=1,2", "a.c=1"]), zipped=True)


def test_process_share_from_flags_and_slurm(monkeypatch):
    assert process_share(None, None) == (0, 1)
    assert process_share(3, 2) == (2, 3)
    with pytest.raises(SarJaxError, match="--process-id 3 of --num-processes 3"):
        process_share(3, 3)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert process_share(None, None) == (1, 2)


@pytest.mark.slow
def test_tiny_sweep_trains_scores_skips_and_reports_a_failure(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sw"
    # data.patch_size=64 passes validation but leaves 3 training patches for a batch of 4: that run fails
    argv = ["--config", "tiny", "--grid", "data.patch_size=32,64", "--grid", "loss.ssim_weight=0,1",
            "--set", "train.epochs=1", "--out", str(out)]
    assert sweep.main(argv) == 1
    text = capsys.readouterr().out
    assert text.count("error: data.patch_size=64") == 2 and "larger than the training split" in text
    rows = [json.loads((out / n / sweep.ROW_FILE).read_text())
            for n in ("data.patch_size=32,loss.ssim_weight=0", "data.patch_size=32,loss.ssim_weight=1")]
    for row in rows:
        assert row["best_epoch"] == 1 and 0 < row["psnr"] < 60 and 0 <= row["ssim"] <= 1
        assert row["enl_ratio"] is None or row["enl_ratio"] > 0
        assert 0 < row["psnr_vs_clean"] < 60  # synthetic data: scored against the known reflectivity
        # the int8 latent of the one 64x64 test scene, coded whole: 4x4x4 = 64 values DEFLATEd (at most
        # 16 bytes of framing) and a float32 scale and offset for each of the 4 bands
        assert 8 * (32 + 8) / 4096 < row["bpp"] <= 8 * (64 + 16 + 32) / 4096
    assert not (out / "sweep.json").exists()  # two runs failed: no table yet
    # the finished runs are skipped on a re-run; with the failing value dropped the table is written
    monkeypatch.setattr(sweep, "train_and_score", lambda *a: pytest.fail("a finished run was trained again"))
    assert sweep.main(argv[:2] + ["--grid", "data.patch_size=32", "--grid", "loss.ssim_weight=0,1"]
                      + argv[6:]) == 0
    table = json.loads((out / "sweep.json").read_text())
    assert [r["loss.ssim_weight"] for r in table["rows"]] == [0, 1]
    assert (out / "sweep.md").read_text().count("\n| 32 |") == 2
    assert (out / "sweep.png").stat().st_size > 10_000
