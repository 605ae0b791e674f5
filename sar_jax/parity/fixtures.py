"""Inputs shared by the parity checks: configs, reference models with randomised BatchNorm,
layout conversions, synthetic and real SAR image pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def model_config(base: int = 64, latent: int = 16, in_channels: int = 1) -> dict[str, Any]:
    """A ``model`` config section."""
    from sar_jax.core.config import default_config

    return dict(default_config()["model"], base_channels=base, latent_channels=latent,
                in_channels=in_channels)


def tiny_config(**train: Any) -> dict[str, Any]:
    """``configs/tiny.json`` at the parity checks' shapes: base 8, latent 4, 32x32 patches, batch 4,
    lr 1e-3, the baseline's 0.15 / 0.15 splits, no prefetch thread; ``train`` overrides keys of
    the ``train`` section."""
    from sar_jax.core.config import load_config, validate

    cfg = load_config("tiny", ["model.base_channels=8", "data.val_fraction=0.15", "data.test_fraction=0.15",
                               "data.prefetch=0", "train.lr=1e-3"])[0]
    cfg["train"].update(train)
    validate(cfg, "parity tiny config")
    return cfg


def torch_model(model_cfg: dict[str, Any], seed: int = 0, randomize_bn: bool = True) -> Any:
    """A reference model with torch's init; BatchNorm affine and running stats (and the final
    biases) randomised so that they matter in the comparison."""
    import torch

    from sar_torch_ref.models import SARAutoencoder

    torch.manual_seed(seed)
    model = SARAutoencoder(model_cfg)
    if randomize_bn:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                    m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=gen))
            for final in (model.encoder.final, model.decoder.final):
                final.bias.copy_(0.05 * torch.randn(final.bias.shape, generator=gen))
    return model


def nchw(x: np.ndarray) -> Any:
    """NHWC numpy -> NCHW float32 torch tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)), dtype=np.float32))


def nhwc(t: Any) -> np.ndarray:
    """NCHW torch tensor -> NHWC numpy."""
    return t.detach().permute(0, 2, 3, 1).cpu().numpy()


def tiny_patches(size: int = 32, seed: int = 0) -> np.ndarray:
    """Normalised synthetic SAR training patches (N, size, size, 1) from the data pipeline."""
    from sar_jax.data.pipeline import build_datasets

    cfg = tiny_config(seed=seed)
    cfg["data"].update(patch_size=size, scene_size=max(64, 2 * size), stride=size // 2)
    return build_datasets(cfg).patches("train")


def synthetic_ssim_cases(seed: int = 0, size: int = 64) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x_hat, x) NHWC pairs: random, correlated, identical, anti-correlated, constant."""
    rng = np.random.default_rng(seed)
    shape = (3, size, size, 1)
    u = rng.random(shape, dtype=np.float32)
    v = rng.random(shape, dtype=np.float32)
    smooth = np.cumsum(np.cumsum(rng.standard_normal(shape), axis=1), axis=2)
    smooth = ((smooth - smooth.min()) / (smooth.max() - smooth.min())).astype(np.float32)
    noisy = lambda x, s: np.clip(x + s * rng.standard_normal(x.shape), 0, 1).astype(np.float32)  # noqa: E731
    cases = [("independent uniform", u, v), ("uniform + noise 0.05", noisy(u, 0.05), u),
             ("smooth + noise 0.1", noisy(smooth, 0.1), smooth), ("smooth + noise 0.3", noisy(smooth, 0.3), smooth),
             ("identical", smooth, smooth.copy()), ("anti-correlated (1 - x)", 1.0 - smooth, smooth),
             ("constant == constant", np.full(shape, 0.5, np.float32), np.full(shape, 0.5, np.float32)),
             ("constant 0.2 vs 0.7", np.full(shape, 0.2, np.float32), np.full(shape, 0.7, np.float32)),
             ("constant vs uniform", np.full(shape, 0.5, np.float32), u)]
    return cases


def sar_tiles(sar_dir: str | Path, size: int = 128, per_scene: int = 3, seed: int = 0) -> np.ndarray:
    """Tiles (N, size, size, 1) in [0, 1] cropped from the 8-bit SAR PNGs in ``sar_dir``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tiles = []
    for path in sorted(Path(sar_dir).glob("*.png")):
        img = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        h, w = img.shape
        for _ in range(per_scene):
            r, c = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            tiles.append(img[r:r + size, c:c + size])
    if not tiles:
        raise FileNotFoundError(f"no PNG in {sar_dir}")
    return np.stack(tiles)[..., None]


def sar_ssim_cases(sar_dir: str | Path, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real SAR tiles vs themselves with gaussian noise of several strengths (clipped to [0, 1])."""
    x = sar_tiles(sar_dir, seed=seed)
    rng = np.random.default_rng(seed + 1)
    cases = []
    for sigma in (0.01, 0.05, 0.1, 0.2, 0.5):
        noisy = np.clip(x + sigma * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
        cases.append((f"real SAR + noise {sigma}", noisy, x))
    cases.append(("real SAR identical", x, x.copy()))
    cases.append(("real SAR vs 1 - x", 1.0 - x, x))
    return cases
