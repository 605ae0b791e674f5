"""Convert U-Net weights between ``sar_torch_ref.models.unet.UNet`` (a torch state_dict) and
``sar_jax.nn.unet.UNet`` (Flax variables).

A fixed table (:func:`conversion_table`) per depth: every conv ``name`` of the network has
``name.weight`` ``(out, in, 3, 3)`` <-> ``params/name/kernel`` ``(3, 3, in, out)``
(``W.transpose(2, 3, 1, 0)``) and ``name.bias`` <-> ``params/name/bias`` (copied). There is no
BatchNorm: ``batch_stats`` is empty. Permutations of float32 arrays are exact, so torch -> JAX ->
torch is bit-exact. Any missing, unexpected or mis-shaped key raises ONE :class:`SarJaxError`
listing them all. At depth 5, 48 features and one channel the keys are those of deepdespeckling's
MERLIN / SAR2SAR ``Model``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.parity.convert import PERMUTATIONS, _flat, _shape, _to_numpy

KERNEL_SIZE = 3


@dataclass(frozen=True)
class Entry:
    """One row: torch key, Flax ``params`` path, ``kind`` (``conv`` weight or ``vector`` bias),
    ``layer`` (index into :func:`layer_channels`)."""

    torch_key: str
    path: tuple[str, ...]
    kind: str
    layer: int


def layer_names(depth: int) -> list[str]:
    """The convs in forward order (= the reference's state_dict order)."""
    return ([f"enc{i}" for i in range(depth + 2)]
            + [n for level in range(depth, 1, -1) for n in (f"dec{level}", f"dec{level}b")]
            + ["dec1a", "dec1b", "dec1"])


def layer_channels(depth: int, features: int, in_channels: int) -> list[tuple[int, int]]:
    """(in, out) channels of each conv of :func:`layer_names`."""
    f = features
    dims = [(in_channels, f)] + [(f, f)] * (depth + 1)
    for level in range(depth, 1, -1):
        dims += [((f if level == depth else 2 * f) + f, 2 * f), (2 * f, 2 * f)]
    a, b = -(-4 * f // 3), -(-2 * f // 3)
    return dims + [((f if depth == 1 else 2 * f) + in_channels, a), (a, b), (b, in_channels)]


def conversion_table(depth: int) -> tuple[Entry, ...]:
    """All rows, in the order of the reference's ``state_dict()``."""
    return tuple(Entry(f"{name}.{tkey}", (name, fkey), kind, i) for i, name in enumerate(layer_names(depth))
                 for tkey, fkey, kind in (("weight", "kernel", "conv"), ("bias", "bias", "vector")))


def _torch_shape(e: Entry, dims: list[tuple[int, int]]) -> tuple[int, ...]:
    cin, cout = dims[e.layer]
    return (cout, cin, KERNEL_SIZE, KERNEL_SIZE) if e.kind == "conv" else (cout,)


def _flax_shape(e: Entry, dims: list[tuple[int, int]]) -> tuple[int, ...]:
    cin, cout = dims[e.layer]
    return (KERNEL_SIZE, KERNEL_SIZE, cin, cout) if e.kind == "conv" else (cout,)


def _architecture(model_cfg: Mapping[str, Any] | None, names: list[str], first: Any, axes: tuple[int, int],
                  what: str) -> tuple[int, int, int]:
    """(depth, features, in_channels) from the config, else from the encoder's conv names and the
    shape of ``enc0``'s weight (``axes``: its (out, in) axes)."""
    if model_cfg is not None:
        return int(model_cfg["unet_depth"]), int(model_cfg["unet_features"]), int(model_cfg["in_channels"])
    enc = [int(m.group(1)) for n in names if (m := re.fullmatch(r"enc(\d+)", n))]
    if not enc or first is None or len(_shape(first)) != 4 or max(enc) < 2:
        raise SarJaxError(f"{what}: cannot infer the U-Net's depth and width: expected enc0 (a 4-D weight) "
                          f"and enc1 .. enc{{depth + 1}}; pass the model config")
    return max(enc) - 1, _shape(first)[axes[0]], _shape(first)[axes[1]]


def _raise_problems(what: str, arch: tuple[int, int, int], missing: list[str], unexpected: list[str],
                    bad: list[str]) -> None:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected)}")
    if bad:
        parts.append(f"{len(bad)} mis-shaped or mistyped: {'; '.join(bad)}")
    if parts:
        depth, features, c_in = arch
        raise SarJaxError(f"{what} does not match the U-Net (depth {depth}, features {features}, "
                          f"in_channels {c_in}): " + " | ".join(parts))


