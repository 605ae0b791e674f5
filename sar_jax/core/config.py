"""Configuration: JSON files in ``configs/``, ``--set`` overrides, strict validation.

A config is a plain ``dict`` of exactly five sections (``model``, ``loss``,
``train``, ``data``, ``logging``), so it serialises to JSON unchanged and is
shared by the JAX trainer and the PyTorch reference.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sar_jax.core.errors import SarJaxError
from sar_jax.core.paths import CONFIG_DIR

Check = Callable[[Any], "str | None"]  # returns a description of what was expected, or None


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool)
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi)
        if ok:
            return None
        rng = f" >= {lo}" if lo is not None else ""
        rng += f" and <= {hi}" if hi is not None else ""
        return f"an integer{rng}"
    return check


def _float(lo: float | None = None, *, lo_open: bool = False, hi: float | None = None,
           hi_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        try:
            ok = ok and math.isfinite(v)
        except OverflowError:  # an integer too large for a float
            ok = False
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if ok:
            return None
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi}")
        return "a number" + (" " + " and ".join(parts) if parts else "")
    return check


def _choice(*options: Any) -> Check:
    def check(v: Any) -> str | None:
        # type must match too: 11.0 or true must not pass for an integer choice
        ok = any(type(v) is type(o) and v == o for o in options)
        return None if ok else "one of " + ", ".join(json.dumps(o) for o in options)
    return check


def _nullable(inner: Check) -> Check:
    def check(v: Any) -> str | None:
        if v is None:
            return None
        msg = inner(v)
        return None if msg is None else f"null or {msg}"
    return check


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _multiple_of_16(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 16 and v % 16 == 0
    return None if ok else "a positive multiple of 16 (the encoder halves the size 4 times)"


def _percentiles(v: Any) -> str | None:
    ok = (isinstance(v, list) and len(v) == 2
          and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in v)
          and 0 <= v[0] < v[1] <= 100)
    return None if ok else "a list [low, high] with 0 <= low < high <= 100"


def _devices(v: Any) -> str | None:
    ok = v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
    return None if ok else '"auto" or a positive integer'


#: ``model.kind`` values whose forward pass returns likelihoods (trained with ``loss.kind: rate_distortion``).
CODEC_KINDS = ("factorized", "hyperprior")

# section -> key -> (default, check). Defaults are the original design (baseline).
SCHEMA: dict[str, dict[str, tuple[Any, Check]]] = {
    "model": {
        "kind": ("baseline", _choice("baseline", "factorized", "hyperprior", "unet")),
        "in_channels": (1, _int(1)),
        "base_channels": (64, _int(1)),
        "latent_channels": (16, _int(1)),
        "kernel_size": (5, _choice(5)),
        "negative_slope": (0.2, _float(0.0)),
        "N": (128, _int(1)),  # factorized / hyperprior: transform width (CompressAI's N)
        "M": (192, _int(1)),  # factorized / hyperprior: latent channels (CompressAI's M)
        "unet_features": (48, _int(1)),  # unet: width of the first level
        "unet_depth": (4, _int(1, 4)),  # unet: number of 2x poolings (<= 4: scenes tile on the 16-px grid)
    },
    "loss": {
        "kind": ("combined", _choice("combined", "rate_distortion", "log_gamma")),
        "mse_weight": (0.5, _float(0.0)),
        "ssim_weight": (0.5, _float(0.0)),
        "ssim_window": (11, _choice(3, 5, 7, 9, 11, 13, 15)),
        "lmbda": (100.0, _float(0.0, lo_open=True)),  # rate_distortion: lmbda * D + bits per pixel
        "distortion": ("mse", _choice("mse", "ms_ssim")),  # rate_distortion: D = MSE or 1 - MS-SSIM
    },
    "train": {
        "epochs": (100, _int(1)),
        "batch_size": (8, _int(1)),
        "lr": (1e-4, _float(0.0, lo_open=True)),
        "max_grad_norm": (1.0, _float(0.0, lo_open=True)),
        "lr_patience": (10, _int(0)),
        "lr_factor": (0.5, _float(0.0, lo_open=True, hi=1.0, hi_open=True)),
        "early_stopping_patience": (20, _int(1)),
        "seed": (0, _int(0)),
        "dtype": ("float32", _choice("float32", "bfloat16")),
        "devices": ("auto", _devices),
        "aux_lr": (1e-3, _float(0.0, lo_open=True)),  # factorized / hyperprior: the density's quantiles
        "target": ("input", _choice("input", "clean", "other_look")),
        "init_from": (None, _nullable(_string)),  # a run directory: start from its best weights (fine-tuning)
    },
    "data": {
        "source": ("synthetic", _choice("synthetic", "files")),
        "path": (None, _nullable(_string)),
        "patch_size": (256, _multiple_of_16),
        "stride": (None, _nullable(_int(1))),
        "num_scenes": (24, _int(3)),
        "scene_size": (1024, _multiple_of_16),
        "looks": (4.0, _float(0.0, lo_open=True)),
        "psf_oversampling": (1.0, _float(1.0)),  # synthetic: > 1 correlates the speckle (an oversampled PSF)
        "target_path": (None, _nullable(_string)),  # files: co-registered targets (train.target), same names
        "val_fraction": (0.15, _float(0.0, lo_open=True, hi=0.5, hi_open=True)),
        "test_fraction": (0.15, _float(0.0, lo_open=True, hi=0.5, hi_open=True)),
        "percentiles": ([1.0, 99.0], _percentiles),
        "floor": (1e-6, _float(0.0, lo_open=True)),
        "band": (None, _nullable(_int(0))),
        "units": ("auto", _choice("auto", "intensity", "amplitude", "db", "log8")),
        "strict": (False, _bool),
        "prefetch": (2, _int(0)),
        "workers": (0, _int(0)),
        "sampling": ("grid", _choice("grid", "random")),
        "patches_per_epoch": (None, _nullable(_int(1))),
        "shuffle_block": (None, _nullable(_int(16))),
        "eval_patches": (None, _nullable(_int(1))),
        "min_valid_fraction": (1.0, _float(0.0, lo_open=True, hi=1.0)),
        "fit_pixels": (16_000_000, _int(1)),
    },
    "logging": {
        "image_every": (1, _int(1)),
        "histogram_every": (10, _int(1)),
        "num_samples": (4, _int(1)),
        "progress": (True, _bool),
    },
}


def default_config() -> dict[str, dict[str, Any]]:
    """The original design's configuration (what ``configs/baseline.json`` holds)."""
    return {s: {k: copy.deepcopy(d) for k, (d, _) in keys.items()} for s, keys in SCHEMA.items()}


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _merge(base: dict, update: Any, origin: str) -> None:
    if not isinstance(update, dict):
        raise SarJaxError(f"{origin}: expected a JSON object with sections {', '.join(SCHEMA)}")
    for section, values in update.items():
        if section not in SCHEMA:
            raise SarJaxError(f"{origin}: unknown section '{section}'{_closest(section, list(SCHEMA))};"
                              f" expected one of {', '.join(SCHEMA)}")
        if not isinstance(values, dict):
            raise SarJaxError(f"{origin}: section '{section}' must be a JSON object")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise SarJaxError(f"{origin}: unknown key '{section}.{key}'"
                                  f"{_closest(key, list(SCHEMA[section]))}")
            base[section][key] = value


def parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise SarJaxError(f"overrides {item!r}: expected section.key=value, e.g. train.lr=3e-4")
    lhs, raw = item.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare words such as data.source=files are strings
    return section, key, value


def validate(config: dict[str, dict[str, Any]], origin: str = "config",
             sources: dict[str, str] | None = None) -> None:
    """Check every key's type and range; raise SarJaxError naming the first bad key and where its value
    came from (``sources``: ``section.key`` -> e.g. the override that set it; else ``origin``)."""
    for section, keys in SCHEMA.items():
        if section not in config:
            raise SarJaxError(f"{origin}: missing section '{section}'")
        for key, (_, check) in keys.items():
            if key not in config[section]:
                raise SarJaxError(f"{origin}: missing key '{section}.{key}'")
            expected = check(config[section][key])
            if expected is not None:
                where = (sources or {}).get(f"{section}.{key}", origin)
                raise SarJaxError(f"{where}: {section}.{key} = {json.dumps(config[section][key])}"
                                  f" is invalid; expected {expected}")
    data = config["data"]
    if data["source"] == "files" and not data["path"]:
        raise SarJaxError(f"{origin}: data.source is \"files\" but data.path is null; "
                          "give data.path a file or folder")
    if data["val_fraction"] + data["test_fraction"] >= 0.8:
        raise SarJaxError(f"{origin}: data.val_fraction + data.test_fraction must be < 0.8")
    if data["stride"] is not None and data["stride"] > data["patch_size"]:
        raise SarJaxError(f"{origin}: data.stride = {data['stride']} is invalid; expected <= "
                          f"data.patch_size ({data['patch_size']})")
    if data["source"] == "synthetic" and data["scene_size"] < data["patch_size"]:
        raise SarJaxError(f"{origin}: data.scene_size = {data['scene_size']} is invalid; expected >= "
                          f"data.patch_size ({data['patch_size']})")
    train = config["train"]
    if train["target"] == "clean" and data["source"] == "files" and not data["target_path"]:
        raise SarJaxError(f"{origin}: train.target \"clean\" on files needs data.target_path (a folder of "
                          "speckle-free references with the input files' names)")
    if train["target"] == "other_look" and data["source"] == "files" and not data["target_path"]:
        raise SarJaxError(f"{origin}: train.target \"other_look\" on files needs data.target_path (a folder of "
                          "co-registered second looks with the input files' names)")
    if config["loss"]["kind"] == "rate_distortion" and config["model"]["kind"] not in CODEC_KINDS:
        raise SarJaxError(f"{origin}: loss.kind \"rate_distortion\" needs a model with an entropy model "
                          f"(model.kind factorized or hyperprior), not {json.dumps(config['model']['kind'])}")
    if config["model"]["kind"] in CODEC_KINDS and config["loss"]["kind"] != "rate_distortion":
        raise SarJaxError(f"{origin}: model.kind {json.dumps(config['model']['kind'])} is trained with "
                          "loss.kind \"rate_distortion\"")
    if train["early_stopping_patience"] <= train["lr_patience"]:
        warnings.warn(f"{origin}: train.early_stopping_patience ({train['early_stopping_patience']})"
                      f" <= train.lr_patience ({train['lr_patience']}): training stops before the"
                      " learning rate is ever reduced", stacklevel=2)


