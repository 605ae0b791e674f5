"""Train the SAR autoencoder in JAX: ``python -m sar_jax.train --config baseline``.

Same flags, config and run-directory layout as ``python -m sar_torch_ref.train``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sar_jax import checkpointing, tb
from sar_jax.cli import add_train_args, run_main
from sar_jax.config import load_config, resume_config, validate
from sar_jax.data.batching import BatchIterator
from sar_jax.data.pipeline import build_datasets, make_loaders
from sar_jax.errors import SarJaxError
from sar_jax.models import SARAutoencoder
from sar_jax.rundir import (append_log, default_run_dir, prepare_run_dir, read_log,
                            truncate_log)
from sar_jax.train_state import TrainState, compile_steps, create_train_state
from sar_jax.visualize import save_reconstructions_png

_PROGRESS_EVERY = 10  # steps between progress-bar updates (the only per-step host sync)


def compute_dtype(config: dict[str, Any]) -> Any:
    """``train.dtype`` -> the model's compute dtype."""
    return jnp.bfloat16 if config["train"]["dtype"] == "bfloat16" else jnp.float32


def padded_batches(loader: BatchIterator) -> Iterator[tuple[np.ndarray, int]]:
    """Eval batches padded to the full batch size (one jit shape) with their valid count."""
    for batch in loader.epoch(0):
        n = len(batch)
        if n < loader.batch_size:
            pad = np.repeat(batch[-1:], loader.batch_size - n, axis=0)
            batch = np.concatenate([batch, pad])
        yield batch, n


def evaluate(eval_step: Any, state: TrainState, loader: BatchIterator) -> dict[str, float]:
    """Average over images of the per-image loss, mse, ssim and psnr."""
    parts = [(eval_step(state, batch), n) for batch, n in padded_batches(loader)]
    host = jax.device_get(parts)
    return {k: float(np.mean(np.concatenate([m[k][:n] for m, n in host]))) for k in host[0][0]}


def _named_leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("/".join(str(getattr(k, "key", k)) for k in path), np.asarray(v)) for path, v in flat]


def _memory_stats() -> dict[str, float]:
    stats = jax.local_devices()[0].memory_stats()
    if not stats:
        return {}
    return {k.replace("bytes", "mb"): v / 2**20 for k, v in stats.items()
            if k in ("bytes_in_use", "peak_bytes_in_use")}


def _check_finite(metrics: dict[str, Any], epoch: int, step: int, run_dir: Path) -> None:
    if not math.isfinite(float(metrics["loss"])) or not math.isfinite(float(metrics["grad_norm"])):
        raise SarJaxError(f"training diverged: loss or gradient is NaN/Inf at epoch {epoch}, step {step};"
                          f" the last good checkpoint in {run_dir / 'checkpoints'} is kept")


