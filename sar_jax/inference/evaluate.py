"""Evaluate a trained SAR model (any ``model.kind``): image quality, SAR statistics and compression.

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

That is the baseline autoencoder (``model.kind: baseline``). The other kinds are run in eval mode with
their output clipped to [0, 1] (``sar_jax.inference.run.image_fn``; ``--latent-dtype`` does not apply):

- ``factorized`` / ``hyperprior`` (learned codecs, latents rounded): the rate estimated from the
  likelihoods, ``bpp = sum(-log2 p) / pixels`` per image, and the real one, ``bpp_bitstream`` = 8 x the
  bytes of each image coded alone by :class:`sar_jax.inference.entropy_codec.LearnedCodec` / pixels
  (``bitstream_max_abs_diff``: its decoded images against the reported reconstructions); the
  compression ratio is the input's bits over the bitstream's;
- ``unet`` (despeckling): no latent, so no rate and no compression ratio (null).

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
from sar_jax.core.config import CODEC_KINDS
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
RATE_KEYS = ("bpp", "bpp_bitstream")  # the learned codecs: estimated from the likelihoods, real bitstream
MODEL_NAMES = {"baseline": "autoencoder", "factorized": "factorized codec", "hyperprior": "hyperprior codec",
               "unet": "U-Net"}


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


def model_kind(run: Any) -> str:
    """The run's ``model.kind`` (checkpoints from before the kinds are the baseline)."""
    return run.config["model"].get("kind", "baseline")


def bits_per_pixel(likelihoods: Sequence[np.ndarray], pixels: int) -> np.ndarray:
    """Per image ``sum(-log2 p) / pixels`` over every likelihood array (batch first), in float64."""
    return sum(-np.log2(np.asarray(p, np.float64)).reshape(len(p), -1).sum(axis=1) for p in likelihoods) / pixels


def run_jax(run: Any, x: np.ndarray, latent_dtype: str, batch_size: int, ssim_window: int,
            ms_window: int | None) -> tuple[np.ndarray, tuple[int, ...] | None, dict[str, np.ndarray]]:
    """Reconstruct through the Flax model; quality metrics in JAX (dm-pix SSIM, JAX MS-SSIM). Returns
    ``(x_hat, latent shape or None, metrics)``, the codecs' metrics with ``bpp`` (estimated)."""
    import jax.numpy as jnp

    from sar_jax.inference import run as inference
    from sar_jax.inference.comparisons import image_scores

    kind = model_kind(run)
    keys = ["mse", "psnr", "ssim"] + (["ms_ssim"] if ms_window is not None else [])
    if kind == "baseline":
        encode, decode = inference.encode_fn(run.model), inference.decode_fn(run.model)
        dtype = jnp.float16 if latent_dtype == "float16" else jnp.float32

        def step(batch):
            z = encode(run.variables, batch)
            x_hat = decode(run.variables, z.astype(dtype))
            metrics = image_scores(x_hat, batch, ssim_window, ms_window)
            return (x_hat, z, *(metrics[k] for k in keys))

        outs = inference.batched(step, x, batch_size)
        return outs[0], tuple(outs[1].shape[1:]), dict(zip(keys, outs[2:]))
    if kind in CODEC_KINDS:
        forward = inference.reconstruct_fn(run.model)

        def step(batch):
            x_hat, likelihoods = forward(run.variables, batch)
            x_hat = jnp.clip(x_hat, 0.0, 1.0)  # image_fn's output
            metrics = image_scores(x_hat, batch, ssim_window, ms_window)
            return (x_hat, *(metrics[k] for k in keys), *(likelihoods[n] for n in sorted(likelihoods)))

        outs = inference.batched(step, x, batch_size)
        quality = dict(zip(keys, outs[1:len(keys) + 1]))
        quality["bpp"] = bits_per_pixel(outs[len(keys) + 1:], x.shape[1] * x.shape[2])
        return outs[0], tuple(outs[len(keys) + 1].shape[1:]), quality
    image = inference.image_fn(run.model)

    def step(batch):
        x_hat = image(run.variables, batch)
        metrics = image_scores(x_hat, batch, ssim_window, ms_window)
        return (x_hat, *(metrics[k] for k in keys))

    outs = inference.batched(step, x, batch_size)
    return outs[0], None, dict(zip(keys, outs[1:]))


