"""python -m sar_jax.evaluate: report files and keys, JAX vs torch agreement, real scenes, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sar_jax.core.cli import run_main
from sar_jax.inference import evaluate

ROW_KEYS = {"name", "source", "mse", "psnr", "ssim", "ms_ssim", "enl_input", "enl_recon", "enl_ratio",
            "mean_ratio", "mean_ratio_uncorrected", "compression_ratio"}


@pytest.fixture(scope="module")
def synthetic_reports(intensity_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    for fw in ("jax", "torch"):
        assert run_main(evaluate.main, ["--checkpoint", str(intensity_run), "--framework", fw,
                                        "--out", str(out / fw)]) == 0
    return {fw: json.loads((out / fw / "report.json").read_text()) for fw in ("jax", "torch")}, out


def test_report_files_and_keys(synthetic_reports, capsys):
    reports, out = synthetic_reports
    for fw in ("jax", "torch"):
        assert {p.name for p in (out / fw).iterdir()} == {"report.json", "report.md", "panels.png"}
        assert (out / fw / "panels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        md = (out / fw / "report.md").read_text()
        assert "| images | n | MSE | PSNR (dB) | SSIM | MS-SSIM |" in md and "## Per image" in md
    r = reports["jax"]
    assert r["framework"] == "jax" and r["units"] == "intensity" and r["which"] == "best"
    assert r["num_images"] == len(r["per_image"]) > 0
    assert all(set(row) == ROW_KEYS for row in r["per_image"])
    assert set(r["average"]) == ROW_KEYS - {"name", "source"}
    # 32x32 float32 patches vs a 2x2x4 float16 latent
    assert r["compression_ratio"] == 128.0 and r["latent_shape"] == [2, 2, 4] and r["input_bits_per_pixel"] == 32
    assert r["ms_ssim_window"] is None and r["average"]["ms_ssim"] is None
    assert any("MS-SSIM is null" in n for n in r["notes"])
    avg = r["average"]
    assert avg["psnr"] > 5 and 0 <= avg["ssim"] <= 1 and avg["enl_input"] > 0 and avg["mean_ratio"] > 0
    assert r["preprocessing_params"]["mode"] == "intensity"


def test_jax_and_torch_evaluations_agree(synthetic_reports):
    reports, _ = synthetic_reports
    jx, th = reports["jax"], reports["torch"]
    assert abs(jx["average"]["psnr"] - th["average"]["psnr"]) < 0.01
    assert len(jx["per_image"]) == len(th["per_image"])
    for a, b in zip(jx["per_image"], th["per_image"]):
        assert a["name"] == b["name"]
        assert a["psnr"] == pytest.approx(b["psnr"], abs=0.01)
        assert a["ssim"] == pytest.approx(b["ssim"], abs=1e-3)
        assert a["mean_ratio"] == pytest.approx(b["mean_ratio"], rel=1e-3)
    assert th["ms_ssim_implementation"] == "pytorch_msssim.ms_ssim"


def test_real_scene_with_ms_ssim_and_torch_agreement(log8_run, shared_sar_dir, tmp_path, capsys):
    scene = str(shared_sar_dir / "real_sar_scene_b.png")
    reports = {}
    for fw in ("jax", "torch"):
        assert run_main(evaluate.main, ["--checkpoint", str(log8_run), "--data", scene, "--framework", fw,
                                        "--out", str(tmp_path / fw)]) == 0
        reports[fw] = json.loads((tmp_path / fw / "report.json").read_text())
    printed = capsys.readouterr().out
    assert "real_sar_scene_b.png" in printed and "PSNR (dB)" in printed
    jx, th = reports["jax"], reports["torch"]
    # 664 x 760 cut into 64 px patches: 10 x 11
    assert jx["num_images"] == 110 and jx["per_image"][1]["name"] == "real_sar_scene_b.png[0,64]"
    assert jx["units"] == "log8" and jx["input_bits_per_pixel"] == 8 and jx["ms_ssim_window"] == 3
    assert jx["compression_ratio"] == 64 * 64 * 8 / (4 * 4 * 4 * 16)
    assert abs(jx["average"]["psnr"] - th["average"]["psnr"]) < 0.01
    assert jx["average"]["ms_ssim"] == pytest.approx(th["average"]["ms_ssim"], abs=1e-4)


def test_data_uses_the_checkpoint_preprocessing(intensity_run, tmp_path):
    from sar_jax.training.checkpointing import read_metadata

    rng = np.random.default_rng(0)
    np.save(tmp_path / "scene.npy", (0.25 * rng.gamma(4, 0.25, (64, 96))).astype(np.float32))
    assert run_main(evaluate.main, ["--checkpoint", str(intensity_run), "--data", str(tmp_path / "scene.npy"),
                                    "--out", str(tmp_path / "ev"), "--latent-dtype", "float32", "--units",
                                    "intensity"]) == 0
    r = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert r["preprocessing_params"] == read_metadata(intensity_run)["preprocessing_params"]  # not refitted
    assert r["num_images"] == 6 and r["latent_dtype"] == "float32" and r["compression_ratio"] == 64.0


@pytest.mark.parametrize("case,match", [("missing", "no such run directory"), ("data", "no such file"),
                                        ("units", "log8")])
def test_bad_input_is_one_line_exit_2(intensity_run, tmp_path, capsys, case, match):
    np.save(tmp_path / "u8.npy", np.full((64, 64), 7, np.uint8))
    args = {"missing": ["--checkpoint", str(tmp_path / "nope")],
            "data": ["--checkpoint", str(intensity_run), "--data", str(tmp_path / "nope.tif")],
            "units": ["--checkpoint", str(intensity_run), "--data", str(tmp_path / "u8.npy")]}[case]
    assert run_main(evaluate.main, args + ["--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert not (tmp_path / "ev").exists()  # nothing written


def test_bits_enl_and_mean_ratio_come_from_the_original_input(intensity_run, tmp_path):
    from sar_jax.training.checkpointing import read_metadata

    p = read_metadata(intensity_run)["preprocessing_params"]
    hot = 10 ** ((p["vmax"] + 10) / 10)  # 10 dB above the clip range: the model sees 1.0 everywhere
    rng = np.random.default_rng(1)
    np.save(tmp_path / "hot.npy", (hot * rng.gamma(4, 0.25, (64, 64))).astype(np.float32))
    np.save(tmp_path / "dn.npy", rng.integers(1, 2000, (64, 64)).astype(np.uint16))
    z = np.sqrt(0.125) * (rng.normal(size=(64, 64)) + 1j * rng.normal(size=(64, 64)))  # |z|^2: mean 0.25
    np.save(tmp_path / "slc.npy", z.astype(np.complex64))
    reports = {}
    for name in ("hot", "dn", "slc"):
        args = ["--checkpoint", str(intensity_run), "--data", str(tmp_path / f"{name}.npy"),
                "--out", str(tmp_path / name)]
        extra = {"hot": ["--units", "intensity", "--allow-clipping"], "dn": ["--allow-clipping"],  # DN: uncalibrated
                 "slc": []}[name]
        assert run_main(evaluate.main, args + extra) == 0
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    hot_avg = reports["hot"]["average"]
    # against the original input the reconstruction (at most vmax) keeps about a tenth of the mean
    assert hot_avg["mean_ratio"] < 0.2
    assert hot_avg["enl_input"] == pytest.approx(4, rel=0.3)  # the speckle of the input, not of a clipped constant
    assert reports["dn"]["input_bits_per_pixel"] == 16 and reports["hot"]["input_bits_per_pixel"] == 32
    assert reports["dn"]["compression_ratio"] == 16 / reports["dn"]["latent_bits_per_pixel"]
    slc = reports["slc"]  # complex64 with an intensity checkpoint: |z|^2, 64 bits/px, phase dropped (said)
    assert slc["units"] == "intensity" and slc["input_bits_per_pixel"] == 64
    assert any("phase was dropped" in n for n in slc["notes"])
    assert slc["average"]["enl_input"] == pytest.approx(1, rel=0.3)  # single-look intensity


def test_log8_reports_no_enl_and_says_why(log8_run, tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "v.npy", np.clip(rng.normal(120, 30, (64, 128)), 0, 255).astype(np.uint8))
    assert run_main(evaluate.main, ["--checkpoint", str(log8_run), "--data", str(tmp_path / "v.npy"),
                                    "--out", str(tmp_path / "ev")]) == 0
    r = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert r["average"]["enl_input"] is None and r["average"]["enl_ratio"] is None
    assert any("ENL not reported" in n for n in r["notes"])


def test_no_data_patches_are_left_out_of_every_metric(intensity_run, tmp_path):
    import rasterio

    rng = np.random.default_rng(3)
    scene = (0.25 * rng.gamma(4, 0.25, (64, 128))).astype(np.float32)
    scene[:, :40] = np.nan  # a NaN margin covering the first patch and part of the second
    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", height=64, width=128, count=1, dtype="float32",
                       nodata=float("nan")) as ds:
        ds.write(scene, 1)
        ds.update_tags(UNITS="intensity")
    assert run_main(evaluate.main, ["--checkpoint", str(intensity_run), "--data", str(tmp_path / "s.tif"),
                                    "--out", str(tmp_path / "ev")]) == 0
    r = json.loads((tmp_path / "ev" / "report.json").read_text())
    # 32 px patches: 2 x 4, of which the 2 x 2 touching the margin are left out
    assert r["num_images"] == 4 and r["skipped_no_data_patches"] == 4
    assert all(not row["name"].endswith(",0]") and not row["name"].endswith(",32]") for row in r["per_image"])
    assert all(np.isfinite(row[k]) for row in r["per_image"] for k in ("mse", "psnr", "mean_ratio", "enl_input"))


def test_clean_reference_and_classical_baselines(intensity_run, tmp_path, capsys):
    """The synthetic test split scored against its known speckle-free reflectivity: the unfiltered input's
    score equals one computed here from the generator, the filters' ENL gains order as their windows, and
    on these small, busy scenes (fields, lines, 4-px texture) Lee keeps more of the truth than the boxcar."""
    from sar_jax.data.pipeline import build_datasets
    from sar_jax.data.preprocess import normalize
    from sar_jax.data.synthetic import synthetic_scenes_with_reflectivity
    from sar_jax.inference.run import load_run

    out = tmp_path / "clean"
    assert run_main(evaluate.main, ["--checkpoint", str(intensity_run), "--reference", "clean", "--baselines",
                                    "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["method"]: r for r in report["comparisons"]}
    assert list(rows) == ["autoencoder", "input (unfiltered)", "boxcar 5x5", "boxcar 7x7", "Lee 5x5", "Lee 7x7"]
    ae, noisy = rows["autoencoder"], rows["input (unfiltered)"]
    assert ae["psnr_vs_input"] == pytest.approx(report["average"]["psnr"], abs=1e-4)
    assert noisy["psnr_vs_input"] is None and noisy["enl_ratio"] == pytest.approx(1.0)

    run = load_run(intensity_run)
    cfg, params = run.config, run.preprocessing_params
    ds = build_datasets(cfg)
    truth = [r for _, r in synthetic_scenes_with_reflectivity(cfg["data"]["num_scenes"], cfg["data"]["scene_size"],
                                                               cfg["data"]["looks"], cfg["train"]["seed"])]
    p = cfg["data"]["patch_size"]
    clean = normalize(np.stack([truth[s][r:r + p, c:c + p] for s, r, c in ds.windows["test"]]), params)
    noisy_in = ds.patches("test")[..., 0]
    expected = np.mean([10 * np.log10(1 / np.mean((a - b) ** 2)) for a, b in zip(noisy_in, clean)])
    assert noisy["psnr_vs_clean"] == pytest.approx(expected, abs=1e-3)

    assert rows["boxcar 7x7"]["enl_ratio"] > rows["boxcar 5x5"]["enl_ratio"] > 2.0
    assert rows["boxcar 5x5"]["enl_ratio"] > rows["Lee 5x5"]["enl_ratio"] > 1.5  # Lee keeps edges and points
    assert rows["Lee 5x5"]["psnr_vs_clean"] > rows["boxcar 5x5"]["psnr_vs_clean"]
    md = (out / "report.md").read_text()
    assert "## Despeckling comparison" in md and "| Lee 7x7 |" in md and "PSNR vs clean" in md
    assert "| boxcar 5x5 |" in capsys.readouterr().out


def test_clean_reference_needs_the_synthetic_test_split(intensity_run, log8_run, tmp_path, capsys):
    scene = tmp_path / "s.npy"
    np.save(scene, np.full((64, 64), 0.5, np.float32))
    assert run_main(evaluate.main, ["--checkpoint", str(intensity_run), "--reference", "clean", "--data", str(scene),
                                    "--units", "intensity", "--out", str(tmp_path / "a")]) == 2
    assert "--reference clean scores the checkpoint's own synthetic test split" in capsys.readouterr().err
    assert run_main(evaluate.main, ["--checkpoint", str(log8_run), "--reference", "clean",
                                    "--out", str(tmp_path / "b")]) == 2
    assert "reference 'clean' needs synthetic data" in capsys.readouterr().err
    assert run_main(evaluate.main, ["--checkpoint", str(log8_run), "--baselines", "--out", str(tmp_path / "c")]) == 2
    assert "classical filters work on linear intensity; log8" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")
