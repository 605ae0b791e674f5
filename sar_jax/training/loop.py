"""Train the SAR autoencoder in JAX: ``python -m sar_jax.train --config baseline``.

Same flags, config and run-directory layout as ``python -m sar_torch_ref.train``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from sar_jax.core import tb
from sar_jax.core.cli import add_examples, add_train_args, add_version_arg, flag_names
from sar_jax.core.config import load_config, resume_config, validate
from sar_jax.core.early_stopping import EarlyStopping
from sar_jax.core.errors import SarJaxError
from sar_jax.core.rundir import (
    append_log,
    default_run_dir,
    latest_run_dir,
    prepare_run_dir,
    read_log,
    truncate_log,
)
from sar_jax.core.visualize import save_reconstructions_png
from sar_jax.data.grain_pipeline import PatchLoader
from sar_jax.data.pipeline import build_datasets, make_loaders
from sar_jax.nn.registry import build_model
from sar_jax.training import checkpointing, distributed
from sar_jax.training.state import TrainState, compile_steps, create_train_state
from sar_jax.training.tb_logging import log_images_and_histograms

_PROGRESS_EVERY = 10  # steps between host syncs (progress bar, NaN check): none per step
_NOT_AVERAGED = ("grad_norm", "finite")  # train-step outputs that are not epoch metrics


def compute_dtype(config: dict[str, Any]) -> Any:
    """``train.dtype`` -> the model's compute dtype."""
    return jnp.bfloat16 if config["train"]["dtype"] == "bfloat16" else jnp.float32


def evaluate(eval_step: Any, state: TrainState, loader: PatchLoader, mesh: Mesh) -> dict[str, float]:
    """Average over images of the per-image loss, mse, ssim and psnr (padding rows dropped)."""
    parts = [eval_step(state, distributed.shard_batch(batch, mesh)) for batch in loader.epoch(0)]
    host = distributed.to_host(parts)
    return {k: float(np.mean(np.concatenate([m[k][:n] for m, n in zip(host, loader.valid_counts())])))
            for k in host[0]}


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run can be resumed."""

    def __init__(self, signum: int, run_dir: Path, epoch: int, step: int) -> None:
        super().__init__(signum)
        self.signum, self.run_dir, self.epoch, self.step = signum, run_dir, epoch, step

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (128 + signal number)."""
        return 128 + self.signum


@contextlib.contextmanager
def _signals_requested() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of dying, so the loop can finish the step and checkpoint."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _check_finite(flags: list[Any], first_step: int, epoch: int, run_dir: Path) -> None:
    """Stop at the first non-finite step (its update was not applied; nothing is saved)."""
    for i, ok in enumerate(distributed.local_copy(flags)):
        if not bool(ok):
            raise SarJaxError(f"training diverged: loss or gradient is NaN/Inf at epoch {epoch}, step "
                              f"{first_step + i + 1}; stopped there, the last good checkpoint in "
                              f"{run_dir / 'checkpoints'} is kept")


@dataclass
class EpochProgress:
    """Running sums of one epoch's batch metrics (saved in a mid-epoch checkpoint)."""

    batches: int = 0
    sums: dict[str, float] = field(default_factory=dict)  # loss, mse, ssim, psnr (+ bpp, aux_loss)
    seconds: float = 0.0
    data_wait_seconds: float = 0.0  # time the loop waited for the data pipeline

    def add(self, metrics: list[dict[str, Any]]) -> None:
        """Accumulate a chunk of per-step metrics."""
        host = distributed.local_copy([{k: v for k, v in m.items() if k not in _NOT_AVERAGED} for m in metrics])
        for m in host:
            for k, v in m.items():
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.batches += len(host)

    def means(self) -> dict[str, float]:
        """Mean batch metrics over the epoch."""
        return {k: v / max(self.batches, 1) for k, v in self.sums.items()}


def _timed(batches: Iterator[np.ndarray], done: EpochProgress) -> Iterator[np.ndarray]:
    """``batches``, adding the time spent waiting for each to ``done.data_wait_seconds``."""
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        done.data_wait_seconds += time.perf_counter() - t0
        if batch is None:
            return
        yield batch


