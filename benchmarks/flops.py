"""Analytic FLOPs of the SAR autoencoder, from the layer shapes, and accelerator peaks.

Convention: one multiply-accumulate (MAC) = 2 FLOPs; only the convolutions are counted
(BatchNorm, activations, sigmoid and the loss are O(activations) and below 1 % of the total).
A stride-2 5x5 ``Conv2d`` costs ``H_out * W_out * k^2 * C_in * C_out`` MACs; a
``ConvTranspose2d`` the same with the INPUT pixels (each input pixel meets every tap once),
i.e. the direct definition, not any particular implementation (the JAX rewrites compute some
structural zeros; those are not counted). A train step is counted as 3x the forward
(forward + input gradient + weight gradient), the usual convention.

For the baseline (base 64, latent 16, 1 channel, k 5) at 256x256 the forward is
6.92 GFLOP/image: the four big layers (block1/block2 of encoder and decoder) are
838.9 M MACs each, the four edge layers 26.2 M MACs each.
"""

from __future__ import annotations

from typing import Any

#: Dense peak TFLOP/s (no sparsity) of known accelerators, by precision; fp32 is plain FP32
#: (not TF32). Matched against the device name by substring, first match wins.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},  # SXM
    "A100": {"bf16": 312.0, "fp32": 19.5},
}


def conv_layers(model_cfg: dict[str, Any], image_size: int) -> list[dict[str, Any]]:
    """Every convolution of the model: name, kind, in/out channels, in/out size, MACs per image."""
    c_in, b, lat, k = (model_cfg["in_channels"], model_cfg["base_channels"], model_cfg["latent_channels"],
                       model_cfg.get("kernel_size", 5))
    if image_size % 16:
        raise ValueError(f"image size {image_size} is not a multiple of 16")
    layers = []
    size = image_size
    for name, ci, co in [("encoder.block0", c_in, b), ("encoder.block1", b, 2 * b),
                         ("encoder.block2", 2 * b, 4 * b), ("encoder.final", 4 * b, lat)]:
        out = size // 2
        layers.append({"name": name, "kind": "conv", "in_channels": ci, "out_channels": co,
                       "in_size": size, "out_size": out, "macs": out * out * k * k * ci * co})
        size = out
    for name, ci, co in [("decoder.block0", lat, 4 * b), ("decoder.block1", 4 * b, 2 * b),
                         ("decoder.block2", 2 * b, b), ("decoder.final", b, c_in)]:
        out = size * 2
        layers.append({"name": name, "kind": "conv_transpose", "in_channels": ci, "out_channels": co,
                       "in_size": size, "out_size": out, "macs": size * size * k * k * ci * co})
        size = out
    return layers


def forward_flops(model_cfg: dict[str, Any], image_size: int) -> float:
    """Forward FLOPs per image (2 per MAC)."""
    return 2.0 * sum(layer["macs"] for layer in conv_layers(model_cfg, image_size))


def train_flops(model_cfg: dict[str, Any], image_size: int) -> float:
    """Train-step FLOPs per image: 3x the forward (forward, input and weight gradients)."""
    return 3.0 * forward_flops(model_cfg, image_size)


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak of a known accelerator for ``precision`` ("fp32"/"bf16"), else None."""
    for key, peaks in PEAK_TFLOPS.items():
        if key.lower() in device_name.lower():
            return peaks.get(precision)
    return None
