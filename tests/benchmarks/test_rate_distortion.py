"""python -m benchmarks.rate_distortion at tiny size: every codec's points from real bytes, both loss
balances as curves, BD-rates against JPEG 2000, the three files; a re-run reuses the trained models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import rate_distortion as rd
from sar_jax.core.errors import SarJaxError
from sar_jax.inference.latent import payload_bytes, quantize

TINY = ["--set", "model.base_channels=4", "--set", "data.patch_size=32", "--set", "data.stride=16",
        "--set", "data.num_scenes=5", "--set", "data.scene_size=64", "--set", "train.epochs=1",
        "--set", "train.batch_size=4", "--set", "logging.progress=false"]


def test_block_mean_bytes_are_the_int8_payload():
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    decoded, nbytes = rd.block_mean_codec(image, 4)
    assert decoded.shape == image.shape
    means = image.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    assert nbytes == payload_bytes(quantize(means[..., None], "int8")[0])
    assert 16 * 16 + 8 <= nbytes <= 16 * 16 + 8 + 16  # 256 random int8 values hardly DEFLATE


def test_flags_are_checked():
    with pytest.raises(SystemExit):
        rd.setup_args().parse_args(["--ssim-weights", "2"])
    with pytest.raises(SystemExit):
        rd.setup_args().parse_args(["--latent-channels", "0,4"])
    args = rd.setup_args().parse_args(["--latent-channels", "2,8", "--ssim-weights", "0.5,0"])
    assert args.latent_channels == (2, 8) and args.ssim_weights == (0.5, 0.0)
    assert rd.autoencoder_label(0.0) == "autoencoder, MSE (int8 latent)"
    assert rd.autoencoder_label(0.25) == "autoencoder, 0.75 MSE + 0.25 SSIM (int8 latent)"


def test_ladders_are_fine_tuned_from_one_base_run_per_kind(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(rd, "_train_grid", lambda kind, grid, overrides, out, data: trained.append(
        (kind, grid, [o for o in overrides if o.startswith(("train.init_from", "tune"))], out.parent.name)))
    lambdas = {"mse": (25.0, 100.0), "ms_ssim": (6.0,)}
    runs, bases = rd.train_learned(["hyperprior"], ["mse", "ms_ssim"], lambdas, 1000.0, ["own"], ["tune"],
                                   tmp_path / "synthetic", None)
    base = tmp_path / "synthetic" / "hyperprior" / "loss.distortion=mse,loss.lmbda=1000.0"
    start = f"train.init_from={json.dumps(str(base))}"
    assert trained == [("hyperprior", [("loss.distortion", ["mse"]), ("loss.lmbda", [1000.0])], [], "synthetic"),
                       ("hyperprior", [("loss.distortion", ["mse"]), ("loss.lmbda", [25.0, 100.0])],
                        ["tune", start], "synthetic"),
                       ("hyperprior", [("loss.distortion", ["ms_ssim"]), ("loss.lmbda", [6.0])],
                        ["tune", start], "synthetic")]
    assert bases == {"hyperprior": base}
    assert runs[rd.learned_label("hyperprior", "mse") + rd.BASE_RUN] == {1000.0: base}  # not on the ladder
    assert sorted(runs[rd.learned_label("hyperprior", "mse")]) == [25.0, 100.0]
    # the next dataset fine-tunes every point from that base and trains no base of its own
    trained.clear()
    runs, again = rd.train_learned(["hyperprior"], ["mse"], {"mse": (25.0, 1000.0)}, 1000.0, ["own"], ["tune"],
                                   tmp_path / "real", None, bases)
    assert again == {} and list(runs) == [rd.learned_label("hyperprior", "mse")]
    assert trained == [("hyperprior", [("loss.distortion", ["mse"]), ("loss.lmbda", [25.0, 1000.0])],
                        ["tune", start], "real")]
    # a base that is a ladder point is that point, trained once
    trained.clear()
    runs, _ = rd.train_learned(["factorized"], ["mse"], {"mse": (25.0, 1000.0)}, 1000.0, ["own"], ["tune"],
                               tmp_path / "synthetic", None)
    assert [t[1][1][1] for t in trained] == [[1000.0], [25.0]] and list(runs) == [rd.learned_label("factorized", "mse")]


def test_real_scene_ladders_share_the_autoencoders_grid_and_pixels_per_step():
    study = ["data.patch_size=64"]
    grid = rd.files_grid("baseline", study, "hyperprior", study + rd.FULL_LEARNED + rd.FULL_FINE_TUNE)
    # 4 x 128^2 px a step -> 16 x 64^2; 6000 patches of 128 px an epoch -> 24000 of 64 px
    assert grid == ["data.patch_size=64", "train.batch_size=16", "data.patches_per_epoch=24000"]


def test_runs_of_another_split_are_refused():
    from types import SimpleNamespace

    from sar_jax.core.config import load_config
    from sar_jax.data.pipeline import build_datasets

    def run(name, *overrides):
        config = load_config("tiny", list(overrides))[0]
        return SimpleNamespace(config=config, path=name,
                               preprocessing_params=build_datasets(config).preprocessing_params)

    first = run("a")
    rd.check_one_split([first, run("b", "data.patches_per_epoch=8")])  # another sampling, the same split
    with pytest.raises(SarJaxError, match=r"^c: trained on another split or preprocessing than a"):
        rd.check_one_split([first, run("c", "train.seed=1")])
    other = run("d", "data.percentiles=[2.0, 98.0]")
    with pytest.raises(SarJaxError, match=r"^d: trained on another split or preprocessing"):
        rd.check_one_split([first, other])


@pytest.mark.slow
def test_tiny_study_writes_curves_from_real_bytes(tmp_path, monkeypatch):
    out = tmp_path / "rd"
    argv = ["--quick", "--data", "none", "--latent-channels", "4", "--ssim-weights", "0.5,0", "--kinds", "none",
            "--out", str(out)] + TINY
    assert rd.main(argv) == 0
    result = json.loads((out / "rd.json").read_text())
    (study,) = result["studies"]
    points = study["points"]
    by_codec: dict[str, list[dict]] = {}
    for p in points:
        by_codec.setdefault(p["codec"], []).append(p)
    assert sorted(by_codec) == sorted(["JPEG 2000", "JPEG", "block mean + bicubic", rd.autoencoder_label(0.5),
                                       rd.autoencoder_label(0.0)])
    assert len(by_codec["JPEG 2000"]) >= 5 and len(by_codec["JPEG"]) >= 5
    for p in points:
        assert p["bpp"] == pytest.approx(8 * p["bytes"] / study["pixels"])
        assert 0 < p["psnr"] < 60 and p["psnr_clean"] is not None  # synthetic: scored against the truth
    j2k = sorted(by_codec["JPEG 2000"], key=lambda p: p["setting"])
    assert [p["bpp"] for p in j2k] == sorted(p["bpp"] for p in j2k)
    assert j2k[-1]["bpp"] <= 1.1 * j2k[-1]["setting"]  # (one 64x64 scene: the low rates are all header)
    # an int8 latent of 4 channels at 1/16 resolution: about 8 * 4 / 256 bits per pixel, + 32 bytes of scales
    for p in by_codec[rd.autoencoder_label(0.0)] + by_codec[rd.autoencoder_label(0.5)]:
        assert p["setting"] == 4 and 0.8 * 8 * 4 / 256 < p["bpp"] < 8 * 4 / 256 + 8 * (32 + 16) / study["pixels"]
    quality = sorted(by_codec["JPEG"], key=lambda p: p["bpp"])
    assert quality[0]["psnr"] < quality[-1]["psnr"]
    assert set(study["bd_rate_vs_jpeg2000"]) == set(by_codec) - {"JPEG 2000"}
    assert study["bd_rate_vs_jpeg2000"]["JPEG"]["psnr"] is not None
    text = (out / "rd.md").read_text()
    assert text.count("| autoencoder, MSE (int8 latent) |") == 2  # its point and its BD-rate row
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "rd.png").stat().st_size > 20_000
    # a re-run reuses every trained model
    monkeypatch.setattr("sar_jax.training.sweep.train_and_score",
                        lambda *a: pytest.fail("a finished model was trained again"))
    assert rd.main(argv) == 0


@pytest.mark.slow
def test_learned_codecs_join_an_earlier_study(tmp_path):
    """The learned codecs' curves from real bitstreams beside an earlier run's autoencoder points, which are
    taken only once the classical codecs reproduce that run's own points."""
    tiny64 = [a.replace("data.patch_size=32", "data.patch_size=64").replace("data.scene_size=64", "data.scene_size=128")
              .replace("data.stride=16", "data.stride=32") for a in TINY]
    first = tmp_path / "first"
    assert rd.main(["--quick", "--data", "none", "--latent-channels", "4", "--kinds", "none", "--out", str(first)]
                   + tiny64) == 0
    out = tmp_path / "learned"
    argv = ["--quick", "--data", "none", "--autoencoder-from", str(first / "rd.json"), "--lambdas", "2000",
            "--base-lambda", "2000",
            "--out", str(out), "--learned-set", "model.N=4", "--learned-set", "model.M=4",
            "--learned-set", "data.patches_per_epoch=16"] + tiny64
    assert rd.main(argv) == 0
    (study,) = json.loads((out / "rd.json").read_text())["studies"]
    (earlier,) = json.loads((first / "rd.json").read_text())["studies"]
    auto = [p for p in study["points"] if p["codec"].startswith("autoencoder")]
    earlier_auto = [p for p in earlier["points"] if p["codec"].startswith("autoencoder")]
    assert auto and [{k: p[k] for k in e} for p, e in zip(auto, earlier_auto)] == earlier_auto
    for p in study["points"]:  # the gap to JPEG 2000 at the same rate, where its curve reaches
        if p["codec"] == rd.ANCHOR:
            assert p["psnr_vs_jpeg2000"] == pytest.approx(0.0, abs=1e-9)
    for kind in ("factorized", "hyperprior"):
        pts = sorted((p for p in study["points"] if p["codec"] == rd.learned_label(kind, "mse")),
                     key=lambda p: p["setting"])
        assert [p["setting"] for p in pts] == [2000.0]
        for p in pts:  # real bytes: at least the estimate (the coder cannot beat the model's likelihoods by much)
            assert p["bpp"] == pytest.approx(8 * p["bytes"] / study["pixels"])
            assert 0.98 * p["estimated_bpp"] <= p["bpp"] <= 1.5 * p["estimated_bpp"] + 8 * 64 / study["pixels"]
    # another study's regions are refused
    other = tmp_path / "other.json"
    bad = json.loads((first / "rd.json").read_text())
    bad["studies"][0]["points"][0]["bytes"] += 1
    other.write_text(json.dumps(bad))
    with pytest.raises(SarJaxError, match="test regions differ"):
        rd.main(argv[:4] + [str(other)] + argv[5:])
