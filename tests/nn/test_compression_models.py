"""The learned codecs: parameter tree, shapes, eval quantisation through the coding methods, the rate
estimate against the coding tables, train-mode noise, gradients of the main and aux losses, and a tiny
training run."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import norm

from sar_jax.core.errors import SarJaxError
from sar_jax.nn.compression import FactorizedPrior, ScaleHyperprior
from sar_jax.nn.entropy import pmf_table

WIDTH = 8
CFG = {"in_channels": 1, "N": WIDTH, "M": WIDTH}
MODELS = {"factorized": FactorizedPrior.from_config(CFG), "hyperprior": ScaleHyperprior.from_config(CFG)}
# These tiny graphs run in microseconds: compile them fast (LLVM's expensive passes off).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_jit = partial(jax.jit, compiler_options=FAST_COMPILE)


def _key(seed: int) -> jax.Array:
    """A typed rbg key (XLA's RngBitGenerator compiles far faster than threefry on CPU)."""
    return jax.random.key(seed, impl="rbg")


def _image(n: int, size: int) -> jax.Array:
    """Smooth test images in [0, 1]."""
    t = np.linspace(0.0, 1.0, size)
    img = [0.5 + 0.3 * np.sin(2 * np.pi * (k + 1) * t)[:, None] * np.cos(3 * np.pi * t)[None, :] for k in range(n)]
    return jnp.asarray(np.stack(img)[..., None], jnp.float32)


def _bits(lik: dict) -> jax.Array:
    return sum(jnp.sum(-jnp.log2(v)) for v in lik.values())


@partial(_jit, static_argnums=0)
def _init(model, x):
    return model.init(_key(0), x, train=False)["params"]


@partial(_jit, static_argnums=0)
def _eval_probe(model, params, x):
    """The eval forward pass and its recomputation through the coding methods."""
    v = {"params": params}
    m = params["entropy_bottleneck"]["quantiles"][:, 0, 1]
    x_hat, lik = model.apply(v, x, train=False)
    y = model.apply(v, x, method=model.analysis)
    out = {"x_hat": x_hat, "lik": lik, "y": y}
    if isinstance(model, ScaleHyperprior):
        z = model.apply(v, y, method=model.hyper_analysis)
        z_hat = jnp.round(z - m) + m
        out |= {"z": z, "scales": model.apply(v, z_hat, method=model.hyper_synthesis)}
        y_hat = jnp.round(y)
    else:
        y_hat = jnp.round(y - m) + m
    out["x_hat_methods"] = model.apply(v, y_hat, method=model.synthesis)
    return out


@partial(_jit, static_argnums=0)
def _train_forward(model, params, x, key):
    return model.apply({"params": params}, x, train=True, rngs={"noise": key})


@partial(_jit, static_argnums=0)
def _bottleneck_likelihood(model, params, t):
    return model.apply({"params": params}, t, method=lambda mdl, u: mdl.entropy_bottleneck.likelihood(u))


def _main_loss(model, params, x, noise):
    """100 MSE + bpp in train mode with explicit noise; the forward outputs as aux."""
    x_hat, lik = model.apply({"params": params}, x, train=True, noise=noise)
    n, h, w, _ = x.shape
    return 100 * jnp.mean((x_hat - x) ** 2) + _bits(lik) / (n * h * w), (x_hat, lik)


_main_grad = _jit(jax.value_and_grad(_main_loss, argnums=1, has_aux=True), static_argnums=0)
_aux_grad = _jit(jax.value_and_grad(lambda model, p: model.apply({"params": p}, method=model.aux_loss), argnums=1),
                 static_argnums=0)


def _noise(model, x, key) -> dict:
    """U(-0.5, 0.5) noise of the latents' shapes."""
    h, w = x.shape[1] // 16, x.shape[2] // 16
    shapes = {"y": (x.shape[0], h, w, WIDTH)}
    if isinstance(model, ScaleHyperprior):
        shapes["z"] = (x.shape[0], h // 4, w // 4, WIDTH)
    keys = jax.random.split(key, len(shapes))
    return {k: jax.random.uniform(kk, s, minval=-0.5, maxval=0.5) for kk, (k, s) in zip(keys, shapes.items())}


@pytest.fixture(scope="module", params=list(MODELS))
def codec(request):
    model = MODELS[request.param]
    x = _image(1, 32) if request.param == "factorized" else _image(1, 64)
    return model, _init(model, x), x


@pytest.fixture(scope="module")
def eval_probe(codec):
    return jax.tree_util.tree_map(np.asarray, _eval_probe(*codec))


def test_param_tree_and_shapes(codec):
    model, params, _ = codec
    flat = {"/".join(k.key for k in path): v.shape for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    n, c = WIDTH, WIDTH
    expected = {}
    for i in range(4):
        expected[f"g_a/conv{i}/kernel"] = (5, 5, 1 if i == 0 else n, c if i == 3 else n)
        expected[f"g_a/conv{i}/bias"] = (c if i == 3 else n,)
        expected[f"g_s/deconv{i}/kernel"] = (5, 5, c if i == 0 else n, 1 if i == 3 else n)
        expected[f"g_s/deconv{i}/bias"] = (1 if i == 3 else n,)
    for i in range(3):
        expected |= {f"g_a/gdn{i}/beta": (n,), f"g_a/gdn{i}/gamma": (n, n)}
        expected |= {f"g_s/igdn{i}/beta": (n,), f"g_s/igdn{i}/gamma": (n, n)}
    channels = c
    if isinstance(model, ScaleHyperprior):
        channels = n
        expected |= {"h_a/conv0/kernel": (3, 3, c, n), "h_a/conv0/bias": (n,)}
        for i in (1, 2):
            expected |= {f"h_a/conv{i}/kernel": (5, 5, n, n), f"h_a/conv{i}/bias": (n,)}
        for i in (0, 1):
            expected |= {f"h_s/deconv{i}/kernel": (5, 5, n, n), f"h_s/deconv{i}/bias": (n,)}
        expected |= {"h_s/conv2/kernel": (3, 3, n, c), "h_s/conv2/bias": (c,)}
    f = (1, 3, 3, 3, 3, 1)
    expected |= {f"entropy_bottleneck/matrix{i}": (channels, f[i + 1], f[i]) for i in range(5)}
    expected |= {f"entropy_bottleneck/bias{i}": (channels, f[i + 1], 1) for i in range(5)}
    expected |= {f"entropy_bottleneck/factor{i}": (channels, f[i + 1], 1) for i in range(4)}
    expected["entropy_bottleneck/quantiles"] = (channels, 1, 3)
    assert flat == expected
    assert model.DOWNSAMPLING == (64 if isinstance(model, ScaleHyperprior) else 16)


def test_eval_matches_the_coding_methods_and_tables(codec, eval_probe):
    """Eval mode: x_hat = synthesis(round(y - m) + m), likelihood shapes (y: H/16, z: H/64), the
    likelihoods equal to the coding tables' probabilities (z or y: pmf_table; y of the hyperprior:
    scipy's normal CDF), so bits = sum(-log2 lik) is the ideal code length and bpp = bits / (nHW)."""
    model, params, x = codec
    n, h, w, _ = x.shape
    p = eval_probe
    assert p["x_hat"].shape == x.shape and p["x_hat"].dtype == np.float32
    assert p["lik"]["y"].shape == (n, h // 16, w // 16, WIDTH)
    np.testing.assert_allclose(p["x_hat_methods"], p["x_hat"], rtol=1e-5, atol=1e-6)
    eb = jax.tree_util.tree_map(np.asarray, params["entropy_bottleneck"])
    table = pmf_table(eb)
    m = eb["quantiles"][:, 0, 1]
    ideal = 0.0
    if isinstance(model, ScaleHyperprior):
        assert set(p["lik"]) == {"y", "z"} and p["lik"]["z"].shape == (n, h // 64, w // 64, WIDTH)
        s, scale = np.round(p["y"]).astype(np.float64), np.maximum(p["scales"].astype(np.float64), 0.11)
        expected_y = np.maximum(norm.cdf((s + 0.5) / scale) - norm.cdf((s - 0.5) / scale), 1e-9)
        np.testing.assert_allclose(p["lik"]["y"], expected_y, rtol=1e-4, atol=1e-7)
        ideal = -np.log2(expected_y).sum()
        latent, key = p["z"], "z"
    else:
        assert set(p["lik"]) == {"y"}
        latent, key = p["y"], "y"
    index = np.round(latent - m).astype(np.int64) - table.offset
    assert index.min() >= 0 and np.all(index < table.length)
    expected = np.maximum(table.pmf[np.arange(len(m)), index], 1e-9)
    np.testing.assert_allclose(p["lik"][key], expected, rtol=2e-4, atol=1e-7)
    ideal += -np.log2(expected).sum()
    bpp = float(_bits({k: jnp.asarray(v) for k, v in p["lik"].items()})) / (n * h * w)
    assert bpp > 0
    np.testing.assert_allclose(bpp, ideal / (n * h * w), rtol=1e-4)


def test_train_mode_noise(codec, eval_probe):
    """Different noise keys give different likelihoods; explicit noise is reproducible and used as given;
    the decoder sees the rounded latent (train x_hat == eval x_hat)."""
    model, params, x = codec
    key = "z" if isinstance(model, ScaleHyperprior) else "y"
    (x_a, a), (_, b) = _train_forward(model, params, x, _key(1)), _train_forward(model, params, x, _key(2))
    assert all(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max() > 1e-4 for k in a)
    noise = _noise(model, x, _key(3))
    (_, (x_c, c)), _ = _main_grad(model, params, x, noise)
    (_, (x_d, d)), _ = _main_grad(model, params, x, noise)
    assert all(np.array_equal(np.asarray(c[k]), np.asarray(d[k])) for k in c)
    np.testing.assert_array_equal(np.asarray(x_c), np.asarray(x_d))
    direct = _bottleneck_likelihood(model, params, eval_probe[key] + noise[key])
    np.testing.assert_allclose(np.asarray(c[key]), np.asarray(direct), rtol=1e-5)
    for out in (x_a, x_c):
        np.testing.assert_allclose(np.asarray(out), eval_probe["x_hat"], rtol=1e-5, atol=1e-6)


def test_gradients_of_main_and_aux_losses(codec):
    """100 MSE + bpp (train mode): non-zero for g_a (through the straight-through rounding) and the
    density, exactly zero for the quantiles; the aux loss: non-zero for the quantiles only."""
    model, params, x = codec
    _, g_main = _main_grad(model, params, x, _noise(model, x, _key(4)))
    aux_value, g_aux = _aux_grad(model, params)
    assert float(aux_value) > 1.0
    norms = lambda g: {"/".join(k.key for k in path): float(jnp.abs(v).max())
                       for path, v in jax.tree_util.tree_flatten_with_path(g)[0]}
    main, aux = norms(g_main), norms(g_aux)
    assert main["entropy_bottleneck/quantiles"] == 0.0
    assert all(v > 0 for k, v in main.items() if k.startswith("g_a/")), main
    assert all(v > 0 for k, v in main.items() if k.startswith("entropy_bottleneck/matrix"))
    assert aux.pop("entropy_bottleneck/quantiles") > 0
    assert all(v == 0.0 for v in aux.values())


def test_bad_input_is_one_error(codec):
    model, params, x = codec
    v = {"params": params}
    d = model.DOWNSAMPLING
    with pytest.raises(SarJaxError, match=f"multiples of {d}"):
        jax.eval_shape(lambda: model.apply(v, jnp.zeros((1, d + 8, d, 1)), train=False))
    with pytest.raises(SarJaxError, match="1 channel"):
        jax.eval_shape(lambda: model.apply(v, jnp.zeros((1, d, d, 2)), train=False))
    noise = _noise(model, x, _key(5)) | {"y": jnp.zeros((1, 1, 1, 1))}
    with pytest.raises(SarJaxError, match=r"noise\['y'\]: expected an array of shape"):
        jax.eval_shape(lambda: model.apply(v, x, train=True, noise=noise))


def test_tiny_training_lowers_the_loss():
    """30 Adam steps of 100 MSE + bpp on a smooth 32x32 image (factorized, N = M = 8) lower the eval loss."""
    model = MODELS["factorized"]
    x = _image(1, 32)
    params = _init(model, x)
    opt = optax.adam(1e-2)
    update = _jit(opt.update)

    def eval_loss(p):
        probe = _eval_probe(model, p, x)
        return float(100 * jnp.mean((probe["x_hat"] - x) ** 2) + _bits(probe["lik"]) / x.size)

    before, state = eval_loss(params), opt.init(params)
    for step in range(30):
        _, g = _main_grad(model, params, x, _noise(model, x, _key(100 + step)))
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
    after = eval_loss(params)
    assert after < 0.5 * before, (before, after)
