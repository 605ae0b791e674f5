"""Eval-mode micro-batching: sizes by platform and image size, and results equal to the
whole-batch computation to float32 rounding (XLA may block a conv differently per batch size)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sar_jax.core.config import load_config
from sar_jax.inference import run as inference
from sar_jax.nn.models import SARAutoencoder
from sar_jax.ops.micro_batches import (
    CPU_PIXELS_PER_MICRO_BATCH,
    map_micro_batches,
    micro_batch_size,
)
from sar_jax.training.losses import per_image_metrics
from sar_jax.training.state import compile_steps, create_train_state


def close(a, b):
    assert a.shape == b.shape
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_micro_batch_size_rules():
    assert CPU_PIXELS_PER_MICRO_BATCH == 2 * 256 * 256
    assert micro_batch_size(8, 256 * 256, platform="cpu") == 2
    assert micro_batch_size(8, 512 * 512, platform="cpu") == 1
    assert micro_batch_size(16, 64 * 64, platform="cpu") == 16  # small images stay whole
    assert micro_batch_size(8, 256 * 256, platform="gpu") == 8
    assert micro_batch_size(1, 1024 * 1024, platform="cpu") == 1


@pytest.fixture(scope="module")
def trained_like():
    """A small model with non-trivial BatchNorm statistics, on 256x256 inputs (3 = 2 + remainder 1)."""
    config, _ = load_config("quickstart")
    model = SARAutoencoder.from_config(config["model"])
    state = create_train_state(model, config)
    rng = np.random.default_rng(0)
    stats = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), jnp.float32),
                         state.batch_stats)
    state = state.replace(batch_stats=stats)
    x = jnp.asarray(rng.random((3, 256, 256, 1), dtype=np.float32))
    return config, model, state, x


def test_map_equals_whole_batch(trained_like):
    _, model, state, x = trained_like
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def fn(b):
        return model.apply(variables, b, train=False)

    whole = jax.jit(fn)(x)
    split = jax.jit(lambda b: map_micro_batches(fn, b, 256 * 256))(x)
    assert micro_batch_size(3, 256 * 256) == 2  # really split, with a remainder
    for a, b in zip(whole, split):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_steps_and_inference_use_it_and_agree(trained_like):
    config, model, state, x = trained_like
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    x_hat, z = model.apply(variables, x, train=False)
    steps = compile_steps(model, config)
    close(steps["predict"](variables, x), x_hat)
    close(inference.reconstruct_fn(model)(variables, x)[0], x_hat)
    close(inference.encode_fn(model)(variables, x), z)
    close(inference.decode_fn(model)(variables, z), x_hat)
    weights = {"mse_weight": 0.5, "ssim_weight": 0.5, "window_size": 11}
    got = steps["eval_step"](state, x)
    want = per_image_metrics(x_hat, x, **weights)
    for key in ("loss", "mse", "ssim", "psnr"):
        assert got[key].shape == (3,)
        close(got[key], want[key])
