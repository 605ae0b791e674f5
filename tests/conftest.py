"""Shared fixtures: the tiny config (``configs/tiny.json``) and the real SAR samples."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from sar_jax.core.paths import SHARED_SAR_DIR

# One XLA compilation cache for the whole session, set before JAX is imported so that this process
# and every subprocess it starts (the CLIs, trainers and multi-process runs, which inherit the
# environment) compile the tiny models once instead of once per process: it halves the slow tests'
# time. A cache the caller chose is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="sar-jax-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

#: Flags of a tiny training run (``configs/tiny.json``: base 4, latent 4, 32x32 patches, batch 4,
#: 2 epochs): seconds on 2 CPU cores.
TINY_ARGS = ("--config", "tiny")


@pytest.fixture
def tiny_args() -> list[str]:
    """``--config tiny`` for the training CLIs (append ``--set`` flags to vary it)."""
    return list(TINY_ARGS)


@pytest.fixture
def tiny_config() -> dict:
    """``configs/tiny.json`` as a validated config dict."""
    from sar_jax.core.config import load_config

    return load_config("tiny")[0]


@pytest.fixture
def shared_sar_dir() -> Path:
    """``../shared/data/sar`` beside the checkout (two real 8-bit SAR PNGs); skipped when absent."""
    if not SHARED_SAR_DIR.is_dir():
        pytest.skip(f"real SAR samples not found at {SHARED_SAR_DIR}")
    return SHARED_SAR_DIR
