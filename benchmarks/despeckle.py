"""Despeckling study: the U-Net under each training target and loss against the classical filters.

    python -m benchmarks.despeckle [--quick] [--data PATH] [--out DIR]

TRAINING (at the runs' ``data.looks``): the U-Net of ``configs/despeckle.json`` on synthetic single-look
speckle with ``train.target clean`` and the MSE of the normalised log (dB) image; the same U-Net with
``other_look`` (Noise2Noise) and ``log_gamma``; the design's autoencoder at quickstart size on the same
L = 1 data reconstructing its input; and (full mode) the clean-target U-Net at L = 4 and with ``log_gamma``
(on the clean target: the Itakura-Saito divergence, minimised by the linear mean). Finished runs under
``--out`` are reused.

TEST: held-apart synthetic scenes (a seed the training never saw; the same reflectivity at L = 1 and L = 4)
and one more validation scene on which each filter's window is chosen by PSNR. Each method gives linear
intensity: the filters filter the input's intensity, the models go through their checkpoint's
``normalize`` / ``denormalize`` (the log bias added only where :func:`sar_jax.data.pipeline.predicts_mean`
says so). Metrics against the speckle-free truth, per L:

- PSNR (primary) and SSIM in the normalised dB domain the models work in: 10 log10 of the intensity
  clipped to [vmin, vmax] and scaled to [0, 1] with the L's clean-target U-Net's checkpoint params, data range 1;
- PSNR of amplitude (MERLIN / SAR2SAR's convention, that of the published anchors): peak the truth's
  amplitude 99th percentile, no clipping;
- ENL on the flat fields of the truth, the mean ratio (linear intensity, whole scenes and flat fields) and
  Sattar's edge-preservation index (:mod:`sar_jax.metrics.sar_stats`).

REAL scenes (``--data``, default ``../shared/data/sar``, no truth): 8-bit PNGs whose statistics are those
of linear amplitude (:data:`REAL_UNITS`), read as intensity = level**2; the filters (window 7, looks = the
input's measured ENL rounded) and the clean-target U-Net trained nearest that ENL (its input moved by a
constant gain to centre the scene's median dB in its clip range) are scored with the no-reference checks:
ENL on the input's homogeneous windows, mean ratio, and the ratio image's statistics.

Writes ``despeckle.json``, ``.md``, ``.png`` (metrics), ``despeckle-panel.png`` (crops of one test scene at
L = 1) and ``despeckle-ratio.png`` (a real scene's ratio images) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.cli import run_main
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import write_json_atomic, write_text_atomic
from sar_jax.core.paths import SHARED_SAR_DIR


@dataclass(frozen=True)
class ModelSpec:
    """One trained model of the study: its label, config and overrides."""

    name: str
    label: str
    config: str
    overrides: tuple[str, ...]
    looks: float


@dataclass(frozen=True)
class Mode:
    """The sizes of one mode (full or quick)."""

    models: tuple[ModelSpec, ...]
    test_scenes: int
    scene_size: int
    windows: tuple[int, ...]  # filter windows tried on the validation scene
    common: tuple[str, ...] = field(default=())  # overrides of every model (before each model's own)


_N2N = ("train.target=other_look", "loss.kind=log_gamma")
_SHORT = ("train.epochs=8",)  # the second and third U-Nets (the first's epochs took ~60 s on the shared cores)
#: The autoencoder on the U-Nets' data (quickstart width; its loss and target are the design's).
_AE_DATA = ("data.looks=1.0", "data.num_scenes=40", "data.sampling=random", "data.patches_per_epoch=768",
            "data.eval_patches=256", "data.val_fraction=0.15", "data.test_fraction=0.15")
FULL = Mode(models=(
    ModelSpec("unet-clean-mse-L1", "U-Net, clean, MSE (L=1)", "despeckle", (), 1.0),
    ModelSpec("unet-n2n-loggamma-L1", "U-Net, other look, log-Gamma (L=1)", "despeckle", _N2N + _SHORT, 1.0),
    ModelSpec("autoencoder-input-L1", "autoencoder, input, 0.5 MSE + 0.5 SSIM (L=1)", "quickstart",
              _AE_DATA + ("train.epochs=20",), 1.0),
    ModelSpec("unet-clean-mse-L4", "U-Net, clean, MSE (L=4)", "despeckle", ("data.looks=4.0",) + _SHORT, 4.0),
    ModelSpec("unet-clean-loggamma-L1", "U-Net, clean, log-Gamma (L=1)", "despeckle", ("loss.kind=log_gamma",)
              + _SHORT, 1.0)),
    test_scenes=6, scene_size=256, windows=(3, 5, 7, 9, 11))
QUICK = Mode(models=(
    ModelSpec("unet-clean-mse-L1", "U-Net, clean, MSE (L=1)", "despeckle", (), 1.0),
    ModelSpec("unet-n2n-loggamma-L1", "U-Net, other look, log-Gamma (L=1)", "despeckle", _N2N, 1.0),
    ModelSpec("autoencoder-input-L1", "autoencoder, input, 0.5 MSE + 0.5 SSIM (L=1)", "quickstart",
              _AE_DATA + ("train.epochs=1", "data.patches_per_epoch=256", "data.num_scenes=12",
                          "data.eval_patches=64"), 1.0)),
    test_scenes=2, scene_size=128, windows=(5, 7),
    common=("model.unet_features=8", "train.epochs=2", "data.patches_per_epoch=256", "data.num_scenes=12",
            "data.eval_patches=64"))
TEST_SEED = 7919  # the held-apart scenes (training uses train.seed = 0)
VAL_SEED = 7920  # the scene that picks each filter's window
LOOKS = (1.0, 4.0)
#: How the real scenes' 8-bit levels are read. The reader's default for uint8 is an 8-bit log view
#: (log8), but these PNGs' homogeneous windows have the statistics of linear AMPLITUDE, not of log
#: intensity: skewness +0.46 and +0.78 (log-intensity speckle: -1.14 at one look, negative at any L),
#: coefficient of variation 0.31 and 0.56 (single-look amplitude: 0.52). So intensity = level**2 (a
#: constant gain aside, which no metric here depends on; level 0 is no-data).
REAL_UNITS = "amplitude"


def run_config(spec: ModelSpec, mode: Mode, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The validated config of one model: its config file, the mode's overrides, its own, then ``overrides``."""
    from sar_jax.core.config import load_config

    config, _ = load_config(spec.config, [*mode.common, *spec.overrides, *overrides])
    return config