def torch_model(run: Any) -> Any:
    """The run's ``sar_torch_ref`` twin with the checkpoint's weights (converted from Flax), in eval mode."""
    kind, cfg = model_kind(run), run.config["model"]
    if kind == "baseline":
        from sar_jax.parity.convert import flax_to_torch
        from sar_torch_ref.models.autoencoder import SARAutoencoder

        model, state = SARAutoencoder(cfg), flax_to_torch(run.variables, model_cfg=cfg)
    elif kind in CODEC_KINDS:
        from sar_jax.parity import convert_codec
        from sar_torch_ref.models.compression import FactorizedPrior, ScaleHyperprior

        model = (FactorizedPrior if kind == "factorized" else ScaleHyperprior)(cfg)
        state = convert_codec.flax_to_torch(run.variables, kind, cfg)
    elif kind == "unet":
        from sar_jax.parity import convert_unet
        from sar_torch_ref.models.unet import UNet

        model, state = UNet(cfg), convert_unet.flax_to_torch(run.variables, cfg)
    else:
        raise SarJaxError(f"checkpoint {run.run_dir}: model.kind {kind!r} has no sar_torch_ref twin; "
                          "use --framework jax")
    model.load_state_dict(state)
    return model.eval()


def run_torch(run: Any, x: np.ndarray, latent_dtype: str, batch_size: int, ssim_window: int,
              ms_window: int | None) -> tuple[np.ndarray, tuple[int, ...] | None, dict[str, np.ndarray]]:
    """The same through ``sar_torch_ref`` (weights converted from the Flax checkpoint); SSIM and
    MS-SSIM from pytorch-msssim."""
    import pytorch_msssim
    import torch

    from sar_torch_ref.evaluation.metrics import per_image_metrics

    kind = model_kind(run)
    model = torch_model(run)
    dtype = torch.float16 if latent_dtype == "float16" else torch.float32
    loss_cfg = dict(run.config["loss"], ssim_window=ssim_window)
    x_hats, zs, parts = [], [], []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size].transpose(0, 3, 1, 2)))
            if kind == "baseline":
                z = model.encoder(xb)
                x_hat = model.decoder(z.to(dtype).to(torch.float32))
            else:
                x_hat, likelihoods = model(xb)
                x_hat = x_hat.clamp(0.0, 1.0)
                z = likelihoods.get("y")
            m = per_image_metrics(x_hat, xb, loss_cfg)
            part = {k: m[k].numpy() for k in ("mse", "psnr", "ssim")}
            if ms_window is not None:
                part["ms_ssim"] = pytorch_msssim.ms_ssim(x_hat, xb, data_range=1.0, size_average=False,
                                                         win_size=ms_window).numpy()
            if kind in CODEC_KINDS:
                part["bpp"] = bits_per_pixel([likelihoods[n].numpy() for n in sorted(likelihoods)],
                                             xb.shape[2] * xb.shape[3])
            parts.append(part)
            x_hats.append(x_hat.numpy().transpose(0, 2, 3, 1))
            if z is not None:
                zs.append(z.numpy().transpose(0, 2, 3, 1))
    metrics = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(x_hats), tuple(zs[0].shape[1:]) if zs else None, metrics


