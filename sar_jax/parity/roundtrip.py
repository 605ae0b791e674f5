"""Checks 7 and 8: checkpoints across frameworks. 7: a reference run's checkpoint torch -> JAX ->
torch is bit-exact; 8: a model trained by ``sar_jax`` and converted keeps its validation PSNR in
the reference."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from sar_jax.parity.rows import TOL, Row, row


def _quiet(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with its progress lines (stdout) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _tiny(*overrides: str) -> dict[str, Any]:
    from sar_jax.core.config import load_config

    return load_config("tiny", list(overrides))[0]


def check_checkpoint_roundtrip(workdir: str | Path, epochs: int = 1) -> list[Row]:
    """A tiny reference run's checkpoint (``configs/tiny.json``, ``epochs``) -> :func:`from_torch`
    (a run directory ``workdir/converted_run``) -> :func:`to_torch`: every tensor bit-exact, same
    key order, and the fields the reference resumes from."""
    import torch

    from sar_jax.parity.checkpoints import from_torch, to_torch
    from sar_torch_ref.training.trainer import train_and_evaluate

    workdir = Path(workdir)
    run = workdir / "torch_run"
    _quiet(train_and_evaluate, _tiny(f"train.epochs={epochs}"), "tiny", run)
    src = run / "checkpoints" / "last.pt"
    back = to_torch(from_torch(src, workdir / "converted_run"), workdir / "roundtrip.pt", which="latest")
    a, b = torch.load(src, weights_only=True), torch.load(back, weights_only=True)
    name = "7 checkpoint round trip (torch -> JAX -> torch)"
    unequal = [k for k in a["model"] if k not in b["model"] or not torch.equal(a["model"][k], b["model"][k])
               or a["model"][k].dtype != b["model"][k].dtype]
    fields = [k for k in ("epoch", "best_val_loss", "early_stopping", "config", "preprocessing_params")
              if a[k] != b[k]]
    lr_a = a["scheduler"]["_last_lr"]
    lr_b = b["scheduler"]["_last_lr"]
    return [row(name, f"state_dict tensors not bit-exact (of {len(a['model'])})", len(unequal), 0, op="=="),
            row(name, "state_dict key order differs", int(list(a["model"]) != list(b["model"])), 0, op="=="),
            row(name, "differing fields (epoch, best_val_loss, early_stopping, config, preprocessing)",
                len(fields), 0, op="=="),
            row(name, "scheduler LR |diff|", abs(lr_a[0] - lr_b[0]), 0, op="==")]


def trained_psnr(workdir: str | Path) -> dict[str, float]:
    """Train a tiny model (``configs/tiny.json``) with ``sar_jax``'s trainer, convert its best
    checkpoint with :func:`to_torch` and evaluate the validation split in ``sar_torch_ref`` (eval
    mode, the reference's per-image metrics); returns both validation PSNRs (and SSIMs, losses)."""
    import torch

    from sar_jax.core.config import config_from_dict
    from sar_jax.core.rundir import read_log
    from sar_jax.data.pipeline import build_datasets, make_loaders
    from sar_jax.parity.checkpoints import to_torch
    from sar_jax.training.loop import train_and_evaluate
    from sar_torch_ref.models import SARAutoencoder
    from sar_torch_ref.training.checkpoint import load_checkpoint
    from sar_torch_ref.training.trainer import evaluate

    workdir = Path(workdir)
    run = workdir / "jax_run"
    _quiet(train_and_evaluate, _tiny(), run)
    pt = to_torch(run, workdir / "jax_best.pt", which="best")
    ckpt = load_checkpoint(pt)
    config = config_from_dict(ckpt["config"], str(pt))
    model = SARAutoencoder(config["model"])
    model.load_state_dict(ckpt["model"])
    datasets = build_datasets(config)
    val = evaluate(model, make_loaders(datasets, config)["val"], config, torch.device("cpu"))
    best = min(read_log(run), key=lambda r: r["val_loss"])
    return {"jax_val_psnr": best["val_psnr"], "torch_val_psnr": val["psnr"], "jax_val_ssim": best["val_ssim"],
            "torch_val_ssim": val["ssim"], "jax_val_loss": best["val_loss"], "torch_val_loss": val["loss"],
            "best_epoch": best["epoch"], "checkpoint_epoch": ckpt["epoch"]}


def check_trained_psnr(workdir: str | Path) -> list[Row]:
    """Rows of :func:`trained_psnr`."""
    r = trained_psnr(workdir)
    name = "8 sar_jax training -> to_torch -> reference validation"
    return [row(name, f"val PSNR |diff| dB (jax {r['jax_val_psnr']:.4f}, torch {r['torch_val_psnr']:.4f})",
                abs(r["jax_val_psnr"] - r["torch_val_psnr"]), TOL["psnr_db"]),
            row(name, "val SSIM |diff|", abs(r["jax_val_ssim"] - r["torch_val_ssim"]), TOL["ssim"]),
            row(name, "val loss |diff|", abs(r["jax_val_loss"] - r["torch_val_loss"]), TOL["loss"]),
            row(name, "converted epoch == best epoch in training.log",
                int(r["best_epoch"] != r["checkpoint_epoch"]), 0, op="==")]