def train_epoch(steps: dict[str, Any], state: TrainState, loader: PatchLoader, batches: Iterator[np.ndarray],
                mesh: Mesh, epoch: int, run_dir: Path, progress: bool, done: EpochProgress,
                signals: list[int]) -> tuple[TrainState, EpochProgress, int]:
    """The rest of one pass over the training split (``batches``: the epoch's data iterator, from batch
    ``done.batches`` on); returns at the end of the epoch, or early after a signal (``signals``), with
    the signal number (0: none). One process stops after the step in flight; several agree at the next
    host sync (every ``_PROGRESS_EVERY`` steps and the epoch's last) and stop together there."""
    t0 = time.perf_counter() - done.seconds
    pending: list[dict[str, Any]] = []
    first_step = distributed.scalar(state.step)
    bar = tqdm(_timed(batches, done), total=len(loader), initial=done.batches,
               desc=f"epoch {epoch}", leave=False, disable=not (progress and distributed.is_main_process()),
               dynamic_ncols=True)
    single = jax.process_count() == 1
    stop = 0
    for batch in bar:
        state, metrics = steps["train_step"](state, distributed.shard_batch(batch, mesh))
        pending.append(metrics)
        last = done.batches + len(pending) == len(loader)
        if len(pending) == _PROGRESS_EVERY or last or (single and signals):
            _check_finite([m["finite"] for m in pending], first_step, epoch, run_dir)
            first_step += len(pending)
            done.add(pending)
            pending = []
            m = done.means()
            bar.set_postfix(loss=f"{m['loss']:.4f}", psnr=f"{m['psnr']:.2f}", ssim=f"{m['ssim']:.3f}",
                            **({"bpp": f"{m['bpp']:.3f}"} if "bpp" in m else {}))
            stop = distributed.agreed_signal(signals)
        if stop:
            break
    bar.close()
    done.seconds = time.perf_counter() - t0
    return state, done, stop


def _metadata(config: dict[str, Any], params: dict[str, Any], state: TrainState, val_loss: float | None,
              partial: EpochProgress | None = None) -> dict[str, Any]:
    meta = {"config": config, "preprocessing_params": params, "epoch": distributed.scalar(state.epoch),
            "step": distributed.scalar(state.step), "val_loss": val_loss,
            "best_val_loss": distributed.scalar(state.best_val_loss),
            "versions": checkpointing.library_versions(), "framework": "jax"}
    if partial is not None:
        meta["partial_epoch"] = asdict(partial)
    return meta


def _end_of_epoch(state: TrainState, val_loss: float, plateau_update: Any, mesh: Mesh,
                  patience: int) -> tuple[TrainState, bool]:
    """Plateau, best value and early-stopping counter after one epoch's validation (the same
    :class:`EarlyStopping` rule as the reference, its counters kept in the state)."""
    stopper = EarlyStopping(patience, distributed.scalar(state.best_val_loss),
                            distributed.scalar(state.epochs_without_improvement))
    improved = stopper.update(val_loss)
    state = state.replace(
        epoch=jnp.asarray(distributed.scalar(state.epoch) + 1, jnp.int32),
        plateau_state=plateau_update(state.plateau_state, jnp.float32(val_loss)),
        best_val_loss=jnp.asarray(stopper.best, jnp.float32),
        epochs_without_improvement=jnp.asarray(stopper.bad_epochs, jnp.int32))
    return distributed.replicate(state, mesh), improved


def warm_start_variables(config: dict[str, Any]) -> dict[str, Any]:
    """The best weights of the run ``train.init_from`` names (a fine-tuning start: a new lambda, new data);
    its model section must equal ``config``'s. Optimizer, schedule and epochs start afresh."""
    from sar_jax.inference.run import load_run

    source = config["train"]["init_from"]
    try:
        loaded = load_run(source)
    except SarJaxError as exc:
        raise SarJaxError(f"train.init_from: {exc}") from None
    differ = [f"model.{k} ({json.dumps(loaded.config['model'][k])} there, {json.dumps(v)} here)"
              for k, v in config["model"].items() if loaded.config["model"][k] != v]
    if differ:
        raise SarJaxError(f"train.init_from {source}: its model differs in {', '.join(differ)}; "
                          "a warm start needs the same model section")
    return loaded.variables


