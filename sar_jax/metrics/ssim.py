"""SSIM and MS-SSIM in JAX, in pytorch-msssim's shape: Gaussian window, filter, ``ssim``, ``ms_ssim``.

Semantics are pytorch-msssim's (``ssim(..., nonnegative_ssim=True)``, ``ms_ssim``): an
``win_size``-tap Gaussian window (sigma 1.5) applied separably without padding,
K = (0.01, 0.03), maps averaged per image and channel. SSIM: dm-pix computes the map, the
per-channel clamp at 0 is added here (dm-pix has none). MS-SSIM: dm-pix has none, so it is
written here following ``pytorch_msssim.ms_ssim`` line by line (five levels weighted
:data:`MS_SSIM_WEIGHTS`, ``relu`` on the contrast terms of levels 1-4 and on the last level's
SSIM, 2x2 average pooling with ``padding = size % 2``, zeros counted); in JAX it stays
jit-compiled on the device and free of torch. The tests compare both with pytorch-msssim.
"""

from __future__ import annotations

import functools

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

#: Weights of MS-SSIM's five scales (pytorch-msssim's).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Up to this image side SSIM's window is applied as two banded matmuls
#: (:func:`banded_gaussian_filter`); larger images use dm-pix's own filter (the matmuls' cost
#: grows with the side squared).
MATMUL_FILTER_MAX_SIDE = 512


def gaussian_window(size: int, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian window.

    Args:
        size: number of taps (odd).
        sigma: standard deviation in pixels.

    Returns:
        ``(size,)`` float32 taps summing to 1, centred on tap ``size // 2`` (computed in float64,
        rounded once; within 2 ulp per tap of dm-pix's and pytorch-msssim's float32 windows).
    """
    taps = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def banded_gaussian_matrix(n: int, window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The 'valid' 1-D Gaussian filtering of length-``n`` signals as a matrix.

    Args:
        n: signal length (>= ``window``).
        window: taps of :func:`gaussian_window`.
        sigma: its standard deviation.

    Returns:
        ``(n, n - window + 1)`` float32 matrix ``m`` whose column j holds the window at rows
        j..j+window-1, so that ``z @ m`` filters ``z``.
    """
    taps = gaussian_window(window, sigma)
    m = np.zeros((n, n - window + 1), np.float32)
    for j in range(n - window + 1):
        m[j:j + window, j] = taps
    return m


def banded_gaussian_filter(z: jax.Array, window: int = 11, sigma: float = 1.5) -> jax.Array:
    """dm-pix's separable 'valid' Gaussian filter of ``(N, H, W, C)`` images, as two banded matmuls.

    Hand-written because dm-pix's filter (vmapped 1-D convolutions over a single channel) is
    XLA:CPU's slowest kind of convolution (measurements: ``benchmarks/results/ANALYSIS.md``).
    Each image is filtered relative to its first pixel, ``filter(z - z0) + z0`` (exact, as every
    window sums to 1): SSIM's variances are ``filter(x^2) - filter(x)^2``, and on constant images
    this makes both terms bit-identical, so SSIM equals the closed form instead of carrying
    float32 cancellation noise. ``z0`` is a constant to autodiff: the exact filter does not
    depend on it, so its gradient is the plain filter's.

    Args:
        z: ``(N, H, W, C)`` images, H and W >= ``window``.
        window: taps of the Gaussian window.
        sigma: its standard deviation.

    Returns:
        ``(N, H - window + 1, W - window + 1, C)`` filtered images.
    """
    h, w = z.shape[-3], z.shape[-2]
    z0 = jax.lax.stop_gradient(z[:, :1, :1, :])
    hi = jax.lax.Precision.HIGHEST
    d = jnp.einsum("nhwc,wv->nhvc", z - z0, banded_gaussian_matrix(w, window, sigma), precision=hi)
    return jnp.einsum("nhvc,hu->nuvc", d, banded_gaussian_matrix(h, window, sigma), precision=hi) + z0


def gaussian_filter(x: jax.Array, win: jax.Array) -> jax.Array:
    """pytorch-msssim's ``gaussian_filter``: the separable valid filter of ``(N, H, W, C)``
    images by a 1-D window as two convolutions (an axis shorter than the window is left as is).

    Args:
        x: ``(N, H, W, C)`` images.
        win: ``(k,)`` window (:func:`gaussian_window`).

    Returns:
        ``(N, H', W', C)`` with ``H' = H - k + 1`` where ``H >= k`` (else ``H``), the same for W.
    """
    n, h, w, c = x.shape
    k = win.shape[0]
    y = x.transpose(0, 3, 1, 2).reshape(n * c, 1, h, w)
    if h >= k:
        y = jax.lax.conv_general_dilated(y, win.reshape(1, 1, k, 1), (1, 1), "VALID",
                                         precision=jax.lax.Precision.HIGHEST)
    if w >= k:
        y = jax.lax.conv_general_dilated(y, win.reshape(1, 1, 1, k), (1, 1), "VALID",
                                         precision=jax.lax.Precision.HIGHEST)
    return y.reshape(n, c, y.shape[2], y.shape[3]).transpose(0, 2, 3, 1)


