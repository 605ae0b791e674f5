"""Evaluate a trained SAR autoencoder: image quality, SAR statistics and compression.

    python -m sar_jax.evaluate --checkpoint RUN_DIR [--data PATH] [--out DIR] [--framework jax|torch]

The BEST checkpoint is loaded with its config and preprocessing_params. Without ``--data`` the
checkpoint config's own test split is rebuilt (``build_datasets``); with ``--data`` every file is
preprocessed with the CHECKPOINT's parameters (never refitted) and cut into non-overlapping
patches of the config's ``data.patch_size`` (remainders at the right and bottom dropped).

Per image (patch) and on average:

- MSE, PSNR (dB, data range 1) and SSIM (Gaussian window ``loss.ssim_window``) on the
  normalised [0, 1] values the model sees;
- MS-SSIM: pytorch-msssim's ``ms_ssim`` for ``--framework torch``, and the same algorithm written
  in JAX (:func:`sar_jax.metrics.ssim.ms_ssim_per_image`) for ``jax``. Its 4 downsamplings need
  images larger than ``(win - 1) * 16`` px, so the window is the largest odd size <= 11 that fits
  (recorded as ``ms_ssim_window``; 3 for 64 px patches), or MS-SSIM is null below 33 px;
- ENL (:mod:`sar_jax.metrics.sar_stats`: pooled and bias-corrected, on windows chosen on an
  independent half of their pixels, in linear intensity; not reported for 8-bit log views) of
  input and reconstruction, and ``enl_ratio = ENL(recon) / ENL(input)``; no-data pixels are
  left out of every metric's windows;
- ``mean_ratio = mean(recon) / mean(input)`` over valid pixels in the data's linear units;
  with ``--data`` both ENL and the mean ratio use the ORIGINAL input values (not the clipped
  ones the model sees);
- compression ratio: input bits per pixel (from the dtype actually read: 8 for uint8, 16 for
  uint16, 32 for float32, 64 for complex64) over latent bits per pixel at the stored precision
  (``--latent-dtype``, float16 by default). The reconstruction is decoded from the latent cast to
  that precision, so the quality numbers match the ratio.

Writes ``report.json``, ``report.md`` and ``panels.png`` (input | reconstruction | |difference|
| histograms) under ``--out`` (default ``RUN_DIR/eval-<framework>``) and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.cli import add_examples, add_input_units_args, add_version_arg, flag_names
from sar_jax.core.errors import SarJaxError
from sar_jax.data.patches import Region, extract_patches
from sar_jax.data.preprocess import denormalize, log_bias_db, normalize
from sar_jax.data.readers import list_sar_files
from sar_jax.inference.comparisons import markdown_table as comparisons_table
from sar_jax.inference.eval_report import markdown_report, save_panels, summary_table
from sar_jax.inference.scene_io import write_atomic
from sar_jax.metrics import sar_stats
from sar_jax.metrics.ssim import ms_ssim_window

QUALITY_KEYS = ("mse", "psnr", "ssim", "ms_ssim")
SAR_KEYS = ("enl_input", "enl_recon", "enl_ratio", "mean_ratio")
RATIO_KEYS = ("mean_ratio_uncorrected",)
METRIC_KEYS = QUALITY_KEYS + SAR_KEYS + RATIO_KEYS


@dataclass
class EvalSet:
    """Normalised images and where they came from."""

    images: np.ndarray  # (N, P, P, 1) float32 in [0, 1]
    raw: np.ndarray | None  # (N, P, P) the original values in params["mode"] units (None: not available)
    valid: np.ndarray | None  # (N, P, P) bool: not no-data (None: all valid)
    names: list[str]
    sources: list[str]
    params: dict[str, Any]  # preprocessing params with mode = the data's units
    input_bits: int
    phase_dropped: bool
    clipped_fraction: dict[str, float]  # per file: valid pixels outside the checkpoint's clip range
    skipped_patches: int  # patches left out for holding no-data pixels
    description: str
    windows: np.ndarray | None = None  # (N, 3) (scene, row, col) of the checkpoint's test split


def load_eval_set(run: Any, data: str | None, units: str | None = None, allow_clipping: bool = False) -> EvalSet:
    """The checkpoint's test split, or ``data`` files cut into patches with the checkpoint's params
    (patches holding any no-data pixel are left out; each file's clipped fraction is checked)."""
    from sar_jax.data.pipeline import build_datasets
    from sar_jax.inference.run import check_clipping, open_input

    params = run.preprocessing_params
    patch = run.config["data"]["patch_size"]
    if data is None:
        datasets = build_datasets(run.config)
        if datasets.preprocessing_params != params:
            warnings.warn("the rebuilt test split's preprocessing differs from the checkpoint's; renormalising "
                          "with the checkpoint's", stacklevel=2)
            images = normalize(denormalize(datasets.patches("test")[..., 0], datasets.preprocessing_params,
                                           bias_correction=False), params)[..., None]
        else:
            images = datasets.patches("test")
        source = (f"synthetic (seed {run.config['train']['seed']})" if run.config["data"]["source"] == "synthetic"
                  else str(run.config["data"]["path"]))
        names = [f"test[{i}]" for i in range(len(images))]
        bits = 8 if params["mode"] == "log8" else 32
        return EvalSet(images.astype(np.float32), None, None, names, [source] * len(images), dict(params), bits,
                       False, {}, 0, f"test split of the checkpoint's data: {source}", datasets.windows["test"])
    images, raws, names, sources = [], [], [], []
    used = None
    bits, phase_dropped, clipped, skipped = 32, False, {}, 0
    for f in list_sar_files(data):
        raster, file_params = open_input(f, params, units, run.config["data"]["band"], run.config["data"]["strict"])
        if used is not None and file_params["mode"] != used["mode"]:
            raise SarJaxError(f"data {data}: files mix kinds of values ({used['mode']}, {file_params['mode']})")
        used = file_params
        bits, phase_dropped = raster.bits_per_pixel, phase_dropped or raster.phase_dropped
        values, valid = raster.read()
        clipped[f.name] = check_clipping(values[valid], file_params, f"--data {f}", allow_clipping)
        h, w = values.shape
        if h < patch or w < patch:
            warnings.warn(f"{f}: {h}x{w} is smaller than the patch size {patch}; skipped", stacklevel=2)
            continue
        region = Region(0, 0, h, 0, w)
        raw = extract_patches(values, region, patch, patch)
        keep = extract_patches(valid, region, patch, patch).all(axis=(1, 2))
        cols = len(range(0, w - patch + 1, patch))
        at = [(k // cols * patch, k % cols * patch) for k in range(len(raw))]
        skipped += int((~keep).sum())
        raw = raw[keep]
        images.append(normalize(raw, file_params)[..., None])
        raws.append(raw)
        names += [f"{f.name}[{r},{c}]" for (r, c), k in zip(at, keep) if k]
        sources += [f.name] * len(raw)
    if not names:
        raise SarJaxError(f"data {data}: no image holds a {patch}x{patch} patch free of no-data (data.patch_size)")
    return EvalSet(np.concatenate(images), np.concatenate(raws), None, names, sources, used, bits,
                   phase_dropped, clipped, skipped,
                   f"{data}: non-overlapping {patch}x{patch} patches, checkpoint preprocessing")


# --------------------------------------------------------------------------- frameworks


def run_jax(run: Any, x: np.ndarray, latent_dtype: str, batch_size: int, ssim_window: int,
            ms_window: int | None) -> tuple[np.ndarray, tuple[int, ...], dict[str, np.ndarray]]:
    """Reconstruct through the Flax model; quality metrics in JAX (dm-pix SSIM, JAX MS-SSIM)."""
    import jax.numpy as jnp

    from sar_jax.inference import run as inference
    from sar_jax.inference.comparisons import image_scores

    encode, decode = inference.encode_fn(run.model), inference.decode_fn(run.model)
    dtype = jnp.float16 if latent_dtype == "float16" else jnp.float32
    keys = ["mse", "psnr", "ssim"] + (["ms_ssim"] if ms_window is not None else [])

    def step(batch):
        z = encode(run.variables, batch)
        x_hat = decode(run.variables, z.astype(dtype))
        metrics = image_scores(x_hat, batch, ssim_window, ms_window)
        return (x_hat, z, *(metrics[k] for k in keys))

    outs = inference.batched(step, x, batch_size)
    return outs[0], tuple(outs[1].shape[1:]), dict(zip(keys, outs[2:]))


def run_torch(run: Any, x: np.ndarray, latent_dtype: str, batch_size: int, ssim_window: int,
              ms_window: int | None) -> tuple[np.ndarray, tuple[int, ...], dict[str, np.ndarray]]:
    """The same through ``sar_torch_ref`` (weights converted with ``flax_to_torch``); SSIM and
    MS-SSIM from pytorch-msssim."""
    import pytorch_msssim
    import torch

    from sar_jax.parity.convert import flax_to_torch
    from sar_torch_ref.evaluation.metrics import per_image_metrics
    from sar_torch_ref.models.autoencoder import SARAutoencoder

    model = SARAutoencoder(run.config["model"])
    model.load_state_dict(flax_to_torch(run.variables, model_cfg=run.config["model"]))
    model.eval()
    dtype = torch.float16 if latent_dtype == "float16" else torch.float32
    loss_cfg = dict(run.config["loss"], ssim_window=ssim_window)
    x_hats, zs, parts = [], [], []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size].transpose(0, 3, 1, 2)))
            z = model.encoder(xb)
            x_hat = model.decoder(z.to(dtype).to(torch.float32))
            m = per_image_metrics(x_hat, xb, loss_cfg)
            part = {k: m[k].numpy() for k in ("mse", "psnr", "ssim")}
            if ms_window is not None:
                part["ms_ssim"] = pytorch_msssim.ms_ssim(x_hat, xb, data_range=1.0, size_average=False,
                                                         win_size=ms_window).numpy()
            parts.append(part)
            x_hats.append(x_hat.numpy().transpose(0, 2, 3, 1))
            zs.append(z.numpy().transpose(0, 2, 3, 1))
    metrics = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(x_hats), tuple(zs[0].shape[1:]), metrics


