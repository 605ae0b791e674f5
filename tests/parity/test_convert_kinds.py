"""sar_jax.convert for the learned codecs and the U-Net: the table picked by the checkpoint's model.kind,
torch -> run directory -> torch bit-exact, the step carried, the same outputs in both frameworks, and
weights of another kind refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sar_jax.core.config import load_config
from sar_jax.parity.checkpoints import main
from sar_torch_ref.training.checkpoint import load_checkpoint, save_checkpoint, versions

SMALL = ["model.N=8", "model.M=8", "model.unet_features=4", "model.unet_depth=2"]
KINDS = {"factorized": ['model.kind="factorized"', 'loss.kind="rate_distortion"'],
         "hyperprior": ['model.kind="hyperprior"', 'loss.kind="rate_distortion"'],
         "unet": ['model.kind="unet"']}
PREPROCESSING = {"mode": "intensity", "vmin": -25.0, "vmax": 5.0}


def _config(kind):
    return load_config("tiny", SMALL + KINDS[kind])[0]


def _torch_checkpoint(path, kind, config=None, steps=3):
    """A reference-format checkpoint of a ``kind`` model after ``steps`` Adam steps (no ``step`` field:
    the reference's own trainer does not write one), and the model."""
    from sar_torch_ref.models import FactorizedPrior, ScaleHyperprior
    from sar_torch_ref.models.unet import UNet

    config = config or _config(kind)
    torch.manual_seed(5)
    model = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior, "unet": UNet}[kind](_config(kind)["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    for _ in range(steps):  # every parameter a little off its initial value
        opt.zero_grad()
        sum((p - 0.1).square().sum() for p in model.parameters()).backward()
        opt.step()
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "epoch": 2, "best_val_loss": 0.5, "best_epoch": 2,
                           "early_stopping": {"best": 0.5, "bad_epochs": 0}, "config": config,
                           "config_name": "tiny", "preprocessing_params": PREPROCESSING, "versions": versions()})
    return model


@pytest.mark.parametrize("kind", ["factorized", "hyperprior", "unet"])
def test_round_trip_through_a_run_directory(kind, tmp_path):
    import jax.numpy as jnp

    from sar_jax.inference.run import load_run

    model = _torch_checkpoint(tmp_path / "src.pt", kind)
    original = load_checkpoint(tmp_path / "src.pt")
    assert main(["--from-torch", str(tmp_path / "src.pt"), "--out", str(tmp_path / "run")]) == 0
    run = load_run(tmp_path / "run", "latest")
    assert run.config == original["config"] and run.config["model"]["kind"] == kind
    assert run.preprocessing_params == PREPROCESSING and run.epoch == 2
    assert int(run.state.step) == 3 and int(run.state.epoch) == 2  # the step from the Adam state
    # the same network: outputs (and the codecs' likelihoods) agree on a 64 x 64 image
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 1)).astype(np.float32)
    model.eval()
    with torch.no_grad():
        t_out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    j_out = run.model.apply(run.variables, jnp.asarray(x), train=False)
    np.testing.assert_allclose(np.asarray(j_out[0]), t_out[0].numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
    assert sorted(j_out[1]) == sorted(t_out[1])
    for name, lik in t_out[1].items():
        np.testing.assert_allclose(np.asarray(j_out[1][name]), lik.numpy().transpose(0, 2, 3, 1), rtol=1e-4,
                                   atol=1e-6)
    # back to torch: every tensor bit-exact, in the reference's key order, the step carried in the file
    assert main(["--to-torch", str(tmp_path / "run"), "--out", str(tmp_path / "back.pt"), "--which", "latest"]) == 0
    back = load_checkpoint(tmp_path / "back.pt")
    assert list(back["model"]) == list(original["model"])
    for key, tensor in original["model"].items():
        assert back["model"][key].dtype == tensor.dtype and torch.equal(back["model"][key], tensor), key
    assert back["step"] == 3 and back["epoch"] == 2 and back["best_val_loss"] == 0.5
    assert back["config"] == original["config"] and back["preprocessing_params"] == PREPROCESSING
    reloaded = type(model)(back["config"]["model"])
    reloaded.load_state_dict(back["model"])  # strict
    opt = torch.optim.Adam(reloaded.parameters(), lr=1.0)
    opt.load_state_dict(back["optimizer"])
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3, rel=1e-6)  # the source's LR (1/3 of train.lr) carried
    # and again: the step now comes from the file's own field
    assert main(["--from-torch", str(tmp_path / "back.pt"), "--out", str(tmp_path / "run2")]) == 0
    assert int(load_run(tmp_path / "run2", "latest").state.step) == 3


def test_weights_of_another_kind_are_one_line(tmp_path, convert_error):
    # a checkpoint whose config says factorized holding a U-Net's weights
    _torch_checkpoint(tmp_path / "unet_as_codec.pt", "unet", config=_config("factorized"), steps=0)
    line = convert_error(["--from-torch", str(tmp_path / "unet_as_codec.pt"), "--out", str(tmp_path / "r")])
    assert "does not match the factorized codec" in line and "missing" in line and "unexpected" in line
    assert not (tmp_path / "r").exists()
    # a hyperprior's weights under a factorized config: h_a / h_s unexpected, the bottleneck mis-shaped
    config = _config("factorized")
    _torch_checkpoint(tmp_path / "hyper_as_fact.pt", "hyperprior", config=config, steps=0)
    line = convert_error(["--from-torch", str(tmp_path / "hyper_as_fact.pt"), "--out", str(tmp_path / "r")])
    assert "unexpected" in line and "h_a.conv0.weight" in line
    # a U-Net of another depth than its config's
    config = load_config("tiny", SMALL + KINDS["unet"] + ["model.unet_depth=3"])[0]
    _torch_checkpoint(tmp_path / "deep.pt", "unet", config=config, steps=0)
    line = convert_error(["--from-torch", str(tmp_path / "deep.pt"), "--out", str(tmp_path / "r")])
    assert "does not match the U-Net (depth 3, features 4, in_channels 1)" in line
    assert not (tmp_path / "r").exists()
