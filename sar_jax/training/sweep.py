"""Hyper-parameter sweeps: train every combination of a grid, evaluate each best checkpoint, tabulate.

    python -m sar_jax.sweep --config NAME --grid section.key=v1,v2,... [--grid ...] [--set ...]
                            [--data PATH] [--out DIR] [--num-processes N --process-id I]

Each combination trains into ``DIR/<key=value,...>/`` (sequentially in one process, or split over
processes or SLURM array tasks with no coordination) and is evaluated on its test split (any
``model.kind``; the rate: the baseline's int8 latents of the whole test regions, the learned codecs'
real bitstreams of the test patches, none for the U-Net); its row
is stored in that folder's ``sweep_row.json``, so a re-run skips finished runs and resumes
interrupted ones. The process that finds every row present writes ``DIR/sweep.json``,
``sweep.md`` and ``sweep.png``. A failing run is reported in one line and the others go on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sar_jax.core.cli import add_examples, add_version_arg, process_share
from sar_jax.core.config import CODEC_KINDS, load_config, parse_override
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import write_json_atomic, write_text_atomic
from sar_jax.core.visualize import save_figure
from sar_jax.inference.codec import int8_latent_bpp
from sar_jax.inference.evaluate import evaluate
from sar_jax.inference.run import load_run
from sar_jax.training.loop import Interrupted, train_and_evaluate

ROW_FILE = "sweep_row.json"
METRICS = ("best_epoch", "val_loss", "psnr", "ssim", "ms_ssim", "enl_ratio", "psnr_vs_clean", "bpp")


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``section.key=v1,v2`` items -> ``[(section.key, [v1, v2])]`` (values parsed as JSON)."""
    grid = []
    for item in items:
        section, key, _ = parse_override(item)
        raw_values = item.split("=", 1)[1].split(",")
        if not all(v.strip() for v in raw_values):
            raise SarJaxError(f"--grid {item!r}: expected section.key=v1,v2,... with no empty value")
        values = [parse_override(f"{section}.{key}={v.strip()}")[2] for v in raw_values]
        if f"{section}.{key}" in dict(grid):
            raise SarJaxError(f"--grid {item!r}: {section}.{key} appears twice")
        grid.append((f"{section}.{key}", values))
    if not grid:
        raise SarJaxError("no --grid given; expected at least one section.key=v1,v2,...")
    return grid


def grid_points(grid: list[tuple[str, list[Any]]], zipped: bool = False) -> list[dict[str, Any]]:
    """Every combination, in the order of the grid (the last key varies fastest); ``zipped``: the
    keys' i-th values together (equal lengths), e.g. ``loss.mse_weight`` = 1 - ``loss.ssim_weight``."""
    keys = [k for k, _ in grid]
    if zipped:
        lengths = {k: len(v) for k, v in grid}
        if len(set(lengths.values())) > 1:
            raise SarJaxError(f"zipped grid: every key needs as many values ({lengths})")
        return [dict(zip(keys, values)) for values in zip(*(v for _, v in grid))]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]


def run_name(point: dict[str, Any]) -> str:
    """``loss.ssim_weight=0.25,model.latent_channels=8``: the run's folder name."""
    return ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in point.items())


