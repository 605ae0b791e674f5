"""The training state and the pure, jit-compiled steps (Flax ``examples/imagenet`` style)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from optax import contrib

from sar_jax.core.config import CODEC_KINDS
from sar_jax.nn.registry import init_variables
from sar_jax.ops.micro_batches import map_micro_batches
from sar_jax.training.losses import LossFn, make_loss


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


def make_optimizer(train_cfg: dict[str, Any], kind: str = "baseline") -> optax.GradientTransformation:
    """``clip_by_global_norm(max_grad_norm)`` then ``adam(lr)`` (torch's clip_grad_norm_ + Adam). For the
    learned codecs the entropy bottleneck's ``quantiles`` have their own ``adam(aux_lr)``, fed only by the
    auxiliary loss (CompressAI's two optimizers, as one optax transform)."""
    main = optax.chain(optax.clip_by_global_norm(train_cfg["max_grad_norm"]), optax.adam(train_cfg["lr"]))
    if kind not in CODEC_KINDS:
        return main
    return optax.multi_transform({"main": main, "aux": optax.adam(train_cfg["aux_lr"])}, _aux_labels)


def _aux_labels(params: Any) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "aux" if getattr(path[-1], "key", None) == "quantiles" else "main", params)


def make_plateau(train_cfg: dict[str, Any]) -> optax.GradientTransformationExtraArgs:
    """Reduce-on-plateau fed the validation loss once per epoch.

    torch's ReduceLROnPlateau reduces when ``num_bad_epochs > patience`` (the (patience+1)-th
    non-improving epoch), optax when its count reaches ``patience``: hence ``patience + 1``.
    Same threshold (rel 1e-4), cooldown 0.
    """
    return contrib.reduce_on_plateau(factor=train_cfg["lr_factor"], patience=train_cfg["lr_patience"] + 1,
                                     rtol=1e-4, atol=0.0, cooldown=0)


def create_train_state(model: nn.Module, config: dict[str, Any],
                       variables: dict[str, Any] | None = None) -> TrainState:
    """Initialise (or adopt ``variables``) and build fresh optimizer and plateau states."""
    train_cfg = config["train"]
    rng = jax.random.PRNGKey(train_cfg["seed"])
    init_rng, rng = jax.random.split(rng)
    if variables is None:
        variables = init_variables(model, init_rng)
    params = variables["params"]
    return TrainState(
        step=jnp.asarray(0, jnp.int32), epoch=jnp.asarray(0, jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=make_optimizer(train_cfg, config["model"]["kind"]).init(params),
        plateau_state=make_plateau(train_cfg).init(params),
        best_val_loss=jnp.asarray(jnp.inf, jnp.float32),
        epochs_without_improvement=jnp.asarray(0, jnp.int32), rng=rng)


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a step optimises: the loss functions of the config and whether the model has an entropy
    bottleneck (whose auxiliary loss is added). Hashable, so it is a static argument of the jitted steps."""

    batch_loss: LossFn
    per_image: LossFn
    codec: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], preprocessing: dict[str, Any] | None = None) -> Objective:
        batch_loss, per_image = make_loss(config, preprocessing)
        return cls(batch_loss, per_image, config["model"]["kind"] in CODEC_KINDS)


def split_batch(batch: jax.Array, in_channels: int) -> tuple[jax.Array, jax.Array]:
    """``(input, target)``: a batch of ``2 * in_channels`` channels carries its training target
    (``train.target`` clean or other_look) after the input; otherwise the target is the input."""
    if batch.shape[-1] == 2 * in_channels:
        return batch[..., :in_channels], batch[..., in_channels:]
    return batch, batch


def loss_and_updates(params: Any, batch_stats: Any, batch: jax.Array, rng: jax.Array, model: nn.Module,
                     objective: Objective) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """Train-mode forward: (loss, (metrics, new batch_stats)); the codecs draw their quantisation
    noise from ``rng`` and add the entropy bottleneck's auxiliary loss."""
    x, target = split_batch(batch, model.in_channels)
    variables = {"params": params, "batch_stats": batch_stats}
    (x_hat, aux), updates = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"noise": rng})
    loss, metrics = objective.batch_loss(x_hat, aux, target)
    if objective.codec:
        aux_loss = model.apply(variables, method="aux_loss")
        loss = loss + aux_loss
        metrics = dict(metrics, aux_loss=aux_loss)
    return loss, (metrics, updates.get("batch_stats", {}))


def train_step(state: TrainState, batch: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, objective: Objective) -> tuple[TrainState, dict]:
    """One optimisation step: grads, clip + Adam, the plateau's current scale, BN stat update."""
    grad_fn = jax.grad(loss_and_updates, has_aux=True)
    rng = jax.random.fold_in(state.rng, state.step)
    grads, (metrics, batch_stats) = grad_fn(state.params, state.batch_stats, batch, rng, model, objective)
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


def eval_step(state: TrainState, batch: jax.Array, *, model: nn.Module,
              objective: Objective) -> dict[str, jax.Array]:
    """Eval-mode per-image metrics (loss, mse, ssim, psnr, and bpp for the codecs: the rate of the
    rounded latents), each (N,); in micro-batches on CPU."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def metrics(b: jax.Array) -> dict[str, jax.Array]:
        x, target = split_batch(b, model.in_channels)
        x_hat, aux = model.apply(variables, x, train=False)
        return objective.per_image(x_hat, aux, target)

    return map_micro_batches(metrics, batch, batch.shape[1] * batch.shape[2])


def gradients(state: TrainState, batch: jax.Array, *, model: nn.Module, objective: Objective) -> Any:
    """Gradients of the loss on one batch (for histograms)."""
    return jax.grad(loss_and_updates, has_aux=True)(state.params, state.batch_stats, batch, state.rng, model,
                                                    objective)[0]


def predict(variables: dict[str, Any], batch: jax.Array, *, model: nn.Module) -> jax.Array:
    """Eval-mode reconstruction of the batch's inputs, clipped to [0, 1] (in micro-batches on CPU)."""
    x = split_batch(batch, model.in_channels)[0]
    return map_micro_batches(lambda b: jnp.clip(model.apply(variables, b, train=False)[0], 0.0, 1.0), x,
                             x.shape[1] * x.shape[2])


def plateau_update(plateau_state: Any, val_loss: jax.Array, *, plateau: Any) -> Any:
    """Feed one epoch's validation loss to the plateau; returns its new state."""
    return plateau.update(updates={}, state=plateau_state, value=val_loss)[1]


def compile_steps(model: nn.Module, config: dict[str, Any],
                  preprocessing: dict[str, Any] | None = None) -> dict[str, Callable]:
    """The jit-compiled steps for this model and config (train_step donates the state); ``preprocessing``
    (the fitted params) is needed by ``loss.kind: log_gamma``."""
    objective = Objective.from_config(config, preprocessing)
    tx = make_optimizer(config["train"], config["model"]["kind"])
    return {
        "train_step": jax.jit(functools.partial(train_step, model=model, tx=tx, objective=objective),
                              donate_argnums=(0,)),
        "eval_step": jax.jit(functools.partial(eval_step, model=model, objective=objective)),
        "gradients": jax.jit(functools.partial(gradients, model=model, objective=objective)),
        "predict": jax.jit(functools.partial(predict, model=model)),
        "plateau_update": jax.jit(functools.partial(plateau_update, plateau=make_plateau(config["train"]))),
    }
