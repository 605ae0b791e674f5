"""Check 4: one clip + Adam update (clipping active, inactive, on some steps), optax vs torch."""

from __future__ import annotations

import copy

from sar_jax.parity.fixtures import model_config, torch_model
from sar_jax.parity.rows import TOL, Row, max_abs, row


def check_optimizer(steps: int = 3, lr: float = 1e-3, seed: int = 0) -> list[Row]:
    """clip_by_global_norm + Adam (optax) vs clip_grad_norm_ + Adam (torch) from the same
    parameters and the same gradient sequence (norms vary per step); params compared after
    every step."""
    import jax
    import optax
    import torch

    from sar_jax.parity.convert import flax_to_torch, torch_to_flax
    from sar_jax.training.state import make_optimizer

    cfg = model_config(8, 4)
    base_model = torch_model(cfg, seed)
    sd = base_model.state_dict()
    names = [n for n, _ in base_model.named_parameters()]
    gen = torch.Generator().manual_seed(seed + 7)
    grad_seq = []
    for k in range(steps):
        scale = (1.0, 10.0, 0.1)[k % 3]
        g = {n: scale * 0.05 * torch.randn(sd[n].shape, generator=gen) for n in names}
        grad_seq.append(g)
    norms = [float(torch.sqrt(sum((g[n] ** 2).sum() for n in names))) for g in grad_seq]
    rows = []
    for label, max_norm in (("clipping active", 1e-3), ("clipping inactive", 1e6), ("clipping some steps", 1.0)):
        tmodel = copy.deepcopy(base_model)
        params = list(tmodel.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        tx = make_optimizer({"lr": lr, "max_grad_norm": max_norm})
        jparams = torch_to_flax(sd)["params"]
        opt_state = tx.init(jparams)
        update = jax.jit(tx.update)
        worst = 0.0
        for g in grad_seq:
            for n, p in tmodel.named_parameters():
                p.grad = g[n].clone()
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            opt.step()
            jgrads = torch_to_flax({**sd, **g})["params"]
            upd, opt_state = update(jgrads, opt_state, jparams)
            jparams = optax.apply_updates(jparams, upd)
            back = flax_to_torch({"params": jparams, "batch_stats": torch_to_flax(sd)["batch_stats"]})
            worst = max(worst, max(max_abs(back[n].numpy(), p.detach().numpy())
                                   for n, p in tmodel.named_parameters()))
        clipped = sum(nm > max_norm for nm in norms)
        rows.append(row(f"4 optimizer (clip + Adam, {steps} steps)",
                        f"{label} (max_grad_norm {max_norm:g}, {clipped}/{steps} steps clipped): "
                        "params max|diff|", worst, TOL["adam"]))
    return rows
