"""Check 3: gradients of the combined loss, per parameter, train mode."""

from __future__ import annotations

from sar_jax.parity.fixtures import current_torch_device, model_config, nchw, tiny_config, tiny_patches, torch_model
from sar_jax.parity.rows import TOL, Row, rel_err, row


def check_gradients(base: int = 8, latent: int = 4, size: int = 32, batch: int = 2, seed: int = 0) -> list[Row]:
    """Relative error of the combined loss's gradient, per parameter, train mode."""
    import jax

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.parity.convert import flax_to_torch, torch_to_flax
    from sar_jax.training.state import Objective, loss_and_updates
    from sar_torch_ref.losses import CombinedLoss

    config = tiny_config()
    cfg = model_config(base, latent)
    tmodel = torch_model(cfg, seed).train()
    variables = torch_to_flax(tmodel.state_dict())
    x = tiny_patches(size, seed)[:batch]
    jmodel = SARAutoencoder.from_config(cfg)
    grad_fn = jax.jit(jax.value_and_grad(loss_and_updates, has_aux=True), static_argnums=(4, 5))
    (loss_j, _), grads = grad_fn(variables["params"], variables["batch_stats"], x, jax.random.PRNGKey(0), jmodel,
                                 Objective.from_config(config))
    x_hat, _ = tmodel(nchw(x))
    loss_t, _ = CombinedLoss.from_config(config).to(current_torch_device())(x_hat, nchw(x))
    loss_t.backward()
    jg = flax_to_torch({"params": grads, "batch_stats": variables["batch_stats"]})
    name = f"3 gradients (base {base}, {batch}x{size}x{size}, train)"
    rows = [row(name, "loss |diff|", abs(float(loss_j) - float(loss_t.detach())), TOL["loss"])]
    rels = {n: rel_err(jg[n].numpy(), p.grad.cpu().numpy()) for n, p in tmodel.named_parameters()}
    rows.append(row(name, f"max over {len(rels)} parameters of ||g_jax - g_torch|| / ||g_torch||",
                    max(rels.values()), TOL["grad_rel"]))
    rows += [row(name, f"{n}: relative error", v, TOL["grad_rel"]) for n, v in rels.items()]
    return rows
