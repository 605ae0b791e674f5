"""Config files, overrides and validation (sar_jax.core.config); CLI error plumbing (sar_jax.core.cli)."""

from __future__ import annotations

import json
import warnings

import pytest

from sar_jax.core.cli import flag_names, run_main
from sar_jax.core.config import (
    CONFIG_DIR,
    SCHEMA,
    config_from_dict,
    default_config,
    load_config,
    validate,
)
from sar_jax.core.errors import SarJaxError

SECTIONS = {"model", "loss", "train", "data", "logging"}


def _load(*overrides: str, name: str = "baseline", data_path: str | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # baseline-derived configs must not warn
        return load_config(name, list(overrides), data_path)[0]


def _error(*overrides: str, name: str = "baseline") -> str:
    with pytest.raises(SarJaxError) as info:
        load_config(name, list(overrides))
    msg = str(info.value)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


def test_baseline_has_the_design_values():
    config, name = load_config("baseline")
    assert name == "baseline"
    assert set(config) == SECTIONS
    raw = json.loads((CONFIG_DIR / "baseline.json").read_text())
    assert set(raw) == SECTIONS
    assert {k: config["model"][k] for k in ("kind", "in_channels", "base_channels", "latent_channels",
                                            "kernel_size", "negative_slope")} == {
        "kind": "baseline", "in_channels": 1, "base_channels": 64, "latent_channels": 16, "kernel_size": 5,
        "negative_slope": 0.2}
    assert {k: config["loss"][k] for k in ("kind", "mse_weight", "ssim_weight", "ssim_window")} == {
        "kind": "combined", "mse_weight": 0.5, "ssim_weight": 0.5, "ssim_window": 11}
    assert config["train"]["target"] == "input"
    t = config["train"]
    assert (t["epochs"], t["batch_size"], t["lr"], t["max_grad_norm"]) == (100, 8, 1e-4, 1.0)
    assert (t["lr_patience"], t["lr_factor"], t["early_stopping_patience"], t["seed"]) == (10, 0.5, 20, 0)
    d = config["data"]
    assert (d["source"], d["path"], d["patch_size"]) == ("synthetic", None, 256)
    lg = config["logging"]
    assert (lg["image_every"], lg["histogram_every"], lg["num_samples"]) == (1, 10, 4)
    # the file spells out every key, and its values are the schema defaults
    assert {s: set(v) for s, v in raw.items()} == {s: set(v) for s, v in SCHEMA.items()}
    assert config == default_config()


def test_quickstart_loads_and_validates():
    config = _load(name="quickstart")
    assert set(config) == SECTIONS
    assert config["data"]["patch_size"] % 16 == 0
    assert config["data"]["scene_size"] >= config["data"]["patch_size"]
    assert config["train"]["early_stopping_patience"] > config["train"]["lr_patience"]
    assert config != default_config()


def test_set_overrides_are_parsed_as_json():
    config = _load("train.lr=3e-4", "train.seed=7", "data.percentiles=[2, 98.5]",
                   "logging.progress=false", "data.stride=null", "data.stride=128")
    assert config["train"]["lr"] == pytest.approx(3e-4) and isinstance(config["train"]["lr"], float)
    assert config["train"]["seed"] == 7 and isinstance(config["train"]["seed"], int)
    assert config["data"]["percentiles"] == [2, 98.5]
    assert config["logging"]["progress"] is False
    assert config["data"]["stride"] == 128  # later overrides win
    assert _load("data.stride=null")["data"]["stride"] is None


def test_set_bare_words_are_strings(tmp_path):
    config = _load("data.source=files", f"data.path={tmp_path}/some dir")
    assert config["data"]["source"] == "files"
    assert config["data"]["path"] == f"{tmp_path}/some dir"
    assert _load("train.dtype=bfloat16")["train"]["dtype"] == "bfloat16"


def test_data_path_switches_source_to_files(tmp_path):
    config = _load(data_path=str(tmp_path))
    assert config["data"]["source"] == "files" and config["data"]["path"] == str(tmp_path)


def test_files_source_without_path_is_rejected():
    assert "data.path" in _error("data.source=files")


@pytest.mark.parametrize("item", ["train.lr", "trainlr=3", "lr=3"])
def test_malformed_set_is_rejected(item):
    assert "section.key=value" in _error(item)


@pytest.mark.parametrize("item, typo, suggestion", [
    ("modle.base_channels=8", "modle", "model"),
    ("trian.epochs=3", "trian", "train"),
    ("train.epoch=3", "train.epoch", "epochs"),
    ("data.patchsize=64", "data.patchsize", "patch_size"),
    ("logging.num_sample=2", "logging.num_sample", "num_samples"),
])
def test_unknown_names_are_rejected_with_a_suggestion(item, typo, suggestion):
    msg = _error(item)
    assert "unknown" in msg and typo in msg
    assert f"did you mean '{suggestion}'" in msg


def test_unknown_key_in_a_file_is_rejected(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"train": {"epochs": 3, "learning_rate": 1e-3}}))
    with pytest.raises(SarJaxError, match=r"unknown key 'train\.learning_rate'"):
        load_config(str(path))


