"""python -m benchmarks.data_pipeline reads what the trainer reads: --units, --band and --strict are data.units,
data.band and data.strict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import data_pipeline
from sar_jax.core.cli import run_main

SMALL = ["--size", "64", "--batch", "2", "--batches", "3"]


@pytest.fixture
def untagged(tmp_path):
    """Three untagged float32 intensity scenes (.npy has no units metadata)."""
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", rng.gamma(4.0, 0.25, (128, 128)).astype(np.float32))
    return tmp_path


def test_untagged_floats_need_units(untagged, capsys):
    assert run_main(data_pipeline.main, ["--data", str(untagged), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "float32 values of unknown units" in err


def test_units_flag_reads_untagged_floats(untagged, capsys):
    assert run_main(data_pipeline.main, ["--data", str(untagged), "--units", "intensity", *SMALL]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["units"] == "intensity" and result["scenes"] == 3
    assert result["dataset_bytes"] == 3 * 128 * 128 * 4
    assert result["batch"] == 2 and result["size"] == 64 and result["patches_per_second"] > 0


def test_band_and_strict_reach_the_reader(untagged, capsys):
    assert run_main(data_pipeline.main, ["--data", str(untagged), "--units", "intensity", "--band", "1", *SMALL]) == 2
    assert "band" in capsys.readouterr().err
    for path in untagged.glob("*.npy"):  # whichever scene the training split gets
        scene = np.load(path)
        scene[5, 7] = np.nan
        np.save(path, scene)
    assert run_main(data_pipeline.main, ["--data", str(untagged), "--units", "intensity", "--strict", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 NaN/Inf pixels (data.strict is true)" in err
    assert run_main(data_pipeline.main, ["--data", str(untagged), "--units", "intensity", *SMALL]) == 0  # no-data
