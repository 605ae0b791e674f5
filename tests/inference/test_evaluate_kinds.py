"""python -m sar_jax.evaluate and the sweep's row for a learned codec and a U-Net run: the codec's
estimated and real rates, no rate for the U-Net, JAX and torch agreeing."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from sar_jax.core.cli import run_main
from sar_jax.core.errors import SarJaxError
from sar_jax.inference import evaluate
from tests.training.test_model_kinds import kind_config, trained_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_kinds")
    found = {}
    for kind in ("factorized", "unet"):
        run_dir = trained_run(tmp_path_factory, kind)
        for fw in ("jax", "torch"):
            assert run_main(evaluate.main, ["--checkpoint", str(run_dir), "--framework", fw, "--reference", "clean",
                                            "--out", str(out / kind / fw)]) == 0
            found[kind, fw] = json.loads((out / kind / fw / "report.json").read_text())
    return found, out


def test_codec_report_has_both_rates(reports, tmp_path_factory):
    import jax.numpy as jnp

    from sar_jax.data.pipeline import build_datasets
    from sar_jax.inference.run import load_run

    found, out = reports
    r = found["factorized", "jax"]
    assert r["model_kind"] == "factorized" and r["latent_dtype"] is None and r["latent_shape"] == [2, 2, 8]
    # the estimate: sum(-log2 p) / pixels of the eval-mode (rounded) likelihoods, per image
    run = load_run(trained_run(tmp_path_factory, "factorized"))
    x = build_datasets(run.config).patches("test")
    _, lik = run.model.apply(run.variables, jnp.asarray(x), train=False)
    expected = np.sum(-np.log2(np.asarray(lik["y"], np.float64)), axis=(1, 2, 3)) / (32 * 32)
    np.testing.assert_allclose([row["bpp"] for row in r["per_image"]], expected, rtol=1e-6)
    assert r["latent_bits_per_pixel"] == pytest.approx(expected.mean(), rel=1e-6)
    # the real bitstream: whole bytes per 32 x 32 patch, a little above the estimate, decoding to the same image
    for row in r["per_image"]:
        assert row["bpp_bitstream"] * 32 * 32 / 8 == int(row["bpp_bitstream"] * 32 * 32 / 8)
        assert row["bpp"] * 0.98 <= row["bpp_bitstream"] <= row["bpp"] + 8 * 16 / 1024  # <= 16 bytes of framing
        assert row["compression_ratio"] == pytest.approx(32 / row["bpp_bitstream"])
    assert r["bitstream_bits_per_pixel"] == pytest.approx(np.mean([row["bpp_bitstream"] for row in r["per_image"]]))
    assert r["compression_ratio"] == pytest.approx(32 / r["bitstream_bits_per_pixel"])
    assert r["bitstream_max_abs_diff"] < 1e-5
    assert r["comparisons"][0]["method"] == "factorized codec"
    md = (out / "factorized" / "jax" / "report.md").read_text()
    assert md.startswith("# SAR learned codec evaluation (factorized)")
    assert "| bpp (est.) | bpp (bitstream) | CR |" in md and "in real bitstreams" in md


def test_unet_report_has_no_rate(reports):
    found, out = reports
    r = found["unet", "jax"]
    assert r["model_kind"] == "unet"
    assert r["compression_ratio"] is None and r["latent_shape"] is None and r["latent_bits_per_pixel"] is None
    assert "compression_ratio" not in r["average"] and all("compression_ratio" not in row for row in r["per_image"])
    assert "bpp" not in r["average"]
    assert any("no latent" in n for n in r["notes"])
    md = (out / "unet" / "jax" / "report.md").read_text()
    assert md.startswith("# SAR despeckling U-Net evaluation") and "| CR |" not in md and " : 1" not in md
    assert r["comparisons"][0]["method"] == "U-Net" and r["comparisons"][1]["method"] == "input (unfiltered)"
    assert r["average"]["psnr"] > 10 and 0 < r["average"]["mean_ratio"]


@pytest.mark.parametrize("kind", ["factorized", "unet"])
def test_jax_and_torch_agree(reports, kind):
    found, _ = reports
    jx, th = found[kind, "jax"], found[kind, "torch"]
    assert set(jx) == set(th) and set(jx["average"]) == set(th["average"])
    for a, b in zip(jx["per_image"], th["per_image"], strict=True):
        assert a["name"] == b["name"]
        assert a["psnr"] == pytest.approx(b["psnr"], abs=0.01)
        assert a["ssim"] == pytest.approx(b["ssim"], abs=1e-3)
        if kind == "factorized":
            assert a["bpp"] == pytest.approx(b["bpp"], rel=1e-4)
            assert a["bpp_bitstream"] == b["bpp_bitstream"]  # the same JAX coder on both


def test_sweep_rows_name_their_rate(tmp_path_factory, monkeypatch):
    from sar_jax.training import sweep

    rows = []
    for kind in ("factorized", "unet"):
        run_dir = trained_run(tmp_path_factory, kind)
        summary = json.loads((run_dir / "summary.test.json").read_text())
        monkeypatch.setattr(sweep, "train_and_evaluate", lambda config, run_dir, **kw: summary)
        rows.append({"run": kind, "model.kind": kind, **sweep.train_and_score(kind_config(kind), run_dir)})
    codec, unet = rows
    report = json.loads((trained_run(tmp_path_factory, "factorized") / "eval-jax" / "report.json").read_text())
    assert codec["rate"] == "bitstream" and codec["bpp"] == report["bitstream_bits_per_pixel"]
    assert codec["psnr_vs_clean"] == report["comparisons"][0]["psnr_vs_clean"]
    assert unet["rate"] == "none" and unet["bpp"] is None
    table = sweep.markdown_table([("model.kind", ["factorized", "unet"])], rows)
    assert table.splitlines()[0].endswith("| PSNR vs clean | bpp | rate |")
    assert table.splitlines()[3].endswith("| - | none |")


def test_unsupported_kind_is_one_line():
    run = types.SimpleNamespace(config={"model": {"kind": "other"}}, run_dir="runs/x")
    with pytest.raises(SarJaxError, match=r"model.kind 'other' has no sar_torch_ref twin; use --framework jax$"):
        evaluate.torch_model(run)