def train_and_evaluate(config: dict[str, Any], run_dir: str | Path, *, resume: bool = False,
                       overwrite: bool = False) -> dict[str, Any]:
    """Train (or continue) a run; returns a summary with the best epoch's validation metrics.

    SIGINT/SIGTERM finish the step in flight, write a (mid-epoch) checkpoint and raise
    :class:`Interrupted`; ``resume=True`` continues from the latest checkpoint exactly.
    """
    validate(config)
    train_cfg, log_cfg = config["train"], config["logging"]
    mesh = distributed.make_mesh(train_cfg["devices"])
    distributed.check_batch(train_cfg["batch_size"], mesh)
    main_process = distributed.is_main_process()
    # before the data and the run directory: a bad source is refused with nothing written
    resumed = resume and checkpointing.has_checkpoint(run_dir)
    warm = warm_start_variables(config) if train_cfg["init_from"] and not resumed else None
    datasets = build_datasets(config)
    shard = (jax.process_index(), jax.process_count())
    loaders = make_loaders(datasets, config, shard=shard)
    if main_process:
        prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
    distributed.sync("run_dir")
    run_dir = Path(run_dir)
    model = build_model(config["model"], compute_dtype(config))
    steps = compile_steps(model, config, datasets.preprocessing_params)
    manager = checkpointing.make_manager(run_dir)
    state = distributed.replicate(create_train_state(model, config, warm), mesh)
    preprocessing = datasets.preprocessing_params
    progress = EpochProgress()
    if resumed:
        state, meta = checkpointing.restore(run_dir, state, "latest", manager)
        if meta["preprocessing_params"] != preprocessing:
            warnings.warn("the data's preprocessing differs from the checkpoint's; keeping the checkpoint's",
                          stacklevel=2)
            preprocessing = meta["preprocessing_params"]
        if meta.get("partial_epoch"):
            progress = EpochProgress(**meta["partial_epoch"])
        if main_process:
            truncate_log(run_dir, distributed.scalar(state.epoch))
    samples = distributed.replicate(datasets.patches("val", log_cfg["num_samples"]), mesh)
    grad_batch = distributed.shard_batch(np.array_split(datasets.patches("train", train_cfg["batch_size"],
                                                                         with_target=True),
                                                        shard[1])[shard[0]], mesh)
    first_epoch = distributed.scalar(state.epoch) + 1
    writer = tb.open_writer(run_dir, purge_step=first_epoch if resume else None) if main_process else None
    stopped_early = distributed.scalar(state.epochs_without_improvement) >= train_cfg["early_stopping_patience"]
    try:
        with _signals_requested() as signals:
            for epoch in range(first_epoch, train_cfg["epochs"] + 1):
                if stopped_early:
                    break
                lr = train_cfg["lr"] * distributed.scalar(state.plateau_state.scale)
                batches = loaders["train"].epoch(epoch)
                if progress.batches:  # resuming mid-epoch: the data iterator continues where it stopped
                    checkpointing.restore_data_iterator(manager, distributed.scalar(state.step), batches)
                try:
                    state, progress, stop = train_epoch(steps, state, loaders["train"], batches, mesh, epoch,
                                                        run_dir, log_cfg["progress"], progress, signals)
                    if progress.batches < len(loaders["train"]):  # interrupted mid-epoch
                        checkpointing.save(manager, distributed.scalar(state.step), state,
                                           _metadata(config, preprocessing, state, None, progress), None,
                                           data_iterator=batches)
                        raise Interrupted(stop, run_dir, epoch, distributed.scalar(state.step))
                finally:
                    batches.close()
                t_val = time.perf_counter()
                val_m = evaluate(steps["eval_step"], state, loaders["val"], mesh)
                if not math.isfinite(val_m["loss"]):
                    raise SarJaxError(f"training diverged: validation loss is NaN/Inf at epoch {epoch}; the "
                                      f"last good checkpoint in {run_dir / 'checkpoints'} is kept")
                state, improved = _end_of_epoch(state, val_m["loss"], steps["plateau_update"], mesh,
                                                train_cfg["early_stopping_patience"])
                checkpointing.save(manager, distributed.scalar(state.step), state,
                                   _metadata(config, preprocessing, state, val_m["loss"]), val_m["loss"])
                record = {"epoch": epoch, **{f"train_{k}": v for k, v in progress.means().items()},
                          **{f"val_{k}": v for k, v in val_m.items()}, "lr": lr,
                          "epoch_seconds": progress.seconds + time.perf_counter() - t_val,
                          "train_images_per_second": progress.batches * train_cfg["batch_size"] / progress.seconds,
                          "data_wait_seconds": progress.data_wait_seconds,
                          "train_data_wait_fraction": progress.data_wait_seconds / progress.seconds,
                          "best": improved}
                progress = EpochProgress()
                if main_process:
                    append_log(run_dir, record)
                    tb.log_epoch(writer, record, epoch)
                log_images_and_histograms(writer, steps, state, samples, grad_batch, epoch, log_cfg)
                if log_cfg["progress"] and main_process:
                    tqdm.write(f"epoch {epoch:3d}  train loss {record['train_loss']:.4f}  val loss "
                               f"{val_m['loss']:.4f}  val psnr {val_m['psnr']:.2f} dB  val ssim {val_m['ssim']:.4f}"
                               + (f"  val bpp {val_m['bpp']:.3f}" if "bpp" in val_m else "")
                               + f"  lr {lr:.2e}  {record['epoch_seconds']:.1f}s{'  *' if improved else ''}")
                stop = distributed.agreed_signal(signals)
                if stop:  # arrived in the epoch's last steps or its validation: its checkpoint is written
                    raise Interrupted(stop, run_dir, epoch, distributed.scalar(state.step))
                stopped_early = (distributed.scalar(state.epochs_without_improvement)
                                 >= train_cfg["early_stopping_patience"])
    finally:
        if writer is not None:
            writer.close()
    best_state, _ = checkpointing.restore(run_dir, state, "best", manager)
    x_hat = steps["predict"]({"params": best_state.params, "batch_stats": best_state.batch_stats}, samples)
    records = read_log(run_dir)
    best = min(records, key=lambda r: r["val_loss"])
    if main_process:
        save_reconstructions_png(distributed.local_copy(samples), distributed.local_copy(x_hat),
                                 run_dir / "reconstructions.png", title=f"best epoch {best['epoch']} (validation)")
    distributed.sync("finished")
    return {"run_dir": str(run_dir), "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            "best_val_psnr": best["val_psnr"], "best_val_ssim": best["val_ssim"],
            "epochs_run": records[-1]["epoch"], "stopped_early": stopped_early}


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags (the same as ``sar_torch_ref.train``)."""
    parser = argparse.ArgumentParser(prog="python -m sar_jax.train", description=__doc__.splitlines()[0])
    add_train_args(parser)
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                        help="continue a run (default: --out, else the newest runs/<config>-*)")
    parser.add_argument("--init-from", default=None, metavar="RUN_DIR",
                        help="start from this run's best weights, e.g. to fine-tune at another loss.lmbda or on "
                             "other data (sets train.init_from; same model section; fresh optimizer)")
    multi = parser.add_argument_group("multi-host (jax.distributed)")
    multi.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="address of process 0; every process passes the same value")
    multi.add_argument("--num-processes", type=int, default=1, help="number of processes (hosts)")
    multi.add_argument("--process-id", type=int, default=0, help="this process's index, 0..P-1")
    multi.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long the processes wait for each other to start (default 60)")
    add_version_arg(parser)
    add_examples(parser, "python -m sar_jax.train --config quickstart --data scenes/ --set data.units=intensity")
    return parser


def _resume_dir(args: argparse.Namespace) -> Path:
    if args.resume:
        return Path(args.resume)
    if args.out:
        return Path(args.out)
    try:
        return latest_run_dir(Path(args.config).stem)
    except SarJaxError as exc:
        raise SarJaxError(f"--resume: {exc}; give the run directory") from None


@flag_names(run_dir="--out", overrides="--set", resume="--resume", overwrite="--overwrite")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse flags, train, print where the run is and its best scores."""
    args = setup_args().parse_args(argv)
    if args.coordinator:
        if args.timeout <= 0 or not 0 <= args.process_id < args.num_processes:
            raise SarJaxError(f"--timeout {args.timeout:g} --process-id {args.process_id} --num-processes "
                              f"{args.num_processes}: expected a timeout > 0 and 0 <= id < num-processes")
        distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.timeout)
    elif args.num_processes != 1:
        raise SarJaxError("--num-processes > 1 needs --coordinator HOST:PORT")
    with distributed.errors_stop_every_process():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Train from parsed flags (after a multi-process run has been joined)."""
    if args.resume is not None:
        if args.data is not None:
            raise SarJaxError("--data cannot be combined with --resume (the run's data config is used)")
        if args.init_from is not None:
            raise SarJaxError("--init-from cannot be combined with --resume (a resumed run keeps its weights)")
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
        init = [f"train.init_from={json.dumps(args.init_from)}"] if args.init_from is not None else []
        config, name = load_config(args.config, args.overrides + init, args.data)
        run_dir = Path(args.out) if args.out else default_run_dir(name)
    try:
        summary = train_and_evaluate(config, run_dir, resume=args.resume is not None, overwrite=args.overwrite)
    except Interrupted as stop:
        if distributed.is_main_process():
            name = signal.Signals(stop.signum).name
            print(f"{name}: stopped at epoch {stop.epoch}, step {stop.step}; checkpoint written. Resume with:\n"
                  f"  python -m sar_jax.train --resume {shlex.quote(str(stop.run_dir))}", file=sys.stderr)
        return stop.exit_code
    if not distributed.is_main_process():
        return 0
    print(f"run directory: {summary['run_dir']}")
    print(f"best epoch {summary['best_epoch']}: val PSNR {summary['best_val_psnr']:.2f} dB, "
          f"val SSIM {summary['best_val_ssim']:.4f}, val loss {summary['best_val_loss']:.4f}")
    return 0

