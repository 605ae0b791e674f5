"""The mechanism the weight converters (:mod:`~sar_jax.parity.convert`, :mod:`~sar_jax.parity.convert_codec`,
:mod:`~sar_jax.parity.convert_unet`) share: a table of :class:`Row` s, each a torch state_dict key <-> one
Flax variable path with a fixed axis permutation, checked in full (ONE :class:`SarJaxError` listing every
missing, unexpected, mis-shaped or mistyped key) and then applied in either direction. Permutations of
float32 arrays are exact, so torch -> JAX -> torch is bit-exact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError


@dataclass(frozen=True)
class Row:
    """``torch_key`` <-> the Flax variable at ``flax_path`` (collection first; ``None``: a torch-only integer
    count such as ``num_batches_tracked``); ``perm``: the torch -> Flax axis permutation (``None``: copied);
    ``torch_shape``: the expected torch shape (``None``: not checked)."""

    torch_key: str
    flax_path: tuple[str, ...] | None
    perm: tuple[int, ...] | None
    torch_shape: tuple[int, ...] | None

    @property
    def flax_shape(self) -> tuple[int, ...] | None:
        if self.torch_shape is None or self.perm is None:
            return self.torch_shape
        return tuple(self.torch_shape[p] for p in self.perm)


def shape_of(value: Any) -> tuple[int, ...]:
    """``value.shape`` as ints (``()`` for a value without one)."""
    return tuple(int(s) for s in getattr(value, "shape", ()))


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):  # torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def flatten(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """A nested mapping -> ``{path: leaf}``, paths as tuples of ``str`` keys."""
    if isinstance(tree, Mapping):
        out: dict[tuple[str, ...], Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, prefix + (str(k),)))
        return out
    return {prefix: tree}


def require_mapping(value: Any, what: str, expected: str) -> None:
    """Raise unless ``value`` is a mapping; ``expected`` says what kind (``"a mapping with 'params'"``)."""
    if not isinstance(value, Mapping):
        raise SarJaxError(f"{what}: expected {expected}, got {type(value).__name__}")


def raise_problems(what: str, model: str, missing: list[str], unexpected: list[str], bad: list[str]) -> None:
    """ONE error naming every problem: ``<what> does not match the <model>: missing ... | unexpected ... | ...``."""
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected)}")
    if bad:
        parts.append(f"{len(bad)} mis-shaped or mistyped: {'; '.join(bad)}")
    if parts:
        raise SarJaxError(f"{what} does not match the {model}: " + " | ".join(parts))


def torch_to_flax(state_dict: Mapping[str, Any], rows: Sequence[Row], collections: Sequence[str], *, what: str,
                  model: str, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Check ``state_dict`` against ``rows`` (``notes``: problems found before, listed first), then
    ``{collection: nested float32 jax arrays}`` for every row with a Flax path; ``collections`` are
    always present, in this order."""
    import jax.numpy as jnp

    known = {r.torch_key for r in rows}
    missing = [r.torch_key for r in rows if r.torch_key not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in known]
    bad = list(notes)
    for r in rows:
        if r.torch_key not in state_dict:
            continue
        value = state_dict[r.torch_key]
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            bad.append(f"{r.torch_key} is a {type(value).__name__}, not a tensor")
            continue
        is_float = getattr(value, "is_floating_point", lambda: np.issubdtype(value.dtype, np.floating))()
        if r.flax_path is None and is_float:
            bad.append(f"{r.torch_key} has dtype {value.dtype}, expected an integer")
        elif r.flax_path is not None and not is_float:
            bad.append(f"{r.torch_key} has dtype {value.dtype}, expected floating point")
        if r.torch_shape is not None and shape_of(value) != r.torch_shape:
            bad.append(f"{r.torch_key} has shape {shape_of(value)}, expected {r.torch_shape}")
    raise_problems(what, model, missing, unexpected, bad)
    out: dict[str, Any] = {c: {} for c in collections}
    for r in rows:
        if r.flax_path is None:
            continue
        arr = to_numpy(state_dict[r.torch_key]).astype(np.float32, copy=False)
        if r.perm is not None:
            arr = arr.transpose(r.perm)
        node = out
        for name in r.flax_path[:-1]:
            node = node.setdefault(name, {})
        node[r.flax_path[-1]] = jnp.asarray(np.ascontiguousarray(arr))
    return out


def flax_to_torch(flat: Mapping[tuple[str, ...], Any], rows: Sequence[Row], *, what: str, model: str,
                  notes: Sequence[str] = (), count: int = 0) -> OrderedDict[str, Any]:
    """Check the :func:`flatten` ed variables ``flat`` against ``rows`` (``notes`` as in :func:`torch_to_flax`),
    then a state_dict of float32 CPU tensors in table order; rows without a Flax path get ``count``
    (an int64 scalar)."""
    import torch

    expected = {r.flax_path: r for r in rows if r.flax_path is not None}
    missing = ["/".join(p) for p in expected if p not in flat]
    unexpected = ["/".join(p) for p in flat if p not in expected]
    bad = list(notes) + [f"{'/'.join(p)} has shape {shape_of(flat[p])}, expected {r.flax_shape}"
                         for p, r in expected.items()
                         if p in flat and r.flax_shape is not None and shape_of(flat[p]) != r.flax_shape]
    raise_problems(what, model, missing, unexpected, bad)
    out: OrderedDict[str, Any] = OrderedDict()
    for r in rows:
        if r.flax_path is None:
            out[r.torch_key] = torch.tensor(int(count), dtype=torch.long)
            continue
        arr = np.asarray(flat[r.flax_path]).astype(np.float32, copy=False)
        if r.perm is not None:
            arr = arr.transpose(np.argsort(r.perm))
        out[r.torch_key] = torch.from_numpy(np.array(arr, dtype=np.float32, order="C", copy=True))
    return out
