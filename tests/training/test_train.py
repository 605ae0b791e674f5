"""The JAX trainer: steps, plateau per epoch, early stopping, exact resume, every artifact."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sar_jax.core.errors import SarJaxError
from sar_jax.core.rundir import LOG_KEYS, read_log
from sar_jax.nn.models import SARAutoencoder
from sar_jax.training import checkpointing
from sar_jax.training import loop as train
from sar_jax.training.state import compile_steps, create_train_state


def test_train_steps_lower_the_loss_on_a_fixed_batch(tiny_config):
    model = SARAutoencoder.from_config(tiny_config["model"])
    steps = compile_steps(model, tiny_config)
    state = create_train_state(model, tiny_config)
    batch = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 1))
    first = None
    for _ in range(15):
        state, metrics = steps["train_step"](state, batch)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < first - 0.01
    assert int(state.step) == 15
    # the plateau scale is only touched once per epoch, never by train_step
    assert float(state.plateau_state.scale) == 1.0 and int(state.plateau_state.count) == 0


def _scripted_evaluate(losses):
    it = iter(losses)

    def evaluate(eval_step, state, loader, mesh):
        value = next(it)
        return {"loss": value, "mse": value, "ssim": 0.5, "psnr": 10.0}

    return evaluate


@pytest.mark.slow
def test_plateau_scales_lr_per_epoch_and_early_stopping(tmp_path, tiny_args, monkeypatch):
    # lr_patience 1 (torch semantics: reduce on the 2nd non-improving epoch), early stop after 4.
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.99, 0.98, 0.97, 0.96]
    monkeypatch.setattr(train, "evaluate", _scripted_evaluate(losses))
    run = tmp_path / "run"
    train.main(tiny_args + ["--out", str(run), "--set", "train.epochs=9", "--set", "train.lr_patience=1",
                            "--set", "train.early_stopping_patience=4", "--set", "logging.histogram_every=50"])
    records = read_log(run)
    lrs = [r["lr"] / 0.003 for r in records]
    # epochs 3 and 4 do not improve on 0.9 -> reduce after epoch 4; 5, 6 -> after 6; stop after 6.
    assert lrs == pytest.approx([1, 1, 1, 1, 0.5, 0.5])
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["best"] for r in records] == [True, True, False, False, False, False]


@pytest.mark.slow
def test_tiny_run_writes_every_artifact(tmp_path, tiny_args, capsys):
    run = tmp_path / "run"
    assert train.main(tiny_args + ["--out", str(run), "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out and "val PSNR" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["base_channels"] == 4 and set(config) == {"model", "loss", "train", "data", "logging"}
    records = read_log(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert set(LOG_KEYS) <= set(r)
        assert all(np.isfinite(r[k]) for k in LOG_KEYS)
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/psnr", "val/loss", "val/ssim", "lr", "epoch_seconds",
                "train_images_per_second"):
        assert tag in tags["scalars"], tag
        assert len(acc.Scalars(tag)) == 3
    assert tags["images"] == ["reconstructions"]
    assert any(t.startswith("weights/encoder/block0") for t in tags["histograms"])
    assert any(t.startswith("grads/decoder/final") for t in tags["histograms"])
    # checkpoints are keyed by global step: the latest two epochs and the best are kept
    per_epoch = checkpointing.read_metadata(run, "latest")["step"] // 3
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    best_epoch = min(records, key=lambda r: r["val_loss"])["epoch"]
    assert steps == sorted({2 * per_epoch, 3 * per_epoch, best_epoch * per_epoch})
    meta = checkpointing.read_metadata(run, "best")
    assert meta["epoch"] == best_epoch and meta["config"] == config
    assert set(meta["preprocessing_params"]) == {"mode", "vmin", "vmax", "floor", "percentiles", "log_bias_db",
                                                 "log_bias_db_by_units", "clipped_fraction"}
    assert meta["versions"]["jax"] == jax.__version__
    png = (run / "reconstructions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _params(run):
    config = json.loads((run / "config.json").read_text())
    model = SARAutoencoder.from_config(config["model"])
    template = create_train_state(model, config)
    state, _ = checkpointing.restore(run, template, "latest")
    return state


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, tiny_args):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main(tiny_args + ["--out", str(straight), "--set", "train.epochs=4"])
    train.main(tiny_args + ["--out", str(split), "--set", "train.epochs=2"])
    train.main(["--resume", str(split), "--set", "train.epochs=4"])
    a, b = _params(straight), _params(split)
    assert int(b.epoch) == 4 and int(b.step) == int(a.step)
    trees = [(s.params, s.batch_stats, s.opt_state) for s in (a, b)]
    diffs = jax.tree.leaves(jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), *trees))
    assert max(diffs) <= 1e-6
    la, lb = read_log(straight), read_log(split)
    assert [r["epoch"] for r in lb] == [1, 2, 3, 4]
    assert [r["val_loss"] for r in la] == pytest.approx([r["val_loss"] for r in lb], rel=1e-6)


@pytest.mark.slow
def test_out_dir_holding_a_run_is_refused(tmp_path, tiny_args):
    run = tmp_path / "run"
    (run).mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(SarJaxError, match="already holds a run"):
        train.main(tiny_args + ["--out", str(run)])
