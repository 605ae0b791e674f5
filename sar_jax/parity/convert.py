"""Convert model weights between ``sar_torch_ref`` (PyTorch state_dicts) and ``sar_jax`` (Flax variables).

The conversion is a fixed table (:func:`conversion_table`): every torch state_dict key maps to
one Flax variable path with a fixed axis permutation, because the Flax layers keep PyTorch's
plain 5x5 parameter layout (see :mod:`sar_jax.nn.layers`); whole checkpoints are converted by
:mod:`sar_jax.parity.checkpoints`:

- ``Conv2d`` weight ``(out, in, 5, 5)`` <-> ``StridedConv`` kernel ``(5, 5, in, out)``:
  ``W.transpose(2, 3, 1, 0)``
- ``ConvTranspose2d`` weight ``(in, out, 5, 5)`` <-> ``TransposedConv`` kernel ``(5, 5, in, out)``:
  ``W.transpose(2, 3, 0, 1)``
- ``BatchNorm2d`` weight/bias <-> ``bn/scale``/``bn/bias`` (params); running_mean/running_var
  <-> ``bn/mean``/``bn/var`` (batch_stats); biases are copied unchanged.
- ``num_batches_tracked`` has no Flax variable: it equals the number of training steps, so a
  converted checkpoint carries it in ``TrainState.step`` (and back).

Permutations of float32 arrays are exact, so torch -> JAX -> torch is bit-exact. Any missing,
unexpected or mis-shaped key raises ONE :class:`SarJaxError` listing them all (the checks and the
conversion are :mod:`sar_jax.parity.tables`', shared with the other kinds' converters).
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sar_jax.core.errors import SarJaxError
from sar_jax.parity import tables
from sar_jax.parity.tables import Row, flatten, require_mapping, shape_of, to_numpy

#: torch (Conv2d) weight -> Flax kernel, and torch (ConvTranspose2d) weight -> Flax kernel.
PERMUTATIONS = {"conv": (2, 3, 1, 0), "deconv": (2, 3, 0, 1), "vector": None, "count": None}
_BN_FIELDS = (("weight", "params", "scale"), ("bias", "params", "bias"),
              ("running_mean", "batch_stats", "mean"), ("running_var", "batch_stats", "var"))
KERNEL_SIZE = 5


@dataclass(frozen=True)
class Entry:
    """One row of the conversion table.

    ``collection``/``path``: the Flax variable (``None``/``()`` for ``num_batches_tracked``);
    ``kind``: ``conv``, ``deconv``, ``vector`` or ``count``; ``layer``: index into the layer
    dimension list of :func:`layer_channels`.
    """

    torch_key: str
    collection: str | None
    path: tuple[str, ...]
    kind: str
    layer: int

    @property
    def flax_name(self) -> str:
        return "/".join((self.collection or "-",) + self.path) if self.collection else "(TrainState.step)"


def conversion_table() -> tuple[Entry, ...]:
    """All rows, in the order of ``sar_torch_ref.models.SARAutoencoder().state_dict()``."""
    rows: list[Entry] = []
    layer = 0
    for part, conv, kind in (("encoder", "conv", "conv"), ("decoder", "deconv", "deconv")):
        for i in range(3):
            blk = f"block{i}"
            rows.append(Entry(f"{part}.{blk}.{conv}.weight", "params", (part, blk, conv, "kernel"), kind, layer))
            for tkey, coll, fkey in _BN_FIELDS:
                rows.append(Entry(f"{part}.{blk}.bn.{tkey}", coll, (part, blk, "bn", fkey), "vector", layer))
            rows.append(Entry(f"{part}.{blk}.bn.num_batches_tracked", None, (), "count", layer))
            layer += 1
        rows.append(Entry(f"{part}.final.weight", "params", (part, "final", "kernel"), kind, layer))
        rows.append(Entry(f"{part}.final.bias", "params", (part, "final", "bias"), "vector", layer))
        layer += 1
    return tuple(rows)


TABLE = conversion_table()


def layer_channels(in_channels: int, base: int, latent: int) -> list[tuple[int, int]]:
    """(in, out) channels of the 8 conv layers in table order."""
    b = base
    return [(in_channels, b), (b, 2 * b), (2 * b, 4 * b), (4 * b, latent),
            (latent, 4 * b), (4 * b, 2 * b), (2 * b, b), (b, in_channels)]


def _torch_shape(entry: Entry, dims: list[tuple[int, int]]) -> tuple[int, ...]:
    cin, cout = dims[entry.layer]
    k = KERNEL_SIZE
    if entry.kind == "conv":
        return (cout, cin, k, k)
    if entry.kind == "deconv":
        return (cin, cout, k, k)
    if entry.kind == "count":
        return ()
    return (cout,)


def _dims_from_cfg(model_cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    if model_cfg.get("kernel_size", KERNEL_SIZE) != KERNEL_SIZE:
        raise SarJaxError(f"model.kernel_size = {model_cfg['kernel_size']}: only 5 is supported")
    return layer_channels(model_cfg["in_channels"], model_cfg["base_channels"], model_cfg["latent_channels"])


def _rows(dims: list[tuple[int, int]] | None) -> tuple[Row, ...]:
    """:data:`TABLE` as :class:`~sar_jax.parity.tables.Row` s; shapes unchecked when ``dims`` is ``None``."""
    return tuple(Row(e.torch_key, (e.collection,) + e.path if e.collection else None, PERMUTATIONS[e.kind],
                     None if dims is None else _torch_shape(e, dims)) for e in TABLE)


# --------------------------------------------------------------------------- torch -> Flax


def _infer_torch_dims(state_dict: Mapping[str, Any]) -> list[tuple[int, int]] | None:
    first, last = state_dict.get("encoder.block0.conv.weight"), state_dict.get("encoder.final.weight")
    if first is None or last is None or len(shape_of(first)) != 4 or len(shape_of(last)) != 4:
        return None
    return layer_channels(shape_of(first)[1], shape_of(first)[0], shape_of(last)[0])


def torch_to_flax(state_dict: Mapping[str, Any], model_cfg: Mapping[str, Any] | None = None,
                  *, what: str = "torch state_dict") -> dict[str, Any]:
    """A ``sar_torch_ref`` state_dict -> ``{"params": ..., "batch_stats": ...}`` (float32 jax arrays).

    ``model_cfg`` (a config's ``model`` section), if given, fixes the expected shapes; otherwise
    they are inferred from the first and last encoder convs. ``num_batches_tracked`` is checked
    but not part of the result: read it with :func:`num_batches_tracked`.
    """
    require_mapping(state_dict, what, "a state_dict (a mapping of names to tensors)")
    dims = _dims_from_cfg(model_cfg) if model_cfg is not None else _infer_torch_dims(state_dict)
    notes = []
    if dims is None and "encoder.block0.conv.weight" in state_dict and "encoder.final.weight" in state_dict:
        notes.append("cannot infer the architecture: encoder.block0.conv.weight and encoder.final.weight "
                     "must be 4-D")
    return tables.torch_to_flax(state_dict, _rows(dims), ("params", "batch_stats"), what=what,
                                model="SAR autoencoder", notes=notes)


def num_batches_tracked(state_dict: Mapping[str, Any]) -> int:
    """The BatchNorm layers' common ``num_batches_tracked`` (the number of training steps).

    If the layers disagree (a hand-edited state_dict), the largest value is returned with a warning.
    """
    values = {int(to_numpy(state_dict[e.torch_key])) for e in TABLE
              if e.kind == "count" and e.torch_key in state_dict}
    if len(values) > 1:
        warnings.warn(f"num_batches_tracked differs between BatchNorm layers ({sorted(values)}); "
                      f"keeping {max(values)}", stacklevel=2)
    return max(values) if values else 0


# --------------------------------------------------------------------------- Flax -> torch


def flax_to_torch(variables: Mapping[str, Any], num_batches_tracked: int = 0,
                  model_cfg: Mapping[str, Any] | None = None, *,
                  what: str = "Flax variables") -> collections.OrderedDict[str, Any]:
    """``{"params", "batch_stats"}`` -> a ``sar_torch_ref`` state_dict (OrderedDict of CPU tensors,
    in the reference model's key order); every BatchNorm's ``num_batches_tracked`` is set to
    ``num_batches_tracked`` (pass ``TrainState.step``)."""
    require_mapping(variables, what, "a mapping with 'params' and 'batch_stats'")
    flat = flatten(variables)
    dims = None
    notes = []
    if model_cfg is not None:
        dims = _dims_from_cfg(model_cfg)
    else:
        first = flat.get(("params", "encoder", "block0", "conv", "kernel"))
        last = flat.get(("params", "encoder", "final", "kernel"))
        if first is not None and last is not None and len(shape_of(first)) == 4 and len(shape_of(last)) == 4:
            dims = layer_channels(shape_of(first)[2], shape_of(first)[3], shape_of(last)[3])
        elif first is not None and last is not None:
            notes.append("cannot infer the architecture: encoder/block0/conv/kernel and encoder/final/kernel "
                         "must be 4-D")
    return tables.flax_to_torch(flat, _rows(dims), what=what, model="SAR autoencoder", notes=notes,
                                count=num_batches_tracked)