def train_epoch(steps: dict[str, Any], state: TrainState, loader: BatchIterator, epoch: int,
                run_dir: Path, progress: bool) -> tuple[TrainState, dict[str, float], int]:
    """One pass over the training split; returns (state, mean batch metrics, images seen)."""
    collected = []
    bar = tqdm(loader.epoch(epoch), total=len(loader), desc=f"epoch {epoch}", disable=not progress,
               leave=False, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        state, metrics = steps["train_step"](state, batch)
        collected.append(metrics)
        if (i + 1) % _PROGRESS_EVERY == 0 or i + 1 == len(loader):
            host = jax.device_get(metrics)
            _check_finite(host, epoch, int(state.step), run_dir)
            bar.set_postfix(loss=f"{host['loss']:.4f}", psnr=f"{host['psnr']:.2f}", ssim=f"{host['ssim']:.3f}")
    bar.close()
    host = jax.device_get(collected)
    means = {k: float(np.mean([m[k] for m in host])) for k in ("loss", "mse", "ssim", "psnr")}
    return state, means, len(collected) * loader.batch_size


def _metadata(config: dict[str, Any], params: dict[str, Any], state: TrainState,
              val_loss: float) -> dict[str, Any]:
    return {"config": config, "preprocessing_params": params, "epoch": int(state.epoch),
            "step": int(state.step), "val_loss": val_loss, "best_val_loss": float(state.best_val_loss),
            "versions": checkpointing.library_versions(), "framework": "jax"}


def train_and_evaluate(config: dict[str, Any], run_dir: str | Path, *, resume: bool = False,
                       overwrite: bool = False) -> dict[str, Any]:
    """Train (or continue) a run; returns a summary with the best epoch's validation metrics."""
    validate(config)
    datasets = build_datasets(config)
    loaders = make_loaders(datasets, config)
    run_dir = prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
    model = SARAutoencoder.from_config(config["model"], compute_dtype(config))
    steps = compile_steps(model, config)
    state = create_train_state(model, config)
    manager = checkpointing.make_manager(run_dir)
    preprocessing = datasets.preprocessing_params
    if resume and manager.latest_step() is not None:
        state, meta = checkpointing.restore(run_dir, state, "latest", manager)
        if meta["preprocessing_params"] != preprocessing:
            print("warning: the data's preprocessing differs from the checkpoint's; keeping the checkpoint's",
                  file=sys.stderr)
            preprocessing = meta["preprocessing_params"]
        truncate_log(run_dir, int(state.epoch))
    train_cfg, log_cfg = config["train"], config["logging"]
    samples = datasets.val[: log_cfg["num_samples"]]
    writer = tb.open_writer(run_dir, purge_step=int(state.epoch) + 1 if resume else None)
    start = int(state.epoch) + 1
    stopped_early = int(state.epochs_without_improvement) >= train_cfg["early_stopping_patience"]
    try:
        for epoch in range(start, train_cfg["epochs"] + 1):
            if stopped_early:
                break
            t0 = time.perf_counter()
            lr = train_cfg["lr"] * float(state.plateau_state.scale)
            state, train_m, n_images = train_epoch(steps, state, loaders["train"], epoch, run_dir,
                                                   log_cfg["progress"])
            train_seconds = time.perf_counter() - t0
            val_m = evaluate(steps["eval_step"], state, loaders["val"])
            val_loss = val_m["loss"]
            if not math.isfinite(val_loss):
                raise SarJaxError(f"training diverged: validation loss is NaN/Inf at epoch {epoch}; the last"
                                  f" good checkpoint in {run_dir / 'checkpoints'} is kept")
            improved = val_loss < float(state.best_val_loss)
            state = state.replace(
                epoch=jnp.asarray(epoch, jnp.int32),
                plateau_state=steps["plateau_update"](state.plateau_state, jnp.float32(val_loss)),
                best_val_loss=jnp.asarray(min(val_loss, float(state.best_val_loss)), jnp.float32),
                epochs_without_improvement=jnp.asarray(
                    0 if improved else int(state.epochs_without_improvement) + 1, jnp.int32))
            checkpointing.save(manager, epoch, state, _metadata(config, preprocessing, state, val_loss), val_loss)
            record = {"epoch": epoch, **{f"train_{k}": v for k, v in train_m.items()},
                      **{f"val_{k}": v for k, v in val_m.items()}, "lr": lr,
                      "epoch_seconds": time.perf_counter() - t0,
                      "train_images_per_second": n_images / train_seconds, "best": improved}
            append_log(run_dir, record)
            tb.log_epoch(writer, record, epoch)
            if epoch % log_cfg["image_every"] == 0:
                x_hat = steps["predict"]({"params": state.params, "batch_stats": state.batch_stats}, samples)
                tb.log_reconstructions(writer, samples, np.asarray(x_hat), epoch)
            if epoch % log_cfg["histogram_every"] == 0:
                tb.log_histograms(writer, "weights", _named_leaves(state.params), epoch)
                grads = steps["gradients"](state, datasets.train[: train_cfg["batch_size"]])
                tb.log_histograms(writer, "grads", _named_leaves(grads), epoch)
            tb.log_memory(writer, _memory_stats(), epoch)
            writer.flush()
            if log_cfg["progress"]:
                tqdm.write(f"epoch {epoch:3d}  train loss {train_m['loss']:.4f}  val loss {val_loss:.4f}"
                           f"  val psnr {val_m['psnr']:.2f} dB  val ssim {val_m['ssim']:.4f}  lr {lr:.2e}"
                           f"  {record['epoch_seconds']:.1f}s{'  *' if improved else ''}")
            stopped_early = int(state.epochs_without_improvement) >= train_cfg["early_stopping_patience"]
    finally:
        writer.close()
    best_state, _ = checkpointing.restore(run_dir, state, "best", manager)
    best_vars = {"params": best_state.params, "batch_stats": best_state.batch_stats}
    save_reconstructions_png(samples, np.asarray(steps["predict"](best_vars, samples)),
                             Path(run_dir) / "reconstructions.png",
                             title=f"best epoch {checkpointing.select_step(manager, 'best')} (validation)")
    records = read_log(run_dir)
    best = min(records, key=lambda r: r["val_loss"])
    return {"run_dir": str(run_dir), "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            "best_val_psnr": best["val_psnr"], "best_val_ssim": best["val_ssim"],
            "epochs_run": records[-1]["epoch"], "stopped_early": stopped_early}


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags (the same as ``sar_torch_ref.train``)."""
    parser = argparse.ArgumentParser(prog="python -m sar_jax.train", description=__doc__.splitlines()[0])
    add_train_args(parser)
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                        help="continue a run (default: --out, else the newest runs/<config>-*)")
    return parser


def _resume_dir(args: argparse.Namespace) -> Path:
    if args.resume:
        return Path(args.resume)
    if args.out:
        return Path(args.out)
    name = Path(args.config).stem
    candidates = sorted(Path("runs").glob(f"{name}-*"))
    if not candidates:
        raise SarJaxError(f"--resume: no run of config '{name}' under runs/; give the run directory")
    return candidates[-1]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse flags, train, print where the run is and its best scores."""
    args = setup_args().parse_args(argv)
    if args.resume is not None:
        if args.data is not None:
            raise SarJaxError("--data cannot be combined with --resume (the run's data config is used)")
        run_dir = _resume_dir(args)
        config_file = run_dir / "config.json"
        if not config_file.is_file():
            raise SarJaxError(f"--resume {run_dir}: not a run directory (no config.json)")
        try:
            stored = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise SarJaxError(f"{config_file}: invalid JSON at line {exc.lineno} column {exc.colno}") from None
        config = resume_config(stored, args.overrides, str(config_file))
    else:
        config, name = load_config(args.config, args.overrides, args.data)
        run_dir = Path(args.out) if args.out else default_run_dir(name)
    summary = train_and_evaluate(config, run_dir, resume=args.resume is not None, overwrite=args.overwrite)
    print(f"run directory: {summary['run_dir']}")
    print(f"best epoch {summary['best_epoch']}: val PSNR {summary['best_val_psnr']:.2f} dB, "
          f"val SSIM {summary['best_val_ssim']:.4f}, val loss {summary['best_val_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
