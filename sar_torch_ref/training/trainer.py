"""The reference training loop (original design).

Adam + gradient-norm clipping, ReduceLROnPlateau stepped once per epoch on the validation loss,
early stopping on the validation loss, per-epoch ``training.log`` records, tensorboardX
scalars / reconstructions / histograms, ``last.pt`` every epoch and ``best.pt`` on improvement,
and exact resumption from a checkpoint.

Conventions: epochs are 1-based; epoch ``e`` draws its training batches from
``loaders["train"].epoch(e)``. Validation metrics are means over IMAGES of per-image values;
training metrics are means over steps of the batch metrics.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sar_jax.core import tb
from sar_jax.core.config import RESUME_OVERRIDABLE, config_from_dict
from sar_jax.core.early_stopping import EarlyStopping
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import write_json_atomic
from sar_jax.core.rundir import append_log, prepare_run_dir, truncate_log
from sar_jax.core.visualize import save_reconstructions_png
from sar_jax.data.grain_pipeline import PatchLoader
from sar_jax.data.pipeline import build_datasets, make_loaders
from sar_torch_ref.evaluation.metrics import per_image_metrics
from sar_torch_ref.losses.combined import CombinedLoss
from sar_torch_ref.models.autoencoder import SARAutoencoder
from sar_torch_ref.training.checkpoint import load_checkpoint, save_checkpoint, versions

METRICS = ("loss", "mse", "ssim", "psnr")
#: Keys a resumed run may change; anything else must match the checkpoint's config.
POSTFIX_EVERY = 10


def select_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_nchw(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """NHWC numpy batch -> NCHW float32 tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).contiguous().to(device)


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    """NCHW tensor -> NHWC float32 numpy array."""
    return x.detach().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def _changed_keys(a: dict, b: dict) -> list[tuple[str, str]]:
    return [(s, k) for s in a for k in a[s] if a[s][k] != b.get(s, {}).get(k)]


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: PatchLoader, config: dict[str, Any],
             device: torch.device) -> dict[str, float]:
    """Means over every image of ``loader`` of the per-image loss, mse, ssim and psnr
    (``model.eval()``, no gradients)."""
    model.eval()
    totals = {k: torch.zeros((), dtype=torch.float64, device=device) for k in METRICS}
    count = 0
    for batch, n_valid in zip(loader.epoch(0), loader.valid_counts()):
        x = to_nchw(batch[:n_valid], device)  # drop the rows padding the last batch
        x_hat, _ = model(x)
        values = per_image_metrics(x_hat, x, config["loss"])
        for k in METRICS:
            totals[k] += values[k].double().sum()
        count += x.shape[0]
    if count == 0:
        return {k: math.nan for k in METRICS}
    return {k: float(v) / count for k, v in totals.items()}


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """``model.eval()`` reconstructions of NHWC ``images`` -> NHWC numpy."""
    model.eval()
    x_hat, _ = model(to_nchw(images, device))
    return to_nhwc(x_hat)


def _check_settings(config: dict[str, Any]) -> None:
    train = config["train"]
    if train["init_from"] is not None:
        raise SarJaxError(f"train.init_from {train['init_from']}: the PyTorch reference trainer does not "
                          "warm-start; use python -m sar_jax.train")
    if train["dtype"] != "float32":
        warnings.warn(f"train.dtype = {train['dtype']}: the PyTorch reference trains in float32", stacklevel=3)
    if isinstance(train["devices"], int) and train["devices"] > 1:
        warnings.warn(f"train.devices = {train['devices']}: the PyTorch reference uses one device",
                      stacklevel=3)


def _continues_in_place(run_dir: Path, resume_from: Path | None) -> bool:
    """True when resuming from a checkpoint of ``run_dir`` itself."""
    return (resume_from is not None and (run_dir / "config.json").is_file()
            and resume_from.resolve().parent == (run_dir / "checkpoints").resolve())


def _open_run_dir(run_dir: Path, config: dict[str, Any], checkpoint: dict[str, Any] | None,
                  resume_from: Path | None, overwrite: bool) -> bool:
    """Reopen the checkpoint's own run directory (True) or prepare a new one (False)."""
    if checkpoint is not None and _continues_in_place(run_dir, resume_from):
        prepare_run_dir(run_dir, config, resume=True)
        truncate_log(run_dir, int(checkpoint["epoch"]))
        write_json_atomic(run_dir / "config.json", config)
        return True
    prepare_run_dir(run_dir, config, resume=False, overwrite=overwrite)
    if overwrite:  # drop what a replaced run left behind
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
        for name in ("last.pt", "best.pt"):
            (run_dir / "checkpoints" / name).unlink(missing_ok=True)
    if checkpoint is not None and resume_from is not None:
        # a new run continued from another run's checkpoint starts with that run's best model
        source_best = resume_from.parent / "best.pt"
        if source_best.is_file():
            shutil.copyfile(source_best, run_dir / "checkpoints" / "best.pt")
    return False


