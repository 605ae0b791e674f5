"""The contenders: the project's real JAX steps and the PyTorch reference's training step.

Each contender builds, for one (batch, image size), two zero-argument callables that run ONE
synchronous step (the result is waited for): ``train`` (forward, loss, backward, clip + Adam)
and ``infer`` (eval-mode reconstruction). Same model config, loss
(``mse_weight * MSE + ssim_weight * (1 - SSIM)``), optimizer (global-norm clip, Adam) and data.

- JAX: :func:`sar_jax.training.state.compile_steps` (``train_step``, ``predict``), compiled
  ahead of time with ``.lower(...).compile()`` so the compile time is measured on its own.
  ``bf16`` is the model's compute dtype (``SARAutoencoder(dtype=bfloat16)``): parameters,
  BatchNorm statistics, optimizer and loss stay float32.
- PyTorch: ``sar_torch_ref``'s model + ``CombinedLoss`` + ``Adam`` + ``clip_grad_norm_``, as
  in ``sar_torch_ref.training.trainer``. ``bf16`` is ``torch.autocast`` around the forward;
  the loss is computed in float32 on the upcast reconstruction, as JAX does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Skip(Exception):
    """This contender cannot run here (the message says why)."""


@dataclass
class Prepared:
    """A contender ready to time at one (batch, size)."""

    train: Callable[[], None]
    infer: Callable[[], None]
    compile_seconds: dict[str, float | None]
    first_call_seconds: dict[str, float] = field(default_factory=dict)
    device_peak_memory_mb: Callable[[], dict[str, float | None]] | None = None
    reset_peak_memory: Callable[[], None] | None = None


@dataclass(frozen=True)
class Contender:
    """One framework/variant/precision; ``build`` returns a :class:`Prepared` or raises :class:`Skip`."""

    framework: str
    variant: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.framework}-{self.variant}-{self.precision}"

    def build(self, config: dict[str, Any], batch: np.ndarray, device: str) -> Prepared:
        if self.framework == "jax":
            return _build_jax(self, config, batch)
        return _build_torch(self, config, batch, device)


ALL_CONTENDERS = (
    Contender("jax", "jit", "fp32"),
    Contender("jax", "jit", "bf16"),
    Contender("torch", "eager", "fp32"),
    Contender("torch", "channels_last", "fp32"),
    Contender("torch", "compile", "fp32"),
    Contender("torch", "eager", "bf16"),
    Contender("torch", "channels_last", "bf16"),
)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------- JAX

def _build_jax(c: Contender, config: dict[str, Any], batch: np.ndarray) -> Prepared:
    import jax
    import jax.numpy as jnp

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.training.state import compile_steps, create_train_state

    dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16}[c.precision]
    model = SARAutoencoder.from_config(config["model"], dtype=dtype)
    steps = compile_steps(model, config)
    state = create_train_state(model, config)
    x = jax.device_put(jnp.asarray(batch))
    # predict's variables: a copy, since train_step donates (and so deletes) the state's buffers
    variables = jax.tree.map(jnp.copy, {"params": state.params, "batch_stats": state.batch_stats})

    train_c, t_train = _timed(lambda: steps["train_step"].lower(state, x).compile())
    infer_c, t_infer = _timed(lambda: steps["predict"].lower(variables, x).compile())
    box = [state]

    def train() -> None:
        box[0], metrics = train_c(box[0], x)
        jax.block_until_ready(metrics["loss"])

    def infer() -> None:
        jax.block_until_ready(infer_c(variables, x))

    _, first_train = _timed(train)
    _, first_infer = _timed(infer)
    dev = jax.devices()[0]

    def device_peak() -> dict[str, float | None]:
        stats = dev.memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return {"device_peak_mb": None if peak is None else peak / 2**20}

    return Prepared(train, infer, {"train": t_train, "infer": t_infer},
                    {"train": first_train, "infer": first_infer},
                    device_peak if dev.platform != "cpu" else None)


# ------------------------------------------------------------------------------------- PyTorch

def _build_torch(c: Contender, config: dict[str, Any], batch: np.ndarray, device: str) -> Prepared:
    import torch

    from sar_torch_ref.losses.combined import CombinedLoss
    from sar_torch_ref.models import SARAutoencoder as TorchAutoencoder

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Skip("torch has no CUDA device")
    torch.manual_seed(config["train"]["seed"])
    model = TorchAutoencoder(config["model"]).to(dev)
    loss_fn = CombinedLoss.from_config(config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["train"]["lr"])
    max_norm = config["train"]["max_grad_norm"]
    x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(dev)
    if c.variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = model
    if c.variant == "compile":
        try:
            forward = torch.compile(model)
        except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
            raise Skip(f"torch.compile unavailable: {type(exc).__name__}: {exc}") from exc
    use_bf16 = c.precision == "bf16"
    if use_bf16 and dev.type == "cpu" and not torch.backends.mkldnn.is_available():
        raise Skip("no oneDNN: CPU bf16 autocast would not be representative")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def train() -> None:
        model.train()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            x_hat, _ = forward(x)
        loss, _ = loss_fn(x_hat.float(), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        sync()

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            forward(x)
        sync()

    try:
        _, first_train = _timed(train)
        _, first_infer = _timed(infer)
    except Exception as exc:  # noqa: BLE001 - e.g. inductor without a working C++ toolchain
        if c.variant != "compile":
            raise
        raise Skip(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    compiled = c.variant == "compile"
    peak = reset = None
    if dev.type == "cuda":
        def peak() -> dict[str, float | None]:
            return {"device_peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20}

        def reset() -> None:
            torch.cuda.reset_peak_memory_stats(dev)
    return Prepared(train, infer,
                    {"train": first_train if compiled else None, "infer": first_infer if compiled else None},
                    {"train": first_train, "infer": first_infer}, peak, reset)
