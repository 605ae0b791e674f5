"""Per-layer profile: each convolution of the model timed in isolation, JAX vs PyTorch.

For every conv layer at its real shape (batch B, image S), fp32: the forward, the input
gradient and the kernel gradient each alone, and forward + backward (both gradients of
``sum(y * g)``), the two frameworks alternated in one process; plus the loss (MSE + SSIM)
forward and forward + backward on a batch. JAX runs the project's layers
(:mod:`sar_jax.nn.layers`), PyTorch ``aten.convolution`` / ``aten.convolution_backward`` (what
``F.conv2d`` / ``F.conv_transpose2d`` and their autograd call). The input gradient of the first
encoder layer is timed here although the model does not need it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.flops import conv_layers


def _median_ms(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def profile_layers(config: dict[str, Any], batch_size: int, image_size: int, repeats: int = 3,
                   device: str = "cpu") -> list[dict[str, Any]]:
    """Rows ``{layer, kind, gflop_fwd, {jax,torch}_{fwd,input_grad,kernel_grad,fwd_bwd}_ms}`` for
    every conv layer, then one ``loss`` row (fwd and fwd_bwd only)."""
    import jax
    import jax.numpy as jnp
    import torch

    from sar_jax.nn.layers import StridedConv, TransposedConv
    from sar_jax.training.losses import combined_loss
    from sar_torch_ref.losses.combined import CombinedLoss

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    rows = []
    for layer in conv_layers(config["model"], image_size):
        ci, co, s_in, s_out = layer["in_channels"], layer["out_channels"], layer["in_size"], layer["out_size"]
        x = rng.standard_normal((batch_size, s_in, s_in, ci), dtype=np.float32)
        g = rng.standard_normal((batch_size, s_out, s_out, co), dtype=np.float32)
        k = (rng.standard_normal((5, 5, ci, co)) * 0.05).astype(np.float32)
        strided = layer["kind"] == "conv"
        module = StridedConv(co) if strided else TransposedConv(co)

        def jfwd(kk, xx, module=module):
            return module.apply({"params": {"kernel": kk}}, xx)

        def jloss(kk, xx, gg, jfwd=jfwd):
            return jnp.sum(jfwd(kk, xx) * gg)

        fwd = jax.jit(jfwd)
        # value_and_grad, not grad: with grad alone XLA drops the forward conv (its output is
        # not needed for the gradients), so "fwd+bwd" would time the backward only
        fwd_bwd = jax.jit(jax.value_and_grad(jloss, argnums=(0, 1)))
        # one cotangent each: XLA keeps only that gradient's computation (no forward)
        input_grad = jax.jit(lambda kk, xx, gg, jfwd=jfwd: jax.vjp(lambda a: jfwd(kk, a), xx)[1](gg)[0])
        kernel_grad = jax.jit(lambda kk, xx, gg, jfwd=jfwd: jax.vjp(lambda w: jfwd(w, xx), kk)[1](gg)[0])
        xj, kj, gj = jnp.asarray(x), jnp.asarray(k), jnp.asarray(g)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev).requires_grad_(True)
        gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy()).to(dev)
        if strided:
            wt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).to(dev).requires_grad_(True)
        else:
            wt = torch.from_numpy(k.transpose(2, 3, 0, 1).copy()).to(dev).requires_grad_(True)
        conv_args = ([2, 2], [2, 2], [1, 1], not strided, [0, 0] if strided else [1, 1], 1)

        def tfwd(xt=xt, wt=wt, conv_args=conv_args):
            with torch.no_grad():
                torch.ops.aten.convolution(xt, wt, None, *conv_args)
            sync()

        def tgrad(xt=xt, wt=wt, gt=gt, conv_args=conv_args):
            xt.grad = wt.grad = None
            (torch.ops.aten.convolution(xt, wt, None, *conv_args) * gt).sum().backward()
            sync()

        def tpiece(mask, xt=xt, wt=wt, gt=gt, conv_args=conv_args):
            def run():
                with torch.no_grad():
                    torch.ops.aten.convolution_backward(gt, xt, wt, None, *conv_args, mask)
                sync()
            return run

        ms = _median_ms({"jax_fwd_ms": lambda: jax.block_until_ready(fwd(kj, xj)), "torch_fwd_ms": tfwd,
                         "jax_input_grad_ms": lambda: jax.block_until_ready(input_grad(kj, xj, gj)),
                         "torch_input_grad_ms": tpiece([True, False, False]),
                         "jax_kernel_grad_ms": lambda: jax.block_until_ready(kernel_grad(kj, xj, gj)),
                         "torch_kernel_grad_ms": tpiece([False, True, False]),
                         "jax_fwd_bwd_ms": lambda: jax.block_until_ready(fwd_bwd(kj, xj, gj)),
                         "torch_fwd_bwd_ms": tgrad}, repeats)
        rows.append({"layer": layer["name"], "kind": layer["kind"], "gflop_fwd": 2 * layer["macs"] * batch_size / 1e9,
                     **{k2: round(v, 2) for k2, v in ms.items()}})

    c_in = config["model"]["in_channels"]
    x = rng.random((batch_size, image_size, image_size, c_in), dtype=np.float32)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32), 0, 1)
    lw = config["loss"]
    jl = jax.jit(jax.value_and_grad(lambda a, b: combined_loss(a, b, lw["mse_weight"], lw["ssim_weight"],
                                                               lw["ssim_window"])[0]))
    jl_fwd = jax.jit(lambda a, b: combined_loss(a, b, lw["mse_weight"], lw["ssim_weight"], lw["ssim_window"])[0])
    yj, xj = jnp.asarray(y), jnp.asarray(x)
    loss_fn = CombinedLoss.from_config(config).to(dev)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
    yt = torch.from_numpy(y.transpose(0, 3, 1, 2).copy()).to(dev).requires_grad_(True)

    def tl_fwd():
        with torch.no_grad():
            loss_fn(yt, xt)
        sync()

    def tl_grad():
        yt.grad = None
        loss_fn(yt, xt)[0].backward()
        sync()

    ms = _median_ms({"jax_fwd_ms": lambda: jax.block_until_ready(jl_fwd(yj, xj)), "torch_fwd_ms": tl_fwd,
                     "jax_fwd_bwd_ms": lambda: jax.block_until_ready(jl(yj, xj)), "torch_fwd_bwd_ms": tl_grad},
                    repeats)
    rows.append({"layer": "loss (MSE + SSIM)", "kind": "loss", "gflop_fwd": None,
                 **{k2: round(v, 2) for k2, v in ms.items()}})
    return rows
