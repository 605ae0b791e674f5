"""Check 2: SSIM vs ``pytorch_msssim`` (synthetic and real SAR pairs, closed forms on constant
images), combined loss / PSNR / per-image metrics vs the reference's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sar_jax.parity.fixtures import nchw, sar_ssim_cases, synthetic_ssim_cases
from sar_jax.parity.rows import TOL, Row, max_abs, row


def _ssim_pair(x_hat: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    import pytorch_msssim

    from sar_jax.metrics.ssim import ssim

    j = float(ssim(x_hat, x))
    t = float(pytorch_msssim.ssim(nchw(x_hat), nchw(x), data_range=1, win_size=11, size_average=True,
                                  nonnegative_ssim=True))
    return j, t


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
            quantity = f"{name}: |ssim_jax - ssim_torch| (torch is {abs(t - exact):.2g} off the closed form)"
            rows.append(row("2 SSIM", quantity, abs(j - t), tol, tolerance_text=f"<= 1e-5 + torch's error = {tol:.3g}"))
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
    from sar_jax.metrics.psnr import psnr
    from sar_jax.training.losses import combined_loss, per_image_metrics
    from sar_torch_ref.evaluation.metrics import per_image_metrics as t_per_image
    from sar_torch_ref.evaluation.metrics import psnr as t_psnr
    from sar_torch_ref.losses import CombinedLoss

    cases = [c for c in synthetic_ssim_cases(seed) if c[0] in ("uniform + noise 0.05", "smooth + noise 0.1",
                                                                 "smooth + noise 0.3", "independent uniform")]
    if sar_dir is not None:
        cases += [c for c in sar_ssim_cases(sar_dir, seed) if "noise" in c[0]]
    loss_cfg = default_config()["loss"]
    t_loss = CombinedLoss(loss_cfg["mse_weight"], loss_cfg["ssim_weight"], loss_cfg["ssim_window"], 1)
    worst: dict[str, float] = {}
    for _, a, b in cases:
        _, jm = combined_loss(a, b)
        with torch.no_grad():
            _, tm = t_loss(nchw(a), nchw(b))
            tp = t_per_image(nchw(a), nchw(b), loss_cfg)
        jp = per_image_metrics(a, b)
        diffs = {f"combined {k}": abs(float(jm[k]) - float(tm[k])) for k in ("loss", "mse", "ssim", "psnr")}
        diffs["psnr() of the batch"] = abs(float(psnr(a, b)) - float(t_psnr(nchw(a), nchw(b))))
        diffs.update({f"per-image {k}": max_abs(jp[k], tp[k].numpy()) for k in ("loss", "mse", "ssim", "psnr")})
        for k, v in diffs.items():
            worst[k] = max(worst.get(k, 0.0), v)
    rows = [row("2 losses", f"{k} max|diff| over {len(cases)} pairs", v, TOL["loss"]) for k, v in worst.items()]
    x = next(c[2] for c in synthetic_ssim_cases(seed) if c[0] == "identical")
    _, jm = combined_loss(x, x)
    with torch.no_grad():
        _, tm = t_loss(nchw(x), nchw(x))
    quantity = f"identical images: PSNR |diff| (jax {float(jm['psnr']):.1f} dB, both floor MSE at 1e-12)"
    rows.append(row("2 losses", quantity, abs(float(jm["psnr"]) - float(tm["psnr"])), TOL["loss"]))
    return rows
