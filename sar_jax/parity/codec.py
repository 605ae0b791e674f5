"""The learned codecs' parity (``model.kind`` factorized / hyperprior): forward passes in both modes
with the same explicit quantisation noise, rate, rate-distortion loss, gradients, aux loss, and a short
lockstep training, of the same weights copied across with :mod:`sar_jax.parity.convert_codec`."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from sar_jax.parity.fixtures import nchw, nhwc
from sar_jax.parity.rows import TOL, Row, max_abs, rel_err, row

LMBDA = 100.0


def torch_codec(kind: str, N: int = 8, M: int = 8, seed: int = 0, in_channels: int = 1) -> Any:  # noqa: N803
    """A reference codec with torch's init, then perturbed so that every part matters: y, z and the
    hyperprior's scales spread over several quantisation bins (the last convs of g_a, h_a and h_s
    scaled up), GDN and the density's parameters randomised, medians off zero."""
    import torch

    from sar_torch_ref.models import FactorizedPrior, ScaleHyperprior

    torch.manual_seed(seed)
    model = (ScaleHyperprior if kind == "hyperprior" else FactorizedPrior)({"in_channels": in_channels, "N": N,
                                                                            "M": M})
    gen = torch.Generator().manual_seed(seed + 1)
    rand = lambda t: torch.rand(t.shape, generator=gen)  # noqa: E731
    with torch.no_grad():
        scaled = [model.g_a.conv3] + ([model.h_a.conv2, model.h_s.conv2] if kind == "hyperprior" else [])
        for conv, factor in zip(scaled, (40.0, 40.0, 30.0)):
            conv.weight.mul_(factor)
            conv.bias.mul_(factor)
        for name, p in model.named_parameters():
            if name.endswith(".beta"):
                p.copy_(torch.sqrt(0.5 + rand(p)))
            elif name.endswith(".gamma"):
                p.copy_(torch.sqrt(0.1 * torch.eye(p.shape[0]) + 0.05 * rand(p)))
            elif name == "entropy_bottleneck.quantiles":
                p.copy_(torch.stack([-8 - rand(p[..., 0]), rand(p[..., 1]) - 0.5, 8 + rand(p[..., 2])], -1))
            elif name.startswith("entropy_bottleneck."):
                p.add_(0.3 * (2 * rand(p) - 1))
    return model


def _torch_rd(x_hat: Any, likelihoods: dict[str, Any], x: Any, lmbda: float) -> tuple[Any, Any]:
    """(lmbda * MSE + bpp, bpp) of an NCHW batch."""
    import torch

    n, _, h, w = x.shape
    bpp = sum(-torch.log2(v).sum() for v in likelihoods.values()) / (n * h * w)
    return lmbda * torch.mean((x_hat - x) ** 2) + bpp, bpp


def _jax_rd(model: Any, params: Any, x: Any, train: bool, noise: Any, lmbda: float) -> tuple[Any, Any]:
    """(loss, (x_hat, likelihoods, bpp)) with sar_jax's own rate-distortion loss (MSE)."""
    import jax.numpy as jnp

    from sar_jax.training.losses import bits_per_pixel, rate_distortion_per_image

    x_hat, lik = model.apply({"params": params}, x, train=train, noise=noise)
    loss = jnp.mean(rate_distortion_per_image(x_hat, lik, x, lmbda=lmbda, distortion="mse", window_size=11)["loss"])
    return loss, (x_hat, lik, jnp.mean(bits_per_pixel(lik, x.shape[1] * x.shape[2])))


