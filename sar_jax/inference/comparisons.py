"""Despeckling comparisons for ``evaluate``: the model (any ``model.kind``) and the classical SAR filters (boxcar and
Lee, windows 5 and 7) scored against the noisy input and, on synthetic data, against the speckle-free
reflectivity the scenes were made from (``--reference clean``).

Filters run on linear intensity (amplitude is squared first, dB exponentiated) and their output is
normalised with the checkpoint's preprocessing, so every method is scored on the same [0, 1] values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sar_jax.baselines.filters import boxcar, lee
from sar_jax.core.errors import SarJaxError
from sar_jax.data.preprocess import normalize
from sar_jax.metrics import sar_stats

FILTERS = (("boxcar", 5), ("boxcar", 7), ("Lee", 5), ("Lee", 7))
SCORES = ("psnr", "ssim", "ms_ssim")


def clean_patches(config: dict[str, Any], windows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The speckle-free reflectivity at the test windows ``(scene, row, col)``, normalised, (N, P, P, 1).

    Raises:
        SarJaxError: the data is not synthetic (no known truth).
    """
    from sar_jax.data.synthetic import synthetic_scenes_with_reflectivity

    data = config["data"]
    if data["source"] != "synthetic":
        raise SarJaxError("reference 'clean' needs synthetic data (the only data whose speckle-free "
                          f"reflectivity is known); this checkpoint was trained on {data['path']}")
    truth = [refl for _, refl in synthetic_scenes_with_reflectivity(data["num_scenes"], data["scene_size"],
                                                                     data["looks"], config["train"]["seed"])]
    p = data["patch_size"]
    patches = np.stack([truth[s][r:r + p, c:c + p] for s, r, c in np.asarray(windows).tolist()])
    return normalize(patches, params)[..., None]


def image_scores(x_hat: Any, x: Any, ssim_window: int, ms_window: int | None) -> dict[str, Any]:
    """MSE, PSNR, SSIM and (with ``ms_window``) MS-SSIM of each image of ``x_hat`` against ``x`` (NHWC
    batches in [0, 1]), as JAX arrays ``(N,)``: what evaluate reports for the model and every comparison."""
    from sar_jax.metrics.psnr import mse_per_image, psnr_from_mse
    from sar_jax.metrics.ssim import ms_ssim_per_image, ssim_per_image

    mse = mse_per_image(x_hat, x)
    out = {"mse": mse, "psnr": psnr_from_mse(mse), "ssim": ssim_per_image(x_hat, x, ssim_window)}
    if ms_window is not None:
        out["ms_ssim"] = ms_ssim_per_image(x_hat, x, win_size=ms_window)
    return out


def scores(a: np.ndarray, b: np.ndarray, ssim_window: int, ms_window: int | None, batch: int) -> dict[str, np.ndarray]:
    """:func:`image_scores` of each image of ``a`` against ``b``, in batches, as numpy arrays."""
    import jax.numpy as jnp

    parts = [image_scores(jnp.asarray(a[s:s + batch]), jnp.asarray(b[s:s + batch]), ssim_window, ms_window)
             for s in range(0, len(a), batch)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def filtered(x_lin: np.ndarray, units: str, kind: str, window: int, looks: float) -> np.ndarray:
    """``kind`` ("boxcar" or "Lee") applied to each image of ``x_lin`` (N, H, W) in ``units``,
    computed on intensity and returned in ``units``."""
    power = sar_stats.to_intensity(x_lin, units)
    out = np.stack([boxcar(img, window) if kind == "boxcar" else lee(img, window, looks) for img in power])
    if units == "amplitude":
        return np.sqrt(out)
    if units == "db":
        return 10 * np.log10(np.maximum(out, 1e-30))
    return out


def comparison_rows(x: np.ndarray, x_hat: np.ndarray, x_lin: np.ndarray, x_hat_lin: np.ndarray,
                    params: dict[str, Any], *, clean: np.ndarray | None, baselines: bool, looks: float,
                    ssim_window: int, ms_window: int | None, batch: int,
                    model_name: str = "autoencoder") -> list[dict[str, Any]]:
    """One row per method (the model, named ``model_name``, the unfiltered input when ``clean`` is given,
    the filters when ``baselines``): mean scores against the input and against ``clean``, and the mean
    ENL ratio."""
    units = params["mode"]
    if baselines and sar_stats.enl_unavailable_reason(units):
        raise SarJaxError(f"baselines: the classical filters work on linear intensity; {units} values have "
                          "no calibration back to it")
    methods = [(model_name, x_hat, x_hat_lin)]
    if clean is not None:
        methods.append(("input (unfiltered)", x, x_lin))
    if baselines:
        for kind, window in FILTERS:
            lin = filtered(x_lin, units, kind, window, looks)
            methods.append((f"{kind} {window}x{window}", normalize(lin, params)[..., None], lin))
    rows = []
    for name, out, out_lin in methods:
        row: dict[str, Any] = {"method": name}
        vs_input = scores(out, x, ssim_window, ms_window, batch) if out is not x else {}
        row.update({f"{k}_vs_input": _mean(vs_input.get(k)) for k in SCORES})
        if clean is not None:
            vs_clean = scores(out, clean, ssim_window, ms_window, batch)
            row.update({f"{k}_vs_clean": _mean(vs_clean.get(k)) for k in SCORES})
        ratios = [sar_stats.sar_statistics(x_lin[k], out_lin[k], units)["enl_ratio"] for k in range(len(x_lin))]
        row["enl_ratio"] = _mean([r for r in ratios if r is not None])
        rows.append(row)
    return rows


def _mean(values: Any) -> float | None:
    if values is None or len(values) == 0:
        return None
    return float(np.mean(np.asarray(values, np.float64)))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Methods x (scores against the input, ENL ratio, scores against the clean truth when present)."""
    clean = "psnr_vs_clean" in rows[0]
    head = ["method", "PSNR vs input", "SSIM vs input", "MS-SSIM vs input", "ENL ratio"]
    keys = ["psnr_vs_input", "ssim_vs_input", "ms_ssim_vs_input", "enl_ratio"]
    if clean:
        head += ["PSNR vs clean", "SSIM vs clean", "MS-SSIM vs clean"]
        keys += ["psnr_vs_clean", "ssim_vs_clean", "ms_ssim_vs_clean"]

    def fmt(v: Any, key: str) -> str:
        if v is None:
            return "-"
        return f"{v:.2f}" if key.startswith("psnr") or key == "enl_ratio" else f"{v:.4f}"

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([r["method"]] + [fmt(r[k], k) for k in keys]) + " |" for r in rows]
    return "\n".join(lines)
