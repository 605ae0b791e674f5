"""Convert the learned codecs' weights between ``sar_torch_ref`` (PyTorch state_dicts) and ``sar_jax``
(Flax ``{"params": ...}``), for ``model.kind`` ``factorized`` and ``hyperprior``.

A fixed table per kind (:func:`conversion_table`) maps every state_dict key (``g_a.conv0.weight``)
to one Flax path (``params/g_a/conv0/kernel``) with a fixed axis permutation:

- ``Conv2d`` weight ``(out, in, k, k)`` -> kernel ``(k, k, in, out)``: ``W.transpose(2, 3, 1, 0)``
  (the 5x5 stride-2 convs and the hyperprior's 3x3 stride-1 convs);
- ``ConvTranspose2d`` weight ``(in, out, 5, 5)`` -> kernel ``(5, 5, in, out)``: ``W.transpose(2, 3, 0, 1)``;
- biases, GDN ``beta``/``gamma`` (stored reparametrised on both sides) and the entropy bottleneck's
  ``matrix{i}``/``bias{i}``/``factor{i}``/``quantiles`` are copied unchanged.

Permutations are exact, so torch -> JAX -> torch is bit-exact. Any missing, unexpected or
mis-shaped key raises ONE :class:`SarJaxError` listing them all (:mod:`sar_jax.parity.tables`).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sar_jax.core.errors import SarJaxError
from sar_jax.parity import tables
from sar_jax.parity.tables import Row, flatten, require_mapping, shape_of

KINDS = ("factorized", "hyperprior")
#: torch weight -> Flax kernel; ``copy`` entries keep their layout.
PERMUTATIONS = {"conv": (2, 3, 1, 0), "deconv": (2, 3, 0, 1), "copy": None}
#: The entropy bottleneck's filters, with the 1-wide input and output: matrix{i} is (C, f[i+1], f[i]).
FILTERS = (1, 3, 3, 3, 3, 1)


@dataclass(frozen=True)
class Entry:
    """One row of the table: ``torch_key`` <-> ``params/<path>``, ``kind`` ``conv``/``deconv``/``copy``."""

    torch_key: str
    path: tuple[str, ...]
    kind: str
    torch_shape: tuple[int, ...]

    @property
    def flax_name(self) -> str:
        return "/".join(("params",) + self.path)

    @property
    def flax_shape(self) -> tuple[int, ...]:
        perm = PERMUTATIONS[self.kind]
        return self.torch_shape if perm is None else tuple(self.torch_shape[p] for p in perm)


def _layer(part: str, name: str, cin: int, cout: int, k: int = 5) -> list[Entry]:
    if name.startswith("deconv"):
        weight = Entry(f"{part}.{name}.weight", (part, name, "kernel"), "deconv", (cin, cout, k, k))
    else:
        weight = Entry(f"{part}.{name}.weight", (part, name, "kernel"), "conv", (cout, cin, k, k))
    return [weight, Entry(f"{part}.{name}.bias", (part, name, "bias"), "copy", (cout,))]


def _gdn(part: str, name: str, c: int) -> list[Entry]:
    return [Entry(f"{part}.{name}.beta", (part, name, "beta"), "copy", (c,)),
            Entry(f"{part}.{name}.gamma", (part, name, "gamma"), "copy", (c, c))]


def _bottleneck(c: int) -> list[Entry]:
    rows = []
    for i in range(len(FILTERS) - 1):
        names = [("matrix", (c, FILTERS[i + 1], FILTERS[i])), ("bias", (c, FILTERS[i + 1], 1))]
        if i < len(FILTERS) - 2:
            names.append(("factor", (c, FILTERS[i + 1], 1)))
        rows += [Entry(f"entropy_bottleneck.{p}{i}", ("entropy_bottleneck", f"{p}{i}"), "copy", s) for p, s in names]
    return rows + [Entry("entropy_bottleneck.quantiles", ("entropy_bottleneck", "quantiles"), "copy", (c, 1, 3))]


def conversion_table(kind: str, in_channels: int = 1, N: int = 128, M: int = 192) -> tuple[Entry, ...]:
    """All rows for ``kind`` at these widths, in the order of the reference model's state_dict."""
    _check_kind(kind)
    rows: list[Entry] = []
    dims = [(in_channels, N), (N, N), (N, N), (N, M)]
    for i, (cin, cout) in enumerate(dims):
        rows += _layer("g_a", f"conv{i}", cin, cout) + (_gdn("g_a", f"gdn{i}", cout) if i < 3 else [])
    for i, (cout, cin) in enumerate(reversed(dims)):
        rows += _layer("g_s", f"deconv{i}", cin, cout) + (_gdn("g_s", f"igdn{i}", cout) if i < 3 else [])
    if kind == "hyperprior":
        rows += (_layer("h_a", "conv0", M, N, 3) + _layer("h_a", "conv1", N, N) + _layer("h_a", "conv2", N, N)
                 + _layer("h_s", "deconv0", N, N) + _layer("h_s", "deconv1", N, N) + _layer("h_s", "conv2", N, M, 3))
    return tuple(rows + _bottleneck(N if kind == "hyperprior" else M))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise SarJaxError(f"model.kind {kind!r}: the codec converter handles {' and '.join(KINDS)}")


