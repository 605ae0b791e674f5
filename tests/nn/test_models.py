"""Model shapes, parameter tree, init statistics and the exact conv rewrites."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sar_jax.core.config import load_config
from sar_jax.nn.layers import BatchNorm, StridedConv, TransposedConv
from sar_jax.nn.models import SARAutoencoder
from sar_jax.nn.registry import init_variables


@pytest.fixture(scope="module")
def baseline():
    config = load_config("baseline")[0]
    model = SARAutoencoder.from_config(config["model"])
    return model, init_variables(model, jax.random.PRNGKey(0))


def test_baseline_shapes(baseline):
    model, variables = baseline
    x = jnp.full((1, 256, 256, 1), 0.5, jnp.float32)
    x_hat, z = model.apply(variables, x, train=False)
    assert z.shape == (1, 16, 16, 16)
    assert x_hat.shape == (1, 256, 256, 1)
    assert x_hat.dtype == jnp.float32
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0


def test_param_tree_mirrors_reference(baseline):
    _, variables = baseline
    flat = {"/".join(k.key for k in path): v.shape
            for path, v in jax.tree_util.tree_flatten_with_path(variables["params"])[0]}
    expected = {}
    for i, (cin, cout) in enumerate([(1, 64), (64, 128), (128, 256)]):
        expected[f"encoder/block{i}/conv/kernel"] = (5, 5, cin, cout)
        expected[f"encoder/block{i}/bn/scale"] = (cout,)
        expected[f"encoder/block{i}/bn/bias"] = (cout,)
    expected["encoder/final/kernel"] = (5, 5, 256, 16)
    expected["encoder/final/bias"] = (16,)
    for i, (cin, cout) in enumerate([(16, 256), (256, 128), (128, 64)]):
        expected[f"decoder/block{i}/deconv/kernel"] = (5, 5, cin, cout)
        expected[f"decoder/block{i}/bn/scale"] = (cout,)
        expected[f"decoder/block{i}/bn/bias"] = (cout,)
    expected["decoder/final/kernel"] = (5, 5, 64, 1)
    expected["decoder/final/bias"] = (1,)
    assert flat == expected
    stats = {"/".join(k.key for k in path) for path, _ in
             jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]}
    assert stats == {f"{part}/block{i}/bn/{s}" for part in ("encoder", "decoder")
                     for i in range(3) for s in ("mean", "var")}


def test_init_statistics_match_kaiming_fan_out(baseline):
    """std = gain / sqrt(fan_out), torch's fan_out = weight.size(0) * 25 (out channels for
    Conv2d, in channels for ConvTranspose2d); within 5%."""
    _, variables = baseline
    gain = math.sqrt(2.0 / (1 + 0.2**2))
    params = variables["params"]
    for part, layer in itertools.product(("encoder", "decoder"), ("block0", "block1", "block2", "final")):
        sub = params[part][layer]
        kernel = np.asarray(sub["kernel"] if layer == "final" else
                            sub["conv" if part == "encoder" else "deconv"]["kernel"])
        cin, cout = kernel.shape[2:]
        fan = (cout if part == "encoder" else cin) * 25
        expected = gain / math.sqrt(fan)
        if kernel.size > 1000:
            assert abs(kernel.std() / expected - 1) < 0.05, (part, layer, kernel.std(), expected)
        if layer == "final":
            assert np.all(np.asarray(sub["bias"]) == 0)
        else:
            assert np.all(np.asarray(sub["bn"]["scale"]) == 1) and np.all(np.asarray(sub["bn"]["bias"]) == 0)


@pytest.mark.parametrize("size", [16, 20])
def test_strided_conv_equals_torch(size):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    w = rng.standard_normal((6, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                     stride=2, padding=2).numpy()
    out = StridedConv(6, use_bias=True).apply(
        {"params": {"kernel": w.transpose(2, 3, 1, 0), "bias": b}}, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=2e-5, rtol=1e-5)


def test_transposed_conv_equals_torch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    w = rng.standard_normal((3, 6, 5, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                               stride=2, padding=2, output_padding=1).numpy()
    out = TransposedConv(6, use_bias=True).apply(
        {"params": {"kernel": w.transpose(2, 3, 0, 1), "bias": b}}, x.transpose(0, 2, 3, 1))
    assert out.shape == (2, 14, 18, 6)
    np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=2e-5, rtol=1e-5)


def test_batchnorm_matches_torch_including_unbiased_running_var():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (4, 5, 5, 3)).astype(np.float32)
    bn = BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), x, train=False)
    y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    tbn = torch.nn.BatchNorm2d(3)
    ty = tbn(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(y), ty, atol=1e-5)
    np.testing.assert_allclose(np.asarray(updates["batch_stats"]["mean"]), tbn.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["batch_stats"]["var"]), tbn.running_var.numpy(), atol=1e-6)


def test_bfloat16_model_stays_close_to_float32(tiny_config):
    m32 = SARAutoencoder.from_config(tiny_config["model"])
    m16 = SARAutoencoder.from_config(tiny_config["model"], dtype=jnp.bfloat16)
    variables = init_variables(m32, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 1))
    y32, _ = m32.apply(variables, x, train=False)
    y16, _ = m16.apply(variables, x, train=False)
    assert y16.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(y32 - y16))) < 3e-2
    assert float(jnp.max(jnp.abs(y32 - y16))) > 0  # it really computed in bf16
