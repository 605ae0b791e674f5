"""A trained factorized or hyperprior run as a real codec: latents entropy-coded to bytes and back.

The coding tables are integers (:mod:`sar_jax.codec.tables`), built once per checkpoint from its
densities and stored beside it (``<run>/codec_tables/<which>-<fingerprint>.npz``), so the encoder
and the decoder read the same numbers; their hashes go into every bitstream, which a decoder with
other tables refuses.

- ``factorized``: symbols ``round(y - median_c)``, one table per channel c; ``y_hat = symbols + median``.
- ``hyperprior``: ``z = h_a(y)`` (y zero-padded to a multiple of 4 cells) coded like the factorized
  latent; the decoder rebuilds the scales ``h_s(z_hat)`` with the same jitted function, picks each
  element's Gaussian table from them (:data:`CODING_SCALES`), and decodes ``y_hat = round(y)``.

The latent's transforms run here on whole latents; full scenes are cut into halo tiles for ``g_a`` and
``g_s`` by :mod:`sar_jax.inference.reconstruct`.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sar_jax.codec import entropy_coder
from sar_jax.codec.tables import CodingTables, gaussian_tables, quantize_pmfs, scale_indexes
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import atomic_path
from sar_jax.inference.latent import fingerprint
from sar_jax.nn.entropy import SCALE_BOUND, PmfTable, pmf_table

HYPER_CELLS = 4  # latent cells per hyper-latent cell (h_a halves twice)
#: The Gaussian tables' scales, 0.11 to 256 in 256 log steps: each y element is coded with the first one at
#: or above its predicted scale. CompressAI's 64 steps (13% apart) cost 4% over the likelihoods' estimate
#: on a trained model here, these 256 (3% apart) 0.7%.
CODING_SCALES = np.exp(np.linspace(np.log(SCALE_BOUND), np.log(256.0), 256))


def _tables(pmf: PmfTable) -> CodingTables:
    rows = [row[:n] for row, n in zip(pmf.pmf, pmf.length)]
    return quantize_pmfs(rows, pmf.tail_mass, pmf.offset)


def _medians(bottleneck: dict[str, Any]) -> np.ndarray:
    return np.asarray(bottleneck["quantiles"], np.float32)[:, 0, 1]


@dataclass
class Coded:
    """One latent's bitstreams and what the encoder side decodes them to."""

    streams: dict[str, bytes]
    shape: tuple[int, int]  # latent cells (h, w) of y
    y_hat: np.ndarray  # (h, w, M) float32
    estimated_bits: float  # sum of -log2 of the tables' probabilities of every symbol coded

    @property
    def nbytes(self) -> int:
        return sum(len(s) for s in self.streams.values())


