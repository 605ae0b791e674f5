"""Every user mistake through the real command line: one line, exit 2, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import assert_user_error, run_cli

pytestmark = pytest.mark.slow  # the command lines in subprocesses


@pytest.mark.parametrize("override,fragments", [
    ("train.lrr=0.1", ["unknown key 'train.lrr'", "did you mean 'lr'"]),
    ("trian.lr=0.1", ["unknown section 'trian'", "did you mean 'train'"]),
    ("train.lr=0", ["train.lr = 0", "> 0.0"]),
    ("train.epochs=\"ten\"", ["train.epochs", "integer"]),
    ("data.patch_size=40", ["data.patch_size = 40", "multiple of 16"]),
    ("train.batch_size=4000", ["train.batch_size = 4000 is larger than the training split"]),
])
def test_config_mistakes(tmp_path, tiny_args, override, fragments):
    out = tmp_path / "run"
    proc = run_cli("sar_jax.train", *tiny_args, "--set", override, "--out", str(out))
    assert_user_error(proc, *fragments)
    assert not out.exists()


def test_unreadable_json_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "train": {"lr": 1e-4,}\n}\n')
    assert_user_error(run_cli("sar_jax.train", "--config", str(bad), "--out", str(tmp_path / "r")),
                      str(bad), "line 2 column")


def test_early_stopping_not_above_lr_patience_warns(tmp_path, tiny_args):
    proc = run_cli("sar_jax.train", *tiny_args, "--set", "train.early_stopping_patience=2", "--set",
                   "train.lr_patience=3", "--set", "train.epochs=1", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning:" in proc.stderr and "early_stopping_patience" in proc.stderr


def _data_case(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    folder = tmp_path / "data"
    folder.mkdir()
    if case == "missing":
        return tmp_path / "nope", ["no such file or folder"]
    if case == "empty":
        return folder, ["no SAR files"]
    if case == "extension":
        (folder / "scene.bmp").write_bytes(b"BM")
        return folder / "scene.bmp", ["unsupported extension '.bmp'"]
    if case == "corrupt-tiff":
        (folder / "scene.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
        return folder / "scene.tif", ["cannot read TIFF"]
    if case == "corrupt-npy":
        np.save(folder / "scene.npy", np.ones((64, 64), np.float32))
        data = (folder / "scene.npy").read_bytes()
        (folder / "scene.npy").write_bytes(data[: len(data) // 2])
        return folder / "scene.npy", ["cannot read NPY"]
    if case == "nan-strict":
        arr = np.random.default_rng(0).gamma(1.0, 1.0, (256, 256)).astype(np.float32)
        arr[3, 4] = np.nan
        np.save(folder / "scene.npy", arr)
        return folder / "scene.npy", ["NaN/Inf pixels", "data.strict"]
    if case == "constant":
        np.save(folder / "scene.npy", np.full((256, 256), 3.0, np.float32))
        return folder / "scene.npy", ["constant image"]
    if case == "small":
        np.save(folder / "scene.npy", np.random.default_rng(0).gamma(1.0, 1.0, (20, 20)).astype(np.float32))
        return folder / "scene.npy", ["smaller than data.patch_size = 32"]
    raise ValueError(case)


@pytest.mark.parametrize("case", ["missing", "empty", "extension", "corrupt-tiff", "corrupt-npy",
                                  "nan-strict", "constant", "small"])
def test_data_mistakes(tmp_path, tiny_args, case):
    path, fragments = _data_case(tmp_path, case)
    out = tmp_path / "run"
    proc = run_cli("sar_jax.train", *tiny_args, "--data", str(path), "--set", "data.strict=true",
                   "--set", "data.units=intensity", "--out", str(out))
    assert_user_error(proc, *fragments)
    if case.startswith("corrupt"):  # the error line alone: no reader/GDAL log line before it
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tests.conftest import TINY_ARGS

    run = tmp_path_factory.mktemp("trained") / "run"
    proc = run_cli("sar_jax.train", *TINY_ARGS, "--set", "train.epochs=1", "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


def test_output_mistakes(tmp_path, tiny_args, trained_run):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_user_error(run_cli("sar_jax.train", *tiny_args, "--out", str(blocker / "run")),
                      f"--out {blocker / 'run'}: cannot write the run directory")
    before = sorted(p.name for p in trained_run.rglob("*"))
    assert_user_error(run_cli("sar_jax.train", *tiny_args, "--out", str(trained_run)),
                      f"--out {trained_run}: already holds a run", "--resume", "--overwrite")
    assert sorted(p.name for p in trained_run.rglob("*")) == before  # nothing touched


def test_checkpoint_mistakes(tmp_path, trained_run):
    assert_user_error(run_cli("sar_jax.train", "--resume", str(tmp_path / "none")), "not a run directory")
    torch_file = tmp_path / "model.pt"
    torch_file.write_bytes(b"PK\x03\x04 not really")
    assert_user_error(run_cli("sar_jax.train", "--resume", str(torch_file)), "not a run directory")
    damaged = tmp_path / "damaged"
    shutil.copytree(trained_run, damaged)
    for f in (damaged / "checkpoints").rglob("*"):
        if f.is_file() and "state" in f.parts and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    assert_user_error(run_cli("sar_jax.train", "--resume", str(damaged), "--set", "train.epochs=2"),
                      "checkpoint")
    edited = tmp_path / "edited"
    shutil.copytree(trained_run, edited)
    config = (edited / "config.json").read_text().replace('"base_channels": 4', '"base_channels": 8')
    (edited / "config.json").write_text(config)
    assert_user_error(run_cli("sar_jax.train", "--resume", str(edited), "--set", "train.epochs=2"),
                      "different architecture", "checkpoint (5, 5, 4, 16) vs model (5, 5, 4, 32)")
