"""Convert U-Net weights between ``sar_torch_ref.models.unet.UNet`` (a torch state_dict) and
``sar_jax.nn.unet.UNet`` (Flax variables).

A fixed table (:func:`conversion_table`) per depth: every conv ``name`` of the network has
``name.weight`` ``(out, in, 3, 3)`` <-> ``params/name/kernel`` ``(3, 3, in, out)``
(``W.transpose(2, 3, 1, 0)``) and ``name.bias`` <-> ``params/name/bias`` (copied). There is no
BatchNorm: ``batch_stats`` is empty. Permutations of float32 arrays are exact, so torch -> JAX ->
torch is bit-exact. Any missing, unexpected or mis-shaped key raises ONE :class:`SarJaxError`
listing them all (:mod:`sar_jax.parity.tables`). At depth 5, 48 features and one channel the keys
are those of deepdespeckling's MERLIN / SAR2SAR ``Model``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sar_jax.core.errors import SarJaxError
from sar_jax.parity import tables
from sar_jax.parity.convert import PERMUTATIONS
from sar_jax.parity.tables import Row, flatten, require_mapping, shape_of

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


def _model(arch: tuple[int, int, int]) -> str:
    depth, features, c_in = arch
    return f"U-Net (depth {depth}, features {features}, in_channels {c_in})"


def _rows(arch: tuple[int, int, int]) -> tuple[Row, ...]:
    """The table of ``arch`` (depth, features, in_channels) as :class:`~sar_jax.parity.tables.Row` s."""
    dims = layer_channels(*arch)
    return tuple(Row(e.torch_key, ("params",) + e.path, PERMUTATIONS[e.kind], _torch_shape(e, dims))
                 for e in conversion_table(arch[0]))


def _architecture(model_cfg: Mapping[str, Any] | None, names: list[str], first: Any, axes: tuple[int, int],
                  what: str) -> tuple[int, int, int]:
    """(depth, features, in_channels) from the config, else from the encoder's conv names and the
    shape of ``enc0``'s weight (``axes``: its (out, in) axes)."""
    if model_cfg is not None:
        return int(model_cfg["unet_depth"]), int(model_cfg["unet_features"]), int(model_cfg["in_channels"])
    enc = [int(m.group(1)) for n in names if (m := re.fullmatch(r"enc(\d+)", n))]
    if not enc or first is None or len(shape_of(first)) != 4 or max(enc) < 2:
        raise SarJaxError(f"{what}: cannot infer the U-Net's depth and width: expected enc0 (a 4-D weight) "
                          f"and enc1 .. enc{{depth + 1}}; pass the model config")
    return max(enc) - 1, shape_of(first)[axes[0]], shape_of(first)[axes[1]]


def torch_to_flax(state_dict: Mapping[str, Any], model_cfg: Mapping[str, Any] | None = None,
                  *, what: str = "torch U-Net state_dict") -> dict[str, Any]:
    """A reference U-Net state_dict -> ``{"params": ..., "batch_stats": {}}`` (float32 jax arrays).

    ``model_cfg`` (a config's ``model`` section), if given, fixes the expected keys and shapes;
    otherwise they are inferred from the ``enc*`` keys and ``enc0.weight``."""
    require_mapping(state_dict, what, "a state_dict (a mapping of names to tensors)")
    arch = _architecture(model_cfg, [str(k).rsplit(".", 1)[0] for k in state_dict], state_dict.get("enc0.weight"),
                         (0, 1), what)
    return tables.torch_to_flax(state_dict, _rows(arch), ("params", "batch_stats"), what=what, model=_model(arch))


def flax_to_torch(variables: Mapping[str, Any], model_cfg: Mapping[str, Any] | None = None, *,
                  what: str = "Flax U-Net variables") -> collections.OrderedDict[str, Any]:
    """``{"params"[, "batch_stats": {}]}`` -> a reference U-Net state_dict (OrderedDict of CPU
    float32 tensors, in the reference's key order)."""
    require_mapping(variables, what, "a mapping with 'params'")
    flat = flatten(variables)
    names = [p[1] for p in flat if len(p) == 3 and p[0] == "params"]
    arch = _architecture(model_cfg, names, flat.get(("params", "enc0", "kernel")), (3, 2), what)
    return tables.flax_to_torch(flat, _rows(arch), what=what, model=_model(arch))
