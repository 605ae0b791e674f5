"""The trainer for every model.kind: codecs and U-Net through train_and_evaluate, the quantiles' own
optimizer and aux loss, the eval-mode validation rate, and the config's kind/loss pairing."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sar_jax.core.config import load_config
from sar_jax.core.errors import SarJaxError
from sar_jax.core.rundir import read_log

#: N = M = 8, U-Net width 4 and depth 2, one epoch, no image or histogram logging (no extra compiles).
SMALL = ["model.N=8", "model.M=8", "model.unet_features=4", "model.unet_depth=2", "train.epochs=1",
         "logging.image_every=50", "logging.histogram_every=50"]
KIND_OVERRIDES = {
    "factorized": ['model.kind="factorized"', 'loss.kind="rate_distortion"', "data.num_scenes=4"],
    "hyperprior": ['model.kind="hyperprior"', 'loss.kind="rate_distortion"', "data.patch_size=64",
                   "data.stride=64", "data.scene_size=128", "data.num_scenes=4"],
    "unet": ['model.kind="unet"', "data.num_scenes=4"],
}


def kind_config(kind: str, extra: list[str] | None = None) -> dict:
    """``configs/tiny.json`` for ``kind`` at the small widths."""
    return load_config("tiny", SMALL + KIND_OVERRIDES[kind] + (extra or []))[0]


def trained_run(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Path:
    """A run of ``kind`` trained once per session (shared with tests/inference/test_evaluate_kinds.py)."""
    from sar_jax.training.loop import train_and_evaluate

    run_dir = tmp_path_factory.getbasetemp() / "kind_runs" / kind
    done = run_dir / "summary.test.json"
    if not done.is_file():
        summary = train_and_evaluate(kind_config(kind), run_dir, overwrite=True)
        done.write_text(json.dumps(summary))
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["factorized", "hyperprior", "unet"])
def test_each_kind_trains_and_logs_its_rate(kind, tmp_path_factory):
    run_dir = trained_run(tmp_path_factory, kind)
    summary = json.loads((run_dir / "summary.test.json").read_text())
    (record,) = read_log(run_dir)
    assert summary["best_epoch"] == 1 and np.isfinite(summary["best_val_loss"])
    assert record["val_loss"] == pytest.approx(summary["best_val_loss"])
    if kind == "unet":
        assert "train_bpp" not in record and "val_bpp" not in record and "train_aux_loss" not in record
        assert record["val_psnr"] > 10  # a residual net starts near the identity
    else:
        assert record["train_bpp"] > 0 and record["val_bpp"] > 0 and record["train_aux_loss"] > 0
        # rate_distortion: loss = lmbda * MSE + bpp, MSE on the unclipped output >= the reported (clipped) one
        assert record["val_loss"] >= 100.0 * record["val_mse"] + record["val_bpp"] - 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_val_bpp_is_the_eval_mode_rounded_rate(kind, tmp_path_factory):
    from sar_jax.data.pipeline import build_datasets
    from sar_jax.inference.run import load_run

    run_dir = trained_run(tmp_path_factory, kind)
    run = load_run(run_dir)
    x = jnp.asarray(build_datasets(run.config).patches("val"))
    pixels = x.shape[1] * x.shape[2]

    def bpp(likelihoods):
        return np.mean(sum(np.sum(-np.log2(np.asarray(p, np.float64)), axis=(1, 2, 3))
                           for p in likelihoods.values()) / pixels)

    _, lik_eval = run.model.apply(run.variables, x, train=False)
    _, lik_train = run.model.apply(run.variables, x, train=True, rngs={"noise": jax.random.PRNGKey(3)})
    (record,) = read_log(run_dir)
    assert record["val_bpp"] == pytest.approx(bpp(lik_eval), rel=1e-5)
    assert abs(bpp(lik_train) - bpp(lik_eval)) > 1e-4 * bpp(lik_eval)  # the noisy rate is another number


@pytest.mark.slow
def test_quantiles_moved_by_aux_lr_in_training(tmp_path_factory):
    from sar_jax.inference.run import load_run

    run = load_run(trained_run(tmp_path_factory, "factorized"))
    steps = int(run.state.step)
    move = np.abs(np.asarray(run.variables["params"]["entropy_bottleneck"]["quantiles"])
                  - np.array([-10.0, 0.0, 10.0])).max()
    # Adam moves a parameter by at most lr (1 - b1) / sqrt(1 - b2) ~ 3.2 lr a step
    assert 0 < move <= 3.2 * run.config["train"]["aux_lr"] * steps


@pytest.fixture(scope="module")
def codec_grads():
    """A factorized model at init, and the gradients of its main loss (the rate-distortion loss alone)
    and of its aux loss."""
    import dataclasses

    from sar_jax.nn.registry import build_model, init_variables
    from sar_jax.training.state import Objective, loss_and_updates

    config = kind_config("factorized")
    model = build_model(config["model"])
    params = jax.jit(lambda key: init_variables(model, key))(jax.random.PRNGKey(0))["params"]
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 1))
    main_only = dataclasses.replace(Objective.from_config(config), codec=False)
    grad = jax.jit(jax.grad(loss_and_updates, has_aux=True), static_argnums=(4, 5))
    main = grad(params, {}, x, jax.random.PRNGKey(2), model, main_only)[0]
    aux = jax.jit(jax.grad(lambda p: model.apply({"params": p}, method="aux_loss")))(params)
    return config, params, main, aux


def test_main_loss_gradient_on_the_quantiles_is_exactly_zero(codec_grads):
    _, _, main, aux = codec_grads
    assert np.all(np.asarray(main["entropy_bottleneck"]["quantiles"]) == 0.0)
    assert np.abs(np.asarray(main["g_a"]["conv0"]["kernel"])).max() > 0
    assert np.abs(np.asarray(main["entropy_bottleneck"]["matrix0"])).max() > 0  # the density learns the rate
    # the aux loss reaches the quantiles and nothing else
    assert np.abs(np.asarray(aux["entropy_bottleneck"]["quantiles"])).max() > 1e-3
    nonzero = [jax.tree_util.keystr(path) for path, g in jax.tree_util.tree_flatten_with_path(aux)[0]
               if np.any(np.asarray(g) != 0)]
    assert nonzero == ["['entropy_bottleneck']['quantiles']"]


def test_quantiles_move_by_their_own_learning_rate(codec_grads):
    from sar_jax.training.state import make_optimizer

    config, params, main, aux = codec_grads
    grads = jax.tree.map(lambda a, b: a + b, main, aux)  # what loss_and_updates differentiates
    q0 = np.asarray(params["entropy_bottleneck"]["quantiles"])
    moves, kernels = {}, {}
    for aux_lr in (1e-9, 0.5):
        tx = make_optimizer(dict(config["train"], aux_lr=aux_lr), "factorized")
        p, opt_state = params, tx.init(params)
        for _ in range(3):
            updates, opt_state = tx.update(grads, opt_state, p)
            p = jax.tree.map(lambda a, u: a + u, p, updates)
        moves[aux_lr] = np.abs(np.asarray(p["entropy_bottleneck"]["quantiles"]) - q0).max()
        kernels[aux_lr] = np.asarray(p["g_a"]["conv0"]["kernel"])
    assert moves[1e-9] < 1e-7
    assert moves[0.5] > 1.0  # Adam: about aux_lr per step
    # the other parameters follow train.lr (clipped Adam), whatever aux_lr is
    np.testing.assert_array_equal(kernels[1e-9], kernels[0.5])
    assert np.abs(kernels[0.5] - np.asarray(params["g_a"]["conv0"]["kernel"])).max() > 1e-3


@pytest.mark.parametrize("overrides, message", [
    (['loss.kind="rate_distortion"'], 'loss.kind "rate_distortion" needs a model with an entropy model'),
    (['model.kind="factorized"'], 'model.kind "factorized" is trained with loss.kind "rate_distortion"'),
    (['model.kind="hyperprior"', 'loss.kind="log_gamma"'], 'model.kind "hyperprior" is trained with'),
])
def test_config_refuses_a_kind_with_the_wrong_loss(overrides, message):
    with pytest.raises(SarJaxError, match=message) as info:
        load_config("tiny", overrides)
    assert "\n" not in str(info.value)
