"""Two tiny trained checkpoints, trained once per session (in parallel subprocesses):

- ``intensity_run``: synthetic speckled intensity scenes (preprocessing mode ``intensity``);
- ``log8_run``: 8-bit log-scaled views (mode ``log8``): the real SAR PNGs in ``shared/data/sar``
  when present, else 8-bit renderings of synthetic scenes, so the log8 paths are always tested.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sar_jax.core.paths import SHARED_SAR_DIR
from tests.conftest import TINY_ARGS

INTENSITY_ARGS = [*TINY_ARGS, "--set", "train.epochs=1", "--set", "logging.histogram_every=50"]
LOG8_ARGS = INTENSITY_ARGS + ["--set", "data.patch_size=64", "--set", "data.stride=64", "--set", "train.batch_size=8"]


def _log8_data(root: Path) -> Path:
    if SHARED_SAR_DIR.is_dir() and any(SHARED_SAR_DIR.glob("*.png")):
        return SHARED_SAR_DIR
    from PIL import Image

    from sar_jax.data.synthetic import synthetic_scenes

    folder = root / "log8_scenes"
    folder.mkdir()
    for i, scene in enumerate(synthetic_scenes(2, 320, 4.0, 5)):
        db = 10 * np.log10(np.maximum(scene, 1e-6))
        lo, hi = np.percentile(db, [0.5, 99.5])
        Image.fromarray(np.clip(np.rint(255 * (db - lo) / (hi - lo)), 0, 255).astype(np.uint8)).save(
            folder / f"scene_{i}.png")
    return folder


@pytest.fixture(scope="session")
def _trainings(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference_runs")
    jobs = {}
    for name, args in (("intensity", INTENSITY_ARGS), ("log8", LOG8_ARGS + ["--data", str(_log8_data(root))])):
        out = root / name
        cmd = [sys.executable, "-m", "sar_jax.train", *args, "--out", str(out)]
        jobs[name] = (out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    yield jobs
    for _, proc in jobs.values():
        if proc.poll() is None:
            proc.kill()


def _wait(jobs, name) -> Path:
    out, proc = jobs[name]
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"training the {name} checkpoint failed:\n{log[-3000:]}"
    return out


@pytest.fixture(scope="session")
def intensity_run(_trainings) -> Path:
    """Run directory of a tiny model trained on synthetic intensity scenes."""
    return _wait(_trainings, "intensity")


@pytest.fixture(scope="session")
def log8_run(_trainings) -> Path:
    """Run directory of a tiny model trained on 8-bit log-scaled views (the real scenes if present)."""
    return _wait(_trainings, "log8")


@pytest.fixture(scope="session")
def intensity_loaded(intensity_run):
    from sar_jax.inference.run import load_run

    return load_run(intensity_run)


@pytest.fixture(scope="session")
def random_run(tmp_path_factory):
    """A tiny untrained model with random BatchNorm statistics and biases (so the convolutions' zero padding
    is visible at the scene's edges) and a fixed intensity preprocessing; the ``LoadedRun`` fields
    ``reconstruct_scene`` reads. Cheap: no training, one compile per window shape."""
    import types

    import jax

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.nn.registry import init_variables

    cfg = {"kind": "baseline", "in_channels": 1, "base_channels": 4, "latent_channels": 4, "kernel_size": 5,
           "negative_slope": 0.2}
    model = SARAutoencoder.from_config(cfg)
    variables = jax.jit(lambda key: init_variables(model, key))(jax.random.PRNGKey(0))
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [leaf + 0.1 * jax.random.normal(k, leaf.shape) if leaf.ndim == 1 else leaf
              for leaf, k in zip(leaves, keys)]
    params = {"mode": "intensity", "vmin": -20.0, "vmax": 15.0, "floor": 1e-6, "percentiles": [1.0, 99.0]}
    return types.SimpleNamespace(model=model, variables=jax.tree.unflatten(tree, leaves), config={"model": cfg},
                                 preprocessing_params=params, run_dir=tmp_path_factory.mktemp("random_run"),
                                 which="best", epoch=0)
