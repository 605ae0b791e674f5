"""The training state and the pure, jit-compiled steps (Flax ``examples/imagenet`` style)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from optax import contrib

from sar_jax.nn.models import SARAutoencoder, init_variables
from sar_jax.ops.micro_batches import map_micro_batches
from sar_jax.training.losses import combined_loss, per_image_metrics


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs; a plain pytree that Orbax saves whole."""

    step: jax.Array
    epoch: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    plateau_state: Any
    best_val_loss: jax.Array
    epochs_without_improvement: jax.Array
    rng: jax.Array


def make_optimizer(train_cfg: dict[str, Any]) -> optax.GradientTransformation:
    """``clip_by_global_norm(max_grad_norm)`` then ``adam(lr)`` (torch's clip_grad_norm_ + Adam)."""
    return optax.chain(optax.clip_by_global_norm(train_cfg["max_grad_norm"]), optax.adam(train_cfg["lr"]))


def make_plateau(train_cfg: dict[str, Any]) -> optax.GradientTransformationExtraArgs:
    """Reduce-on-plateau fed the validation loss once per epoch.

    torch's ReduceLROnPlateau reduces when ``num_bad_epochs > patience`` (the (patience+1)-th
    non-improving epoch), optax when its count reaches ``patience``: hence ``patience + 1``.
    Same threshold (rel 1e-4), cooldown 0.
    """
    return contrib.reduce_on_plateau(factor=train_cfg["lr_factor"], patience=train_cfg["lr_patience"] + 1,
                                     rtol=1e-4, atol=0.0, cooldown=0)


def create_train_state(model: SARAutoencoder, config: dict[str, Any],
                       variables: dict[str, Any] | None = None) -> TrainState:
    """Initialise (or adopt ``variables``) and build fresh optimizer and plateau states."""
    train_cfg = config["train"]
    rng = jax.random.PRNGKey(train_cfg["seed"])
    init_rng, rng = jax.random.split(rng)
    if variables is None:
        variables = init_variables(model, init_rng, 32)
    params = variables["params"]
    return TrainState(
        step=jnp.asarray(0, jnp.int32), epoch=jnp.asarray(0, jnp.int32), params=params,
        batch_stats=variables["batch_stats"], opt_state=make_optimizer(train_cfg).init(params),
        plateau_state=make_plateau(train_cfg).init(params),
        best_val_loss=jnp.asarray(jnp.inf, jnp.float32),
        epochs_without_improvement=jnp.asarray(0, jnp.int32), rng=rng)


def _loss_weights(config: dict[str, Any]) -> dict[str, Any]:
    loss = config["loss"]
    return {"mse_weight": loss["mse_weight"], "ssim_weight": loss["ssim_weight"],
            "window_size": loss["ssim_window"]}


def loss_and_updates(params: Any, batch_stats: Any, batch: jax.Array, model: SARAutoencoder,
                     weights: dict[str, Any]) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """Train-mode forward: (loss, (metrics, new batch_stats))."""
    (x_hat, _), updates = model.apply({"params": params, "batch_stats": batch_stats}, batch,
                                      train=True, mutable=["batch_stats"])
    loss, metrics = combined_loss(x_hat, batch, **weights)
    return loss, (metrics, updates["batch_stats"])


def train_step(state: TrainState, batch: jax.Array, *, model: SARAutoencoder,
               tx: optax.GradientTransformation, weights: dict[str, Any]) -> tuple[TrainState, dict]:
    """One optimisation step: grads, clip + Adam, the plateau's current scale, BN stat update."""
    grad_fn = jax.grad(loss_and_updates, has_aux=True)
    grads, (metrics, batch_stats) = grad_fn(state.params, state.batch_stats, batch, model, weights)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: state.plateau_state.scale * u, updates)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
    # A non-finite loss or gradient leaves the state as it was (a NaN state is never kept or
    # saved); the host sees ``finite`` and stops the run, naming the step.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    return new_state, dict(metrics, grad_norm=grad_norm, finite=finite)


def eval_step(state: TrainState, batch: jax.Array, *, model: SARAutoencoder,
              weights: dict[str, Any]) -> dict[str, jax.Array]:
    """Eval-mode per-image metrics (loss, mse, ssim, psnr), each (N,); in micro-batches on CPU."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def metrics(x: jax.Array) -> dict[str, jax.Array]:
        return per_image_metrics(model.apply(variables, x, train=False)[0], x, **weights)

    return map_micro_batches(metrics, batch, batch.shape[1] * batch.shape[2])


def gradients(state: TrainState, batch: jax.Array, *, model: SARAutoencoder,
              weights: dict[str, Any]) -> Any:
    """Gradients of the loss on one batch (for histograms)."""
    return jax.grad(loss_and_updates, has_aux=True)(state.params, state.batch_stats, batch, model, weights)[0]


def predict(variables: dict[str, Any], batch: jax.Array, *, model: SARAutoencoder) -> jax.Array:
    """Eval-mode reconstruction (in micro-batches on CPU)."""
    return map_micro_batches(lambda x: model.apply(variables, x, train=False)[0], batch,
                             batch.shape[1] * batch.shape[2])


def plateau_update(plateau_state: Any, val_loss: jax.Array, *, plateau: Any) -> Any:
    """Feed one epoch's validation loss to the plateau; returns its new state."""
    return plateau.update(updates={}, state=plateau_state, value=val_loss)[1]


def compile_steps(model: SARAutoencoder, config: dict[str, Any]) -> dict[str, Callable]:
    """The jit-compiled steps for this model and config (train_step donates the state)."""
    weights = _loss_weights(config)
    tx = make_optimizer(config["train"])
    return {
        "train_step": jax.jit(functools.partial(train_step, model=model, tx=tx, weights=weights),
                              donate_argnums=(0,)),
        "eval_step": jax.jit(functools.partial(eval_step, model=model, weights=weights)),
        "gradients": jax.jit(functools.partial(gradients, model=model, weights=weights)),
        "predict": jax.jit(functools.partial(predict, model=model)),
        "plateau_update": jax.jit(functools.partial(plateau_update, plateau=make_plateau(config["train"]))),
    }