def finished(run_dir: Path, config: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly ``config`` (its last epoch, or stopped early)."""
    from sar_jax.core.rundir import read_log

    try:
        saved = json.loads((run_dir / "config.json").read_text())
        records = read_log(run_dir)
    except (OSError, ValueError):
        return False
    if saved != json.loads(json.dumps(config)) or not records:
        return False
    best = max(i for i, r in enumerate(records) if r["best"])
    patience = config["train"]["early_stopping_patience"]
    return records[-1]["epoch"] >= config["train"]["epochs"] or len(records) - 1 - best >= patience


def train_all(mode: Mode, out: Path, overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Train (or reuse) every model of ``mode`` under ``out``; per model its run directory, training
    seconds (the epochs' own, from ``training.log``), epochs and best epoch."""
    from sar_jax.core.rundir import read_log
    from sar_jax.training.loop import train_and_evaluate

    runs = {}
    for spec in mode.models:
        run_dir, config = out / spec.name, run_config(spec, mode, overrides)
        reused = finished(run_dir, config)
        if not reused:
            print(f"training {spec.label} into {run_dir}", flush=True)
            train_and_evaluate(config, run_dir, overwrite=True)
        records = read_log(run_dir)
        best = min(records, key=lambda r: r["val_loss"])
        runs[spec.name] = {"run_dir": str(run_dir), "label": spec.label, "looks": spec.looks, "reused": reused,
                           "overrides": list(spec.overrides), "train_seconds": sum(r["epoch_seconds"] for r in records),
                           "epochs": records[-1]["epoch"], "best_epoch": best["epoch"],
                           "best_val_psnr": best["val_psnr"]}
    return runs


# --------------------------------------------------------------------------- methods


FILTERS = ("lee", "refined_lee", "frost", "kuan")
FILTER_LABELS = {"lee": "Lee", "refined_lee": "refined Lee", "frost": "Frost", "kuan": "Kuan"}
Method = Callable[[np.ndarray], np.ndarray]  # linear intensity (H, W) -> linear intensity (H, W)


def filter_method(name: str, window: int, looks: float) -> Method:
    """A classical filter on linear intensity."""
    from sar_jax.baselines import filters

    if name == "boxcar":
        return lambda x: filters.boxcar(x, window)
    return lambda x: getattr(filters, name)(x, window, looks)


def model_method(run: Any, gain: float = 1.0) -> Method:
    """A trained model on linear intensity: ``gain`` times the input through the checkpoint's ``normalize``,
    the model on the whole image (reflect-padded to its downsampling), ``denormalize`` with the
    checkpoint's params (log bias included where the model needs it), divided by ``gain``."""
    from sar_jax.data.preprocess import denormalize, normalize
    from sar_jax.inference.run import image_fn

    apply, step, params = image_fn(run.model), int(run.model.DOWNSAMPLING), run.preprocessing_params

    def method(intensity: np.ndarray) -> np.ndarray:
        h, w = intensity.shape
        x = np.pad(normalize(gain * intensity, params), ((0, -h % step), (0, -w % step)), mode="reflect")
        x_hat = np.asarray(apply(run.variables, x[None, :, :, None]))[0, :h, :w, 0]
        return (denormalize(x_hat, params) / gain).astype(np.float32)

    return method


# --------------------------------------------------------------------------- synthetic scores


def score(out: np.ndarray, truth: np.ndarray, ref: dict[str, Any]) -> dict[str, float | None]:
    """Every metric of one output (linear intensity) against the truth; ``ref``: the preprocessing params
    that define the normalised dB domain."""
    import jax.numpy as jnp

    from sar_jax.data.preprocess import normalize
    from sar_jax.metrics import sar_stats
    from sar_jax.metrics.ssim import ssim_per_image

    a, t = normalize(out, ref), normalize(truth, ref)
    amp, amp_t = np.sqrt(np.maximum(out, 0.0).astype(np.float64)), np.sqrt(truth.astype(np.float64))
    peak = float(np.quantile(amp_t, 0.99))
    flat = sar_stats.flat_windows(truth)
    return {"psnr_db": float(10 * np.log10(1.0 / max(float(np.mean((a - t) ** 2)), 1e-12))),
            "psnr_amplitude": float(10 * np.log10(peak**2 / float(np.mean((amp - amp_t) ** 2)))),
            "ssim_db": float(ssim_per_image(jnp.asarray(a[None, :, :, None]), jnp.asarray(t[None, :, :, None]))[0]),
            "enl_flat": sar_stats.enl(out, flat),
            "mean_ratio": float(np.sum(out, dtype=np.float64) / np.sum(truth, dtype=np.float64)),
            "mean_ratio_flat": sar_stats.window_mean_ratio(out, truth, flat),
            "epi": sar_stats.edge_preservation_index(a, t)}


METRICS = ("psnr_db", "psnr_amplitude", "ssim_db", "enl_flat", "mean_ratio", "mean_ratio_flat", "epi")


def mean_scores(method: Method, scenes: list[tuple[np.ndarray, np.ndarray]],
                ref: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """Each metric averaged over the scenes (None where a scene has none, e.g. no flat field), and the
    output on the first scene."""
    outputs = [method(x) for x, _ in scenes]
    rows = [score(out, truth, ref) for out, (_, truth) in zip(outputs, scenes)]
    return {k: (float(np.mean([r[k] for r in rows if r[k] is not None]))
                if any(r[k] is not None for r in rows) else None) for k in METRICS}, outputs[0]


def best_windows(looks: float, windows: Sequence[int], val: tuple[np.ndarray, np.ndarray],
                 ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per adaptive filter the window of highest PSNR (dB domain) on the validation scene, and every
    window's PSNR there."""
    from sar_jax.data.preprocess import normalize

    x, truth = val
    t = normalize(truth, ref)
    out = {}
    for name in FILTERS:
        psnr = {w: float(10 * np.log10(1.0 / np.mean((normalize(filter_method(name, w, looks)(x), ref) - t) ** 2)))
                for w in windows}
        out[name] = {"window": max(psnr, key=psnr.get), "val_psnr_db": psnr}
    return out


def synthetic_study(looks: float, mode: Mode, runs: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """Every method on the held-apart test scenes at ``looks``."""
    from sar_jax.data.preprocess import denormalize, normalize
    from sar_jax.data.synthetic import synthetic_scenes_with_reflectivity

    scenes = synthetic_scenes_with_reflectivity(mode.test_scenes, mode.scene_size, looks, TEST_SEED)
    val = synthetic_scenes_with_reflectivity(1, mode.scene_size, looks, VAL_SEED)[0]
    ref_name = reference_model(runs, looks)
    ref = loaded[ref_name].preprocessing_params
    chosen = best_windows(looks, mode.windows, val, ref)
    methods: list[tuple[str, str, Method]] = [("noisy input", "input", lambda x: x)]
    methods += [(f"boxcar {w}x{w}", "filter", filter_method("boxcar", w, looks)) for w in (5, 7)]
    methods += [(f"{FILTER_LABELS[n]} {c['window']}x{c['window']}", "filter", filter_method(n, c["window"], looks))
                for n, c in chosen.items()]
    methods += [(runs[name]["label"], "model", model_method(run)) for name, run in loaded.items()]
    rows, first = [], {}
    for label, kind, method in methods:
        t0 = time.perf_counter()
        scores, first[label] = mean_scores(method, scenes, ref)
        rows.append({"method": label, "kind": kind, **scores, "seconds": time.perf_counter() - t0})
        print(f"L={looks:g} {label}: PSNR {rows[-1]['psnr_db']:.2f} dB", flush=True)
    first["truth"] = scenes[0][1]
    # what a perfect model in the [0, 1] dB domain could give back: the truth clipped to [vmin, vmax]
    clipped = [(denormalize(normalize(t, ref), ref, bias_correction=False), t) for _, t in scenes]
    ceiling = mean_scores(lambda x: x, clipped, ref)[0]
    return {"_images": first, "looks": looks, "test_scenes": len(scenes), "scene_size": mode.scene_size,
            "test_seed": TEST_SEED, "reference_model": ref_name, "db_range": [ref["vmin"], ref["vmax"]],
            "filter_windows": chosen, "rows": rows,
            "clipped_truth": {k: ceiling[k] for k in ("mean_ratio", "mean_ratio_flat")},
            "goal": goal(rows, looks)}


def reference_model(runs: dict[str, Any], looks: float) -> str:
    """The clean-target U-Net trained at ``looks`` (else at L = 1): its params define the dB domain."""
    clean = [n for n in runs if n.startswith("unet-clean")]
    same = [n for n in clean if runs[n]["looks"] == looks]
    return (same or clean)[0]


def goal(rows: list[dict[str, Any]], looks: float) -> dict[str, Any]:
    """The issue's goal for the best U-Net (dB-domain PSNR) trained at this L (else at L = 1): at L = 1 >= 10 dB
    over the input and >= 3 dB over the best filter with the mean ratio within 2% of 1 (whole scenes and flat
    fields both); at L = 4 above every filter."""
    by = {r["method"]: r for r in rows}
    unets = [r for r in rows if r["method"].startswith("U-Net")]
    same = [r for r in unets if r["method"].endswith(f"(L={looks:g})")] or unets
    unet = max(same, key=lambda r: r["psnr_db"])
    best_filter = max((r for r in rows if r["kind"] == "filter"), key=lambda r: r["psnr_db"])
    out = {"model": unet["method"], "gain_over_input_db": unet["psnr_db"] - by["noisy input"]["psnr_db"],
           "best_filter": best_filter["method"], "gain_over_best_filter_db": unet["psnr_db"] - best_filter["psnr_db"],
           "mean_ratio": unet["mean_ratio"], "mean_ratio_flat": unet["mean_ratio_flat"]}
    if looks == 1.0:
        ratios = [unet["mean_ratio"], unet["mean_ratio_flat"]]
        out["met"] = bool(out["gain_over_input_db"] >= 10 and out["gain_over_best_filter_db"] >= 3
                          and all(r is not None and abs(r - 1) <= 0.02 for r in ratios))
    else:
        out["met"] = bool(out["gain_over_best_filter_db"] > 0)
    return out


# --------------------------------------------------------------------------- real scenes


def read_real(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real 8-bit scene read as linear amplitude (see :data:`REAL_UNITS`): (intensity, valid)."""
    from sar_jax.data.readers import open_raster

    values, valid = open_raster(path, units=REAL_UNITS).read()
    return (np.asarray(values, np.float64) ** 2).astype(np.float32), valid


def real_study(path: Path, runs: dict[str, Any], loaded: dict[str, Any], crop: int | None) -> dict[str, Any]:
    """The filters (window 7, the looks the input's ENL gives) and the clean-target U-Net whose training looks
    are nearest that ENL, on one real scene, with the no-reference checks; ``crop``: the top-left square used."""
    from sar_jax.metrics import sar_stats

    intensity, valid = read_real(path)
    if crop:
        intensity, valid = intensity[:crop, :crop], valid[:crop, :crop]
    enl_in = sar_stats.sar_statistics(intensity, intensity, "intensity", valid)["enl_input"]
    looks = float(max(1.0, round(enl_in or 1.0)))
    clean = [n for n in loaded if n.startswith("unet-clean")]
    unet = min(clean, key=lambda n: abs(runs[n]["looks"] - looks))
    ref = loaded[unet].preprocessing_params
    # the U-Net's clip range is dB-calibrated on synthetic data: the scene's median is moved to its centre
    median_db = float(np.median(10 * np.log10(intensity[valid])))
    gain = float(10 ** (((ref["vmin"] + ref["vmax"]) / 2 - median_db) / 10))
    methods: list[tuple[str, Method]] = [("boxcar 7x7", filter_method("boxcar", 7, looks))]
    methods += [(f"{FILTER_LABELS[n]} 7x7", filter_method(n, 7, looks)) for n in FILTERS]
    methods.append((runs[unet]["label"], model_method(loaded[unet], gain)))
    rows, outputs = [], {}
    for label, method in methods:
        out = method(intensity)
        stats = sar_stats.sar_statistics(intensity, out, "intensity", valid)
        rows.append({"method": label, "enl": stats["enl_recon"], "mean_ratio": stats["mean_ratio"],
                     **sar_stats.ratio_image_statistics(intensity, out, valid)})
        outputs[label] = out
    return {"scene": path.name, "shape": list(intensity.shape), "units_read_as": REAL_UNITS, "enl_input": enl_in,
            "looks_used": looks, "unet": runs[unet]["label"], "unet_gain_db": 10 * np.log10(gain), "rows": rows,
            "_images": (intensity, valid, outputs)}


# --------------------------------------------------------------------------- report


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    """The synthetic tables per L, the goal, the real scenes' no-reference table."""
    reused = sum(r["reused"] for r in result["models"].values())
    lines = ["# Despeckling: U-Net vs classical filters", "",
             f"`{result['command']}` ({result['mode']}; {result['seconds']:.0f} s; the models' training epochs "
             f"{result['train_seconds']:.0f} s in all, {reused} of {len(result['models'])} runs reused from an "
             f"earlier invocation). Synthetic test scenes: seed {TEST_SEED}, never trained on. "
             "PSNR dB / SSIM: normalised dB domain of the L's clean-target U-Net checkpoint (10 log10 I clipped to "
             "[vmin, vmax], scaled to [0, 1], data range 1; the primary metric). PSNR amp: amplitude, peak = the "
             "truth's 99th percentile (MERLIN / SAR2SAR's convention). ENL: on the truth's flat fields. Mean ratio: "
             "sum(output) / sum(truth), linear intensity, whole scenes and flat fields. EPI: Sattar's edge-"
             "preservation index (Laplacian correlation) in the dB domain. Filter windows (boxcar aside): best "
             "PSNR on a validation scene (seed " f"{VAL_SEED}).", "", "## Models", "",
             "| model | run | epochs (best) | training s | reused |", "|---|---|---|---|---|"]
    for r in result["models"].values():
        lines.append(f"| {r['label']} | `{r['run_dir']}` | {r['epochs']} ({r['best_epoch']}) | "
                     f"{r['train_seconds']:.0f} | {'yes' if r['reused'] else 'no'} |")
    for s in result["synthetic"]:
        lo, hi = s["db_range"]
        lines += ["", f"## Synthetic, L = {s['looks']:g} ({s['test_scenes']} scene{'s' * (s['test_scenes'] != 1)} of "
                  f"{s['scene_size']} px; "
                  f"dB domain [{lo:.1f}, {hi:.1f}] dB of {s['reference_model']})", "",
                  "| method | PSNR dB | PSNR amp | SSIM | ENL flat | mean ratio | mean ratio flat | EPI |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            lines.append(f"| {r['method']} | {r['psnr_db']:.2f} | {r['psnr_amplitude']:.2f} | {r['ssim_db']:.3f} | "
                         f"{_fmt(r['enl_flat'], '.1f')} | {r['mean_ratio']:.3f} | {_fmt(r['mean_ratio_flat'], '.3f')} "
                         f"| {r['epi']:.3f} |")
        g = s["goal"]
        target = ("goal >= 10 dB over the input, >= 3 dB over the best filter, mean ratios within 2%"
                  if s["looks"] == 1.0 else "goal: above every filter")
        c = s["clipped_truth"]
        lines += ["", f"The truth clipped to the dB domain (the best any model working in it can give back): mean "
                  f"ratio {c['mean_ratio']:.3f}, flat fields {_fmt(c['mean_ratio_flat'], '.3f')} (bright targets "
                  "above vmax lose intensity).",
                  "", f"{g['model']}: {g['gain_over_input_db']:+.2f} dB over the input, "
                  f"{g['gain_over_best_filter_db']:+.2f} dB over the best filter ({g['best_filter']}), mean ratio "
                  f"{g['mean_ratio']:.3f} (flat fields {_fmt(g['mean_ratio_flat'], '.3f')}) ({target}: "
                  f"{'met' if g['met'] else 'NOT met'})."]
    for s in result["real"]:
        lines += ["", f"## Real scene {s['scene']} ({s['shape'][0]} x {s['shape'][1]} px, read as "
                  f"{s['units_read_as']}: intensity = level^2; input ENL {_fmt(s['enl_input'], '.2f')}, filters "
                  f"with looks = {s['looks_used']:g}; U-Net input gain {s['unet_gain_db']:+.1f} dB)", "",
                  "| method | ENL | mean ratio | ratio mean | ratio ENL (input) | ratio lag-1 corr (input) "
                  "| ratio edge corr |", "|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            lines.append(f"| {r['method']} | {_fmt(r['enl'], '.1f')} | {_fmt(r['mean_ratio'], '.3f')} | "
                         f"{_fmt(r['ratio_mean'], '.3f')} | {_fmt(r['ratio_enl'], '.2f')} "
                         f"({_fmt(r['input_enl'], '.2f')}) | {_fmt(r['ratio_lag1'], '.3f')} "
                         f"({_fmt(r['input_lag1'], '.3f')}) | {_fmt(r['ratio_edge_correlation'], '.3f')} |")
    lines.append("")
    return "\n".join(lines)


def plot_metrics(result: dict[str, Any], path: Path) -> None:
    """PSNR (dB domain), EPI and mean ratio per method, one row per L."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sar_jax.core.visualize import save_figure

    panels = [("psnr_db", "PSNR, dB domain (dB)"), ("epi", "edge-preservation index"),
              ("mean_ratio", "mean ratio (output / truth)")]
    studies = result["synthetic"]
    fig, axes = plt.subplots(len(studies), 3, figsize=(16, 0.42 * len(studies[0]["rows"]) * len(studies) + 1.5),
                             squeeze=False)
    colors = {"input": "0.6", "filter": "tab:blue", "model": "tab:red"}
    for row, s in zip(axes, studies):
        names = [r["method"] for r in s["rows"]][::-1]
        for ax, (key, label) in zip(row, panels):
            vals = [r[key] for r in s["rows"]][::-1]
            base = 1.0 if key == "mean_ratio" else 0.0  # mean ratios drawn from 1
            bars = ax.barh(names, [v - base for v in vals], left=base,
                           color=[colors[r["kind"]] for r in s["rows"]][::-1])
            ax.bar_label(bars, labels=[f"{v:.2f}" if key == "psnr_db" else f"{v:.3f}" for v in vals], fontsize=7,
                         padding=2)
            if key == "mean_ratio":
                ax.axvline(1.0, color="k", lw=0.8)
                ax.axvspan(0.98, 1.02, color="g", alpha=0.15)
                ax.set_xlim(min(0.85, min(vals) - 0.05), max(1.15, max(vals) + 0.05))
            elif key == "psnr_db":
                ax.set_xlim(min(vals) - 1, max(vals) + 2)
            else:
                ax.set_xlim(min(-0.15, min(vals) - 0.1), 1.1)
            ax.set_xlabel(label)
            ax.set_title(f"L = {s['looks']:g}: {label.split(',')[0].split(' (')[0]}")
            ax.grid(alpha=0.3, axis="x")
            if key != "psnr_db":
                ax.set_yticklabels([])
    save_figure(fig, path)


def _db_view(intensity: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((10 * np.log10(np.maximum(intensity, 1e-12)) - lo) / (hi - lo), 0.0, 1.0)


def plot_panel(images: dict[str, np.ndarray], db_range: tuple[float, float], path: Path, title: str) -> None:
    """One crop per method in dB on the same grey scale, noisy first and the truth last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sar_jax.core.visualize import save_figure

    cols = 4
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.8 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, img) in zip(axes.ravel(), images.items()):
        ax.imshow(_db_view(img, *db_range), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path)


def plot_ratio(study: dict[str, Any], path: Path, methods: Sequence[str], crop: int) -> None:
    """A real scene's input and, per method, its output and ratio image (input / output) on its central
    ``crop`` px square."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sar_jax.core.visualize import save_figure

    intensity, valid, outputs = study["_images"]
    r0, c0 = ((n - min(n, crop)) // 2 for n in intensity.shape)
    window = (slice(r0, r0 + crop), slice(c0, c0 + crop))
    lo, hi = np.percentile(10 * np.log10(intensity[valid]), [1, 99])
    fig, axes = plt.subplots(2, len(methods) + 1, figsize=(3.4 * (len(methods) + 1), 7.2), squeeze=False)
    axes[0, 0].imshow(_db_view(intensity[window], lo, hi), cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"{study['scene']} (input, dB)", fontsize=9)
    axes[1, 0].axis("off")
    axes[1, 0].text(0.05, 0.5, "ratio = input / output\nshown on [0, 3]:\npure speckle has mean 1\n"
                    "and no structure", fontsize=10, va="center")
    rows = {r["method"]: r for r in study["rows"]}
    for k, m in enumerate(methods, start=1):
        out = outputs[m]
        ratio = np.where(valid, intensity / np.maximum(out, 1e-12), 1.0)[window]
        axes[0, k].imshow(_db_view(out[window], lo, hi), cmap="gray", vmin=0, vmax=1)
        axes[0, k].set_title(m, fontsize=9)
        axes[1, k].imshow(ratio, cmap="gray", vmin=0, vmax=3)
        r = rows[m]
        axes[1, k].set_title(f"ratio: mean {r['ratio_mean']:.2f}, ENL {_fmt(r['ratio_enl'], '.2f')}, "
                             f"edge corr {r['ratio_edge_correlation']:.2f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, path, dpi=72)  # speckle hardly compresses: ~1 MB at this size


# --------------------------------------------------------------------------- command line


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.despeckle", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and scenes (~8 min on 2 cores)")
    parser.add_argument("--data", default=None,
                        help=f"folder of real scenes (default {SHARED_SAR_DIR} when present; 'none' to skip)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key of every model (repeatable)")
    parser.add_argument("--out", default=None,
                        help="output folder, models trained under it (default runs/despeckle, --quick: "
                             "runs/despeckle-quick)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or reuse) the models, score every method, write the report and figures under ``--out``."""
    from sar_jax.inference.run import load_run

    args = setup_args().parse_args(argv)
    t0 = time.perf_counter()
    mode = QUICK if args.quick else FULL
    out = Path(args.out or ("runs/despeckle-quick" if args.quick else "runs/despeckle"))
    data = args.data if args.data is not None else (str(SHARED_SAR_DIR) if SHARED_SAR_DIR.is_dir() else "none")
    real_files = [] if data == "none" else sorted(Path(data).glob("*.png")) if Path(data).is_dir() else [Path(data)]
    if data != "none" and not all(f.is_file() for f in real_files):
        raise SarJaxError(f"--data {data}: no such file or folder")
    runs = train_all(mode, out, args.overrides)
    loaded = {name: load_run(r["run_dir"]) for name, r in runs.items()}
    synthetic = [synthetic_study(looks, mode, runs, loaded) for looks in LOOKS]
    crop = 256 if args.quick else None
    real = [real_study(f, runs, loaded, crop) for f in real_files]
    result = {"command": " ".join(["python -m benchmarks.despeckle", *(argv if argv is not None else sys.argv[1:])]),
              "mode": "quick" if args.quick else "full", "seconds": time.perf_counter() - t0,
              "train_seconds": sum(r["train_seconds"] for r in runs.values()), "models": runs,
              "synthetic": [{k: v for k, v in s.items() if k != "_images"} for s in synthetic],
              "real": [{k: v for k, v in s.items() if k != "_images"} for s in real]}
    write_json_atomic(out / "despeckle.json", result)
    write_text_atomic(out / "despeckle.md", markdown(result))
    plot_metrics(result, out / "despeckle.png")
    first = synthetic[0]
    side = min(128, mode.scene_size)
    panel = {r["method"]: first["_images"][r["method"]][:side, :side] for r in first["rows"]
             if r["kind"] != "model" or r["method"].endswith("(L=1)")}
    panel["truth"] = first["_images"]["truth"][:side, :side]
    lo, hi = (float(v) for v in np.percentile(10 * np.log10(panel["truth"]), [0.5, 99.5]))
    plot_panel(panel, (lo - 1, hi + 1), out / "despeckle-panel.png",
               f"synthetic test scene at L = 1 ({side} x {side} px crop), dB on [{lo - 1:.0f}, {hi + 1:.0f}] "
               "(the truth's 0.5-99.5th percentiles +- 1 dB)")
    if real:
        shown = min(real, key=lambda s: s["shape"][0] * s["shape"][1])  # the smaller scene
        plot_ratio(shown, out / "despeckle-ratio.png",
                   ["boxcar 7x7", "refined Lee 7x7", "Frost 7x7", shown["unet"]], 256)
    print(markdown(result))
    print(f"wrote {out}/despeckle.json, .md, .png, despeckle-panel.png" + (", despeckle-ratio.png" if real else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
