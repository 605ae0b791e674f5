"""The evaluation report's human-readable parts: the summary table, ``report.md`` and ``panels.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.inference.comparisons import markdown_table as comparisons_table

MD_MAX_ROWS = 40


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _kind(report: dict[str, Any]) -> str:
    return report.get("model_kind", "baseline")


def _codec(report: dict[str, Any]) -> bool:
    return "bitstream_bits_per_pixel" in report


def summary_table(report: dict[str, Any]) -> str:
    """Markdown table: one row per source plus the average; the codecs' rates (estimated and bitstream)
    before the compression ratio, and no ratio for a model without a latent (the U-Net)."""
    codec, has_ratio = _codec(report), report["compression_ratio"] is not None
    head = ("| images | n | MSE | PSNR (dB) | SSIM | MS-SSIM | ENL in | ENL out | ENL ratio | mean ratio "
            "| mean ratio w/o bias corr. |" + (" bpp (est.) | bpp (bitstream) |" if codec else "")
            + (" CR |" if has_ratio else ""))
    lines = [head, "|" + "---|" * (11 + 2 * codec + has_ratio)]
    entries = list(report["per_source"].items())
    if len(entries) > 1 or not entries:
        entries.append(("**average**", {"num_images": report["num_images"], **report["average"]}))
    else:
        entries = [(f"{entries[0][0]} (average)", entries[0][1])]
    for name, m in entries:
        rate = ""
        if codec:
            ratio = report["input_bits_per_pixel"] / m["bpp_bitstream"]
            rate = f" {_fmt(m['bpp'], 4)} | {_fmt(m['bpp_bitstream'], 4)} | {ratio:.1f} |"
        elif has_ratio:
            rate = f" {report['compression_ratio']:.1f} |"
        lines.append(f"| {name} | {m['num_images']} | {_fmt(m['mse'], 5)} | {_fmt(m['psnr'], 2)} | {_fmt(m['ssim'])} |"
                     f" {_fmt(m['ms_ssim'])} | {_fmt(m['enl_input'], 2)} | {_fmt(m['enl_recon'], 2)} |"
                     f" {_fmt(m['enl_ratio'], 3)} | {_fmt(m['mean_ratio'], 4)} | {_fmt(m['mean_ratio_uncorrected'], 4)}"
                     f" |{rate}")
    return "\n".join(lines)


def _model_lines(report: dict[str, Any]) -> list[str]:
    """The report's title and its line on the latent and the rate."""
    bits = report["input_bits_per_pixel"]
    if _kind(report) == "baseline":
        return ["# SAR autoencoder evaluation",
                f"- latent {report['latent_shape']} {report['latent_dtype']}; input {bits} bits/px;"
                f" compression ratio {report['compression_ratio']:.1f} : 1"]
    if _codec(report):
        return [f"# SAR learned codec evaluation ({_kind(report)})",
                f"- latent y {report['latent_shape']} rounded and entropy-coded: {report['latent_bits_per_pixel']:.4f}"
                f" bpp estimated from the likelihoods, {report['bitstream_bits_per_pixel']:.4f} bpp in real bitstreams;"
                f" input {bits} bits/px; compression ratio {report['compression_ratio']:.1f} : 1 (bitstream)"]
    return ["# SAR despeckling U-Net evaluation",
            f"- no latent: the U-Net outputs the image itself, nothing is compressed; input {bits} bits/px"]


def markdown_report(report: dict[str, Any]) -> str:
    """The human-readable report."""
    p = report["preprocessing_params"]
    title, model_line = _model_lines(report)
    codec = _codec(report)
    lines = [
        title, "",
        f"- checkpoint: `{report['checkpoint']}` (best, epoch {report['epoch']}), framework **{report['framework']}**",
        f"- data: {report['data']}; {report['num_images']} images of {report['image_size'][0]} px,"
        f" units {report['units']}",
        f"- preprocessing (checkpoint's): mode {p['mode']}, clip [{p['vmin']:.3f}, {p['vmax']:.3f}]"
        f" ({'8-bit values' if p['mode'] == 'log8' else 'dB'})",
        model_line,
        f"- SSIM window {report['ssim_window']}; MS-SSIM window {report['ms_ssim_window']}"
        f" ({report['ms_ssim_implementation']})", "",
        "## Summary", "", summary_table(report), "",
        "PSNR, SSIM and MS-SSIM on the normalised [0, 1] values; ENL and mean ratio in the data's units.", "",
        *(["## Despeckling comparison", "", comparisons_table(report["comparisons"]), "",
           "Filters on linear intensity (Lee with the data's looks), scored on the normalised [0, 1] values;"
           " 'vs clean': against the speckle-free reflectivity of the synthetic scenes.", ""]
          if report["comparisons"] else []),
        "## Notes", "", *[f"- {n}" for n in report["notes"]], "",
        "## Per image", "",
        "| image | MSE | PSNR | SSIM | MS-SSIM | ENL in | ENL out | ENL ratio | mean ratio |"
        + (" bpp (est.) | bpp (bitstream) |" if codec else ""),
        "|" + "---|" * (9 + 2 * codec),
    ]
    for r in report["per_image"][:MD_MAX_ROWS]:
        lines.append(f"| {r['name']} | {_fmt(r['mse'], 5)} | {_fmt(r['psnr'], 2)} | {_fmt(r['ssim'])}"
                     f" | {_fmt(r['ms_ssim'])}"
                     f" | {_fmt(r['enl_input'], 2)} | {_fmt(r['enl_recon'], 2)} | {_fmt(r['enl_ratio'], 3)}"
                     f" | {_fmt(r['mean_ratio'], 4)} |"
                     + (f" {_fmt(r['bpp'], 4)} | {_fmt(r['bpp_bitstream'], 4)} |" if codec else ""))
    if len(report["per_image"]) > MD_MAX_ROWS:
        lines.append(f"\n({len(report['per_image']) - MD_MAX_ROWS} more images in report.json)")
    return "\n".join(lines) + "\n"


def save_panels(x: np.ndarray, x_hat: np.ndarray, rows: list[dict[str, Any]], path: Path) -> None:
    """input | reconstruction | |difference| | histograms of both, one row per image; every image
    panel has a colour bar, and all |difference| panels share one scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(x)
    diffs = np.abs(x - x_hat)
    dmax = float(max(diffs.max(), 1e-6))
    fig, axes = plt.subplots(n, 4, figsize=(14, 3 * n), squeeze=False)
    for i in range(n):
        psnr = _fmt(rows[i]["psnr"], 2)
        for ax, img, title, vmax, cmap in (
                (axes[i][0], x[i], f"input {rows[i]['name']} (normalised)", 1.0, "gray"),
                (axes[i][1], x_hat[i], f"reconstruction, PSNR {psnr} (data range 1)", 1.0, "gray"),
                (axes[i][2], diffs[i], f"|difference| (max {diffs[i].max():.2f}; common scale)", dmax, "magma")):
            im = ax.imshow(img, cmap=cmap, vmin=0.0, vmax=vmax)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax = axes[i][3]
        bins = np.linspace(0, 1, 65)
        ax.hist(x[i].ravel(), bins=bins, alpha=0.6, label="input")
        ax.hist(x_hat[i].ravel(), bins=bins, alpha=0.6, label="reconstruction")
        ax.set_title("histogram of normalised values (0 = clip min, 1 = clip max)", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
