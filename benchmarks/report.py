"""Markdown table and PNG plot of a throughput result (see :mod:`benchmarks.throughput`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def write_markdown(result: dict[str, Any], path: Path) -> None:
    dev, st = result["device"], result["settings"]
    lines = [f"# Throughput: {dev['name']} ({dev['kind']}"
             + (f", {dev['cpu_count']} cores" if dev.get("cpu_count") else "") + ")", "",
             f"`{st['command']}` -- config `{st['config']}` {' '.join(st['overrides'])}, "
             f"{st['repeats']} repeats (median), contenders alternated in one process; "
             f"jax {result['versions']['jax']}, torch {result['versions']['torch']}."]
    cond = result.get("conditions")
    if cond:
        before = ", ".join(f"{v:.2f}" for v in cond["load_average_1_5_15min_before"])
        lines.append(f"Load average (1/5/15 min) before {before}, "
                     f"after {', '.join(f'{v:.2f}' for v in cond['load_average_1_5_15min_after'])} "
                     f"({cond['note']}).")
    lines.append("")
    flops = result["flops"]
    for s, f in flops["per_image"].items():
        lines.append(f"Analytic FLOPs per {s}x{s} image: forward {f['forward'] / 1e9:.2f} GFLOP, "
                     f"train step {f['train'] / 1e9:.2f} GFLOP ({flops['convention']}).")
    lines += ["", "| framework | variant | precision | mode | batch | size | images/s | step ms | compile s "
              "| TFLOP/s | MFU | peak mem MB | step +MB | page faults/step | sys s/step |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['framework']} | {r['variant']} | {r['precision']} | {r['mode']} | {r['batch_size']} "
                     f"| {r['image_size']} | {r['images_per_second']:.2f} | {r['step_seconds']['median'] * 1e3:.0f} "
                     f"| {_f(r['compile_seconds'])} | {r['tflops']:.3f} | {_f(r['mfu'], '{:.1%}')} "
                     f"| {r['peak_memory_mb']:.0f} | {_f(r.get('host_step_increase_mb'), '{:.0f}')} "
                     f"| {_f(r.get('minor_page_faults'), '{:.0f}')} | {_f(r.get('system_cpu_seconds'), '{:.2f}')} |")
    lines += ["", "compile s: JAX `lower().compile()` time; torch.compile: its first call (compile + one step); "
              "eager: n/a. step +MB, page faults/step, sys s/step: host RSS growth, minor page faults and "
              "kernel CPU time of one untimed step (fresh memory the allocator maps and the kernel zeroes each "
              "step). " + result["memory_note"] + ".", "",
              "## Ratios (JAX images/s / PyTorch images/s; > 1 = JAX faster)", "",
              "| batch, size | mode | pair | ratio of medians | median of paired ratios |", "|---|---|---|---|---|"]
    for key, modes in result["ratios"].items():
        for mode, pairs in modes.items():
            for pair, r in pairs.items():
                extra = f" ({r['best_torch']})" if "best_torch" in r else ""
                lines.append(f"| {key} | {mode} | {pair}{extra} | {r['ratio']:.2f} | {_f(r.get('paired_median'))} |")
    lines += ["", "## Targets (CPU fp32: JAX >= 1.0x PyTorch eager, stretch 1.5x; train-step compile < 30 s)", "",
              "| batch, size | target | value | goal | met |", "|---|---|---|---|---|"]
    for key, targets in result["targets"].items():
        for name, t in targets.items():
            goal = f">= {t['target']}" if "stretch" in t else f"< {t['target']}"
            met = ("yes" if t["met"] else "**NO**") + (
                f" (stretch {t['stretch']}: {'yes' if t['stretch_met'] else 'no'})" if "stretch" in t else "")
            lines.append(f"| {key} | {name} | {t['value']} | {goal} | {met} |")
    pipe = result.get("pipeline", {})
    if "configs" in pipe:
        lines += ["", "## Data pipeline (sar_jax.data, the Grain train loader, nothing consuming)", "",
                  "| batch, size | source | images/s | prepare s | train patches |", "|---|---|---|---|---|"]
        for key, entry in pipe["configs"].items():
            for src, v in entry["sources"].items():
                lines.append(f"| {key} | {src} | {v['images_per_second']:.0f} | {v['prepare_seconds']:.2f} "
                             f"| {v['train_patches']} |")
        lines.append("")
        for key, entry in pipe["configs"].items():
            if "verdict" in entry:
                lines.append(f"- {key}: {entry['verdict']}.")
    prof = result.get("layer_profile")
    if prof:
        lines += ["", f"## Per-layer profile (fp32, batch {prof['batch_size']}, size {prof['image_size']}, "
                      "each piece alone, median ms, JAX / torch)", "",
                  "| layer | GFLOP fwd | forward | input grad | kernel grad | fwd+bwd | JAX/torch fwd+bwd time |",
                  "|---|---|---|---|---|---|---|"]
        pieces = ("fwd", "input_grad", "kernel_grad", "fwd_bwd")
        tot = {f"{fw}_{p}_ms": 0.0 for fw in ("jax", "torch") for p in pieces}

        def pair(r: dict[str, Any], p: str) -> str:
            if f"jax_{p}_ms" not in r:
                return "n/a"
            return f"{r[f'jax_{p}_ms']:.1f} / {r[f'torch_{p}_ms']:.1f}"

        for r in prof["rows"]:
            for k in tot:
                tot[k] += r.get(k, 0.0)
            lines.append(f"| {r['layer']} | {_f(r['gflop_fwd'], '{:.3g}')} | {pair(r, 'fwd')} "
                         f"| {pair(r, 'input_grad')} "
                         f"| {pair(r, 'kernel_grad')} | {pair(r, 'fwd_bwd')} "
                         f"| {r['jax_fwd_bwd_ms'] / max(r['torch_fwd_bwd_ms'], 1e-9):.2f} |")
        lines.append(f"| **sum** | | {pair(tot, 'fwd')} | {pair(tot, 'input_grad')} | {pair(tot, 'kernel_grad')} "
                     f"| {pair(tot, 'fwd_bwd')} | {tot['jax_fwd_bwd_ms'] / max(tot['torch_fwd_bwd_ms'], 1e-9):.2f} |")
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    path.write_text("\n".join(lines) + "\n")


def write_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = result["results"]
    sizes = sorted({r["image_size"] for r in rows})
    labels = sorted({(r["framework"], r["variant"], r["precision"]) for r in rows})
    for ax, mode in zip(axes, ("train", "infer")):
        for fw, variant, prec in labels:
            for s in sizes:
                pts = sorted((r["batch_size"], r["images_per_second"]) for r in rows
                             if (r["framework"], r["variant"], r["precision"], r["mode"], r["image_size"])
                             == (fw, variant, prec, mode, s))
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", linestyle="-" if fw == "jax" else "--",
                        label=f"{fw}-{variant}-{prec}" + (f" @{s}" if len(sizes) > 1 else ""))
        ax.set_title(f"{mode} ({'train step' if mode == 'train' else 'eval forward'})")
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["batch_size"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    dev = result["device"]
    fig.suptitle(f"{dev['name']} ({dev['kind']}), sizes {', '.join(map(str, sizes))}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
