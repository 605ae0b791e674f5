"""Parity of the learned codecs (sar_jax.parity.codec) at tiny shapes: 64x64 images, N = M = 8."""

from __future__ import annotations

import pytest

from sar_jax.parity.codec import check_codec_forward, check_codec_lockstep, codec_lockstep, torch_codec

KINDS = ["factorized", "hyperprior"]


@pytest.mark.parametrize("kind", KINDS)
def test_codec_forward_rows_pass_and_cover_every_output_and_parameter(kind, check_rows):
    rows = check_codec_forward(kind, size=64, batch=2, N=8, M=8, seed=0)
    check_rows(rows)
    quantities = [r["quantity"] for r in rows]
    keys = ["y", "z"] if kind == "hyperprior" else ["y"]
    for mode in ("eval", "train"):
        assert f"{mode} x_hat max|diff|" in quantities
        assert all(f"{mode} likelihoods {k} max|diff|" in quantities for k in keys)
        assert sum(q.startswith(f"{mode} bpp relative diff") for q in quantities) == 1
    n_params = len(list(torch_codec(kind).parameters()))
    assert sum(q.startswith("train gradient ") for q in quantities) == n_params
    assert any(q.startswith("aux loss relative diff") for q in quantities)
    assert all(r["tolerance"] in ("<= 1e-05", "<= 0.0001") for r in rows)


def test_the_fixture_spreads_the_latents_over_several_bins():
    import torch

    model = torch_codec("hyperprior").eval()
    with torch.no_grad():
        y = model.g_a(torch.rand(2, 1, 64, 64))
        z_hat = torch.round(model.h_a(torch.abs(y)) - model.entropy_bottleneck.medians.reshape(1, -1, 1, 1))
    assert len(torch.unique(torch.round(y))) >= 5 and len(torch.unique(z_hat)) >= 3
    assert float(model.entropy_bottleneck.medians.detach().abs().max()) > 0.1


def test_codec_lockstep_losses_agree_and_training_moves_them(check_rows):
    """The hyperprior (both entropy models, both optimizers); the factorized one's parts are all in it."""
    res = codec_lockstep("hyperprior", steps=4, seed=1)
    rows = check_codec_lockstep(result=res)
    check_rows(rows)
    assert len(res["jax_loss"]) == len(res["torch_loss"]) == 4
    assert res["torch_loss"][-1] < res["torch_loss"][0] and res["jax_loss"][-1] < res["jax_loss"][0]
    assert res["param_rel"] < 1e-3
