"""Classical codecs for the rate-distortion study, on images in the checkpoint's [0, 1] dB domain.

Each codec maps an (H, W) float image in [0, 1] and a rate setting to ``(decoded, nbytes)``: the
decoded (H, W) float32 image and the size of the encoded bytes, so bits per pixel always come
from real bytes: JPEG 2000 (Pillow's OpenJPEG, 16-bit samples) and JPEG (Pillow, 8-bit). Block-mean
downsampling is split into :func:`block_means` and :func:`bicubic_upsample`, so its means can be
stored the way the latents are (benchmarks/rate_distortion.py).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from sar_jax.core.errors import SarJaxError


def _check(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise SarJaxError(f"expected a 2-D image, got shape {img.shape}")
    return np.clip(img, 0.0, 1.0)


def jpeg2000(image: np.ndarray, bpp: float) -> tuple[np.ndarray, int]:
    """JPEG 2000 (irreversible 9/7 wavelet) of the 16-bit quantised image at a target ``bpp``.

    Returns the decoded image and the size of the raw codestream (no JP2 wrapper) in bytes.
    """
    if not bpp > 0:
        raise SarJaxError(f"bpp = {bpp} is invalid; expected a number > 0")
    img = _check(image)
    q = np.round(img * 65535.0).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(q).save(buf, format="JPEG2000", no_jp2=True, irreversible=True,
                            quality_mode="rates", quality_layers=[16.0 / bpp])
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        out = np.asarray(decoded, np.float32) / 65535.0
    return out, len(data)


def jpeg(image: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """Baseline JPEG of the 8-bit quantised image at Pillow ``quality`` (1-95)."""
    if not 1 <= quality <= 95:
        raise SarJaxError(f"quality = {quality} is invalid; expected 1..95")
    img = _check(image)
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255.0).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        out = np.asarray(decoded, np.float32) / 255.0
    return out, len(data)


def block_means(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor x factor`` blocks, ``(H / factor, W / factor)`` float32; sides must be multiples."""
    img = _check(image)
    h, w = img.shape
    if factor < 1 or h % factor or w % factor:
        raise SarJaxError(f"factor = {factor} is invalid for a {h}x{w} image; expected a divisor of both sides")
    return img.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3)).astype(np.float32)


def bicubic_upsample(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pillow's bicubic resize of a float image to ``shape`` (rows, cols), clipped to [0, 1]."""
    out = Image.fromarray(np.asarray(small, np.float32), mode="F").resize((shape[1], shape[0]), Image.BICUBIC)
    return np.clip(np.asarray(out, np.float32), 0.0, 1.0)
