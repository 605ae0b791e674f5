"""sar_jax.convert: the conversion table, strictness, bit-exact round trips, the CLI and its errors."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest
import torch

from sar_jax.core.config import default_config, load_config
from sar_jax.core.errors import SarJaxError
from sar_jax.nn.models import SARAutoencoder
from sar_jax.nn.registry import init_variables
from sar_jax.parity.checkpoints import main
from sar_jax.parity.convert import (
    TABLE,
    flax_to_torch,
    num_batches_tracked,
    torch_to_flax,
)
from sar_jax.parity.fixtures import model_config, torch_model
from sar_jax.training import checkpointing
from sar_jax.training.state import create_train_state
from sar_torch_ref.models import SARAutoencoder as TorchAutoencoder
from sar_torch_ref.training.checkpoint import load_checkpoint, save_checkpoint, versions


@pytest.fixture(scope="module")
def tiny_cfg():
    return dict(default_config()["model"], base_channels=4, latent_channels=3)


@pytest.fixture(scope="module")
def trained_sd(tiny_cfg):
    """A state_dict with random weights and BN stats and num_batches_tracked = 7."""
    model = torch_model(tiny_cfg, seed=3)
    sd = model.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
    return sd


@pytest.mark.parametrize("cfg", [model_config(64, 16), dict(model_config(4, 3), in_channels=2)])
def test_table_follows_the_reference_state_dict_order(cfg):
    assert [e.torch_key for e in TABLE] == list(TorchAutoencoder(cfg).state_dict())


@pytest.mark.parametrize("cfg", [model_config(64, 16), dict(model_config(4, 3), in_channels=2)])
def test_table_covers_exactly_the_flax_variables(cfg):
    """The contract with sar_jax.layers/models: the plain 5x5 layout at these paths, nothing else."""
    model = SARAutoencoder.from_config(cfg)
    variables = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))
    flat = {tuple(str(k.key) for k in path): v.shape
            for path, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
    converted = torch_to_flax(TorchAutoencoder(cfg).state_dict())
    conv_flat = {tuple(str(k.key) for k in path): v.shape
                 for path, v in jax.tree_util.tree_flatten_with_path(converted)[0]}
    assert conv_flat == flat


def test_layouts_are_the_documented_transposes(trained_sd):
    v = torch_to_flax(trained_sd)
    np.testing.assert_array_equal(v["params"]["encoder"]["block1"]["conv"]["kernel"],
                                  trained_sd["encoder.block1.conv.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(v["params"]["decoder"]["final"]["kernel"],
                                  trained_sd["decoder.final.weight"].numpy().transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(v["batch_stats"]["decoder"]["block2"]["bn"]["var"],
                                  trained_sd["decoder.block2.bn.running_var"].numpy())
    np.testing.assert_array_equal(v["params"]["encoder"]["block0"]["bn"]["scale"],
                                  trained_sd["encoder.block0.bn.weight"].numpy())


def test_round_trip_is_bit_exact_and_carries_num_batches_tracked(trained_sd):
    variables = torch_to_flax(trained_sd)
    assert num_batches_tracked(trained_sd) == 7
    back = flax_to_torch(variables, num_batches_tracked(trained_sd))
    assert list(back) == list(trained_sd)
    for k, t in trained_sd.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
    assert isinstance(back, dict) and type(back).__name__ == "OrderedDict"
    TorchAutoencoder(model_config(4, 3)).load_state_dict(back)  # strict load works


def test_torch_to_flax_reports_every_problem_at_once(trained_sd):
    bad = dict(trained_sd)
    del bad["encoder.block1.bn.bias"]
    del bad["decoder.final.bias"]
    bad["encoder.extra.weight"] = torch.zeros(3)
    bad["decoder.block0.deconv.weight"] = torch.zeros(3, 99, 5, 5)
    with pytest.raises(SarJaxError) as info:
        torch_to_flax(bad)
    msg = str(info.value)
    for fragment in ("missing 2 key(s): encoder.block1.bn.bias, decoder.final.bias",
                     "unexpected 1 key(s): encoder.extra.weight",
                     "decoder.block0.deconv.weight has shape (3, 99, 5, 5), expected (3, 16, 5, 5)"):
        assert fragment in msg


def test_torch_to_flax_checks_against_a_model_config(trained_sd):
    with pytest.raises(SarJaxError, match=r"encoder.block0.conv.weight has shape \(4, 1, 5, 5\), "
                                          r"expected \(8, 1, 5, 5\)"):
        torch_to_flax(trained_sd, model_config(8, 3))


def test_flax_to_torch_is_strict(trained_sd):
    variables = torch_to_flax(trained_sd)
    variables["params"]["encoder"]["final"].pop("bias")
    variables["batch_stats"]["decoder"]["block0"]["bn"]["extra"] = np.zeros(3)
    variables["params"]["decoder"]["block1"]["bn"]["scale"] = np.zeros(5)
    with pytest.raises(SarJaxError) as info:
        flax_to_torch(variables)
    msg = str(info.value)
    assert "missing 1 key(s): params/encoder/final/bias" in msg
    assert "unexpected 1 key(s): batch_stats/decoder/block0/bn/extra" in msg
    assert "params/decoder/block1/bn/scale has shape (5,), expected (8,)" in msg
    with pytest.raises(SarJaxError, match="missing"):
        flax_to_torch({"params": {}})


def _saved_model_checkpoint(path, model_cfg=None, sd=None, nbt=0):
    """A sar_torch_ref checkpoint of an untrained model (epoch 0), as save_checkpoint writes it."""
    config = load_config("quickstart", ["model.base_channels=4", "model.latent_channels=3"])[0]
    model = TorchAutoencoder(config["model"])
    if sd is not None:
        model.load_state_dict(sd)
    opt = torch.optim.Adam(model.parameters(), lr=config["train"]["lr"])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    state_dict = model.state_dict()
    if model_cfg is not None:
        config["model"].update(model_cfg)
    save_checkpoint(path, {"model": state_dict, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "epoch": 3, "best_val_loss": 0.25, "best_epoch": 3,
                           "early_stopping": {"best": 0.25, "bad_epochs": 0}, "config": config,
                           "config_name": "quickstart", "preprocessing_params": {"kind": "intensity", "lo": 1.0},
                           "versions": versions()})
    return config


@pytest.mark.slow
def test_cli_round_trip_of_a_saved_model(tmp_path, trained_sd):
    src = tmp_path / "model.pt"
    config = _saved_model_checkpoint(src, sd=trained_sd)
    run = tmp_path / "run"
    assert main(["--from-torch", str(src), "--out", str(run)]) == 0
    # every sar_jax loader: read_metadata and restore onto a fresh TrainState
    meta = checkpointing.read_metadata(run, "latest")
    assert meta["config"] == config and meta["epoch"] == 3
    assert meta["preprocessing_params"] == {"kind": "intensity", "lo": 1.0}
    model = SARAutoencoder.from_config(config["model"])
    state, _ = checkpointing.restore(run, create_train_state(model, config), "best")
    assert int(state.step) == 7 and int(state.epoch) == 3
    assert int(state.opt_state[1][0].count) == 0  # fresh Adam
    back = tmp_path / "back.pt"
    assert main(["--to-torch", str(run), "--out", str(back)]) == 0
    ckpt = load_checkpoint(back)
    assert all(torch.equal(ckpt["model"][k], trained_sd[k]) for k in trained_sd)
    assert ckpt["epoch"] == 3 and ckpt["best_val_loss"] == 0.25 and ckpt["config"] == config
    model = TorchAutoencoder(ckpt["config"]["model"])
    model.load_state_dict(ckpt["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    opt.load_state_dict(ckpt["optimizer"])
    torch.optim.lr_scheduler.ReduceLROnPlateau(opt).load_state_dict(ckpt["scheduler"])
    assert opt.param_groups[0]["lr"] == config["train"]["lr"]


@pytest.mark.slow
def test_cli_bad_inputs(tmp_path, convert_error, trained_sd):
    assert "no such file" in convert_error(["--from-torch", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r")])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    assert "cannot be read" in convert_error(["--from-torch", str(corrupt), "--out", str(tmp_path / "r")])
    # the library names its parameters (ckpt_path, run_dir, out); the command line names the flags
    assert convert_error(["--from-torch", str(tmp_path), "--out", str(tmp_path / "r")]).startswith(
        f"error: --from-torch {tmp_path}: is a directory")
    assert convert_error(["--to-torch", str(corrupt), "--out", str(tmp_path / "x.pt")]).startswith(
        f"error: --to-torch {corrupt}: is a file")
    assert "no such run directory" in convert_error(["--to-torch", str(tmp_path / "none"), "--out",
                                                  str(tmp_path / "x.pt")])
    assert "no checkpoints" in convert_error(["--to-torch", str(tmp_path), "--out", str(tmp_path / "x.pt")])
    # architecture mismatch: the checkpoint's config says base 8, its weights are base 4
    mismatched = tmp_path / "mismatch.pt"
    _saved_model_checkpoint(mismatched, model_cfg={"base_channels": 8}, sd=trained_sd)
    line = convert_error(["--from-torch", str(mismatched), "--out", str(tmp_path / "r")])
    assert "encoder.block0.conv.weight has shape (4, 1, 5, 5), expected (8, 1, 5, 5)" in line
    # a run directory where a .pt file is expected as output, and an existing run without --overwrite
    good = tmp_path / "good.pt"
    _saved_model_checkpoint(good, sd=trained_sd)
    run = tmp_path / "run"
    assert main(["--from-torch", str(good), "--out", str(run)]) == 0
    assert convert_error(["--to-torch", str(run), "--out", str(run)]).startswith(
        f"error: --out {run}: is a directory")
    line = convert_error(["--from-torch", str(good), "--out", str(run)])
    assert line.startswith(f"error: --out {run}: already holds a run") and "--overwrite" in line
    assert main(["--from-torch", str(good), "--out", str(run), "--overwrite"]) == 0
    shutil.rmtree(run / "checkpoints")
    assert "checkpoints" in convert_error(["--to-torch", str(run), "--out", str(tmp_path / "x.pt")])
