"""Check 6: lockstep training of both models from the same weights on the same batches, each with
its framework's real train step, and the plot of both loss curves."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.files import atomic_path
from sar_jax.metrics.ssim import gaussian_window
from sar_jax.parity.fixtures import nchw, tiny_config, torch_model
from sar_jax.parity.rows import TOL, Row, rel_err, row


def _lockstep_batches(config: dict[str, Any], steps: int, seed: int) -> list[np.ndarray]:
    from sar_jax.data.pipeline import build_datasets, make_loaders

    data_config = tiny_config(seed=seed, batch_size=config["train"]["batch_size"])
    loader = make_loaders(build_datasets(data_config), data_config)["train"]
    batches: list[np.ndarray] = []
    epoch = 1
    while len(batches) < steps:
        batches += list(loader.epoch(epoch))
        epoch += 1
    return batches[:steps]


def torch_train(tmodel: Any, config: dict[str, Any], batches: Sequence[np.ndarray],
                window: np.ndarray | None = None) -> list[float]:
    """``sar_torch_ref``'s own training step (:func:`sar_torch_ref.training.trainer.train_step`:
    CombinedLoss, clip_grad_norm_, Adam) on each batch; ``window`` replaces pytorch_msssim's
    Gaussian window. Returns the per-step losses."""
    import torch

    from sar_torch_ref.losses import CombinedLoss
    from sar_torch_ref.training.trainer import make_optimizer, train_step

    loss_fn = CombinedLoss.from_config(config)
    if window is not None:
        win = torch.from_numpy(np.array(window, np.float32)).reshape(1, 1, 1, -1)
        loss_fn.ssim.win = win.repeat(config["model"]["in_channels"], 1, 1, 1)
    optimizer = make_optimizer(tmodel, config["train"])
    tmodel.train()
    return [float(train_step(tmodel, loss_fn, optimizer, nchw(batch), config["train"]["max_grad_norm"])["loss"])
            for batch in batches]


def _param_rel(a: dict[str, Any], b: dict[str, Any], names: Sequence[str]) -> float:
    diff = math.sqrt(sum(float(((a[n].double() - b[n].double()) ** 2).sum()) for n in names))
    return diff / math.sqrt(sum(float((b[n].double() ** 2).sum()) for n in names))


def lockstep(steps: int = 50, seed: int = 0, lr: float = 1e-4, batch_size: int = 4,
             randomize_bn: bool = True, reference_floor: bool = True) -> dict[str, Any]:
    """Train both models from the same converted weights on the same batches with each
    framework's real step (``compile_steps(...)["train_step"]`` vs Adam + clip_grad_norm_ +
    CombinedLoss as in ``sar_torch_ref``'s trainer). Returns both loss curves and the final
    parameter differences.

    With ``reference_floor``, the reference is also trained a second time with only its SSIM
    window swapped for the one ``sar_jax``'s SSIM uses (dm-pix's Gaussian,
    :func:`sar_jax.metrics.ssim.gaussian_window`; <= 2 ulp per tap away): how far float32
    rounding alone moves the reference's own trajectory (training is chaotic; see the report).
    """
    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.parity.convert import flax_to_torch, torch_to_flax
    from sar_jax.training.state import compile_steps, create_train_state

    config = tiny_config(batch_size=batch_size, lr=lr)
    tmodel = torch_model(config["model"], seed, randomize_bn=randomize_bn)
    initial = copy.deepcopy(tmodel)
    variables = torch_to_flax(tmodel.state_dict())
    jmodel = SARAutoencoder.from_config(config["model"])
    jsteps = compile_steps(jmodel, config)
    state = create_train_state(jmodel, config, variables)
    batches = _lockstep_batches(config, steps, seed)
    j_losses = []
    for batch in batches:
        state, metrics = jsteps["train_step"](state, batch)
        j_losses.append(float(metrics["loss"]))
    t_losses = torch_train(tmodel, config, batches)
    final = flax_to_torch({"params": state.params, "batch_stats": state.batch_stats}, int(state.step))
    tsd = tmodel.state_dict()
    pnames = [n for n, _ in tmodel.named_parameters()]
    stats = [n for n in tsd if n.endswith(("running_mean", "running_var"))]
    out = {"jax_loss": j_losses, "torch_loss": t_losses, "param_rel": _param_rel(final, tsd, pnames),
           "per_param_rel": {n: rel_err(final[n].numpy(), tsd[n].numpy()) for n in pnames},
           "bn_stats_rel": _param_rel(final, tsd, stats),
           "num_batches_tracked_equal": all(int(final[n]) == int(tsd[n]) for n in tsd
                                            if n.endswith("num_batches_tracked")),
           "steps": steps, "lr": lr, "seed": seed, "batch_size": batch_size}
    if reference_floor:
        floor_model = copy.deepcopy(initial)
        window = gaussian_window(config["loss"]["ssim_window"])
        f_losses = torch_train(floor_model, config, batches, window=window)
        out["floor_loss"] = f_losses
        out["floor_param_rel"] = _param_rel(floor_model.state_dict(), tsd, pnames)
    return out


def _max_loss_rel(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def check_lockstep(steps: int = 50, seed: int = 0, lr: float = 1e-4, result: dict[str, Any] | None = None,
                   info_only: bool = False) -> list[Row]:
    """Rows of :func:`lockstep` (pass ``result`` to reuse a run); ``info_only`` reports without
    asserting (used for the chaotic lr 1e-3 run)."""
    res = result if result is not None else lockstep(steps, seed, lr)
    name = (f"6 lockstep training ({res['steps']} steps, base 8, latent 4, {res['batch_size']}x32x32, "
            f"lr {res['lr']:g}, seed {res['seed']})")
    op = "info" if info_only else "<="
    rows = [row(name, "per-step loss max rel diff", _max_loss_rel(res["jax_loss"], res["torch_loss"]),
                TOL["lockstep_loss_rel"], op=op),
            row(name, "final params ||diff|| / ||params||", res["param_rel"], TOL["lockstep_param_rel"], op=op),
            row(name, "final params: max over parameters of ||diff|| / ||param||",
                max(res["per_param_rel"].values()), op="info"),
            row(name, "final BN running stats ||diff|| / ||stats||", res["bn_stats_rel"], op="info")]
    if not info_only:
        rows.append(row(name, "num_batches_tracked == JAX step", 0 if res["num_batches_tracked_equal"] else 1, 0,
                        op="=="))
    if "floor_loss" in res:
        rows += [row(name, "reference vs itself with dm-pix's SSIM window: per-step loss max rel diff",
                     _max_loss_rel(res["floor_loss"], res["torch_loss"]), op="info"),
                 row(name, "reference vs itself with dm-pix's SSIM window: final params rel diff",
                     res["floor_param_rel"], op="info")]
    return rows


def plot_lockstep(result: dict[str, Any], path: str | Path) -> Path:
    """Both loss curves over the steps (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(result["jax_loss"]) + 1)
    j, t = np.asarray(result["jax_loss"]), np.asarray(result["torch_loss"])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(steps, t, "-", lw=2.5, color="tab:orange", label="PyTorch (sar_torch_ref)")
    ax.plot(steps, j, "--", lw=1.5, color="tab:blue", label="JAX (sar_jax)")
    ax.set_ylabel("combined loss")
    ax.set_title(f"Lockstep training, same weights and batches (lr {result.get('lr', 0):g})")
    ax.legend()
    ax2.semilogy(steps, np.maximum(np.abs(j - t) / np.abs(t), 1e-12), color="tab:gray")
    ax2.set_xlabel("step")
    ax2.set_ylabel("rel. diff")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