def resolve_config_path(name_or_path: str) -> Path:
    """``NAME`` -> ``configs/NAME.json``; anything with a suffix or separator is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" or len(candidate.parts) > 1:
        path = candidate
    else:
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise SarJaxError(f"config '{name_or_path}': no such file {path}; "
                          f"known configs: {', '.join(known) or 'none'}")
    return path


def load_config(name_or_path: str, overrides: list[str] | None = None,
                data_path: str | None = None) -> tuple[dict[str, dict[str, Any]], str]:
    """Read a config file, apply ``overrides`` (``section.key=value`` items) and ``data_path``; validate.

    Returns ``(config, name)`` where ``name`` is the file's stem (used for run directories).
    """
    path = resolve_config_path(name_or_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SarJaxError(f"config {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SarJaxError(f"config {path}: not a UTF-8 text file (byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SarJaxError(f"config {path}: invalid JSON at line {exc.lineno} column {exc.colno}:"
                          f" {exc.msg}") from None
    config = default_config()
    _merge(config, raw, f"config {path}")
    sources = apply_overrides(config, overrides or [])
    if data_path is not None:
        config["data"]["source"] = "files"
        config["data"]["path"] = data_path
    validate(config, f"config {path}", sources)
    return config, path.stem


def apply_overrides(config: dict[str, dict[str, Any]], overrides: list[str]) -> dict[str, str]:
    """Apply ``section.key=value`` items in place (validate afterwards); returns ``section.key`` ->
    ``overrides ITEM`` for :func:`validate` to name the override a bad value came from."""
    sources = {}
    for item in overrides:
        section, key, value = parse_override(item)
        _merge(config, {section: {key: value}}, f"overrides {item}")
        sources[f"{section}.{key}"] = f"overrides {item}"
    return sources


# Keys a resumed run may change with overrides (checkpoints are portable across device counts):
# everything else comes from the run's own config.
RESUME_OVERRIDABLE = ({("train", "epochs"), ("train", "devices"), ("data", "prefetch")}
                      | {("logging", k) for k in ("image_every", "histogram_every", "num_samples", "progress")})


def resume_config(stored: Any, overrides: list[str], origin: str) -> dict[str, dict[str, Any]]:
    """A run's stored config with ``overrides`` limited to :data:`RESUME_OVERRIDABLE`
    (e.g. ``train.epochs`` to train longer); other keys may only repeat their stored value."""
    config = config_from_dict(stored, origin)
    for item in overrides:
        section, key, value = parse_override(item)
        if (section, key) not in RESUME_OVERRIDABLE and config.get(section, {}).get(key, object()) != value:
            allowed = ", ".join(sorted(f"{s}.{k}" for s, k in RESUME_OVERRIDABLE))
            raise SarJaxError(f"overrides {item}: cannot change {section}.{key} when resuming "
                              f"(the run's config is used); allowed: {allowed}")
    validate(config, f"{origin} with overrides", apply_overrides(config, overrides))
    return config


def config_from_dict(raw: Any, origin: str) -> dict[str, dict[str, Any]]:
    """Rebuild and validate a config stored in a run directory or checkpoint."""
    config = default_config()
    _merge(config, raw, origin)
    validate(config, origin)
    return config
