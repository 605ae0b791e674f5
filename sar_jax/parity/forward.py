"""Check 1: forward passes (eval and train mode) and BatchNorm running-stat updates of the same
weights, copied across with :func:`sar_jax.parity.convert.torch_to_flax`."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from sar_jax.parity.fixtures import model_config, nchw, nhwc, torch_model
from sar_jax.parity.rows import TOL, Row, max_abs, row


def check_forward(size: int = 256, batch: int = 2, base: int = 64, latent: int = 16,
                  seed: int = 0) -> list[Row]:
    """Eval- and train-mode outputs and BatchNorm running-stat updates of the same weights.

    x_hat (a sigmoid output in (0, 1)) is held to 1e-5 absolute. The latent z is not bounded:
    in train mode it reaches |z| ~ 16, where float32 values are 1.9e-6 apart and torch itself is
    ~5e-5 away from a float64 evaluation of the same model; z is therefore held to 1e-5 relative
    to max(1, max|z|). Context rows give each side's distance to the float64 evaluation.
    """
    import jax
    import torch

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.parity.convert import torch_to_flax

    cfg = model_config(base, latent)
    tmodel = torch_model(cfg, seed)
    variables = torch_to_flax(tmodel.state_dict())
    jmodel = SARAutoencoder.from_config(cfg)
    x = np.random.default_rng(seed).random((batch, size, size, 1), dtype=np.float32)
    name = f"1 forward (base {base}, {batch}x{size}x{size})"
    rows = []
    t64 = copy.deepcopy(tmodel).double()
    for mode in ("eval", "train"):
        train = mode == "train"
        with torch.no_grad():
            t_xhat, t_z = tmodel.train(train)(nchw(x))
            r_xhat, r_z = t64.train(train)(nchw(x).double())
        if train:
            (j_xhat, j_z), upd = jax.jit(lambda v, x: jmodel.apply(v, x, train=True, mutable=["batch_stats"]))(
                variables, x)
        else:
            j_xhat, j_z = jax.jit(lambda v, x: jmodel.apply(v, x, train=False))(variables, x)
        t_xhat, t_z, r_xhat, r_z = nhwc(t_xhat), nhwc(t_z), nhwc(r_xhat), nhwc(r_z)
        scale = max(1.0, float(np.max(np.abs(r_z))))
        rows += [row(name, f"{mode} x_hat max|diff|", max_abs(j_xhat, t_xhat), TOL["forward"]),
                 row(name, f"{mode} z max|diff| (max|z| = {scale:.3g})", max_abs(j_z, t_z), TOL["forward"] * scale,
                     tolerance_text=f"<= 1e-5 x max(1, max|z|) = {TOL['forward'] * scale:.3g}"),
                 row(name, f"{mode} z max|diff| of JAX / of torch vs float64 torch: "
                           f"{max_abs(j_z, r_z):.2g} / {max_abs(t_z, r_z):.2g}",
                     max_abs(j_z, r_z) / max(max_abs(t_z, r_z), 1e-30), op="info",
                     tolerance_text="info (ratio JAX err / torch err)")]
    t_stats = torch_to_flax(tmodel.state_dict())["batch_stats"]
    mean_diff = max(max_abs(j, t) for j, t in zip(_leaves(upd["batch_stats"], "mean"), _leaves(t_stats, "mean")))
    var_diff = max(max_abs(j, t) for j, t in zip(_leaves(upd["batch_stats"], "var"), _leaves(t_stats, "var")))
    rows += [row(name, "updated BN running_mean max|diff|", mean_diff, TOL["bn_stats"]),
             row(name, "updated BN running_var max|diff|", var_diff, TOL["bn_stats"])]
    return rows


def _leaves(tree: Any, key: str) -> list[Any]:
    import jax

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [v for p, v in sorted(flat, key=lambda kv: str(kv[0])) if str(getattr(p[-1], "key", "")) == key]