def _noise(kind: str, size: int, batch: int, N: int, M: int, rng: np.random.Generator) -> dict[str, np.ndarray]:  # noqa: N803
    """U(-0.5, 0.5) for y (and z), NHWC."""
    noise = {"y": rng.uniform(-0.5, 0.5, (batch, size // 16, size // 16, M)).astype(np.float32)}
    if kind == "hyperprior":
        noise["z"] = rng.uniform(-0.5, 0.5, (batch, size // 64, size // 64, N)).astype(np.float32)
    return noise


def _setup(kind: str, size: int, batch: int, N: int, M: int, seed: int) -> tuple[Any, Any, Any, np.ndarray]:  # noqa: N803
    from sar_jax.nn.registry import model_class
    from sar_jax.parity.convert_codec import torch_to_flax

    tmodel = torch_codec(kind, N, M, seed)
    params = torch_to_flax(tmodel.state_dict(), kind)["params"]
    jmodel = model_class(kind).from_config({"in_channels": 1, "N": N, "M": M})
    x = np.random.default_rng(seed).random((batch, size, size, 1), dtype=np.float32)
    return tmodel, jmodel, params, x


def check_codec_forward(kind: str = "factorized", size: int = 64, batch: int = 2, N: int = 8, M: int = 8,  # noqa: N803
                        seed: int = 0) -> list[Row]:
    """Eval and train mode (the same explicit noise on both sides): x_hat and every likelihood array
    (<= 1e-5 absolute), bpp and ``lmbda * MSE + bpp`` (<= 1e-5 relative); train mode: that loss's
    gradient per parameter (<= 1e-4 relative), and the aux loss and its gradient (the quantiles')."""
    import jax

    from sar_jax.parity.convert_codec import flax_to_torch

    tmodel, jmodel, params, x = _setup(kind, size, batch, N, M, seed)
    noise = _noise(kind, size, batch, N, M, np.random.default_rng(seed + 2))
    name = f"codec forward ({kind}, N {N}, M {M}, {batch}x{size}x{size})"
    rows: list[Row] = []
    for mode in ("eval", "train"):
        train = mode == "train"
        tmodel.train(train)
        tmodel.zero_grad(set_to_none=True)
        t_xhat, t_lik = tmodel(nchw(x), {k: nchw(v) for k, v in noise.items()} if train else None)
        t_loss, t_bpp = _torch_rd(t_xhat, t_lik, nchw(x), LMBDA)
        tl, tb = float(t_loss.detach()), float(t_bpp.detach())
        fn = lambda p, x, n, train=train: _jax_rd(jmodel, p, x, train, n, LMBDA)  # noqa: E731
        if train:
            (j_loss, (j_xhat, j_lik, j_bpp)), grads = jax.jit(jax.value_and_grad(fn, has_aux=True))(params, x, noise)
        else:
            j_loss, (j_xhat, j_lik, j_bpp) = jax.jit(fn)(params, x, None)
        rows.append(row(name, f"{mode} x_hat max|diff|", max_abs(j_xhat, nhwc(t_xhat)), TOL["forward"]))
        rows += [row(name, f"{mode} likelihoods {k} max|diff|", max_abs(j_lik[k], nhwc(t_lik[k])), TOL["forward"])
                 for k in sorted(t_lik)]
        rows += [row(name, f"{mode} bpp relative diff ({tb:.4g} bpp)", abs(float(j_bpp) - tb) / tb, TOL["loss"]),
                 row(name, f"{mode} lmbda {LMBDA:g} * MSE + bpp relative diff ({tl:.4g})",
                     abs(float(j_loss) - tl) / tl, TOL["loss"])]
    t_loss.backward()
    jg = flax_to_torch({"params": grads}, kind)
    rels = {n: rel_err(jg[n].numpy(), np.zeros(p.shape) if p.grad is None else p.grad.numpy())
            for n, p in tmodel.named_parameters()}
    rows.append(row(name, f"train gradients: max over {len(rels)} parameters of ||g_jax - g_torch|| / ||g_torch||",
                    max(rels.values()), TOL["grad_rel"]))
    rows += [row(name, f"train gradient {n}: relative error", v, TOL["grad_rel"]) for n, v in rels.items()]
    tmodel.zero_grad(set_to_none=True)
    t_aux = tmodel.aux_loss()
    t_aux.backward()
    j_aux, j_aux_grads = jax.value_and_grad(lambda p: jmodel.apply({"params": p}, method="aux_loss"))(params)
    ta = float(t_aux.detach())
    rows += [row(name, f"aux loss relative diff ({ta:.4g})", abs(float(j_aux) - ta) / ta, TOL["loss"]),
             row(name, "aux loss gradient (quantiles) relative error",
                 rel_err(j_aux_grads["entropy_bottleneck"]["quantiles"],
                         tmodel.entropy_bottleneck.quantiles.grad.numpy()), TOL["grad_rel"])]
    return rows


def codec_lockstep(kind: str = "factorized", steps: int = 5, seed: int = 0, lr: float = 1e-3, aux_lr: float = 1e-3,
                   max_grad_norm: float = 1.0, size: int = 64, batch: int = 2, N: int = 8,  # noqa: N803
                   M: int = 8) -> dict[str, Any]:  # noqa: N803
    """Adam steps on both sides from the same weights on the same batch with the same noise per step:
    ``lmbda * MSE + bpp + aux`` minimised by sar_jax's codec optimizer
    (:func:`sar_jax.training.state.make_optimizer`: clip + Adam(lr), Adam(aux_lr) for the quantiles)
    and by the reference's pair (clip_grad_norm_ + Adam on the main parameters, Adam on the quantiles,
    as CompressAI trains). Returns both loss curves and the final parameters' relative difference."""
    import jax
    import optax
    import torch

    from sar_jax.parity.convert_codec import flax_to_torch
    from sar_jax.training.state import make_optimizer

    tmodel, jmodel, params, x = _setup(kind, size, batch, N, M, seed)
    rng = np.random.default_rng(seed + 2)
    noises = [_noise(kind, size, batch, N, M, rng) for _ in range(steps)]
    tx = make_optimizer({"lr": lr, "aux_lr": aux_lr, "max_grad_norm": max_grad_norm}, kind)

    def loss_fn(p: Any, x: Any, noise: Any) -> Any:
        return _jax_rd(jmodel, p, x, True, noise, LMBDA)[0] + jmodel.apply({"params": p}, method="aux_loss")

    @jax.jit
    def step(p: Any, opt_state: Any, x: Any, noise: Any) -> tuple[Any, Any, Any]:
        loss, grads = jax.value_and_grad(loss_fn)(p, x, noise)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    opt_state = tx.init(params)
    j_losses = []
    for noise in noises:
        params, opt_state, loss = step(params, opt_state, x, noise)
        j_losses.append(float(loss))
    initial = copy.deepcopy(tmodel.state_dict())
    main = [p for n, p in tmodel.named_parameters() if n != "entropy_bottleneck.quantiles"]
    opt, aux_opt = torch.optim.Adam(main, lr=lr), torch.optim.Adam([tmodel.entropy_bottleneck.quantiles], lr=aux_lr)
    tmodel.train()
    t_losses = []
    for noise in noises:
        opt.zero_grad()
        aux_opt.zero_grad()
        x_hat, lik = tmodel(nchw(x), {k: nchw(v) for k, v in noise.items()})
        loss = _torch_rd(x_hat, lik, nchw(x), LMBDA)[0] + tmodel.aux_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, max_grad_norm)
        opt.step()
        aux_opt.step()
        t_losses.append(float(loss.detach()))
    final, tsd = flax_to_torch({"params": params}, kind), tmodel.state_dict()
    moved = np.sqrt(sum(float(((tsd[n] - initial[n]).double() ** 2).sum()) for n in tsd))
    diff = np.sqrt(sum(float(((final[n] - tsd[n]).double() ** 2).sum()) for n in tsd))
    return {"jax_loss": j_losses, "torch_loss": t_losses, "param_rel": diff / max(moved, 1e-30), "steps": steps,
            "lr": lr, "kind": kind, "seed": seed, "size": size, "batch": batch, "N": N, "M": M}


def check_codec_lockstep(kind: str = "factorized", steps: int = 5, seed: int = 0, lr: float = 1e-3,
                         result: dict[str, Any] | None = None) -> list[Row]:
    """Rows of :func:`codec_lockstep` (pass ``result`` to reuse a run): the per-step loss relative
    difference (<= 1e-3), and for context how far the loss moved and the parameters' difference
    relative to how far they moved."""
    res = result if result is not None else codec_lockstep(kind, steps, seed, lr)
    j, t = np.asarray(res["jax_loss"], np.float64), np.asarray(res["torch_loss"], np.float64)
    name = (f"codec lockstep ({res['kind']}, {res['steps']} Adam steps, N {res['N']}, M {res['M']}, "
            f"{res['batch']}x{res['size']}x{res['size']}, lr {res['lr']:g}, seed {res['seed']})")
    return [row(name, "per-step loss max rel diff", float(np.max(np.abs(j - t) / np.abs(t))),
                TOL["lockstep_loss_rel"]),
            row(name, f"loss moved {t[0]:.4g} -> {t[-1]:.4g} (torch)", (t[0] - t[-1]) / t[0], op="info",
                tolerance_text="info (relative decrease)"),
            row(name, "final params ||diff|| / ||distance moved||", res["param_rel"], op="info")]
