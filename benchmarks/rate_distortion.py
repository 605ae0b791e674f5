"""Rate-distortion study: the learned codecs and the autoencoder against JPEG 2000, JPEG and block means.

    python -m benchmarks.rate_distortion [--quick] [--data PATH] [--out DIR]
                                         [--latent-channels 2,4,8,16] [--ssim-weights 0.5,0]
                                         [--kinds factorized,hyperprior] [--lambdas 25,50,100,200]
                                         [--base-lambda 1000] [--distortions mse,ms_ssim]
                                         [--autoencoder-from RD.json]

For each dataset (the synthetic data, and the real scenes in ``--data``, default ``../shared/data/sar``
when present) a sweep trains one model per latent width (``model.latent_channels`` 2, 4, 8, 16) and
loss balance (``loss.ssim_weight`` w with ``loss.mse_weight`` 1 - w: the design's 0.5 and MSE alone;
``--quick``: quickstart-size models, the design's balance only) and every codec codes the test
split's regions, whole, in the checkpoint's [0, 1] dB domain. Rates are bits per input pixel from
encoded bytes: the JPEG 2000 codestream, the JPEG file, and for block means and latents the int8
values (the latent file's quantiser) DEFLATE-compressed plus a float32 scale and offset per band.
The GeoTIFF container of a latent file (tags, ~1-2 KB) is not counted, as JPEG 2000 is counted
without its JP2 boxes.

Per point: bpp, PSNR, SSIM, MS-SSIM (valid pixels for PSNR), ENL ratio (linear intensity, the
input's homogeneous windows), and on synthetic data PSNR against the speckle-free reflectivity.
BD-rate (Bjontegaard, cubic fit in log rate; the ``bjontegaard`` package) of every codec against
JPEG 2000, for PSNR and MS-SSIM. Writes ``rd.json``, ``rd.md`` and ``rd.png`` under ``--out``.

The learned codecs (``--kinds``: ``model.kind`` factorized and hyperprior, ``configs/<kind>.json``)
train one base run per kind (D = MSE at ``--base-lambda``) and fine-tune from it one model per
``loss.lmbda`` of the ladder and distortion (``--distortions``: MSE, 1 - MS-SSIM); the real scenes'
models are fine-tuned from the synthetic base runs, on the autoencoders' patch grid (every codec of a
dataset is scored on one test split, checked). Their rate is the bytes of their real entropy-coded
bitstreams of each whole region (:class:`~sar_jax.inference.entropy_codec.LearnedCodec`, without the
``.sarc`` header), reported beside the models' own estimate from their likelihoods (``estimated_bpp``).
``--autoencoder-from`` takes the autoencoder's points from an earlier result of the same data instead of
training them again; the classical codecs are recomputed and must reproduce that result's points (the
same test regions).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sar_jax.baselines.codecs import bicubic_upsample, block_means, jpeg, jpeg2000
from sar_jax.core.cli import run_main
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import write_json_atomic, write_text_atomic
from sar_jax.core.paths import SHARED_SAR_DIR
from sar_jax.core.visualize import save_figure

if TYPE_CHECKING:
    from sar_jax.inference.codec import EvalRegion

LATENT_CHANNELS = (2, 4, 8, 16)
SSIM_WEIGHTS = (0.5, 0.0)  # the design's balance, and MSE alone (the loss-balance sweep's favourite)
QUICK_SSIM_WEIGHTS = (0.5,)  # MSE-only models train to the epoch limit: with them --quick takes ~30 min
JPEG2000_BPP = (0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.0)
JPEG_QUALITY = (5, 10, 20, 40, 70, 90)
BLOCK_FACTORS = (16, 8, 4, 2)
LEARNED_KINDS = ("factorized", "hyperprior")
LAMBDAS = (25.0, 50.0, 100.0, 200.0)  # loss.lmbda of D = MSE in the [0, 1] dB domain: 0.05-0.4 bpp
QUICK_LAMBDAS = (50.0, 200.0)  # --quick: two points, the higher one the base run
MS_SSIM_LAMBDAS = (1.5, 3.0, 6.0, 12.0)  # loss.lmbda of D = 1 - MS-SSIM: about the same rates
BASE_LAMBDA = 1000.0  # the high-rate run every ladder point is fine-tuned from
CLASSICAL = ("JPEG 2000", "JPEG", "block mean + bicubic")
#: The learned codecs' base runs in each mode, on top of --set (CPU-sized; see docs/study.md): full mode
#: N 64 / M 192 on 128 px patches, 12k steps of 4 (~20 min on 2 cores); the quantiles' Adam at 1e-2.
FULL_LEARNED = ["model.N=64", "model.M=192", "data.patch_size=128", "train.batch_size=4", "train.epochs=6",
                "train.lr=1e-3", "train.aux_lr=1e-2", "data.sampling=random", "data.patches_per_epoch=8000",
                "train.lr_patience=3", "train.early_stopping_patience=6"]
QUICK_LEARNED = ["model.N=16", "model.M=24", "train.epochs=3", "train.lr=1e-3", "train.aux_lr=1e-2",
                 "data.sampling=random", "data.patches_per_epoch=320"]
#: ... and on top of those, the fine-tuning of each ladder point (full: 3k steps, ~5 min a point).
FULL_FINE_TUNE = ["train.epochs=2", "data.patches_per_epoch=6000", "train.lr=5e-4"]
QUICK_FINE_TUNE = ["train.epochs=1", "data.patches_per_epoch=160"]
ANCHOR = "JPEG 2000"
BASE_RUN = ", base run"  # the label suffix of a base run that is no ladder point
MIN_OVERLAP = 0.5  # of the narrower curve's quality range, for a BD-rate


def block_mean_codec(image: np.ndarray, factor: int) -> tuple[np.ndarray, int]:
    """Block means stored as the latents are (int8 through the latent file's quantiser), upsampled bicubically."""
    from sar_jax.inference.latent import dequantize, payload_bytes, quantize

    stored, scales, offsets = quantize(block_means(image, factor)[..., None], "int8")
    return bicubic_upsample(dequantize(stored, scales, offsets)[..., 0], image.shape), payload_bytes(stored)


def score(image: EvalRegion, decoded: np.ndarray, params: dict[str, Any]) -> dict[str, float | None]:
    """PSNR (valid pixels), SSIM, MS-SSIM, ENL ratio and PSNR against the clean truth of one image."""
    import jax.numpy as jnp

    from sar_jax.data.preprocess import denormalize
    from sar_jax.metrics.sar_stats import sar_statistics
    from sar_jax.metrics.ssim import ms_ssim_per_image, ms_ssim_window, ssim_per_image

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = float(np.mean((a[image.valid] - b[image.valid]) ** 2))
        return 10 * math.log10(1.0 / max(mse, 1e-12))

    a, b = jnp.asarray(decoded[None, :, :, None]), jnp.asarray(image.x[None, :, :, None])
    win = ms_ssim_window(min(image.x.shape))
    stats = sar_statistics(image.values, denormalize(decoded, params), params["mode"], image.valid)
    return {"psnr": psnr(decoded, image.x), "ssim": float(ssim_per_image(a, b)[0]),
            "ms_ssim": float(ms_ssim_per_image(a, b, win)[0]) if win else None,
            "enl_ratio": stats["enl_ratio"],
            "psnr_clean": psnr(decoded, image.clean) if image.clean is not None else None}


def rd_point(codec: str, setting: Any, fn: Callable[[np.ndarray], tuple[np.ndarray, int]],
             images: list[EvalRegion], params: dict[str, Any]) -> dict[str, Any]:
    """One codec setting over every test image: bits over all pixels, metrics averaged over images."""
    nbytes, rows, estimated = 0, [], []
    for image in images:
        decoded, n, *bits = fn(image.x)
        nbytes += n
        estimated += bits
        rows.append(score(image, np.clip(decoded, 0.0, 1.0), params))
    pixels = sum(image.x.size for image in images)

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(vals)) if vals else None

    point = {"codec": codec, "setting": setting, "bpp": 8.0 * nbytes / pixels, "bytes": nbytes,
             **{k: mean(k) for k in ("psnr", "ssim", "ms_ssim", "enl_ratio", "psnr_clean")}}
    if estimated:  # learned codecs: the likelihoods' estimate of the same latents
        point["estimated_bpp"] = sum(estimated) / pixels
    return point