def torch_to_flax(state_dict: Mapping[str, Any], model_cfg: Mapping[str, Any] | None = None,
                  *, what: str = "torch U-Net state_dict") -> dict[str, Any]:
    """A reference U-Net state_dict -> ``{"params": ..., "batch_stats": {}}`` (float32 jax arrays).

    ``model_cfg`` (a config's ``model`` section), if given, fixes the expected keys and shapes;
    otherwise they are inferred from the ``enc*`` keys and ``enc0.weight``."""
    import jax.numpy as jnp

    if not isinstance(state_dict, Mapping):
        raise SarJaxError(f"{what}: expected a state_dict (a mapping of names to tensors), "
                          f"got {type(state_dict).__name__}")
    arch = _architecture(model_cfg, [str(k).rsplit(".", 1)[0] for k in state_dict], state_dict.get("enc0.weight"),
                         (0, 1), what)
    table, dims = conversion_table(arch[0]), layer_channels(*arch)
    known = {e.torch_key for e in table}
    missing = [e.torch_key for e in table if e.torch_key not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in known]
    bad: list[str] = []
    for e in table:
        value = state_dict.get(e.torch_key)
        if value is None:
            continue
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            bad.append(f"{e.torch_key} is a {type(value).__name__}, not a tensor")
            continue
        if not getattr(value, "is_floating_point", lambda: np.issubdtype(value.dtype, np.floating))():
            bad.append(f"{e.torch_key} has dtype {value.dtype}, expected floating point")
        if _shape(value) != _torch_shape(e, dims):
            bad.append(f"{e.torch_key} has shape {_shape(value)}, expected {_torch_shape(e, dims)}")
    _raise_problems(what, arch, missing, unexpected, bad)
    params: dict[str, Any] = {}
    for e in table:
        arr = _to_numpy(state_dict[e.torch_key]).astype(np.float32, copy=False)
        if e.kind == "conv":
            arr = arr.transpose(PERMUTATIONS["conv"])
        params.setdefault(e.path[0], {})[e.path[1]] = jnp.asarray(np.ascontiguousarray(arr))
    return {"params": params, "batch_stats": {}}


def flax_to_torch(variables: Mapping[str, Any], model_cfg: Mapping[str, Any] | None = None, *,
                  what: str = "Flax U-Net variables") -> collections.OrderedDict[str, Any]:
    """``{"params"[, "batch_stats": {}]}`` -> a reference U-Net state_dict (OrderedDict of CPU
    float32 tensors, in the reference's key order)."""
    import torch

    if not isinstance(variables, Mapping):
        raise SarJaxError(f"{what}: expected a mapping with 'params', got {type(variables).__name__}")
    flat = {(str(coll),) + p: v for coll, tree in variables.items() for p, v in _flat(tree).items()}
    names = [p[1] for p in flat if len(p) == 3 and p[0] == "params"]
    arch = _architecture(model_cfg, names, flat.get(("params", "enc0", "kernel")), (3, 2), what)
    table, dims = conversion_table(arch[0]), layer_channels(*arch)
    expected = {("params",) + e.path: e for e in table}
    name = lambda p: "/".join(p)  # noqa: E731
    missing = [name(p) for p in expected if p not in flat]
    unexpected = [name(p) for p in flat if p not in expected]
    bad = [f"{name(p)} has shape {_shape(flat[p])}, expected {_flax_shape(e, dims)}"
           for p, e in expected.items() if p in flat and _shape(flat[p]) != _flax_shape(e, dims)]
    _raise_problems(what, arch, missing, unexpected, bad)
    out: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for e in table:
        arr = np.asarray(flat[("params",) + e.path]).astype(np.float32, copy=False)
        if e.kind == "conv":
            arr = arr.transpose(np.argsort(PERMUTATIONS["conv"]))
        out[e.torch_key] = torch.from_numpy(np.array(arr, dtype=np.float32, order="C", copy=True))
    return out