class LearnedCodec:
    """Encode / decode latents of a loaded ``factorized`` or ``hyperprior`` run (:func:`load_run`)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.kind = run.config["model"]["kind"]
        if self.kind not in ("factorized", "hyperprior"):
            raise SarJaxError(f"checkpoint {run.run_dir}: model.kind {self.kind!r} has no entropy model; "
                              "bitstreams need model.kind factorized or hyperprior")
        self.fingerprint = fingerprint(run.variables)
        params = run.variables["params"]
        self.medians = _medians(params["entropy_bottleneck"])
        self.tables = self._load_tables(params)
        self.fns = _jitted(run.model)

    def _load_tables(self, params: dict[str, Any]) -> dict[str, CodingTables]:
        """The run's stored tables, built and stored on first use."""
        path = Path(self.run.run_dir) / "codec_tables" / f"{self.run.which}-{self.fingerprint[7:]}.npz"
        if path.is_file():
            with np.load(path) as f:
                arrays = dict(f)
            names = sorted({k.split(".", 1)[0] for k in arrays})
            return {n: CodingTables.from_arrays({k.split(".", 1)[1]: v for k, v in arrays.items()
                                                 if k.startswith(n + ".")}) for n in names}
        tables = {("y" if self.kind == "factorized" else "z"): _tables(pmf_table(params["entropy_bottleneck"]))}
        if self.kind == "hyperprior":
            tables["y"] = gaussian_tables(CODING_SCALES)
        try:
            path.parent.mkdir(exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **{f"{n}.{k}": v for n, t in tables.items() for k, v in t.to_arrays().items()})
        except OSError as exc:  # a read-only run directory: the tables are rebuilt each time
            warnings.warn(f"cannot store the coding tables in {path.parent} ({exc.strerror})", stacklevel=2)
        return tables

    def table_hashes(self) -> dict[str, str]:
        """``{latent name: content hash}`` of the coding tables, for a bitstream's header."""
        return {n: t.content_hash() for n, t in sorted(self.tables.items())}

    def check_hashes(self, hashes: dict[str, str], what: str) -> None:
        """Refuse a bitstream coded with other tables."""
        if hashes != self.table_hashes():
            raise SarJaxError(f"{what}: coded with other coding tables than {self.run.run_dir}'s "
                              f"({self.run.which}); decode it with the checkpoint that encoded it")

    # ----------------------------------------------------------------------- latents

    def encode(self, y: np.ndarray) -> Coded:
        """A float latent y (h, w, M) -> bitstreams (the hyperprior's y zero-padded to a multiple of 4 cells)."""
        y = np.asarray(y, np.float32)
        shape = y.shape[:2]
        channel = np.broadcast_to(np.arange(y.shape[-1], dtype=np.int32), y.shape)
        if self.kind == "factorized":
            symbols = np.round(y - self.medians).astype(np.int32)
            streams = {"y": entropy_coder.encode(symbols, channel, self.tables["y"])}
            y_hat = symbols + self.medians
            return Coded(streams, shape, y_hat, self._likelihood_bits(y_hat=y_hat))
        y = _pad_to(y, HYPER_CELLS)
        z = np.asarray(self.fns["hyper_analysis"](self.run.variables, y[None]))[0]
        z_symbols = np.round(z - self.medians).astype(np.int32)
        z_channel = np.broadcast_to(np.arange(z.shape[-1], dtype=np.int32), z.shape)
        z_hat, scales, index = self._scales(z_symbols)
        y_symbols = np.round(y).astype(np.int32)
        streams = {"z": entropy_coder.encode(z_symbols, z_channel, self.tables["z"]),
                   "y": entropy_coder.encode(y_symbols, index, self.tables["y"])}
        y_hat = y_symbols.astype(np.float32)
        bits = self._likelihood_bits(y_hat=y_hat, z_hat=z_hat, scales=scales)
        return Coded(streams, shape, y_hat[:shape[0], :shape[1]], bits)

    def decode(self, streams: dict[str, bytes], shape: tuple[int, int]) -> np.ndarray:
        """Bitstreams of a latent of ``shape`` (h, w) cells -> y_hat (h, w, M) float32."""
        m = self.run.config["model"]["M"]
        if self.kind == "factorized":
            channel = np.broadcast_to(np.arange(m, dtype=np.int32), (*shape, m))
            return entropy_coder.decode(streams["y"], channel, self.tables["y"]) + self.medians
        n = self.run.config["model"]["N"]
        ph, pw = (-(-d // HYPER_CELLS) * HYPER_CELLS for d in shape)
        z_symbols = entropy_coder.decode(
            streams["z"], np.broadcast_to(np.arange(n, dtype=np.int32), (ph // HYPER_CELLS, pw // HYPER_CELLS, n)),
            self.tables["z"])
        y_hat = entropy_coder.decode(streams["y"], self._scales(z_symbols)[2], self.tables["y"]).astype(np.float32)
        return y_hat[:shape[0], :shape[1]]

    def _scales(self, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(z_hat, scales, table index)`` from the decoded hyper-latent (the same jitted h_s on both sides)."""
        z_hat = (z_symbols + self.medians).astype(np.float32)
        scales = np.asarray(self.fns["hyper_synthesis"](self.run.variables, z_hat[None]))[0]
        return z_hat, scales, scale_indexes(scales, CODING_SCALES)

    def _likelihood_bits(self, **latents: np.ndarray) -> float:
        """sum(-log2 p) of the model's eval-mode likelihoods of the coded latents (what training estimates)."""
        liks = self.fns["likelihoods"](self.run.variables, *(jnp.asarray(latents[k])[None] for k in sorted(latents)))
        return float(sum(np.sum(-np.log2(np.asarray(p, np.float64))) for p in liks))

    # ----------------------------------------------------------------------- images

    def analysis(self, x: np.ndarray) -> np.ndarray:
        """Images (n, H, W, 1) in [0, 1] -> y (n, H/16, W/16, M)."""
        return np.asarray(self.fns["analysis"](self.run.variables, jnp.asarray(x, jnp.float32)))

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        """y_hat (n, h, w, M) -> images clipped to [0, 1]."""
        return np.asarray(self.fns["synthesis"](self.run.variables, jnp.asarray(y_hat, jnp.float32)))

    def code(self, image: np.ndarray) -> tuple[np.ndarray, int, float]:
        """A whole ``(H, W)`` image in [0, 1] (sides multiples of 16) -> (decoded ``(H, W)`` from its bitstreams,
        their bytes, the likelihoods' estimate of their bits)."""
        coded = self.encode(self.analysis(image[None, :, :, None])[0])
        y_hat = self.decode(coded.streams, coded.shape)
        return self.synthesis(y_hat[None])[0, ..., 0], coded.nbytes, coded.estimated_bits

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`code` without the estimate: (decoded image, bytes)."""
        return self.code(image)[:2]


@functools.cache
def _jitted(model: Any) -> dict[str, Any]:
    def method(name: str, clip: bool = False) -> Any:
        def fn(variables: dict[str, Any], x: jax.Array) -> jax.Array:
            out = model.apply(variables, x, method=name)
            return jnp.clip(out, 0.0, 1.0) if clip else out
        return jax.jit(fn)

    fns = {"analysis": method("analysis"), "synthesis": method("synthesis", clip=True)}
    if hasattr(model, "hyper_analysis"):
        fns["hyper_analysis"] = method("hyper_analysis")
        fns["hyper_synthesis"] = method("hyper_synthesis")

        def likelihoods(variables: dict[str, Any], scales: jax.Array, y_hat: jax.Array, z_hat: jax.Array) -> Any:
            return model.apply(variables, y_hat, scales, z_hat, method=lambda m, y, s, z: (
                m.gaussian_conditional.likelihood(y, s), m.entropy_bottleneck.likelihood(z)))
    else:
        def likelihoods(variables: dict[str, Any], y_hat: jax.Array) -> Any:
            return model.apply(variables, y_hat, method=lambda m, y: (m.entropy_bottleneck.likelihood(y),))
    fns["likelihoods"] = jax.jit(likelihoods)
    return fns


def _pad_to(y: np.ndarray, multiple: int) -> np.ndarray:
    """Zero cells after the last row and column up to a multiple of ``multiple``."""
    ph, pw = (-(-d // multiple) * multiple - d for d in y.shape[:2])
    return np.pad(y, ((0, ph), (0, pw), (0, 0))) if ph or pw else y
