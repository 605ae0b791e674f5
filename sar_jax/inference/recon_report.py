"""What ``python -m sar_jax.reconstruct`` prints: one scene's summary, and the table of a folder run."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One markdown row per scene: status, time, size, bit rate, mean ratio, clipping, no-data."""
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = ["| scene | status | seconds | size | bpp | CR | mean ratio | clipped | no-data px |", "|" + "---|" * 9]
    for r in rows:
        size = "x".join(map(str, r["shape"])) if r.get("shape") else "-"
        clipped = None if r.get("clipped_fraction") is None else 100 * r["clipped_fraction"]
        lines.append(f"| {Path(r['input']).name} | {r['status']} | {fmt(r.get('seconds'), '.1f')} | {size} | "
                     f"{fmt(r.get('bpp'), '.3f')} | {fmt(r.get('compression_ratio'), '.1f')} | "
                     f"{fmt(r.get('mean_ratio'), '.4f')} | {fmt(clipped, '.2f')}% | "
                     f"{fmt(r.get('invalid_pixels'), 'd')} |")
    return "\n".join(lines)


def count(n: int, what: str) -> str:
    """``1 tile``, ``3 tiles``."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def print_summary(s: dict[str, Any]) -> None:
    h, w = s["shape"]
    line = (f"wrote {s['output']}: {h} x {w} {s['units']}, {count(s['tiles'], 'tile')} of {s['tile']} px + "
            f"{s['halo']} px halo "
            f"({s['compute_ratio']:.2f}x the scene's pixels computed), {s['seconds']:.1f}s")
    if s.get("mean_ratio") is not None:
        line += (f"; mean ratio {s['mean_ratio']:.4f} (without the {s['log_bias_db']:+.2f} dB log-bias correction: "
                 f"{s['mean_ratio_uncorrected']:.4f})")
    print(line)
    if s["invalid_pixels"] or s["clipped_fraction"]:
        print(f"no-data pixels {s['invalid_pixels']}; {100 * s['clipped_fraction']:.2f}% of the valid ones outside "
              "the checkpoint's clip range")
    if s.get("latent"):
        print(f"wrote {s['latent']}: {s['latent_bytes']} bytes, {s['bpp']:.4f} bits per input pixel "
              f"({s['input_bits_per_pixel']}-bit input: {s['compression_ratio']:.1f}:1)"
              + (f"; the likelihoods' estimate: {s['estimated_bpp']:.4f} bpp" if "estimated_bpp" in s else ""))
    if s.get("phase_dropped"):
        print("note: the input is complex; its phase was dropped (the model sees |z|^2 or |z|)")