def ssim(x_hat: jax.Array, x: jax.Array, window_size: int = 11, data_range: float = 1.0,
         size_average: bool = True) -> jax.Array:
    """SSIM, as ``pytorch_msssim.ssim(..., nonnegative_ssim=True)``.

    Args:
        x_hat: ``(N, H, W, C)`` reconstructions.
        x: ``(N, H, W, C)`` references.
        window_size: taps of the Gaussian window (sigma 1.5).
        data_range: value range of the images.
        size_average: average over the batch (else one value per image).

    Returns:
        float32, 0-d or ``(N,)``: the SSIM map's mean per image and channel, clamped at 0 per
        channel, averaged over channels (and images).
    """
    filter_fn = None
    if x.ndim == 4 and max(x.shape[1:3]) <= MATMUL_FILTER_MAX_SIDE:
        filter_fn = lambda z: banded_gaussian_filter(z, window_size)  # noqa: E731
    ssim_map = pix.ssim(x_hat.astype(jnp.float32), x.astype(jnp.float32), max_val=data_range,
                        filter_size=window_size, filter_sigma=1.5, return_map=True, filter_fn=filter_fn)
    per_channel = jnp.mean(ssim_map, axis=(1, 2))  # (N, C)
    per_image = jnp.mean(jax.nn.relu(per_channel), axis=-1)
    return jnp.mean(per_image) if size_average else per_image


def ssim_per_image(x_hat: jax.Array, x: jax.Array, window_size: int = 11, data_range: float = 1.0) -> jax.Array:
    """:func:`ssim` of each image, ``(N,)``."""
    return ssim(x_hat, x, window_size, data_range, size_average=False)


def ms_ssim_window(size: int, preferred: int = 11) -> int | None:
    """The largest odd window <= ``preferred`` for which MS-SSIM's 4 downsamplings fit.

    Args:
        size: the images' smaller side (pytorch-msssim requires ``size > (win - 1) * 16``).
        preferred: the window wanted.

    Returns:
        The window, or None when even a 3-tap window does not fit (images under 33 px).
    """
    win = preferred if preferred % 2 else preferred - 1
    while win >= 3:
        if size > (win - 1) * 16:
            return win
        win -= 2
    return None


def _ssim_and_cs(x: jax.Array, y: jax.Array, win: jax.Array, data_range: float) -> tuple[jax.Array, jax.Array]:
    """Per image and channel means of the SSIM and contrast-structure maps, ``(N, C)`` each."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu1, mu2 = gaussian_filter(x, win), gaussian_filter(y, win)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = gaussian_filter(x * x, win) - mu1_sq
    s2 = gaussian_filter(y * y, win) - mu2_sq
    s12 = gaussian_filter(x * y, win) - mu12
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = ((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return jnp.mean(ssim_map, axis=(1, 2)), jnp.mean(cs_map, axis=(1, 2))


def _avg_pool2(x: jax.Array) -> jax.Array:
    """torch ``avg_pool2d(kernel 2, padding=size % 2)`` with zero padding counted."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return s / 4.0


@functools.partial(jax.jit, static_argnames=("win_size", "data_range", "size_average"))
def ms_ssim(x_hat: jax.Array, x: jax.Array, win_size: int = 11, data_range: float = 1.0,
            size_average: bool = True) -> jax.Array:
    """MS-SSIM, as ``pytorch_msssim.ms_ssim``.

    Args:
        x_hat: ``(N, H, W, C)`` reconstructions.
        x: ``(N, H, W, C)`` references, smaller side > ``(win_size - 1) * 16``
            (:func:`ms_ssim_window` picks a window that fits).
        win_size: taps of the Gaussian window (odd).
        data_range: value range of the images.
        size_average: average over the batch (else one value per image).

    Returns:
        float32, 0-d or ``(N,)``, averaged over channels (and images).

    Raises:
        ValueError: ``win_size`` is even or the images are too small for it.
    """
    size = min(x.shape[1], x.shape[2])
    if win_size % 2 == 0 or size <= (win_size - 1) * 16:
        raise ValueError(f"MS-SSIM with win_size {win_size} needs odd windows and images larger than "
                         f"{(win_size - 1) * 16} px, got {size}")
    win = jnp.asarray(gaussian_window(win_size))
    a, b = x_hat.astype(jnp.float32), x.astype(jnp.float32)
    mcs = []
    levels = len(MS_SSIM_WEIGHTS)
    ssim_pc = None
    for i in range(levels):
        ssim_pc, cs = _ssim_and_cs(a, b, win, data_range)
        if i < levels - 1:
            mcs.append(jax.nn.relu(cs))
            a, b = _avg_pool2(a), _avg_pool2(b)
    stack = jnp.stack(mcs + [jax.nn.relu(ssim_pc)])  # (levels, N, C)
    weights = jnp.asarray(MS_SSIM_WEIGHTS, jnp.float32).reshape(-1, 1, 1)
    per_image = jnp.mean(jnp.prod(stack**weights, axis=0), axis=1)
    return jnp.mean(per_image) if size_average else per_image


def ms_ssim_per_image(x_hat: jax.Array, x: jax.Array, win_size: int = 11, data_range: float = 1.0) -> jax.Array:
    """:func:`ms_ssim` of each image, ``(N,)``."""
    return ms_ssim(x_hat, x, win_size, data_range, size_average=False)
