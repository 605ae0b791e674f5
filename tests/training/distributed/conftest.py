"""Reference runs shared by the data-parallel and multi-host tests (each made once per session)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.training.distributed._helpers import TINY, WORKER, env, train_cli


@pytest.fixture(scope="session")
def single_process(tmp_path_factory) -> dict[str, np.ndarray]:
    """5 steps of the worker in ONE process, on a 4-device mesh and on 1 device (global batch 8),
    and the path of the initial state it saved (the multi-process workers start from it)."""
    folder = tmp_path_factory.mktemp("dp")
    out = folder / "single.npz"
    subprocess.run([sys.executable, str(WORKER), "--fake-devices", "4", "--meshes", "4,1", "--steps", "5",
                    "--out", str(out), "--initial-state", str(folder / "initial.npz")],
                   check=True, timeout=600, env=env(4))
    return dict(np.load(out), initial_state=str(folder / "initial.npz"))


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory):
    """The tiny CLI run, 3 epochs in one process on one device (what a resumed run must match)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train_cli([*TINY, "--out", str(run), "--set", "train.epochs=3", "--set", "train.devices=1"], devices=1)
    return run
