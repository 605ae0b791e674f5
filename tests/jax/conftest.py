"""Tiny configs so JAX trainer tests run in seconds on 2 CPU cores."""

from __future__ import annotations

import pytest

TINY_OVERRIDES = [
    "model.base_channels=4", "model.latent_channels=4", "data.patch_size=32", "data.scene_size=64",
    "data.num_scenes=5", "data.stride=16", "train.batch_size=4", "train.epochs=2", "train.lr=0.003",
    "logging.progress=false", "logging.histogram_every=1", "logging.num_samples=2",
]


@pytest.fixture
def tiny_args():
    """`--set` flags for a tiny quickstart-like run."""
    args = ["--config", "quickstart"]
    for item in TINY_OVERRIDES:
        args += ["--set", item]
    return args


@pytest.fixture
def tiny_config():
    """The tiny config as a dict."""
    from sar_jax.core.config import load_config

    return load_config("quickstart", TINY_OVERRIDES)[0]