def _distinct(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points sorted by rate, settings that gave the same bytes (a header-bound JPEG 2000 on a small
    image) counted once."""
    return list({p["bytes"]: p for p in sorted(points, key=lambda p: p["bpp"], reverse=True)}.values())[::-1]


def _rising(quality: list[float]) -> bool:
    """Quality strictly rising with the rate (the points sorted by rate): only then is a curve's cubic fit in
    log rate a function of quality that a BD-rate can integrate."""
    return all(b > a for a, b in zip(quality, quality[1:]))


def bd_rates(points: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """BD-rate (%) of each codec against JPEG 2000 for PSNR and MS-SSIM: None where the two curves' quality
    ranges overlap by less than half of the narrower one (the cubic fits would be extrapolated), or where a
    curve's quality does not rise with its rate."""
    from bjontegaard import bd_rate

    curves: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        curves.setdefault(p["codec"], []).append(p)
    anchor = _distinct(curves[ANCHOR])
    out = {}
    for codec, pts in curves.items():
        if codec == ANCHOR:
            continue
        pts = _distinct(pts)
        out[codec] = {}
        for metric in ("psnr", "ms_ssim"):
            qa, qb = [p[metric] for p in anchor], [p[metric] for p in pts]
            value = None
            if None not in qa + qb and len(qb) >= 4 and _rising(qa) and _rising(qb):
                overlap = min(max(qa), max(qb)) - max(min(qa), min(qb))
                if overlap >= MIN_OVERLAP * min(max(qa) - min(qa), max(qb) - min(qb)):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        value = float(bd_rate([p["bpp"] for p in anchor], qa, [p["bpp"] for p in pts], qb,
                                              method="cubic", require_matching_points=False, min_overlap=0.0))
            out[codec][metric] = value
    return out


def autoencoder_label(ssim_weight: float) -> str:
    """The codec name of the models trained with one loss balance."""
    if ssim_weight == 0:
        return "autoencoder, MSE (int8 latent)"
    return f"autoencoder, {1 - ssim_weight:g} MSE + {ssim_weight:g} SSIM (int8 latent)"


def learned_label(kind: str, distortion: str) -> str:
    """The codec name of one learned model kind trained with one distortion."""
    return f"{kind} ({'MSE' if distortion == 'mse' else 'MS-SSIM'}, entropy-coded)"


def study(dataset: str, run_dirs: dict[float, dict[int, Path]], learned: dict[str, dict[float, Path]],
          autoencoder_from: Path | None = None) -> dict[str, Any]:
    """Every codec's RD points on one dataset's test split, and the BD-rates; ``run_dirs``: the trained
    autoencoder runs by SSIM weight, then latent width (none with ``autoencoder_from``: their points come from
    that earlier result); ``learned``: the learned codecs' runs by curve label, then lambda."""
    from sar_jax.inference.codec import Int8LatentCodec, eval_regions
    from sar_jax.inference.entropy_codec import LearnedCodec
    from sar_jax.inference.run import load_run

    runs = {w: {c: load_run(d) for c, d in sorted(by_width.items())} for w, by_width in run_dirs.items()}
    learned_runs = {label: {lm: load_run(d) for lm, d in sorted(by_lmbda.items())}
                    for label, by_lmbda in learned.items()}
    first = next(iter(next(iter({**runs, **learned_runs}.values())).values()))
    check_one_split([r for by in (*runs.values(), *learned_runs.values()) for r in by.values()])
    images, params = eval_regions(first), first.preprocessing_params
    points = [rd_point(ANCHOR, bpp, lambda x, b=bpp: jpeg2000(x, b), images, params) for bpp in JPEG2000_BPP]
    points += [rd_point("JPEG", q, lambda x, q=q: jpeg(x, q), images, params) for q in JPEG_QUALITY]
    points += [rd_point("block mean + bicubic", f, lambda x, f=f: block_mean_codec(x, f), images, params)
               for f in BLOCK_FACTORS]
    for w, by_width in runs.items():
        for c, run in by_width.items():
            points.append(rd_point(autoencoder_label(w), c, Int8LatentCodec(run), images, params))
    if autoencoder_from is not None:
        points += earlier_autoencoder_points(autoencoder_from, dataset, {"points": points,
                                                                        "images": [i.name for i in images]})
    for label, by_lmbda in learned_runs.items():
        for lmbda, run in by_lmbda.items():
            points.append(rd_point(label, lmbda, LearnedCodec(run).code, images, params))
    add_anchor_gaps(points)
    return {"dataset": dataset, "images": [i.name for i in images], "pixels": sum(i.x.size for i in images),
            "preprocessing_params": params, "points": points, "bd_rate_vs_jpeg2000": bd_rates(points)}


def check_one_split(runs: list[Any]) -> None:
    """Every codec of a dataset is scored on the first run's test regions in its dB domain: refuse runs
    trained on another split or preprocessing (their test regions could hold their training pixels)."""
    from sar_jax.data.pipeline import build_datasets

    splits: dict[str, Any] = {}

    def split(run: Any) -> Any:
        key = json.dumps([run.config["data"], run.config["train"]["seed"], run.config["train"]["target"]])
        if key not in splits:
            datasets = build_datasets(run.config)
            splits[key] = (datasets.sources, datasets.regions["test"])
        return splits[key], run.preprocessing_params

    expected = split(runs[0])
    for run in runs[1:]:
        if split(run) != expected:
            raise SarJaxError(f"{run.path}: trained on another split or preprocessing than {runs[0].path} "
                              "(data.patch_size, the fractions or the seed differ); every codec of a study "
                              "must share one test split")


def add_anchor_gaps(points: list[dict[str, Any]]) -> None:
    """Each point's PSNR and MS-SSIM minus JPEG 2000's at the same rate (linear in log rate between its
    points; None outside their range): the comparison a BD-rate cannot give where a curve does not rise."""
    anchor = sorted((p for p in points if p["codec"] == ANCHOR), key=lambda p: p["bpp"])
    rates = np.log([p["bpp"] for p in anchor])
    for p in points:
        for metric in ("psnr", "ms_ssim"):
            inside = rates[0] <= math.log(p["bpp"]) <= rates[-1] and p[metric] is not None
            ref = [a[metric] for a in anchor]
            p[f"{metric}_vs_jpeg2000"] = (float(p[metric] - np.interp(math.log(p["bpp"]), rates, ref))
                                          if inside and None not in ref else None)


def earlier_autoencoder_points(path: Path, dataset: str, fresh: dict[str, Any]) -> list[dict[str, Any]]:
    """The autoencoder points of ``dataset`` in an earlier result file, after checking that the classical
    codecs' points just computed (``fresh``) reproduce its own (so both were measured on the same regions)."""
    try:
        earlier = next(s for s in json.loads(path.read_text())["studies"] if s["dataset"] == dataset)
    except (OSError, ValueError, KeyError, StopIteration):
        raise SarJaxError(f"--autoencoder-from {path}: no readable '{dataset}' study in it") from None
    def classical(study: dict[str, Any]) -> list[tuple]:
        return [(p["codec"], p["setting"], p["bytes"], round(p["psnr"], 6)) for p in study["points"]
                if p["codec"] in CLASSICAL]

    if classical(earlier) != classical(fresh) or earlier["images"] != fresh["images"]:
        raise SarJaxError(f"--autoencoder-from {path}: its '{dataset}' test regions differ from this run's "
                          "(its classical codecs' points are not reproduced); train the autoencoders instead")
    return [p for p in earlier["points"] if p["codec"].startswith("autoencoder")]


def files_grid(config: str, overrides: list[str], kind: str, learned_overrides: list[str]) -> list[str]:
    """The learned codecs' overrides on real scenes: the autoencoders' patch size, since a few large scenes
    are split into blocks of the patch size and every codec must share the test blocks, with the batch and
    the patches per epoch scaled to keep the learned recipe's pixels per step and per epoch."""
    from sar_jax.core.config import load_config

    study_patch = load_config(config, overrides)[0]["data"]["patch_size"]
    learned = load_config(kind, learned_overrides)[0]
    scale = max(1, learned["data"]["patch_size"] ** 2 // study_patch ** 2)
    grid = [f"data.patch_size={study_patch}", f"train.batch_size={learned['train']['batch_size'] * scale}"]
    if learned["data"]["patches_per_epoch"] is not None:
        grid.append(f"data.patches_per_epoch={learned['data']['patches_per_epoch'] * scale}")
    return grid


def _train_grid(kind: str, grid: list[tuple[str, list[Any]]], overrides: list[str], out: Path,
                data: str | None) -> None:
    from sar_jax.training.sweep import run_sweep

    _, failures = run_sweep(kind, grid, overrides, out, data)
    if failures:
        raise SarJaxError("training failed: " + "; ".join(failures))


def train_learned(kinds: Sequence[str], distortions: Sequence[str], lambdas: dict[str, Sequence[float]],
                  base_lmbda: float, overrides: list[str], fine_tune: list[str], out: Path, data: str | None,
                  bases_from: dict[str, Path] | None = None) -> tuple[dict[str, dict[float, Path]], dict[str, Path]]:
    """Per learned kind, a base run (D = MSE at ``base_lmbda``) trained with ``overrides``, then every ladder
    point fine-tuned from it (``train.init_from``) with ``fine_tune`` on top, as learned-codec ladders are
    usually trained; with ``bases_from`` (the previous dataset's base runs) the points are fine-tuned from
    that kind's base instead and no base is trained here. Finished runs are reused. Returns the runs by curve
    label, then lambda (a base that is no ladder point is a curve of its own), and this dataset's bases."""
    from sar_jax.training.sweep import run_name

    runs, bases = {}, {}
    for kind in kinds:
        base_point = {"loss.distortion": "mse", "loss.lmbda": base_lmbda}
        source = (bases_from or {}).get(kind)
        if source is None:
            _train_grid(kind, [(k, [v]) for k, v in base_point.items()], overrides, out / kind, data)
            source = bases[kind] = out / kind / run_name(base_point)
            if "mse" not in distortions or base_lmbda not in lambdas["mse"]:
                runs[learned_label(kind, "mse") + BASE_RUN] = {base_lmbda: source}
        start = [f"train.init_from={json.dumps(str(source))}"]
        for d in distortions:
            tuned = [lm for lm in lambdas[d] if kind not in bases or (d, lm) != ("mse", base_lmbda)]
            if tuned:
                _train_grid(kind, [("loss.distortion", [d]), ("loss.lmbda", tuned)], overrides + fine_tune + start,
                            out / kind, data)
            runs[learned_label(kind, d)] = {lm: out / kind / run_name({"loss.distortion": d, "loss.lmbda": lm})
                                            for lm in lambdas[d]}
    return runs, bases


def train_models(config: str, overrides: list[str], out: Path, data: str | None, widths: Sequence[int],
                 ssim_weights: Sequence[float]) -> dict[float, dict[int, Path]]:
    """One run per loss balance and latent width through the sweep (finished runs are reused)."""
    from sar_jax.training.sweep import run_name, run_sweep

    runs = {}
    for w in ssim_weights:
        balance = {"loss.ssim_weight": w, "loss.mse_weight": 1.0 - w}
        grid = [(k, [v]) for k, v in balance.items()] + [("model.latent_channels", list(widths))]
        _, failures = run_sweep(config, grid, overrides, out, data)
        if failures:
            raise SarJaxError("training failed: " + "; ".join(failures))
        runs[w] = {c: out / run_name({**balance, "model.latent_channels": c}) for c in widths}
    return runs


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    """Tables of RD points and BD-rates per dataset."""
    lines = ["# Rate-distortion: learned codecs and the autoencoder vs classical codecs", "",
             f"`{result['command']}` ({result['mode']}; {result['seconds']:.0f} s). Rates: bits per input pixel "
             "from encoded bytes; metrics in the checkpoint's [0, 1] dB domain (PSNR on valid pixels), ENL ratio "
             "in linear intensity; PSNR clean: against the speckle-free reflectivity (synthetic data).", ""]
    for s in result["studies"]:
        lines += [f"## {s['dataset']} ({len(s['images'])} test regions, {s['pixels']} px)", "",
                  "| codec | setting | bpp | estimated bpp | PSNR | PSNR - JPEG 2000's | SSIM | MS-SSIM "
                  "| MS-SSIM - JPEG 2000's | ENL ratio | PSNR clean |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in s["points"]:
            lines.append(f"| {p['codec']} | {p['setting']} | {p['bpp']:.4f} | {_fmt(p.get('estimated_bpp'), '.4f')} "
                         f"| {_fmt(p['psnr'], '.2f')} | {_fmt(p.get('psnr_vs_jpeg2000'), '+.2f')} "
                         f"| {_fmt(p['ssim'], '.4f')} | {_fmt(p['ms_ssim'], '.4f')} "
                         f"| {_fmt(p.get('ms_ssim_vs_jpeg2000'), '+.4f')} | {_fmt(p['enl_ratio'], '.2f')} "
                         f"| {_fmt(p['psnr_clean'], '.2f')} |")
        lines += ["", f"BD-rate against {ANCHOR} (negative: fewer bits for the same quality; '-': the quality "
                  f"ranges overlap by less than {MIN_OVERLAP:.0%} of the narrower one, or a curve's quality does "
                  "not rise with its rate):", "",
                  "| codec | BD-rate PSNR % | BD-rate MS-SSIM % |", "|---|---|---|"]
        for codec, bd in s["bd_rate_vs_jpeg2000"].items():
            lines.append(f"| {codec} | {_fmt(bd['psnr'], '+.1f')} | {_fmt(bd['ms_ssim'], '+.1f')} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """bpp vs PSNR, vs MS-SSIM and (synthetic data) vs PSNR against the clean reflectivity, one line per
    codec, one row per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("psnr", "PSNR (dB, [0, 1] dB domain)"), ("ms_ssim", "MS-SSIM"),
              ("psnr_clean", "PSNR against the clean reflectivity (dB)")]
    studies = result["studies"]
    # one colour per curve in every panel; a base run in its ladder's colour, as a square
    curves = [c for c in dict.fromkeys(p["codec"] for s in studies for p in s["points"]) if not c.endswith(BASE_RUN)]
    colour = {c: f"C{i % 10}" for i, c in enumerate(curves)}
    fig, axes = plt.subplots(len(studies), 3, figsize=(16, 4.2 * len(studies)), squeeze=False)
    for row, s in zip(axes, studies):
        for ax, (metric, label) in zip(row, panels):
            pts_all = [p for p in s["points"] if p[metric] is not None]
            if not pts_all:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{s['dataset']}: no clean reference", ha="center", va="center")
                continue
            for codec in dict.fromkeys(p["codec"] for p in pts_all):
                pts = sorted((p for p in pts_all if p["codec"] == codec), key=lambda p: p["bpp"])
                base = codec.endswith(BASE_RUN)
                ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], "s" if base else "o-", label=codec,
                        ms=6 if base else 4, color=colour[codec.removesuffix(BASE_RUN)])
            ax.set_xscale("log", base=2)
            ax.set_xlabel("bits per input pixel")
            ax.set_ylabel(label)
            ax.set_title(f"{s['dataset']}: {label.split(' (')[0]}")
            ax.grid(alpha=0.3, which="both")
        row[0].legend(fontsize=7)
    save_figure(fig, path)


def _numbers(kind: type, upper: float = 1.0) -> Callable[[str], tuple]:
    """An argparse type for comma-separated numbers."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}")
        if kind is float and not all(0.0 <= v <= upper for v in values):
            raise argparse.ArgumentTypeError(f"expected numbers in [0, {upper:g}], got {text!r}")
        if kind is int and not all(v >= 1 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive widths, got {text!r}")
        return values
    return parse


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rate_distortion", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quickstart-size models (<= 15 min on 2 cores)")
    parser.add_argument("--data", default=None,
                        help=f"folder of real scenes (default {SHARED_SAR_DIR} when present; 'none' to skip)")
    parser.add_argument("--out", default="runs/rate_distortion", help="output folder (models are trained under it)")
    parser.add_argument("--latent-channels", type=_numbers(int), default=LATENT_CHANNELS, metavar="C1,C2,...",
                        help="latent widths of the autoencoder curves (default 2,4,8,16)")
    parser.add_argument("--ssim-weights", type=_numbers(float), default=None, metavar="W1,W2,...",
                        help="loss.ssim_weight of each autoencoder curve, with loss.mse_weight 1 - w "
                             "(default 0.5,0; --quick: 0.5)")
    parser.add_argument("--kinds", type=_kinds, default=LEARNED_KINDS, metavar="K1,K2",
                        help="learned codecs to train (model.kind factorized, hyperprior; default both; 'none')")
    parser.add_argument("--lambdas", type=_numbers(float, math.inf), default=None, metavar="L1,L2,...",
                        help=f"loss.lmbda ladder of the MSE-trained learned codecs (default "
                             f"{','.join(f'{v:g}' for v in LAMBDAS)}; --quick: "
                             f"{','.join(f'{v:g}' for v in QUICK_LAMBDAS)})")
    parser.add_argument("--base-lambda", type=float, default=None, metavar="L",
                        help=f"loss.lmbda (D = MSE) of the base run each ladder point is fine-tuned from "
                             f"(default {BASE_LAMBDA:g}; --quick: the ladder's highest)")
    parser.add_argument("--distortions", type=_distortions, default=("mse",), metavar="D1,D2",
                        help="loss.distortion of the learned codecs: mse, ms_ssim (default mse; the MS-SSIM ladder "
                             f"is {','.join(f'{v:g}' for v in MS_SSIM_LAMBDAS)})")
    parser.add_argument("--autoencoder-from", default=None, metavar="RD.json",
                        help="take the autoencoder's points from this earlier result (same data) instead of training")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key of every model (repeatable)")
    parser.add_argument("--learned-set", dest="learned_overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override a config key of the learned codecs only")
    parser.add_argument("--fine-tune-set", dest="fine_tune_overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override a config key of the learned codecs' fine-tuned ladder points only")
    return parser


def _choices(options: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        if text == "none":
            return ()
        values = tuple(text.split(","))
        if not values or any(v not in options for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated values of {', '.join(options)}, got {text!r}")
        return values
    return parse


_kinds = _choices(LEARNED_KINDS)
_distortions = _choices(("mse", "ms_ssim"))


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or reuse) the models, code every dataset's test split, write rd.json/md/png."""
    args = setup_args().parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    config = "quickstart" if args.quick else "baseline"
    if args.ssim_weights is None:
        args.ssim_weights = QUICK_SSIM_WEIGHTS if args.quick else SSIM_WEIGHTS
    if args.lambdas is None:
        args.lambdas = QUICK_LAMBDAS if args.quick else LAMBDAS
    if args.base_lambda is None:
        args.base_lambda = max(args.lambdas) if args.quick else BASE_LAMBDA
    defaults = []
    if not args.quick:  # baseline-width models on the quickstart's data, trained longer
        # lr 3e-4: these 64 px patches reach in 3 epochs what the baseline's 1e-4 needs 6 for
        defaults = ["data.patch_size=64", "data.stride=32", "data.num_scenes=60", "data.scene_size=256",
                    "data.val_fraction=0.15", "data.test_fraction=0.15", "train.batch_size=16", "train.epochs=20",
                    "train.lr=3e-4", "train.lr_patience=3", "train.early_stopping_patience=6"]
    overrides = defaults + list(args.overrides)
    data = args.data if args.data is not None else (str(SHARED_SAR_DIR) if SHARED_SAR_DIR.is_dir() else None)
    if data and data != "none" and not Path(data).exists():  # before any training
        raise SarJaxError(f"--data {data}: no such file or folder")
    datasets = [("synthetic", None)] + ([("real", data)] if data and data != "none" else [])
    learned_overrides = (defaults + (QUICK_LEARNED if args.quick else FULL_LEARNED) + list(args.overrides)
                         + list(args.learned_overrides))
    fine_tune = (QUICK_FINE_TUNE if args.quick else FULL_FINE_TUNE) + list(args.fine_tune_overrides)
    # base runs train on the synthetic data only: on files every learned run is a fine-tuned one
    on_files = files_grid(config, overrides, args.kinds[0], learned_overrides + fine_tune) if args.kinds else []
    lambdas = {"mse": args.lambdas, "ms_ssim": MS_SSIM_LAMBDAS}
    earlier = Path(args.autoencoder_from) if args.autoencoder_from else None
    if earlier is not None and not earlier.is_file():
        raise SarJaxError(f"--autoencoder-from {earlier}: no such file")
    studies, bases = [], None
    for name, path in datasets:
        run_dirs = {} if earlier else train_models(config, overrides, out / f"models-{name}", path,
                                                   args.latent_channels, args.ssim_weights)
        learned, trained_bases = train_learned(args.kinds, args.distortions, lambdas, args.base_lambda,
                                               learned_overrides, fine_tune + (on_files if path else []),
                                               out / f"learned-{name}", path, bases)
        bases = bases or trained_bases  # the first dataset's base runs start every later dataset's ladder
        studies.append(study(name, run_dirs, learned, earlier))
        print(f"{name}: {len(studies[-1]['points'])} RD points", flush=True)
    result = {"command": "python -m benchmarks.rate_distortion " + " ".join(argv or sys.argv[1:]),
              "mode": "quick" if args.quick else "full", "config": config, "overrides": overrides,
              "latent_channels": list(args.latent_channels), "ssim_weights": list(args.ssim_weights),
              "kinds": list(args.kinds), "distortions": list(args.distortions),
              "lambdas": {d: list(lambdas[d]) for d in args.distortions}, "learned_overrides": learned_overrides,
              "base_lambda": args.base_lambda, "fine_tune_overrides": fine_tune, "files_overrides": on_files,
              "autoencoder_from": str(earlier) if earlier else None,
              "seconds": time.perf_counter() - t0, "studies": studies}
    write_json_atomic(out / "rd.json", result)
    write_text_atomic(out / "rd.md", markdown(result))
    plot(result, out / "rd.png")
    print(markdown(result))
    print(f"wrote {out}/rd.json, rd.md, rd.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