# --------------------------------------------------------------------------- report


def _clean(v: Any) -> Any:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate(checkpoint: str | Path, data: str | None = None, out: str | Path | None = None,
             framework: str = "jax", latent_dtype: str = "float16", units: str | None = None,
             num_panels: int = 4, batch_size: int | None = None, allow_clipping: bool = False,
             reference: str = "input", baselines: bool = False) -> dict[str, Any]:
    """Run the evaluation, write report.json / report.md / panels.png; return the report.

    ``reference="clean"`` (synthetic test split only) also scores against the speckle-free reflectivity;
    ``baselines`` adds the classical despeckling filters' rows (:mod:`sar_jax.inference.comparisons`).
    """
    from sar_jax.inference import run as inference
    from sar_jax.inference.comparisons import clean_patches, comparison_rows

    if framework not in ("jax", "torch"):
        raise SarJaxError(f"framework {framework}: expected jax or torch")
    if latent_dtype not in ("float16", "float32"):
        raise SarJaxError(f"latent_dtype {latent_dtype}: expected float16 or float32")
    if data is not None and not Path(data).exists():
        raise SarJaxError(f"data {data}: no such file or folder")
    if reference not in ("input", "clean"):
        raise SarJaxError(f"reference {reference}: expected input or clean")
    if reference == "clean" and data is not None:
        raise SarJaxError("reference clean scores the checkpoint's own synthetic test split against its "
                          "speckle-free reflectivity, not data files")
    run = inference.load_run(checkpoint, "best")
    out_dir = Path(out) if out else Path(checkpoint) / f"eval-{framework}"
    if out_dir.exists() and not out_dir.is_dir():
        raise SarJaxError(f"out {out_dir}: exists and is not a folder")
    t0 = time.perf_counter()
    es = load_eval_set(run, data, units, allow_clipping)
    size = es.images.shape[1]
    ssim_window = min(run.config["loss"]["ssim_window"], size - (1 - size % 2))
    ms_window = ms_ssim_window(size)
    batch = batch_size or run.config["train"]["batch_size"]
    runner = run_jax if framework == "jax" else run_torch
    x_hat, latent_shape, quality = runner(run, es.images, latent_dtype, batch, ssim_window, ms_window)
    x_lin = es.raw if es.raw is not None else denormalize(es.images[..., 0], es.params, bias_correction=False)
    x_hat_lin = denormalize(x_hat[..., 0], es.params)  # with the log-domain bias correction
    x_hat_raw = denormalize(x_hat[..., 0], es.params, bias_correction=False)
    latent_bpp = sar_stats.latent_bits_per_pixel(size * size, latent_elements=int(np.prod(latent_shape)),
                                                 latent_dtype=latent_dtype)
    ratio = es.input_bits / latent_bpp
    rows = []
    for k, name in enumerate(es.names):
        sar = sar_stats.sar_statistics(x_lin[k], x_hat_lin[k], es.params["mode"],
                                       None if es.valid is None else es.valid[k])
        row = {"name": name, "source": es.sources[k]}
        row.update({key: _clean(quality[key][k]) if key in quality else None for key in QUALITY_KEYS})
        row.update({key: _clean(sar[key]) for key in SAR_KEYS})
        mean_in = float(np.mean(x_lin[k], dtype=np.float64))
        row["mean_ratio_uncorrected"] = _clean(float(np.mean(x_hat_raw[k], dtype=np.float64)) / mean_in
                                               if mean_in > 0 else None)
        row["compression_ratio"] = ratio
        rows.append(row)
    average = {key: _mean([r[key] for r in rows]) for key in METRIC_KEYS}
    comparisons = None
    if reference == "clean" or baselines:
        clean = clean_patches(run.config, es.windows, es.params) if reference == "clean" else None
        looks = (run.config["data"]["looks"] if run.config["data"]["source"] == "synthetic"
                 else max(1.0, average["enl_input"] or 1.0))
        comparisons = comparison_rows(es.images, x_hat, x_lin, x_hat_lin, es.params, clean=clean, baselines=baselines,
                                      looks=looks, ssim_window=ssim_window, ms_window=ms_window, batch=batch)
    average["compression_ratio"] = ratio
    per_source = {}
    for src in dict.fromkeys(es.sources):
        sel = [r for r in rows if r["source"] == src]
        per_source[src] = {"num_images": len(sel), **{key: _mean([r[key] for r in sel]) for key in METRIC_KEYS}}
    report = {
        "checkpoint": str(Path(checkpoint).resolve()), "which": "best", "epoch": run.epoch,
        "step": run.metadata.get("step"), "framework": framework, "data": es.description,
        "units": es.params["mode"], "preprocessing_params": es.params, "image_size": [size, size],
        "num_images": len(rows), "latent_dtype": latent_dtype, "latent_shape": list(latent_shape),
        "input_bits_per_pixel": es.input_bits, "latent_bits_per_pixel": latent_bpp,
        "compression_ratio": ratio, "ssim_window": ssim_window,
        "ms_ssim_window": ms_window, "log_bias_db": log_bias_db(es.params),
        "clipped_fraction": es.clipped_fraction, "skipped_no_data_patches": es.skipped_patches,
        "ms_ssim_implementation": ("pytorch_msssim.ms_ssim" if framework == "torch"
                                   else "sar_jax.metrics.ssim.ms_ssim_per_image (JAX port of pytorch_msssim.ms_ssim)"),
        "notes": _notes(es, ms_window, size),
        "reference": reference, "comparisons": comparisons,
        "average": average, "per_source": per_source, "per_image": rows,
        "seconds": time.perf_counter() - t0,
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SarJaxError(f"out {out_dir}: cannot create ({exc.strerror})") from None
    write_atomic(out_dir / "report.json", lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    write_atomic(out_dir / "report.md", lambda p: p.write_text(markdown_report(report)))
    picks = np.unique(np.linspace(0, len(rows) - 1, min(num_panels, len(rows))).round().astype(int))
    write_atomic(out_dir / "panels.png",
                 lambda p: save_panels(es.images[picks, ..., 0], x_hat[picks, ..., 0], [rows[i] for i in picks], p))
    report["out_dir"] = str(out_dir)
    return report


def _notes(es: EvalSet, ms_window: int | None, size: int) -> list[str]:
    notes = []
    if ms_window is None:
        notes.append(f"MS-SSIM is null: {size} px images are too small for its 4 downsamplings "
                     "(needs > 32 px with a 3 px window)")
    elif ms_window != 11:
        notes.append(f"MS-SSIM uses a {ms_window} px Gaussian window (11 needs images > 160 px; these are {size} px)")
    reason = sar_stats.enl_unavailable_reason(es.params["mode"])
    if reason:
        notes.append(reason + "; the mean ratio compares the 8-bit values")
    else:
        if es.params["mode"] == "amplitude":
            notes.append("ENL is computed on intensity (amplitude squared); the mean ratio on amplitude")
        notes.append("ENL: pooled over the 25% most homogeneous 16 px windows of each image (chosen on one "
                     "checkerboard half of their pixels, measured on the other); enl_ratio > 1 means the "
                     "reconstruction is smoother (despeckled) there")
    if es.raw is None:
        notes.append("test split: ENL and mean ratio use the inputs after clipping to the checkpoint's range "
                     "(the split is stored normalised)")
    if es.skipped_patches:
        notes.append(f"{es.skipped_patches} patches holding no-data pixels were left out")
    for name, frac in es.clipped_fraction.items():
        notes.append(f"{name}: {100 * frac:.2f}% of its valid pixels lie outside the checkpoint's clip range")
    if es.params["mode"] in ("intensity", "amplitude"):
        notes.append(f"mean ratio with the checkpoint's log-domain bias correction ({log_bias_db(es.params):+.2f} dB, "
                     "fitted on its training split); mean_ratio_uncorrected without it")
    if es.phase_dropped:
        notes.append(f"the input is complex ({es.input_bits} bits/px with phase); the phase was dropped, so the "
                     "compression ratio compares against bits the model never sees")
    return notes


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m sar_jax.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="sar_jax run directory (its best checkpoint is used)")
    parser.add_argument("--data", default=None, help="SAR file or folder (default: the checkpoint's test split)")
    parser.add_argument("--out", default=None, help="report folder (default RUN_DIR/eval-<framework>)")
    parser.add_argument("--framework", default="jax", choices=("jax", "torch"), help="model implementation to run")
    parser.add_argument("--latent-dtype", default="float16", choices=("float16", "float32"),
                        help="stored latent precision: the decoder sees the latent cast to it (default float16)")
    add_input_units_args(parser, "--data")
    parser.add_argument("--reference", default="input", choices=("input", "clean"),
                        help="clean: also score against the speckle-free reflectivity (synthetic test split only)")
    parser.add_argument("--baselines", action="store_true",
                        help="add boxcar and Lee filter rows (windows 5 and 7) to the despeckling comparison")
    parser.add_argument("--panels", type=int, default=4, help="images shown in panels.png (default 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's train.batch_size")
    add_version_arg(parser)
    add_examples(parser, "python -m sar_jax.evaluate --checkpoint runs/quickstart-20260101-120000 --data scenes/")
    return parser


@flag_names(data="--data", framework="--framework", latent_dtype="--latent-dtype", reference="--reference",
            out="--out")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: evaluate and print the summary table."""
    args = setup_args().parse_args(argv)
    if args.panels < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise SarJaxError("--panels and --batch-size must be positive")
    report = evaluate(args.checkpoint, args.data, args.out, args.framework, args.latent_dtype,
                      None if args.units == "auto" else args.units, args.panels, args.batch_size, args.allow_clipping,
                      args.reference, args.baselines)
    print(f"{report['framework']} evaluation of {report['checkpoint']} (epoch {report['epoch']}) on {report['data']}")
    print(summary_table(report))
    if report["comparisons"]:
        print(comparisons_table(report["comparisons"]))
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"wrote {report['out_dir']}/report.json, report.md, panels.png")
    return 0

