"""Checkpoints across frameworks: torch -> JAX -> torch bit-exact, converted runs resume in
sar_jax.train (CLI) and go back through ``python -m sar_jax.convert``'s main, and a
sar_jax-trained model keeps its validation PSNR in the reference."""

from __future__ import annotations

import json

import pytest
import torch

from sar_jax.core.rundir import read_log
from sar_jax.parity import checkpoints
from sar_jax.parity.roundtrip import _quiet, check_checkpoint_roundtrip, check_trained_psnr
from sar_jax.training import loop as jax_train

pytestmark = pytest.mark.slow  # trains both frameworks and converts through the CLIs


def test_checkpoint_round_trip_through_the_cli(tmp_path, check_rows):
    rows = check_checkpoint_roundtrip(tmp_path)
    check_rows(rows)
    # the converted run continues in sar_jax.train (--resume), from the converted epoch
    run = tmp_path / "converted_run"
    assert json.loads((run / "config.json").read_text())["model"]["base_channels"] == 4
    assert [r["epoch"] for r in read_log(run)] == [1]  # the torch run's log came along
    _quiet(jax_train.main, ["--resume", str(run), "--set", "train.epochs=2"])
    assert [r["epoch"] for r in read_log(run)] == [1, 2]
    # ... and goes back to a checkpoint the reference resumes from
    back = tmp_path / "after_jax.pt"
    assert checkpoints.main(["--to-torch", str(run), "--out", str(back), "--which", "latest"]) == 0
    ckpt = torch.load(back, weights_only=True)
    assert ckpt["epoch"] == 2
    src = torch.load(tmp_path / "torch_run" / "checkpoints" / "last.pt", weights_only=True)
    steps_per_epoch = int(src["model"]["encoder.block0.bn.num_batches_tracked"])
    assert int(ckpt["model"]["decoder.block2.bn.num_batches_tracked"]) == 2 * steps_per_epoch


def test_jax_trained_model_keeps_its_validation_psnr_in_the_reference(tmp_path, check_rows):
    rows = check_trained_psnr(tmp_path)
    check_rows(rows)
