"""Numerical parity between ``sar_jax`` (JAX/Flax) and ``sar_torch_ref`` (PyTorch), float32 (on CPU
unless run on a GPU: JAX on its default backend, the reference on :func:`torch_device`).

Every check returns a list of rows ``{"check", "quantity", "tolerance", "observed", "pass"}``;
``tests/parity`` asserts them and ``python -m sar_jax.parity`` writes them to a report.

1. forward (eval and train mode) and BatchNorm running-stat updates, random weights copied
   across with :func:`sar_jax.parity.convert.torch_to_flax`;
2. SSIM vs ``pytorch_msssim``, combined loss / PSNR / per-image metrics vs the reference;
3. gradients of the combined loss, per parameter;
4. one clip + Adam update (clipping active and inactive);
5. LR plateau schedule and early stopping fed the same validation losses;
6. lockstep training of both models from the same weights on the same batches;
7. checkpoint round trip torch -> JAX -> torch through ``python -m sar_jax.convert``;
8. a model trained by ``sar_jax.train`` and converted with ``--to-torch`` gives the same
   validation PSNR in the reference.

LR plateau off-by-one: torch's ``ReduceLROnPlateau(patience=p)`` reduces when the count of bad
epochs EXCEEDS ``p`` (on the (p+1)-th non-improving epoch in a row), optax's
``reduce_on_plateau(patience=q)`` when its count REACHES ``q``. ``sar_jax.training.state.make_plateau``
therefore passes ``q = lr_patience + 1``; check 5 verifies the two give the same per-epoch LR.
Known divergence not covered: torch skips a reduction smaller than its ``eps`` (1e-8, i.e.
after ~16 halvings of lr 1e-3), optax keeps reducing.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, Any]

#: Tolerances, one per quantity family.
TOL = {"forward": 1e-5, "bn_stats": 1e-6, "ssim": 1e-5, "loss": 1e-5, "grad_rel": 1e-4, "adam": 1e-6,
       "lr_rel": 1e-6, "lockstep_loss_rel": 1e-3, "lockstep_param_rel": 1e-3, "psnr_db": 0.01}


def row(check: str, quantity: str, observed: float, tolerance: float | None = None, *, op: str = "<=",
        tolerance_text: str | None = None) -> Row:
    """One report row; ``op`` is ``<=`` (observed at most tolerance), ``==``, or ``info`` (context
    for the reader, never fails)."""
    observed = float(observed)
    if op == "info":
        return {"check": check, "quantity": quantity, "tolerance": tolerance_text or "info",
                "observed": observed, "pass": True, "info": True}
    ok = observed == tolerance if op == "==" else (math.isfinite(observed) and observed <= tolerance)
    return {"check": check, "quantity": quantity, "tolerance": tolerance_text or f"{op} {tolerance:g}",
            "observed": observed, "pass": bool(ok)}


_TORCH_DEVICE = ["cpu"]


@contextlib.contextmanager
def torch_device(device: str) -> Iterator[None]:
    """Run the reference side of the checks (models, inputs, losses) on ``device`` ("cpu", "cuda")."""
    previous = _TORCH_DEVICE[0]
    _TORCH_DEVICE[0] = device
    try:
        yield
    finally:
        _TORCH_DEVICE[0] = previous


def all_pass(rows: Iterable[Row]) -> bool:
    """True if every row passed."""
    return all(r["pass"] for r in rows)


def failures(rows: Iterable[Row]) -> list[Row]:
    """The rows that failed."""
    return [r for r in rows if not r["pass"]]


# --------------------------------------------------------------------------- helpers


def model_config(base: int = 64, latent: int = 16, in_channels: int = 1) -> dict[str, Any]:
    """A ``model`` config section."""
    from sar_jax.core.config import default_config

    return dict(default_config()["model"], base_channels=base, latent_channels=latent,
                in_channels=in_channels)


def tiny_config(**train: Any) -> dict[str, Any]:
    """A full config with small shapes (base 8, latent 4, 32x32 patches, batch 4, lr 1e-3)."""
    from sar_jax.core.config import config_from_dict, default_config

    cfg = default_config()
    cfg["model"].update(base_channels=8, latent_channels=4)
    cfg["data"].update(patch_size=32, scene_size=64, num_scenes=5, stride=16, prefetch=0)
    cfg["train"].update({"batch_size": 4, "lr": 1e-3, "max_grad_norm": 1.0, "seed": 0, **train})
    cfg["logging"].update(progress=False)
    return config_from_dict(cfg, "parity tiny config")


def torch_model(model_cfg: dict[str, Any], seed: int = 0, randomize_bn: bool = True) -> Any:
    """A reference model with torch's init; BatchNorm affine and running stats (and the final
    biases) randomised so that they matter in the comparison."""
    import torch

    from sar_torch_ref.models import SARAutoencoder

    torch.manual_seed(seed)
    model = SARAutoencoder(model_cfg)
    if randomize_bn:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                    m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=gen))
            for final in (model.encoder.final, model.decoder.final):
                final.bias.copy_(0.05 * torch.randn(final.bias.shape, generator=gen))
    return model.to(_TORCH_DEVICE[0])


def nchw(x: np.ndarray) -> Any:
    """NHWC numpy -> NCHW float32 torch tensor (on :func:`torch_device`)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)), dtype=np.float32)).to(_TORCH_DEVICE[0])