def train_and_evaluate(config: dict[str, Any] | None, config_name: str, run_dir: str | Path,
                       resume_from: str | Path | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Train the reference model, writing the run directory; return a summary dict.

    ``resume_from``: a checkpoint (``.pt``). ``config`` may then be None (the checkpoint's config
    is used) or must equal it except for :data:`RESUME_OVERRIDABLE` keys. When the checkpoint lies
    in ``run_dir/checkpoints`` the run continues in place (``training.log`` truncated to the
    checkpoint's epoch); otherwise ``run_dir`` becomes a new run starting from the checkpoint.

    Summary keys: run_dir, config_name, device, epochs_completed, best_epoch, best_val_loss,
    stopped_early, val and test ({loss, mse, ssim, psnr} of the best model, means over images).
    """
    run_dir = Path(run_dir)
    checkpoint = None
    if resume_from is not None:
        resume_from = Path(resume_from)
        checkpoint = load_checkpoint(resume_from)
        ckpt_config = config_from_dict(checkpoint["config"], f"checkpoint {resume_from}")
        if config is None:
            config = ckpt_config
        changed = [f"{s}.{k}" for s, k in _changed_keys(ckpt_config, config)
                   if (s, k) not in RESUME_OVERRIDABLE]
        if changed:
            raise SarJaxError(f"checkpoint {resume_from}: config differs from the checkpoint's in "
                              f"{', '.join(changed)}; a resumed run keeps the checkpoint's config")
    if config is None:
        raise SarJaxError("train_and_evaluate: no config and no checkpoint to take one from")
    _check_settings(config)
    if (not _continues_in_place(run_dir, resume_from) and (run_dir / "config.json").exists()
            and not overwrite):  # fail before loading data
        prepare_run_dir(run_dir, config, resume=False)  # raises "already holds a run"
    model_cfg, train_cfg, log_cfg = config["model"], config["train"], config["logging"]

    datasets = build_datasets(config)
    loaders = make_loaders(datasets, config)
    if checkpoint is not None and checkpoint["preprocessing_params"] != datasets.preprocessing_params:
        warnings.warn(f"checkpoint {resume_from}: the data's preprocessing parameters "
                      f"{datasets.preprocessing_params} differ from the checkpoint's "
                      f"{checkpoint['preprocessing_params']}", stacklevel=2)
    continued = _open_run_dir(run_dir, config, checkpoint, resume_from, overwrite)

    device = select_device()
    torch.manual_seed(train_cfg["seed"])
    model = SARAutoencoder(model_cfg).to(device)
    loss_fn = CombinedLoss.from_config(config).to(device)
    optimizer = make_optimizer(model, train_cfg)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=train_cfg["lr_factor"], patience=train_cfg["lr_patience"])
    stopper = EarlyStopping(train_cfg["early_stopping_patience"])
    start_epoch, best_epoch = 0, 0
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SarJaxError(f"checkpoint {resume_from}: does not match the model ({first})") from None
        stopper.best = float(checkpoint["early_stopping"]["best"])
        stopper.bad_epochs = int(checkpoint["early_stopping"]["bad_epochs"])
        start_epoch = int(checkpoint["epoch"])
        best_epoch = int(checkpoint.get("best_epoch", 0))
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    samples = datasets.patches("val", log_cfg["num_samples"])
    n_train = len(loaders["train"]) * train_cfg["batch_size"]
    epochs = train_cfg["epochs"]
    stopped_early = stopper.should_stop
    last_epoch = start_epoch
    if stopped_early:
        print(f"early stopping already triggered at epoch {start_epoch} "
              f"({stopper.bad_epochs} epochs without improvement); not training further")
    elif start_epoch >= epochs:
        print(f"checkpoint epoch {start_epoch} >= train.epochs = {epochs}; nothing to train "
              "(raise train.epochs)")

    writer = tb.open_writer(run_dir, purge_step=start_epoch + 1 if continued else None)
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            if stopped_early:
                break
            t_epoch = time.perf_counter()
            lr = float(optimizer.param_groups[0]["lr"])
            train_metrics = _train_epoch(model, loss_fn, optimizer, loaders["train"], epoch, epochs,
                                         train_cfg["max_grad_norm"], device, log_cfg["progress"])
            train_seconds = train_metrics.pop("seconds")
            val_metrics = evaluate(model, loaders["val"], config, device)
            scheduler.step(val_metrics["loss"])
            improved = stopper.update(val_metrics["loss"])
            if improved:
                best_epoch = epoch
            epoch_seconds = time.perf_counter() - t_epoch
            record = {"epoch": epoch,
                      **{f"train_{k}": train_metrics[k] for k in METRICS},
                      **{f"val_{k}": val_metrics[k] for k in METRICS},
                      "lr": lr, "epoch_seconds": epoch_seconds,
                      "train_images_per_second": n_train / max(train_seconds, 1e-9),
                      "best": improved}
            append_log(run_dir, record)
            _log_tensorboard(writer, model, record, samples, epoch, log_cfg, device)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch,
                     "best_val_loss": stopper.best, "best_epoch": best_epoch,
                     "early_stopping": {"best": stopper.best, "bad_epochs": stopper.bad_epochs},
                     "config": config, "config_name": config_name,
                     "preprocessing_params": datasets.preprocessing_params, "versions": versions()}
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", state)
            save_checkpoint(ckpt_dir / "last.pt", state)
            last_epoch = epoch
            if log_cfg["progress"]:  # logging.progress=false: quiet, as the JAX trainer
                print(f"epoch {epoch}/{epochs}: train loss {record['train_loss']:.4f} | val loss "
                      f"{val_metrics['loss']:.4f} psnr {val_metrics['psnr']:.2f} ssim {val_metrics['ssim']:.4f}"
                      f" | lr {lr:.3g} | {epoch_seconds:.1f}s{' *' if improved else ''}", flush=True)
            if stopper.should_stop:
                stopped_early = True
                print(f"early stopping: no improvement for {stopper.bad_epochs} epochs")
    finally:
        writer.close()

    best_path = ckpt_dir / "best.pt"
    if best_path.is_file():
        model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
    else:
        warnings.warn(f"{best_path} missing (no epoch improved); reporting the last model", stacklevel=2)
    val_best = evaluate(model, loaders["val"], config, device)
    test_best = evaluate(model, loaders["test"], config, device)
    save_reconstructions_png(samples, reconstruct(model, samples, device), run_dir / "reconstructions.png",
                             title=f"{config_name}: best epoch {best_epoch} (PyTorch reference)")
    print(f"run directory: {run_dir}")
    print(f"best epoch {best_epoch}: val PSNR {val_best['psnr']:.2f} dB, val SSIM {val_best['ssim']:.4f}"
          f" | test PSNR {test_best['psnr']:.2f} dB, test SSIM {test_best['ssim']:.4f}")
    return {"run_dir": str(run_dir), "config_name": config_name, "device": str(device),
            "epochs_completed": last_epoch, "best_epoch": best_epoch, "best_val_loss": stopper.best,
            "stopped_early": stopped_early, "val": val_best, "test": test_best}


def make_optimizer(model: torch.nn.Module, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The original design's optimizer: Adam at ``train.lr``."""
    return torch.optim.Adam(model.parameters(), lr=train_cfg["lr"])


def train_step(model: torch.nn.Module, loss_fn: CombinedLoss, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, max_grad_norm: float) -> dict[str, torch.Tensor]:
    """One optimisation step on the NCHW batch ``x``: forward, combined loss, backward,
    ``clip_grad_norm_``, Adam. Returns the batch metrics (detached 0-d tensors)."""
    x_hat, _ = model(x)
    loss, metrics = loss_fn(x_hat, x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return metrics


def _train_epoch(model: torch.nn.Module, loss_fn: CombinedLoss, optimizer: torch.optim.Optimizer,
                 loader: PatchLoader, epoch: int, epochs: int, max_grad_norm: float,
                 device: torch.device, progress: bool) -> dict[str, float]:
    """One pass over the training batches; means over steps of the batch metrics, plus the
    training time in ``seconds``."""
    model.train()
    sums = {k: torch.zeros((), dtype=torch.float64, device=device) for k in METRICS}
    steps = len(loader)
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for step, batch in enumerate(loader.epoch(epoch), 1):
            metrics = train_step(model, loss_fn, optimizer, to_nchw(batch, device), max_grad_norm)
            for k in METRICS:
                sums[k] += metrics[k].double()
            bar.update(1)
            if not bar.disable and (step % POSTFIX_EVERY == 0 or step == steps):
                bar.set_postfix(loss=f"{float(sums['loss']) / step:.4f}",
                                psnr=f"{float(sums['psnr']) / step:.2f}",
                                ssim=f"{float(sums['ssim']) / step:.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    out = {k: float(v) / max(steps, 1) for k, v in sums.items()}
    out["seconds"] = seconds
    return out


def _log_tensorboard(writer: Any, model: torch.nn.Module, record: dict[str, Any],
                     samples: np.ndarray, epoch: int, log_cfg: dict[str, Any], device: torch.device) -> None:
    tb.log_epoch(writer, record, epoch)
    if device.type == "cuda":
        tb.log_memory(writer, {"max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}, epoch)
    if epoch % log_cfg["image_every"] == 0 and len(samples):
        tb.log_reconstructions(writer, samples, reconstruct(model, samples, device), epoch)
    if epoch % log_cfg["histogram_every"] == 0:
        params = list(model.named_parameters())
        tb.log_histograms(writer, "weights", [(n, p.detach().cpu().numpy()) for n, p in params], epoch)
        tb.log_histograms(writer, "grads", [(n, p.grad.detach().cpu().numpy()) for n, p in params
                                            if p.grad is not None], epoch)
    writer.flush()