def _dims_from_cfg(model_cfg: Mapping[str, Any]) -> tuple[int, int, int]:
    return int(model_cfg["in_channels"]), int(model_cfg["N"]), int(model_cfg["M"])


def _infer(first: Any, last: Any, axes: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """(in_channels, N, M) from g_a's first and last weights; ``axes`` = where in, N and M sit."""
    if first is None or last is None or len(shape_of(first)) != 4 or len(shape_of(last)) != 4:
        return None
    return shape_of(first)[axes[0]], shape_of(first)[axes[1]], shape_of(last)[axes[2]]


def _rows(kind: str, model_cfg: Mapping[str, Any] | None, first: Any, last: Any,
          axes: tuple[int, int, int]) -> tuple[Row, ...]:
    """The table as :class:`~sar_jax.parity.tables.Row` s, shapes from ``model_cfg`` or inferred (else unchecked)."""
    dims = _dims_from_cfg(model_cfg) if model_cfg is not None else _infer(first, last, axes)
    return tuple(Row(e.torch_key, ("params",) + e.path, PERMUTATIONS[e.kind], None if dims is None else e.torch_shape)
                 for e in conversion_table(kind, *(dims or (1, 1, 1))))


# --------------------------------------------------------------------------- torch -> Flax


def torch_to_flax(state_dict: Mapping[str, Any], kind: str, model_cfg: Mapping[str, Any] | None = None, *,
                  what: str = "torch state_dict") -> dict[str, Any]:
    """A ``sar_torch_ref`` codec state_dict -> ``{"params": ...}`` (float32 jax arrays).

    ``model_cfg`` (a config's ``model`` section: ``in_channels``, ``N``, ``M``), if given, fixes the
    expected shapes; otherwise they are inferred from ``g_a.conv0.weight`` and ``g_a.conv3.weight``.
    """
    _check_kind(kind)
    require_mapping(state_dict, what, "a state_dict (a mapping of names to tensors)")
    rows = _rows(kind, model_cfg, state_dict.get("g_a.conv0.weight"), state_dict.get("g_a.conv3.weight"), (1, 0, 0))
    return tables.torch_to_flax(state_dict, rows, ("params",), what=what, model=f"{kind} codec")


# --------------------------------------------------------------------------- Flax -> torch


def flax_to_torch(variables: Mapping[str, Any], kind: str, model_cfg: Mapping[str, Any] | None = None, *,
                  what: str = "Flax variables") -> collections.OrderedDict[str, Any]:
    """``{"params": ...}`` -> a ``sar_torch_ref`` codec state_dict (OrderedDict of float32 CPU
    tensors, in the reference model's key order)."""
    _check_kind(kind)
    require_mapping(variables, what, "a mapping with 'params'")
    flat = flatten(variables)
    rows = _rows(kind, model_cfg, flat.get(("params", "g_a", "conv0", "kernel")),
                 flat.get(("params", "g_a", "conv3", "kernel")), (2, 3, 3))
    return tables.flax_to_torch(flat, rows, what=what, model=f"{kind} codec")
