"""Parity of the despeckling U-Net: eval forward, MSE loss and its gradient per parameter, and a
few lockstep clip + Adam steps, from the same weights copied across with
:func:`sar_jax.parity.convert_unet.torch_to_flax`.

Inputs are a smooth "reflectivity" plus noise (the despeckling task's shape, in the normalised
log domain); the loss is the MSE to the smooth image (``train.target: clean``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sar_jax.parity.fixtures import current_torch_device, nchw, nhwc
from sar_jax.parity.rows import TOL, Row, max_abs, rel_err, row


def unet_config(features: int = 8, depth: int = 2, in_channels: int = 1) -> dict[str, Any]:
    """A ``model`` config section of kind ``unet``."""
    from sar_jax.core.config import default_config

    return dict(default_config()["model"], kind="unet", unet_features=features, unet_depth=depth,
                in_channels=in_channels)


def torch_unet(model_cfg: dict[str, Any], seed: int = 0) -> Any:
    """A reference U-Net with torch's default init, on the reference's device."""
    import torch

    from sar_torch_ref.models.unet import UNet

    torch.manual_seed(seed)
    return UNet(model_cfg).to(current_torch_device())


def noisy_pairs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, clean)`` NHWC float32: smooth random fields in [0, 1] and the same + N(0, 0.1)."""
    rng = np.random.default_rng(seed)
    clean = np.cumsum(np.cumsum(rng.standard_normal((n, size, size, 1)), axis=1), axis=2)
    lo, hi = clean.min(axis=(1, 2, 3), keepdims=True), clean.max(axis=(1, 2, 3), keepdims=True)
    clean = ((clean - lo) / (hi - lo)).astype(np.float32)
    return (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32), clean


def _mse(x_hat: Any, target: Any) -> Any:
    import jax.numpy as jnp

    return jnp.mean(jnp.square(x_hat - target))


def check_unet_forward(size: int = 32, batch: int = 2, features: int = 8, depth: int = 2,
                       seed: int = 0) -> list[Row]:
    """Eval-mode x_hat (1e-5 absolute), the MSE to the clean image (1e-5 relative) and its gradient
    for every parameter (1e-4 relative)."""
    import jax

    from sar_jax.nn.unet import UNet
    from sar_jax.parity.convert_unet import flax_to_torch, torch_to_flax
    from sar_torch_ref.losses.mse import mse

    cfg = unet_config(features, depth)
    tmodel = torch_unet(cfg, seed)
    variables = torch_to_flax(tmodel.state_dict(), cfg)
    jmodel = UNet.from_config(cfg)
    x, clean = noisy_pairs(batch, size, seed)

    def loss_fn(params: Any) -> tuple[Any, Any]:
        x_hat, _ = jmodel.apply({"params": params}, x, train=False)
        return _mse(x_hat, clean), x_hat

    (loss_j, j_xhat), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
    t_xhat, _ = tmodel.eval()(nchw(x))
    loss_t = mse(t_xhat, nchw(clean))
    loss_t.backward()
    jg = flax_to_torch({"params": grads}, cfg)
    name = f"unet forward + gradients (features {features}, depth {depth}, {batch}x{size}x{size}, eval)"
    loss_rel = abs(float(loss_j) - float(loss_t.detach())) / abs(float(loss_t.detach()))
    rels = {n: rel_err(jg[n].numpy(), p.grad.cpu().numpy()) for n, p in tmodel.named_parameters()}
    rows = [row(name, "x_hat max|diff|", max_abs(j_xhat, nhwc(t_xhat)), TOL["forward"]),
            row(name, "x_hat max|x_hat| (scale of the diff)", float(np.max(np.abs(nhwc(t_xhat)))), op="info"),
            row(name, "MSE loss |diff| / loss", loss_rel, TOL["loss"]),
            row(name, f"max over {len(rels)} parameters of ||g_jax - g_torch|| / ||g_torch||",
                max(rels.values()), TOL["grad_rel"])]
    return rows + [row(name, f"{n}: relative error", v, TOL["grad_rel"]) for n, v in rels.items()]


def unet_lockstep(steps: int = 5, seed: int = 0, lr: float = 1e-3, features: int = 8, depth: int = 2,
                  size: int = 32, batch: int = 4, max_grad_norm: float = 1.0) -> dict[str, Any]:
    """Both U-Nets from the same weights, ``steps`` clip + Adam steps on the MSE to the clean image,
    the same batches: ``sar_jax.training.state.make_optimizer`` (optax) vs ``clip_grad_norm_`` +
    ``torch.optim.Adam``. Returns both per-step loss curves and the final parameters' difference."""
    import jax
    import optax
    import torch

    from sar_jax.nn.unet import UNet
    from sar_jax.parity.convert_unet import flax_to_torch, torch_to_flax
    from sar_jax.training.state import make_optimizer
    from sar_torch_ref.losses.mse import mse

    cfg = unet_config(features, depth)
    tmodel = torch_unet(cfg, seed).train()
    params = torch_to_flax(tmodel.state_dict(), cfg)["params"]
    jmodel = UNet.from_config(cfg)
    tx = make_optimizer({"lr": lr, "max_grad_norm": max_grad_norm})
    opt_state = tx.init(params)

    @jax.jit
    def step(params: Any, opt_state: Any, x: Any, clean: Any) -> tuple[Any, Any, Any]:
        loss, grads = jax.value_and_grad(lambda p: _mse(jmodel.apply({"params": p}, x, train=True)[0], clean))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    optimizer = torch.optim.Adam(tmodel.parameters(), lr=lr)
    j_losses, t_losses = [], []
    for k in range(steps):
        x, clean = noisy_pairs(batch, size, seed + 1 + k)
        params, opt_state, loss = step(params, opt_state, x, clean)
        j_losses.append(float(loss))
        optimizer.zero_grad()
        t_loss = mse(tmodel(nchw(x))[0], nchw(clean))
        t_loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), max_grad_norm)
        optimizer.step()
        t_losses.append(float(t_loss.detach()))
    final, tsd = flax_to_torch({"params": params}, cfg), tmodel.state_dict()
    diff = np.sqrt(sum(float(((final[n].double() - tsd[n].cpu().double()) ** 2).sum()) for n in tsd))
    norm = np.sqrt(sum(float((tsd[n].cpu().double() ** 2).sum()) for n in tsd))
    return {"jax_loss": j_losses, "torch_loss": t_losses, "param_rel": diff / norm, "steps": steps, "lr": lr,
            "features": features, "depth": depth, "size": size, "batch": batch}


def check_unet_lockstep(steps: int = 5, seed: int = 0, lr: float = 1e-3) -> list[Row]:
    """Rows of :func:`unet_lockstep`: per-step loss within 1e-3 relative."""
    res = unet_lockstep(steps, seed, lr)
    j, t = np.asarray(res["jax_loss"], np.float64), np.asarray(res["torch_loss"], np.float64)
    name = (f"unet lockstep ({steps} clip + Adam steps, features {res['features']}, depth {res['depth']}, "
            f"{res['batch']}x{res['size']}x{res['size']}, lr {lr:g}, seed {seed})")
    return [row(name, "per-step loss max rel diff", float(np.max(np.abs(j - t) / np.abs(t))), TOL["lockstep_loss_rel"]),
            row(name, f"loss first -> last step: {t[0]:.4g} -> {t[-1]:.4g} (torch)", t[-1] / t[0], op="info",
                tolerance_text="info (ratio last / first)"),
            row(name, "final params ||diff|| / ||params||", res["param_rel"], TOL["lockstep_param_rel"])]