def train_and_score(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train (resuming an interrupted run) and evaluate the best checkpoint on the test split."""
    resume = (run_dir / "checkpoints").is_dir()
    summary = train_and_evaluate(config, run_dir, resume=resume, overwrite=not resume)
    synthetic = config["data"]["source"] == "synthetic"
    report = evaluate(run_dir, out=run_dir / "eval-jax", reference="clean" if synthetic else "input")
    avg = report["average"]
    clean = report["comparisons"][0]["psnr_vs_clean"] if synthetic else None
    row = {"best_epoch": summary["best_epoch"], "val_loss": summary["best_val_loss"],
           "psnr": avg["psnr"], "ssim": avg["ssim"], "ms_ssim": avg["ms_ssim"], "enl_ratio": avg["enl_ratio"],
           "psnr_vs_clean": clean}
    kind = config["model"]["kind"]
    if kind == "baseline":
        return dict(row, bpp=int8_latent_bpp(load_run(run_dir)))
    if kind in CODEC_KINDS:
        return dict(row, bpp=avg["bpp_bitstream"], rate="bitstream")
    return dict(row, bpp=None, rate="none")


def run_sweep(config_name: str, grid: list[tuple[str, list[Any]]], overrides: Sequence[str], out: Path,
              data: str | None = None, share: tuple[int, int] = (0, 1),
              zipped: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Train and score this process's share of the grid; returns (rows of every finished run, failures)."""
    points = grid_points(grid, zipped)
    configs = [load_config(config_name, list(overrides) + [f"{k}={json.dumps(v)}" for k, v in p.items()], data)[0]
               for p in points]  # every combination validated before the first one trains
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    for i, (point, config) in enumerate(zip(points, configs)):
        run_dir = out / run_name(point)
        if i % share[1] != share[0] or (run_dir / ROW_FILE).is_file():
            continue
        print(f"[{i + 1}/{len(points)}] {run_dir.name}", flush=True)
        try:
            row = {"run": run_dir.name, **point, **train_and_score(config, run_dir)}
        except Interrupted:
            raise
        except Exception as exc:  # a failing run is reported and the sweep goes on
            detail = str(exc) if isinstance(exc, SarJaxError) else f"{type(exc).__name__}: {exc}"
            failures.append(f"{run_dir.name}: {detail}")
            print(f"failed: {failures[-1]}", flush=True)
            continue
        write_json_atomic(run_dir / ROW_FILE, row)
    rows = [json.loads((out / run_name(p) / ROW_FILE).read_text())
            for p in points if (out / run_name(p) / ROW_FILE).is_file()]
    return rows, failures


def markdown_table(grid: list[tuple[str, list[Any]]], rows: list[dict[str, Any]]) -> str:
    """One row per run: the grid values and the scores; with runs of other kinds than the baseline, the
    bpp column is headed ``bpp`` and a ``rate`` column says what it measures."""
    keys = [k for k, _ in grid]
    rated = any("rate" in r for r in rows)
    head = keys + ["best epoch", "val loss", "PSNR", "SSIM", "MS-SSIM", "ENL ratio", "PSNR vs clean",
                   "bpp" if rated else "bpp (int8)"] + (["rate"] if rated else [])

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def cells(r: dict[str, Any]) -> list[str]:
        values = [fmt(r[k]) for k in keys + list(METRICS)]
        return values + [r.get("rate", "int8 latent")] if rated else values

    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save_plot(grid: list[tuple[str, list[Any]]], rows: list[dict[str, Any]], path: Path) -> None:
    """PSNR, SSIM and ENL ratio per run (x: the first grid key when numeric, else the run index)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = grid[0][0]
    numeric = all(isinstance(r[key], (int, float)) for r in rows)
    x = [r[key] if numeric else i for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, metric, label in zip(axes, ("psnr", "ssim", "enl_ratio"), ("PSNR (dB)", "SSIM", "ENL ratio")):
        ax.plot(x, [r[metric] if r[metric] is not None else float("nan") for r in rows], "o-")
        ax.set_xlabel(key if numeric else "run")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if not numeric:
            ax.set_xticks(x, [r["run"] for r in rows], rotation=30, ha="right", fontsize=7)
    save_figure(fig, path)


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m sar_jax.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="baseline", help="config name in configs/ or a JSON path")
    parser.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                        help="a key and its values (repeatable; every combination is trained)")
    parser.add_argument("--zip", action="store_true",
                        help="pair the --grid values (i-th with i-th) instead of training every combination")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key for every run (repeatable)")
    parser.add_argument("--data", default=None, help="SAR file or folder (switches data.source to files)")
    parser.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<config>)")
    parser.add_argument("--num-processes", type=int, default=None, help="split the runs over N processes")
    parser.add_argument("--process-id", type=int, default=None, help="this process's index, 0..N-1")
    add_version_arg(parser)
    add_examples(parser, "python -m sar_jax.sweep --config quickstart --grid model.latent_channels=4,8,16")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run this process's share, then tabulate once every run has finished."""
    args = setup_args().parse_args(argv)
    grid = parse_grid(args.grid)
    share = process_share(args.num_processes, args.process_id)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.config).stem}"
    rows, failures = run_sweep(args.config, grid, args.overrides, out, args.data, share, args.zip)
    total = len(grid_points(grid, args.zip))
    if len(rows) == total:
        write_json_atomic(out / "sweep.json", {"config": args.config, "grid": dict(grid), "overrides": args.overrides,
                                               "rows": rows})
        write_text_atomic(out / "sweep.md", markdown_table(grid, rows))
        save_plot(grid, rows, out / "sweep.png")
        print(markdown_table(grid, rows), end="")
        print(f"wrote {out}/sweep.json, sweep.md, sweep.png")
    else:
        print(f"{len(rows)} of {total} runs finished; the table is written once all have")
    for f in failures:
        print(f"error: {f}")
    return 1 if failures else 0