def bitstream_bpp(run: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image of ``x`` (N, H, W, 1) coded alone to a real bitstream
    (:class:`~sar_jax.inference.entropy_codec.LearnedCodec`): ``(bits per pixel (N,), decoded (N, H, W, 1))``."""
    from sar_jax.inference.entropy_codec import LearnedCodec

    codec = LearnedCodec(run)
    coded = [codec(image) for image in x[..., 0]]
    bpp = np.array([8.0 * nbytes for _, nbytes in coded]) / (x.shape[1] * x.shape[2])
    return bpp, np.stack([decoded for decoded, _ in coded])[..., None]


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
    kind = model_kind(run)
    step = int(run.model.DOWNSAMPLING)
    if size % step:
        raise SarJaxError(f"checkpoint {checkpoint}: model.kind {kind} needs images whose sides are multiples of "
                          f"{step} px; these are {size} px (data.patch_size)")
    runner = run_jax if framework == "jax" else run_torch
    x_hat, latent_shape, quality = runner(run, es.images, latent_dtype, batch, ssim_window, ms_window)
    bitstream_diff = None
    if kind in CODEC_KINDS:
        quality["bpp_bitstream"], decoded = bitstream_bpp(run, es.images)
        bitstream_diff = float(np.max(np.abs(decoded - x_hat)))
    x_lin = es.raw if es.raw is not None else denormalize(es.images[..., 0], es.params, bias_correction=False)
    x_hat_lin = denormalize(x_hat[..., 0], es.params)  # with the log-domain bias correction
    x_hat_raw = denormalize(x_hat[..., 0], es.params, bias_correction=False)
    metric_keys = METRIC_KEYS + (RATE_KEYS if kind in CODEC_KINDS else ())
    latent_bpp = ratio = None
    if kind == "baseline":
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
        if kind in CODEC_KINDS:
            row.update({key: _clean(quality[key][k]) for key in RATE_KEYS})
            row["compression_ratio"] = es.input_bits / row["bpp_bitstream"]
        elif kind == "baseline":
            row["compression_ratio"] = ratio
        rows.append(row)
    average = {key: _mean([r[key] for r in rows]) for key in metric_keys}
    comparisons = None
    if reference == "clean" or baselines:
        clean = clean_patches(run.config, es.windows, es.params) if reference == "clean" else None
        looks = (run.config["data"]["looks"] if run.config["data"]["source"] == "synthetic"
                 else max(1.0, average["enl_input"] or 1.0))
        comparisons = comparison_rows(es.images, x_hat, x_lin, x_hat_lin, es.params, clean=clean, baselines=baselines,
                                      looks=looks, ssim_window=ssim_window, ms_window=ms_window, batch=batch,
                                      model_name=MODEL_NAMES[kind])
    if kind in CODEC_KINDS:
        latent_bpp = average["bpp"]
        ratio = es.input_bits / average["bpp_bitstream"]
    if kind != "unet":
        average["compression_ratio"] = ratio
    per_source = {}
    for src in dict.fromkeys(es.sources):
        sel = [r for r in rows if r["source"] == src]
        per_source[src] = {"num_images": len(sel), **{key: _mean([r[key] for r in sel]) for key in metric_keys}}
    report = {
        "checkpoint": str(Path(checkpoint).resolve()), "which": "best", "epoch": run.epoch,
        "step": run.metadata.get("step"), "framework": framework,
        **({} if kind == "baseline" else {"model_kind": kind}), "data": es.description,
        "units": es.params["mode"], "preprocessing_params": es.params, "image_size": [size, size],
        "num_images": len(rows), "latent_dtype": latent_dtype if kind == "baseline" else None,
        "latent_shape": None if latent_shape is None else list(latent_shape),
        "input_bits_per_pixel": es.input_bits, "latent_bits_per_pixel": latent_bpp,
        **({"bitstream_bits_per_pixel": average["bpp_bitstream"], "bitstream_max_abs_diff": bitstream_diff}
           if kind in CODEC_KINDS else {}),
        "compression_ratio": ratio, "ssim_window": ssim_window,
        "ms_ssim_window": ms_window, "log_bias_db": log_bias_db(es.params),
        "clipped_fraction": es.clipped_fraction, "skipped_no_data_patches": es.skipped_patches,
        "ms_ssim_implementation": ("pytorch_msssim.ms_ssim" if framework == "torch"
                                   else "sar_jax.metrics.ssim.ms_ssim_per_image (JAX port of pytorch_msssim.ms_ssim)"),
        "notes": _notes(es, ms_window, size, kind),
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


def _notes(es: EvalSet, ms_window: int | None, size: int, kind: str = "baseline") -> list[str]:
    notes = []
    if kind in CODEC_KINDS:
        notes.append("rate: bpp is estimated from the likelihoods of the rounded latents (sum of -log2 p over "
                     "pixels); bpp_bitstream codes each image alone to a real bitstream (its framing paid per "
                     "image), and the compression ratio uses it")
    elif kind == "unet":
        notes.append("the U-Net is a despeckler, not a codec: it has no latent, so no rate or compression ratio")
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
        notes.append(f"the input is complex ({es.input_bits} bits/px with phase); the phase was dropped"
                     + (", so the compression ratio compares against bits the model never sees"
                        if kind != "unet" else ""))
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