def nhwc(t: Any) -> np.ndarray:
    """NCHW torch tensor -> NHWC numpy."""
    return t.detach().permute(0, 2, 3, 1).cpu().numpy()


def _max_abs(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _tree_max_abs(a: Any, b: Any) -> float:
    import jax

    return max(jax.tree.leaves(jax.tree.map(_max_abs, a, b)))


def _rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def tiny_patches(size: int = 32, seed: int = 0) -> np.ndarray:
    """Normalised synthetic SAR training patches (N, size, size, 1) from the data pipeline."""
    from sar_jax.data.pipeline import build_datasets

    cfg = tiny_config(seed=seed)
    cfg["data"].update(patch_size=size, scene_size=max(64, 2 * size), stride=size // 2)
    return build_datasets(cfg).train


# --------------------------------------------------------------------------- 1. forward


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
        rows += [row(name, f"{mode} x_hat max|diff|", _max_abs(j_xhat, t_xhat), TOL["forward"]),
                 row(name, f"{mode} z max|diff| (max|z| = {scale:.3g})", _max_abs(j_z, t_z), TOL["forward"] * scale,
                     tolerance_text=f"<= 1e-5 x max(1, max|z|) = {TOL['forward'] * scale:.3g}"),
                 row(name, f"{mode} z max|diff| of JAX / of torch vs float64 torch: "
                           f"{_max_abs(j_z, r_z):.2g} / {_max_abs(t_z, r_z):.2g}",
                     _max_abs(j_z, r_z) / max(_max_abs(t_z, r_z), 1e-30), op="info",
                     tolerance_text="info (ratio JAX err / torch err)")]
    t_stats = torch_to_flax(tmodel.state_dict())["batch_stats"]
    mean_diff = max(_max_abs(j, t) for j, t in zip(_leaves(upd["batch_stats"], "mean"), _leaves(t_stats, "mean")))
    var_diff = max(_max_abs(j, t) for j, t in zip(_leaves(upd["batch_stats"], "var"), _leaves(t_stats, "var")))
    rows += [row(name, "updated BN running_mean max|diff|", mean_diff, TOL["bn_stats"]),
             row(name, "updated BN running_var max|diff|", var_diff, TOL["bn_stats"])]
    return rows


def _leaves(tree: Any, key: str) -> list[Any]:
    import jax

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [v for p, v in sorted(flat, key=lambda kv: str(kv[0])) if str(getattr(p[-1], "key", "")) == key]


# --------------------------------------------------------------------------- 2. SSIM and losses


def _ssim_pair(x_hat: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    import pytorch_msssim

    from sar_jax.training.losses import ssim

    j = float(ssim(x_hat, x))
    t = float(pytorch_msssim.ssim(nchw(x_hat), nchw(x), data_range=1, win_size=11, size_average=True,
                                  nonnegative_ssim=True))
    return j, t


def synthetic_ssim_cases(seed: int = 0, size: int = 64) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x_hat, x) NHWC pairs: random, correlated, identical, anti-correlated, constant."""
    rng = np.random.default_rng(seed)
    shape = (3, size, size, 1)
    u = rng.random(shape, dtype=np.float32)
    v = rng.random(shape, dtype=np.float32)
    smooth = np.cumsum(np.cumsum(rng.standard_normal(shape), axis=1), axis=2)
    smooth = ((smooth - smooth.min()) / (smooth.max() - smooth.min())).astype(np.float32)
    noisy = lambda x, s: np.clip(x + s * rng.standard_normal(x.shape), 0, 1).astype(np.float32)  # noqa: E731
    cases = [("independent uniform", u, v), ("uniform + noise 0.05", noisy(u, 0.05), u),
             ("smooth + noise 0.1", noisy(smooth, 0.1), smooth), ("smooth + noise 0.3", noisy(smooth, 0.3), smooth),
             ("identical", smooth, smooth.copy()), ("anti-correlated (1 - x)", 1.0 - smooth, smooth),
             ("constant == constant", np.full(shape, 0.5, np.float32), np.full(shape, 0.5, np.float32)),
             ("constant 0.2 vs 0.7", np.full(shape, 0.2, np.float32), np.full(shape, 0.7, np.float32)),
             ("constant vs uniform", np.full(shape, 0.5, np.float32), u)]
    return cases


def sar_tiles(sar_dir: str | Path, size: int = 128, per_scene: int = 3, seed: int = 0) -> np.ndarray:
    """Tiles (N, size, size, 1) in [0, 1] cropped from the 8-bit SAR PNGs in ``sar_dir``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tiles = []
    for path in sorted(Path(sar_dir).glob("*.png")):
        img = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        h, w = img.shape
        for _ in range(per_scene):
            r, c = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            tiles.append(img[r:r + size, c:c + size])
    if not tiles:
        raise FileNotFoundError(f"no PNG in {sar_dir}")
    return np.stack(tiles)[..., None]


def sar_ssim_cases(sar_dir: str | Path, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real SAR tiles vs themselves with gaussian noise of several strengths (clipped to [0, 1])."""
    x = sar_tiles(sar_dir, seed=seed)
    rng = np.random.default_rng(seed + 1)
    cases = []
    for sigma in (0.01, 0.05, 0.1, 0.2, 0.5):
        noisy = np.clip(x + sigma * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
        cases.append((f"real SAR + noise {sigma}", noisy, x))
    cases.append(("real SAR identical", x, x.copy()))
    cases.append(("real SAR vs 1 - x", 1.0 - x, x))
    return cases


def _constant_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """SSIM of two constant images in closed form (float64), or None if either is not constant."""
    if a.min() != a.max() or b.min() != b.max():
        return None
    mu1, mu2, c1 = float(a.flat[0]), float(b.flat[0]), 0.01**2
    return max(0.0, (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1))


def check_ssim(sar_dir: str | Path | None = None, seed: int = 0) -> list[Row]:
    """|SSIM_jax - SSIM_pytorch_msssim| on synthetic and (if ``sar_dir``) real SAR pairs, plus
    the exact values 1 (identical) and 0 (anti-correlated, clamped)."""
    cases = synthetic_ssim_cases(seed)
    if sar_dir is not None:
        cases += sar_ssim_cases(sar_dir, seed)
    rows = []
    for name, a, b in cases:
        j, t = _ssim_pair(a, b)
        exact = _constant_ssim(a, b)
        if exact is not None and exact != 1.0:
            # pytorch_msssim's float32 sigma^2 = E[x^2] - mu^2 cancels badly on a constant image;
            # hold JAX to the closed form, and to torch within torch's own error
            rows.append(row("2 SSIM", f"{name}: |ssim_jax - closed form {exact:.7f}|", abs(j - exact), TOL["ssim"]))
            tol = TOL["ssim"] + abs(t - exact)
            rows.append(row("2 SSIM", f"{name}: |ssim_jax - ssim_torch| (torch is {abs(t - exact):.2g} off the closed form)",
                            abs(j - t), tol, tolerance_text=f"<= 1e-5 + torch's error = {tol:.3g}"))
            continue
        rows.append(row("2 SSIM", f"{name}: |ssim_jax - ssim_torch| (jax {j:.6f})", abs(j - t), TOL["ssim"]))
        if "identical" in name or name == "constant == constant":
            rows.append(row("2 SSIM", f"{name}: |ssim_jax - 1|", abs(j - 1.0), TOL["ssim"]))
        if "1 - x" in name:
            rows.append(row("2 SSIM", f"{name}: ssim_jax (clamped to 0)", j, 0.0, op="=="))
    return rows


def check_losses(sar_dir: str | Path | None = None, seed: int = 0) -> list[Row]:
    """Combined loss (loss, mse, ssim, psnr) vs ``CombinedLoss`` and per-image metrics vs the
    reference's ``per_image_metrics`` (used for validation)."""
    import torch

    from sar_jax.core.config import default_config
    from sar_jax.training.losses import combined_loss, per_image_metrics, psnr
    from sar_torch_ref.evaluation.metrics import per_image_metrics as t_per_image
    from sar_torch_ref.evaluation.metrics import psnr as t_psnr
    from sar_torch_ref.losses import CombinedLoss

    cases = [c for c in synthetic_ssim_cases(seed) if c[0] in ("uniform + noise 0.05", "smooth + noise 0.1",
                                                                 "smooth + noise 0.3", "independent uniform")]
    if sar_dir is not None:
        cases += [c for c in sar_ssim_cases(sar_dir, seed) if "noise" in c[0]]
    loss_cfg = default_config()["loss"]
    t_loss = CombinedLoss(loss_cfg["mse_weight"], loss_cfg["ssim_weight"], loss_cfg["ssim_window"], 1)
    t_loss = t_loss.to(_TORCH_DEVICE[0])
    worst: dict[str, float] = {}
    for _, a, b in cases:
        _, jm = combined_loss(a, b)
        with torch.no_grad():
            _, tm = t_loss(nchw(a), nchw(b))
            tp = t_per_image(nchw(a), nchw(b), loss_cfg)
        jp = per_image_metrics(a, b)
        diffs = {f"combined {k}": abs(float(jm[k]) - float(tm[k])) for k in ("loss", "mse", "ssim", "psnr")}
        diffs["psnr() of the batch"] = abs(float(psnr(a, b)) - float(t_psnr(nchw(a), nchw(b))))
        diffs.update({f"per-image {k}": _max_abs(jp[k], tp[k].cpu().numpy()) for k in ("loss", "mse", "ssim", "psnr")})
        for k, v in diffs.items():
            worst[k] = max(worst.get(k, 0.0), v)
    rows = [row("2 losses", f"{k} max|diff| over {len(cases)} pairs", v, TOL["loss"]) for k, v in worst.items()]
    x = next(c[2] for c in synthetic_ssim_cases(seed) if c[0] == "identical")
    _, jm = combined_loss(x, x)
    with torch.no_grad():
        _, tm = t_loss(nchw(x), nchw(x))
    rows.append(row("2 losses", f"identical images: PSNR |diff| (jax {float(jm['psnr']):.1f} dB, both floor MSE at 1e-12)",
                    abs(float(jm["psnr"]) - float(tm["psnr"])), TOL["loss"]))
    return rows


# --------------------------------------------------------------------------- 3. gradients


class _HashableDict(dict):
    """A dict usable as a static jit argument."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def check_gradients(base: int = 8, latent: int = 4, size: int = 32, batch: int = 2, seed: int = 0) -> list[Row]:
    """Relative error of the combined loss's gradient, per parameter, train mode."""
    import jax

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.parity.convert import flax_to_torch, torch_to_flax
    from sar_jax.training.state import _loss_weights, loss_and_updates
    from sar_torch_ref.losses import CombinedLoss

    config = tiny_config()
    cfg = model_config(base, latent)
    tmodel = torch_model(cfg, seed).train()
    variables = torch_to_flax(tmodel.state_dict())
    x = tiny_patches(size, seed)[:batch]
    jmodel = SARAutoencoder.from_config(cfg)
    grad_fn = jax.jit(jax.value_and_grad(loss_and_updates, has_aux=True), static_argnums=(3, 4))
    (loss_j, _), grads = grad_fn(variables["params"], variables["batch_stats"], x, jmodel,
                                 _HashableDict(_loss_weights(config)))
    x_hat, _ = tmodel(nchw(x))
    loss_t, _ = CombinedLoss.from_config(config).to(_TORCH_DEVICE[0])(x_hat, nchw(x))
    loss_t.backward()
    jg = flax_to_torch({"params": grads, "batch_stats": variables["batch_stats"]})
    name = f"3 gradients (base {base}, {batch}x{size}x{size}, train)"
    rows = [row(name, "loss |diff|", abs(float(loss_j) - float(loss_t.detach())), TOL["loss"])]
    rels = {n: _rel(jg[n].numpy(), p.grad.cpu().numpy()) for n, p in tmodel.named_parameters()}
    rows.append(row(name, f"max over {len(rels)} parameters of ||g_jax - g_torch|| / ||g_torch||",
                    max(rels.values()), TOL["grad_rel"]))
    rows += [row(name, f"{n}: relative error", v, TOL["grad_rel"]) for n, v in rels.items()]
    return rows


# --------------------------------------------------------------------------- 4. optimizer


def check_optimizer(steps: int = 3, lr: float = 1e-3, seed: int = 0) -> list[Row]:
    """clip_by_global_norm + Adam (optax) vs clip_grad_norm_ + Adam (torch) from the same
    parameters and the same gradient sequence (norms vary per step); params compared after
    every step."""
    import jax
    import optax
    import torch

    from sar_jax.parity.convert import flax_to_torch, torch_to_flax
    from sar_jax.training.state import make_optimizer

    cfg = model_config(8, 4)
    base_model = torch_model(cfg, seed)
    sd = base_model.state_dict()
    names = [n for n, _ in base_model.named_parameters()]
    gen = torch.Generator().manual_seed(seed + 7)
    grad_seq = []
    for k in range(steps):
        scale = (1.0, 10.0, 0.1)[k % 3]
        g = {n: scale * 0.05 * torch.randn(sd[n].shape, generator=gen) for n in names}
        grad_seq.append(g)
    norms = [float(torch.sqrt(sum((g[n] ** 2).sum() for n in names))) for g in grad_seq]
    rows = []
    for label, max_norm in (("clipping active", 1e-3), ("clipping inactive", 1e6), ("clipping some steps", 1.0)):
        tmodel = copy.deepcopy(base_model)
        params = list(tmodel.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        tx = make_optimizer({"lr": lr, "max_grad_norm": max_norm})
        jparams = torch_to_flax(sd)["params"]
        opt_state = tx.init(jparams)
        update = jax.jit(tx.update)
        worst = 0.0
        for g in grad_seq:
            for n, p in tmodel.named_parameters():
                p.grad = g[n].to(p.device)
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            opt.step()
            jgrads = torch_to_flax({**sd, **g})["params"]
            upd, opt_state = update(jgrads, opt_state, jparams)
            jparams = optax.apply_updates(jparams, upd)
            back = flax_to_torch({"params": jparams, "batch_stats": torch_to_flax(sd)["batch_stats"]})
            worst = max(worst, max(_max_abs(back[n].numpy(), p.detach().cpu().numpy())
                                   for n, p in tmodel.named_parameters()))
        clipped = sum(nm > max_norm for nm in norms)
        rows.append(row(f"4 optimizer (clip + Adam, {steps} steps)",
                        f"{label} (max_grad_norm {max_norm:g}, {clipped}/{steps} steps clipped): "
                        "params max|diff|", worst, TOL["adam"]))
    return rows


# --------------------------------------------------------------------------- 5. plateau / early stopping


def _f32(values: Iterable[float]) -> list[float]:
    return [float(np.float32(v)) for v in values]


def threshold_margin(losses: Sequence[float], rel: float = 1e-4) -> float:
    """Smallest |value - best * (1 - rel)| / best over the sequence, ``best`` following torch's
    rule (updated only on an improvement beyond the threshold): how close any decision is to
    the point where float32 (optax) and float64 (torch) rounding of the threshold could differ."""
    best, margin = math.inf, math.inf
    for v in losses:
        if math.isfinite(best):
            margin = min(margin, abs(v - best * (1 - rel)) / best)
        if v < best * (1 - rel):
            best = v
    return margin


def plateau_sequences() -> dict[str, list[float]]:
    """Validation-loss sequences (float32 values, as the JAX trainer produces) that exercise
    improvements, plateaus, exact ties, gains below / above the 1e-4 relative threshold. Every
    decision is at least 1e-6 (relative) away from the threshold (see :func:`threshold_margin`)."""
    rng = np.random.default_rng(0)
    below = [1.0]
    for _ in range(14):
        below.append(below[-1] * (1 - 0.3e-4))  # strict improvements, below the LR threshold
    above = [1.0]
    for _ in range(12):
        above.append(above[-1] * (1 - 2e-4))
    mixed = [1.0]
    for gain in rng.choice([0.0, 0.0, 0.2e-4, 0.45e-4, 1.5e-4, 3e-4], size=24):
        mixed.append(mixed[-1] * (1 - gain))
    walk = 1.0 + np.cumsum(rng.normal(0.0, 0.01, 40)) - 0.004 * np.arange(40)
    seqs = {
        "improve then plateau": _f32([1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69,
                                      0.72, 0.72, 0.72, 0.72, 0.72, 0.72]),
        "exact ties": _f32([0.5] * 15),
        "gains below threshold": _f32(below + [below[-1]] * 3),
        "gains above threshold": _f32(above + [above[-1]] * 3),
        "mixed small gains": _f32(mixed),
        "noisy random walk": _f32(walk),
    }
    for name, seq in seqs.items():
        if threshold_margin(seq) < 1e-6:
            raise AssertionError(f"plateau sequence {name!r} has a decision within 1e-6 of the threshold")
    return seqs


def at_threshold_sequence() -> list[float]:
    """Values landing exactly on ``best * (1 - 1e-4)`` in float64 but not in float32 (the case
    where optax's float32 threshold and torch's float64 one may decide differently)."""
    return _f32([1.0, 0.9999, 0.9999, 0.9998000100001, 0.9998, 0.9997, 0.9997, 0.9996, 0.9996])


def torch_schedule(losses: Sequence[float], lr: float, factor: float, patience: int,
                   es_patience: int) -> tuple[list[float], int | None]:
    """Per-epoch LR (read before the epoch, as both trainers log it) and the epoch (1-based)
    at which early stopping fires, as ``sar_torch_ref``'s trainer computes them."""
    import torch

    from sar_jax.core.early_stopping import EarlyStopping

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=factor, patience=patience)
    stopper = EarlyStopping(es_patience)
    lrs, stop = [], None
    for epoch, v in enumerate(losses, 1):
        lrs.append(float(opt.param_groups[0]["lr"]))
        sched.step(v)
        stopper.update(v)
        if stopper.should_stop and stop is None:
            stop = epoch
    return lrs, stop


def jax_schedule(losses: Sequence[float], lr: float, factor: float, patience: int,
                 es_patience: int) -> tuple[list[float], int | None, int | None]:
    """The same with ``make_plateau`` (fed ``jnp.float32(val_loss)`` as ``sar_jax.train`` does):
    (LRs, stop epoch with EarlyStopping, stop epoch with sar_jax.train's own rule (float32 best,
    strict improvement, stop when epochs_without_improvement >= patience))."""
    import functools

    import jax
    import jax.numpy as jnp

    from sar_jax.core.early_stopping import EarlyStopping
    from sar_jax.training.state import make_plateau, plateau_update

    plateau = make_plateau({"lr_factor": factor, "lr_patience": patience})
    state = plateau.init({"w": jnp.zeros((1,), jnp.float32)})
    step = jax.jit(functools.partial(plateau_update, plateau=plateau))
    stopper = EarlyStopping(es_patience)
    best, bad = jnp.asarray(jnp.inf, jnp.float32), 0
    lrs, stop, stop_rule = [], None, None
    for epoch, v in enumerate(losses, 1):
        lrs.append(lr * float(state.scale))
        state = step(state, jnp.float32(v))
        stopper.update(v)
        if stopper.should_stop and stop is None:
            stop = epoch
        improved = v < float(best)
        best = jnp.asarray(min(v, float(best)), jnp.float32)
        bad = 0 if improved else bad + 1
        if bad >= es_patience and stop_rule is None:
            stop_rule = epoch
    return lrs, stop, stop_rule


TORCH_PLATEAU_EPS = 1e-8  # ReduceLROnPlateau(eps=1e-8): a reduction smaller than this is skipped


def check_plateau(lr: float = 1e-3) -> list[Row]:
    """Per-epoch LR sequences and early-stopping epochs, torch vs JAX, for every sequence and
    every (lr_factor in {0.5, 0.1}) x (lr_patience in {0, 1, 2, 3, 5}), early stopping patience
    lr_patience + 2.

    torch skips a reduction smaller than its ``eps`` (1e-8) and optax has no such floor, so LRs
    are compared up to the epoch at which torch's next reduction would fall below it (only
    reached with factor 0.1 here: lr 1e-3 -> 1e-8 in 5 reductions); the epochs left out are counted.
    """
    rows = []
    name = "5 LR plateau / early stopping"
    excluded_total = 0
    for seq_name, losses in plateau_sequences().items():
        worst_rel, mismatched, stop_diff, n, reductions, excluded = 0.0, 0, 0, 0, 0, 0
        for factor in (0.5, 0.1):
            for patience in (0, 1, 2, 3, 5):
                es_patience = patience + 2
                t_lrs, t_stop = torch_schedule(losses, lr, factor, patience, es_patience)
                j_lrs, j_stop, j_rule = jax_schedule(losses, lr, factor, patience, es_patience)
                cut = next((i + 1 for i, v in enumerate(t_lrs) if v - v * factor <= TORCH_PLATEAU_EPS), len(t_lrs))
                excluded += len(t_lrs) - cut
                t_lrs, j_lrs = t_lrs[:cut], j_lrs[:cut]
                worst_rel = max(worst_rel, max(abs(a - b) / b for a, b in zip(j_lrs, t_lrs)))
                # epochs at which one side reduced the LR and the other did not
                t_red = [t_lrs[i + 1] < t_lrs[i] for i in range(len(t_lrs) - 1)]
                j_red = [j_lrs[i + 1] < j_lrs[i] * (1 - 1e-6) for i in range(len(j_lrs) - 1)]
                mismatched += sum(a != b for a, b in zip(t_red, j_red))
                reductions += sum(t_red)
                stop_diff += int(t_stop != j_stop) + int(t_stop != j_rule)
                n += 1
        excluded_total += excluded
        rows.append(row(name, f"{seq_name} ({len(losses)} epochs x {n} settings, {reductions} LR reductions): "
                              "LR max rel diff", worst_rel, TOL["lr_rel"]))
        rows.append(row(name, f"{seq_name}: epochs where only one side reduced the LR", mismatched, 0, op="=="))
        rows.append(row(name, f"{seq_name}: settings where early stopping fires at another epoch "
                              "(EarlyStopping and sar_jax.train's rule vs torch)", stop_diff, 0, op="=="))
    rows.append(row(name, "epochs not compared: torch's eps=1e-8 floor reached (factor 0.1 only)",
                    excluded_total, op="info"))
    at = at_threshold_sequence()
    t_lrs, _ = torch_schedule(at, lr, 0.5, 0, 2)
    j_lrs, _, _ = jax_schedule(at, lr, 0.5, 0, 2)
    rows.append(row(name, "values exactly on the 1e-4 threshold (float32 vs float64 rounding of it): "
                          "epochs with a different LR (lr_patience 0)",
                    sum(a != b for a, b in zip(t_lrs, j_lrs)), op="info"))
    return rows


# --------------------------------------------------------------------------- 6. lockstep training


def dmpix_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The float32 1-D Gaussian window dm-pix (hence ``sar_jax.training.losses.ssim``) uses; it differs
    from pytorch_msssim's by at most 1 ulp per tap (3e-8)."""
    import jax.numpy as jnp

    hw = size // 2
    shift = (2 * hw - size + 1) / 2
    filt = jnp.exp(-0.5 * ((jnp.arange(size) - hw + shift) / sigma) ** 2)
    return np.asarray(filt / jnp.sum(filt), np.float32)


def _lockstep_batches(config: dict[str, Any], steps: int, seed: int) -> list[np.ndarray]:
    from sar_jax.data.batching import BatchIterator

    loader = BatchIterator(tiny_patches(config["data"]["patch_size"], seed), config["train"]["batch_size"],
                           shuffle=True, seed=seed, drop_last=True, prefetch=0)
    batches: list[np.ndarray] = []
    epoch = 1
    while len(batches) < steps:
        batches += list(loader.epoch(epoch))
        epoch += 1
    return batches[:steps]


def torch_train(tmodel: Any, config: dict[str, Any], batches: Sequence[np.ndarray],
                window: np.ndarray | None = None) -> list[float]:
    """``sar_torch_ref``'s training step on each batch (Adam, clip_grad_norm_, CombinedLoss);
    ``window`` replaces pytorch_msssim's Gaussian window. Returns the per-step losses."""
    import torch

    from sar_torch_ref.losses import CombinedLoss

    loss_fn = CombinedLoss.from_config(config)
    if window is not None:
        loss_fn.ssim.win = torch.from_numpy(np.array(window, np.float32)).reshape(1, 1, 1, -1).repeat(config["model"]["in_channels"], 1, 1, 1)
    loss_fn = loss_fn.to(_TORCH_DEVICE[0])
    optimizer = torch.optim.Adam(tmodel.parameters(), lr=config["train"]["lr"])
    tmodel.train()
    losses = []
    for batch in batches:
        x = nchw(batch)
        x_hat, _ = tmodel(x)
        loss, _ = loss_fn(x_hat, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), config["train"]["max_grad_norm"])
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _param_rel(a: dict[str, Any], b: dict[str, Any], names: Sequence[str]) -> float:
    diff = math.sqrt(sum(float(((a[n].cpu().double() - b[n].cpu().double()) ** 2).sum()) for n in names))
    return diff / math.sqrt(sum(float((b[n].cpu().double() ** 2).sum()) for n in names))


def lockstep(steps: int = 50, seed: int = 0, lr: float = 1e-4, batch_size: int = 4,
             randomize_bn: bool = True, reference_floor: bool = True) -> dict[str, Any]:
    """Train both models from the same converted weights on the same batches with each
    framework's real step (``compile_steps(...)["train_step"]`` vs Adam + clip_grad_norm_ +
    CombinedLoss as in ``sar_torch_ref``'s trainer). Returns both loss curves and the final
    parameter differences.

    With ``reference_floor``, the reference is also trained a second time with only its SSIM
    window swapped for dm-pix's (<= 3e-8 per tap): how far float32 rounding alone moves the
    reference's own trajectory (training is chaotic; see the report).
    """
    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.parity.convert import flax_to_torch, torch_to_flax
    from sar_jax.training.state import compile_steps, create_train_state

    config = tiny_config(batch_size=batch_size, lr=lr)
    tmodel = torch_model(config["model"], seed, randomize_bn=randomize_bn)
    initial = copy.deepcopy(tmodel)
    variables = torch_to_flax(tmodel.state_dict())
    jmodel = SARAutoencoder.from_config(config["model"])
    jsteps = compile_steps(jmodel, config)
    state = create_train_state(jmodel, config, variables)
    batches = _lockstep_batches(config, steps, seed)
    j_losses = []
    for batch in batches:
        state, metrics = jsteps["train_step"](state, batch)
        j_losses.append(float(metrics["loss"]))
    t_losses = torch_train(tmodel, config, batches)
    final = flax_to_torch({"params": state.params, "batch_stats": state.batch_stats}, int(state.step))
    tsd = tmodel.state_dict()
    pnames = [n for n, _ in tmodel.named_parameters()]
    stats = [n for n in tsd if n.endswith(("running_mean", "running_var"))]
    out = {"jax_loss": j_losses, "torch_loss": t_losses, "param_rel": _param_rel(final, tsd, pnames),
           "per_param_rel": {n: _rel(final[n].numpy(), tsd[n].cpu().numpy()) for n in pnames},
           "bn_stats_rel": _param_rel(final, tsd, stats),
           "num_batches_tracked_equal": all(int(final[n]) == int(tsd[n]) for n in tsd
                                            if n.endswith("num_batches_tracked")),
           "steps": steps, "lr": lr, "seed": seed, "batch_size": batch_size}
    if reference_floor:
        floor_model = copy.deepcopy(initial)
        f_losses = torch_train(floor_model, config, batches, window=dmpix_window(config["loss"]["ssim_window"]))
        out["floor_loss"] = f_losses
        out["floor_param_rel"] = _param_rel(floor_model.state_dict(), tsd, pnames)
    return out


def _max_loss_rel(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def check_lockstep(steps: int = 50, seed: int = 0, lr: float = 1e-4, result: dict[str, Any] | None = None,
                   info_only: bool = False) -> list[Row]:
    """Rows of :func:`lockstep` (pass ``result`` to reuse a run); ``info_only`` reports without
    asserting (used for the chaotic lr 1e-3 run)."""
    res = result if result is not None else lockstep(steps, seed, lr)
    name = (f"6 lockstep training ({res['steps']} steps, base 8, latent 4, {res['batch_size']}x32x32, "
            f"lr {res['lr']:g}, seed {res['seed']})")
    op = "info" if info_only else "<="
    rows = [row(name, "per-step loss max rel diff", _max_loss_rel(res["jax_loss"], res["torch_loss"]),
                TOL["lockstep_loss_rel"], op=op),
            row(name, "final params ||diff|| / ||params||", res["param_rel"], TOL["lockstep_param_rel"], op=op),
            row(name, "final params: max over parameters of ||diff|| / ||param||",
                max(res["per_param_rel"].values()), op="info"),
            row(name, "final BN running stats ||diff|| / ||stats||", res["bn_stats_rel"], op="info")]
    if not info_only:
        rows.append(row(name, "num_batches_tracked == JAX step", 0 if res["num_batches_tracked_equal"] else 1, 0,
                        op="=="))
    if "floor_loss" in res:
        rows += [row(name, "reference vs itself with dm-pix's SSIM window: per-step loss max rel diff",
                     _max_loss_rel(res["floor_loss"], res["torch_loss"]), op="info"),
                 row(name, "reference vs itself with dm-pix's SSIM window: final params rel diff",
                     res["floor_param_rel"], op="info")]
    return rows


def plot_lockstep(result: dict[str, Any], path: str | Path) -> Path:
    """Both loss curves over the steps (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(result["jax_loss"]) + 1)
    j, t = np.asarray(result["jax_loss"]), np.asarray(result["torch_loss"])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(steps, t, "-", lw=2.5, color="tab:orange", label="PyTorch (sar_torch_ref)")
    ax.plot(steps, j, "--", lw=1.5, color="tab:blue", label="JAX (sar_jax)")
    ax.set_ylabel("combined loss")
    ax.set_title(f"Lockstep training, same weights and batches (lr {result.get('lr', 0):g})")
    ax.legend()
    ax2.semilogy(steps, np.maximum(np.abs(j - t) / np.abs(t), 1e-12), color="tab:gray")
    ax2.set_xlabel("step")
    ax2.set_ylabel("rel. diff")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- 7./8. checkpoints


TINY_TRAIN_ARGS = ["--config", "quickstart", "--set", "model.base_channels=4", "--set", "model.latent_channels=4",
                   "--set", "data.patch_size=32", "--set", "data.scene_size=64", "--set", "data.num_scenes=5",
                   "--set", "data.stride=16", "--set", "train.batch_size=4", "--set", "train.epochs=2",
                   "--set", "logging.progress=false"]


def _quiet(fn: Any, *args: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def check_checkpoint_roundtrip(workdir: str | Path, epochs: int = 1) -> list[Row]:
    """A tiny ``sar_torch_ref.train`` run's checkpoint -> ``--from-torch`` -> ``--to-torch``:
    every tensor bit-exact, same key order, and the fields the reference resumes from."""
    import torch

    from sar_jax.parity import convert
    from sar_torch_ref import train as torch_train

    workdir = Path(workdir)
    run = workdir / "torch_run"
    _quiet(torch_train.main, TINY_TRAIN_ARGS + ["--set", f"train.epochs={epochs}", "--out", str(run)])
    src = run / "checkpoints" / "last.pt"
    assert convert.main(["--from-torch", str(src), "--out", str(workdir / "converted_run")]) == 0
    back = workdir / "roundtrip.pt"
    assert convert.main(["--to-torch", str(workdir / "converted_run"), "--out", str(back), "--which", "latest"]) == 0
    a, b = torch.load(src, weights_only=True), torch.load(back, weights_only=True)
    name = "7 checkpoint round trip (CLI torch -> JAX -> torch)"
    unequal = [k for k in a["model"] if k not in b["model"] or not torch.equal(a["model"][k], b["model"][k])
               or a["model"][k].dtype != b["model"][k].dtype]
    fields = [k for k in ("epoch", "best_val_loss", "early_stopping", "config", "preprocessing_params")
              if a[k] != b[k]]
    lr_a = a["scheduler"]["_last_lr"]
    lr_b = b["scheduler"]["_last_lr"]
    return [row(name, f"state_dict tensors not bit-exact (of {len(a['model'])})", len(unequal), 0, op="=="),
            row(name, "state_dict key order differs", int(list(a["model"]) != list(b["model"])), 0, op="=="),
            row(name, "differing fields (epoch, best_val_loss, early_stopping, config, preprocessing)",
                len(fields), 0, op="=="),
            row(name, "scheduler LR |diff|", abs(lr_a[0] - lr_b[0]), 0, op="==")]


def trained_psnr(workdir: str | Path) -> dict[str, float]:
    """Train a tiny model with ``sar_jax.train``, convert its best checkpoint with ``--to-torch``
    and evaluate the validation split in ``sar_torch_ref`` (eval mode, the reference's per-image
    metrics); returns both validation PSNRs (and SSIMs, losses)."""
    import torch

    from sar_jax.core.config import config_from_dict
    from sar_jax.core.rundir import read_log
    from sar_jax.data.pipeline import build_datasets, make_loaders
    from sar_jax.parity import convert
    from sar_jax.training import loop as jax_train
    from sar_torch_ref.models import SARAutoencoder
    from sar_torch_ref.training.checkpoint import load_checkpoint
    from sar_torch_ref.training.trainer import evaluate

    workdir = Path(workdir)
    run = workdir / "jax_run"
    _quiet(jax_train.main, TINY_TRAIN_ARGS + ["--out", str(run)])
    pt = workdir / "jax_best.pt"
    assert convert.main(["--to-torch", str(run), "--out", str(pt), "--which", "best"]) == 0
    ckpt = load_checkpoint(pt)
    config = config_from_dict(ckpt["config"], str(pt))
    model = SARAutoencoder(config["model"])
    model.load_state_dict(ckpt["model"])
    datasets = build_datasets(config)
    val = evaluate(model, make_loaders(datasets, config)["val"], config, torch.device("cpu"))
    best = min(read_log(run), key=lambda r: r["val_loss"])
    return {"jax_val_psnr": best["val_psnr"], "torch_val_psnr": val["psnr"], "jax_val_ssim": best["val_ssim"],
            "torch_val_ssim": val["ssim"], "jax_val_loss": best["val_loss"], "torch_val_loss": val["loss"],
            "best_epoch": best["epoch"], "checkpoint_epoch": ckpt["epoch"]}


def check_trained_psnr(workdir: str | Path) -> list[Row]:
    """Rows of :func:`trained_psnr`."""
    r = trained_psnr(workdir)
    name = "8 sar_jax.train -> --to-torch -> reference validation"
    return [row(name, f"val PSNR |diff| dB (jax {r['jax_val_psnr']:.4f}, torch {r['torch_val_psnr']:.4f})",
                abs(r["jax_val_psnr"] - r["torch_val_psnr"]), TOL["psnr_db"]),
            row(name, "val SSIM |diff|", abs(r["jax_val_ssim"] - r["torch_val_ssim"]), TOL["ssim"]),
            row(name, "val loss |diff|", abs(r["jax_val_loss"] - r["torch_val_loss"]), TOL["loss"]),
            row(name, "converted epoch == best epoch in training.log",
                int(r["best_epoch"] != r["checkpoint_epoch"]), 0, op="==")]
