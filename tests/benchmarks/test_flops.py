"""The analytic FLOP counter against a hand computation."""

from __future__ import annotations

import pytest

from benchmarks.flops import conv_layers, forward_flops, peak_tflops, train_flops
from sar_jax.core.config import load_config


def test_baseline_forward_is_6_92_gflop_per_256_image():
    """Hand computation, 2 FLOPs per MAC, 5x5 kernels (25 taps):
    encoder block0 128^2 * 25 * 1 * 64, block1 64^2 * 25 * 64 * 128, block2 32^2 * 25 * 128 * 256,
    final 16^2 * 25 * 256 * 16 (output pixels); decoder block0 16^2 * 25 * 16 * 256,
    block1 32^2 * 25 * 256 * 128, block2 64^2 * 25 * 128 * 64, final 128^2 * 25 * 64 * 1
    (input pixels of each transposed conv)."""
    model = load_config("baseline")[0]["model"]
    edge = 128 * 128 * 25 * 64  # 26.2 M MACs: block0, encoder final, decoder block0, decoder final
    big = 64 * 64 * 25 * 64 * 128  # 838.9 M MACs: the four 64<->128 and 128<->256 layers
    assert 16 * 16 * 25 * 256 * 16 == edge and 32 * 32 * 25 * 128 * 256 == big
    hand = 2 * (4 * edge + 4 * big)
    assert forward_flops(model, 256) == hand
    assert forward_flops(model, 256) == pytest.approx(6.92e9, rel=1e-3)
    assert train_flops(model, 256) == 3 * hand
    assert [layer["macs"] for layer in conv_layers(model, 256)] == [edge, big, big, edge, edge, big, big, edge]


def test_flops_scale_with_pixels_and_layers_have_shapes():
    model = load_config("baseline")[0]["model"]
    assert forward_flops(model, 512) == 4 * forward_flops(model, 256)
    layers = conv_layers(model, 256)
    assert [(layer["in_size"], layer["out_size"]) for layer in layers] == [
        (256, 128), (128, 64), (64, 32), (32, 16), (16, 32), (32, 64), (64, 128), (128, 256)]
    with pytest.raises(ValueError):
        conv_layers(model, 100)


def test_peak_table():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "fp32") == 51.0
    assert peak_tflops("NVIDIA H200", "fp32") == 67.0
    assert peak_tflops("NVIDIA A100-SXM4-40GB", "bf16") == 312.0
    assert peak_tflops("AMD EPYC", "fp32") is None
