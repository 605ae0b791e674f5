"""The reference trainer end to end through ``main``: artifacts, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_jax.core.errors import SarJaxError
from sar_jax.core.rundir import LOG_KEYS, read_log
from sar_jax.data.grain_pipeline import PatchLoader, ReadPatches
from sar_jax.data.sources import ArrayScene
from sar_torch_ref import train as torch_train
from sar_torch_ref.evaluation import per_image_metrics
from sar_torch_ref.models import SARAutoencoder
from sar_torch_ref.train import main, resolve_resume, run_main
from sar_torch_ref.training import evaluate, load_checkpoint, save_checkpoint
from tests.conftest import TINY_ARGS

pytestmark = pytest.mark.slow  # every test drives the reference trainer end to end

# configs/tiny.json with 4 scenes without patch overlap, lr 1e-3 (the validation loss stalls within 3 epochs)
# and the LR halved after every epoch without improvement, so resuming must carry the plateau's state
TINY = [*TINY_ARGS, "--set", "data.stride=null", "--set", "data.num_scenes=4", "--set", "train.lr=1e-3",
        "--set", "train.lr_patience=0"]
SCALARS = {"train/loss", "train/mse", "train/ssim", "train/psnr", "val/loss", "val/mse", "val/ssim",
           "val/psnr", "lr", "epoch_seconds", "train_images_per_second"}


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tref") / "run2"
    assert main([*TINY, "--set", "train.epochs=2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def three_epoch_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tref") / "run3"
    assert main([*TINY, "--set", "train.epochs=3", "--out", str(out)]) == 0
    return out


def test_run_dir_artifacts(two_epoch_run):
    run = two_epoch_run
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["base_channels"] == 4 and config["train"]["epochs"] == 2
    records = read_log(run)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert set(LOG_KEYS) | {"best"} <= set(r)
        assert all(isinstance(r[k], (int, float)) for k in LOG_KEYS)
    assert records[0]["lr"] == pytest.approx(1e-3)  # train.lr, used during epoch 1
    assert records[0]["best"] is True
    png = (run / "reconstructions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_events(two_epoch_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((two_epoch_run / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(two_epoch_run / "tb"), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert SCALARS <= set(tags["scalars"])
    for tag in SCALARS:
        assert [e.step for e in acc.Scalars(tag)] == [1, 2]
    log = read_log(two_epoch_run)
    assert acc.Scalars("val/loss")[1].value == pytest.approx(log[1]["val_loss"], rel=1e-6)
    assert "reconstructions" in tags["images"]
    image = acc.Images("reconstructions")[0]
    assert (image.height, image.width) == (2 * 32, 3 * 32)  # num_samples rows of original|recon|diff
    hist = set(tags["histograms"])
    assert "weights/encoder.block0.conv.weight" in hist and "grads/decoder.final.bias" in hist


def test_checkpoints(two_epoch_run):
    last = load_checkpoint(two_epoch_run / "checkpoints" / "last.pt")
    best = load_checkpoint(two_epoch_run / "checkpoints" / "best.pt")
    for ckpt in (last, best):
        assert {"model", "optimizer", "scheduler", "epoch", "best_val_loss", "early_stopping", "config",
                "preprocessing_params", "versions"} <= set(ckpt)
        assert set(ckpt["early_stopping"]) == {"best", "bad_epochs"}
        assert set(ckpt["versions"]) == {"torch", "python", "sar_jax"}
        assert ckpt["config"] == json.loads((two_epoch_run / "config.json").read_text())
        assert {"vmin", "vmax", "mode"} <= set(ckpt["preprocessing_params"])
        SARAutoencoder(ckpt["config"]["model"]).load_state_dict(ckpt["model"])
    assert last["epoch"] == 2
    log = read_log(two_epoch_run)
    best_epoch = min(log, key=lambda r: r["val_loss"])["epoch"]
    assert best["epoch"] == best_epoch
    assert last["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in log))
    assert not list((two_epoch_run / "checkpoints").glob(".*.partial-*"))


def test_resume_equals_straight_run(two_epoch_run, three_epoch_run, tmp_path, capsys):
    resumed = tmp_path / "resumed"
    shutil.copytree(two_epoch_run, resumed)
    capsys.readouterr()
    assert main(["--resume", str(resumed), "--set", "train.epochs=3", "--set", "logging.progress=false"]) == 0
    assert "epoch 3/3" not in capsys.readouterr().out  # logging.progress=false: no per-epoch lines
    a = load_checkpoint(resumed / "checkpoints" / "last.pt")
    b = load_checkpoint(three_epoch_run / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in b["model"]:
        assert torch.allclose(a["model"][key].float(), b["model"][key].float(), atol=1e-6, rtol=0), key
    opt_a, opt_b = a["optimizer"], b["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for i, state in opt_b["state"].items():
        for name, value in state.items():
            assert torch.allclose(opt_a["state"][i][name], value, atol=1e-6, rtol=0), (i, name)
    assert float(opt_a["state"][0]["step"]) == 3 * 2  # 2 steps per epoch: state carried over
    assert a["scheduler"] == b["scheduler"]
    assert a["early_stopping"] == b["early_stopping"]
    log_a, log_b = read_log(resumed), read_log(three_epoch_run)
    assert log_b[2]["lr"] < log_b[0]["lr"]  # lr_patience=0: the plateau scheduler acted, so its state matters
    assert [r["epoch"] for r in log_a] == [1, 2, 3]
    for ra, rb in zip(log_a, log_b):
        for k in ("train_loss", "val_loss", "val_psnr", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5), (ra["epoch"], k)
    assert json.loads((resumed / "config.json").read_text())["train"]["epochs"] == 3


def test_resume_truncates_log_to_checkpoint(two_epoch_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_epoch_run, run)
    with open(run / "training.log", "a") as fh:  # an epoch logged after the last checkpoint
        fh.write(json.dumps({**read_log(run)[-1], "epoch": 3}) + "\n")
    assert main(["--resume", str(run / "checkpoints" / "last.pt")]) == 0  # epochs=2: nothing to train
    assert [r["epoch"] for r in read_log(run)] == [1, 2]


def test_evaluate_averages_over_images(two_epoch_run):
    ckpt = load_checkpoint(two_epoch_run / "checkpoints" / "best.pt")
    model = SARAutoencoder(ckpt["config"]["model"])
    model.load_state_dict(ckpt["model"])
    images = np.random.default_rng(0).random((5, 32, 32, 1), dtype=np.float32)
    # the five images side by side in one 8-bit-log scene whose preprocessing is the identity on [0, 1]
    scene = ArrayScene("images", np.concatenate(list(images[..., 0]), axis=1), units="log8")
    identity = {"mode": "log8", "vmin": 0.0, "vmax": 1.0, "floor": 1e-6, "percentiles": [1.0, 99.0]}
    windows = np.array([[0, 0, 32 * k] for k in range(5)])
    loader = PatchLoader(lambda epoch: windows, 5, ReadPatches([scene], 32, identity, pad_to=2), 2, shuffle=False,
                         seed=0, drop_last=False, prefetch=0)
    got = evaluate(model, loader, ckpt["config"], torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        per = per_image_metrics(model(x)[0], x, ckpt["config"]["loss"])
    for k in ("loss", "mse", "ssim", "psnr"):
        assert got[k] == pytest.approx(float(per[k].mean()), rel=1e-5), k


def test_unknown_config_key():
    with pytest.raises(SarJaxError, match="model.nope"):
        main([*TINY, "--set", "model.nope=1"])
    assert run_main(main, [*TINY, "--set", "model.nope=1"]) == 2


def test_existing_run_refused_without_overwrite(two_epoch_run):
    with pytest.raises(SarJaxError, match="already holds a run"):
        main([*TINY, "--out", str(two_epoch_run)])


def test_bad_checkpoints(tmp_path, two_epoch_run):
    with pytest.raises(SarJaxError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(SarJaxError, match="corrupt.pt"):
        load_checkpoint(corrupt)
    with pytest.raises(SarJaxError, match="corrupt.pt"):
        main(["--resume", str(corrupt), "--out", str(tmp_path / "x")])
    incomplete = tmp_path / "incomplete.pt"
    save_checkpoint(incomplete, {"model": {}})
    with pytest.raises(SarJaxError, match="incomplete.pt.*missing"):
        load_checkpoint(incomplete)
    with pytest.raises(SarJaxError, match="train.lr"):
        main(["--resume", str(two_epoch_run), "--set", "train.lr=0.1"])
    with pytest.raises(SarJaxError, match="no such"):
        main(["--resume", str(tmp_path / "nowhere")])


def test_resume_resolution(tmp_path, two_epoch_run, monkeypatch):
    root = tmp_path / "runs"
    for name in ("quickstart-20240101-000000", "quickstart-20250101-000000", "quickstart-x-20990101-000000"):
        (root / name / "checkpoints").mkdir(parents=True)
        (root / name / "checkpoints" / "last.pt").write_bytes(b"")
    monkeypatch.setattr(torch_train, "RUNS_ROOT", root)
    ckpt, run = resolve_resume(True, "quickstart", None)
    assert run == root / "quickstart-20250101-000000" and ckpt == run / "checkpoints" / "last.pt"
    with pytest.raises(SarJaxError, match="^--resume: no run of config 'baseline'"):
        resolve_resume(True, "baseline", None)
    ckpt, run = resolve_resume(True, "quickstart", str(two_epoch_run))
    assert (ckpt, run) == (two_epoch_run / "checkpoints" / "last.pt", two_epoch_run)
    ckpt, run = resolve_resume(str(two_epoch_run / "checkpoints" / "best.pt"), "quickstart", None)
    assert run == two_epoch_run


def test_resume_into_new_run_dir(two_epoch_run, tmp_path):
    out = tmp_path / "fork"
    assert main(["--resume", str(two_epoch_run / "checkpoints" / "last.pt"), "--out", str(out),
                 "--set", "train.epochs=3"]) == 0
    assert [r["epoch"] for r in read_log(out)] == [3]
    assert (out / "checkpoints" / "best.pt").is_file()  # the source run's best model came along
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 3
    assert load_checkpoint(two_epoch_run / "checkpoints" / "last.pt")["epoch"] == 2  # source untouched