@pytest.mark.parametrize("item, key", [
    ("train.lr=abc", "train.lr"),
    ('train.lr="1e-3"', "train.lr"),
    ("train.epochs=1.5", "train.epochs"),
    ("train.epochs=true", "train.epochs"),
    ("train.batch_size=false", "train.batch_size"),
    ("model.base_channels=[64]", "model.base_channels"),
    ("model.kernel_size=5.0", "model.kernel_size"),
    ("loss.ssim_window=11.0", "loss.ssim_window"),
    ("data.strict=1", "data.strict"),
    ("data.path=3", "data.path"),
    ("data.percentiles=[1]", "data.percentiles"),
    ("train.devices=0", "train.devices"),
    ("train.lr=NaN", "train.lr"),
    ("train.lr=" + "9" * 400, "train.lr"),  # an int too large for a float
])
def test_wrong_types_are_rejected_naming_the_key(item, key):
    msg = _error(item)
    assert f"{key} = " in msg and "expected" in msg


@pytest.mark.parametrize("item, key", [
    ("train.lr=0", "train.lr"),
    ("train.lr=-1e-3", "train.lr"),
    ("train.max_grad_norm=0", "train.max_grad_norm"),
    ("train.lr_factor=1", "train.lr_factor"),
    ("train.epochs=0", "train.epochs"),
    ("data.patch_size=100", "data.patch_size"),
    ("data.patch_size=0", "data.patch_size"),
    ("data.scene_size=1000", "data.scene_size"),
    ("data.percentiles=[99, 1]", "data.percentiles"),
    ("data.percentiles=[1, 101]", "data.percentiles"),
    ("data.val_fraction=0.5", "data.val_fraction"),
    ("data.num_scenes=2", "data.num_scenes"),
    ("loss.ssim_window=4", "loss.ssim_window"),
    ("data.stride=512", "data.stride"),
])
def test_impossible_values_are_rejected(item, key):
    assert key in _error(item)


def test_value_combinations_are_checked():
    assert "data.scene_size" in _error("data.scene_size=128", "data.patch_size=256")
    assert "val_fraction + data.test_fraction" in _error("data.val_fraction=0.45",
                                                         "data.test_fraction=0.4")
    assert _load("data.scene_size=256", "data.patch_size=256")["data"]["scene_size"] == 256


def test_invalid_json_reports_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "train": {"epochs": 3,}\n}\n')
    with pytest.raises(SarJaxError) as info:
        load_config(str(path))
    msg = str(info.value)
    assert "invalid JSON at line 2 column" in msg and "\n" not in msg
    col = int(msg.split("column ")[1].split(":")[0])
    assert col == len('  "train": {"epochs": 3,') + 1


def test_non_utf8_config_is_a_sar_jax_error(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(SarJaxError, match="binary.json"):
        load_config(str(path))


def test_non_object_config_is_rejected(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(SarJaxError, match="JSON object"):
        load_config(str(path))


def test_early_stopping_not_after_lr_patience_warns():
    with pytest.warns(UserWarning, match=r"early_stopping_patience \(10\) <= train\.lr_patience \(10\)"):
        load_config("baseline", ["train.early_stopping_patience=10"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config("baseline", ["train.early_stopping_patience=11"])


def test_config_path_reads_a_file(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"train": {"epochs": 3, "batch_size": 2}, "data": {"patch_size": 32}}))
    config, name = load_config(str(path), ["train.seed=5"])
    assert name == "small"
    assert (config["train"]["epochs"], config["train"]["batch_size"], config["train"]["seed"]) == (3, 2, 5)
    assert config["data"]["patch_size"] == 32
    assert config["model"] == default_config()["model"]  # unspecified sections keep the defaults


def test_missing_config_lists_known_configs(tmp_path):
    with pytest.raises(SarJaxError) as info:
        load_config("baseilne")
    msg = str(info.value)
    assert "baseilne" in msg and "known configs:" in msg
    assert "baseline" in msg.split("known configs:")[1] and "quickstart" in msg
    assert "\n" not in msg
    with pytest.raises(SarJaxError, match="no such file"):
        load_config(str(tmp_path / "nope.json"))


def test_config_from_dict_round_trip_and_validation():
    config = _load(name="quickstart")
    assert config_from_dict(json.loads(json.dumps(config)), "ckpt") == config
    with pytest.raises(SarJaxError, match="ckpt: unknown section 'optim'"):
        config_from_dict({"optim": {}}, "ckpt")
    bad = default_config()
    bad["train"]["lr"] = -1.0
    with pytest.raises(SarJaxError, match=r"train\.lr = -1\.0"):
        validate(bad)
    bad = default_config()
    del bad["logging"]
    with pytest.raises(SarJaxError, match="missing section 'logging'"):
        validate(bad)


def test_cli_turns_errors_into_one_line_and_status_2(capsys):
    def main(argv):
        load_config("baseline", ["train.lr=abc"])
        return 0

    assert run_main(main, []) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "train.lr" in err


def test_flag_names_turn_library_parameters_into_flags(capsys):
    @flag_names(overrides="--set", run_dir="--out", resume="--resume")
    def main(argv):
        load_config("baseline", ["train.lr"])
        return 0

    assert run_main(main, []) == 2
    assert capsys.readouterr().err == "error: --set 'train.lr': expected section.key=value, e.g. train.lr=3e-4\n"
    with pytest.raises(SarJaxError) as info:
        with flag_names(run_dir="--out", resume="--resume"):
            raise SarJaxError("run_dir /tmp/run_dir/x: held; pass resume=True, not resume")
    assert str(info.value) == "--out /tmp/run_dir/x: held; pass --resume, not resume"
    with pytest.raises(SarJaxError) as info:
        with flag_names(band="--band"):
            raise SarJaxError("x.tif: 2 complex bands; choose one with band=0 or band=1 (data.band=2 ignored)")
    assert str(info.value) == "x.tif: 2 complex bands; choose one with --band 0 or --band 1 (data.band=2 ignored)"
    with pytest.raises(SarJaxError, match="^checkpoint x: bad$"):
        with flag_names(run_dir="--out"):
            raise SarJaxError("checkpoint x: bad")


def test_a_bad_override_is_blamed_on_the_override_not_the_file(tmp_path):
    with pytest.raises(SarJaxError) as info:
        load_config("tiny", ["train.lr=0"])
    assert str(info.value).startswith("overrides train.lr=0: train.lr = 0 is invalid")
    assert "tiny.json" not in str(info.value)
    bad = json.loads((CONFIG_DIR / "tiny.json").read_text())
    bad["train"]["lr"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(SarJaxError, match=r"^config .*bad.json: train.lr = 0 is invalid"):
        load_config(str(tmp_path / "bad.json"))
