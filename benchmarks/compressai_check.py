"""sar_torch_ref's GDN and entropy models against CompressAI's, with copied parameters.

CompressAI cannot live in the project's environment (``compressai`` 1.2.8 pins ``numpy < 2``; jax needs
numpy 2), so this script runs in a separate virtual environment, from the repository root::

    python3 -m venv /tmp/cai && /tmp/cai/bin/pip install compressai==1.2.8 torch==2.13.0
    /tmp/cai/bin/python -m benchmarks.compressai_check

(it needs torch only, no jax). ``torch`` must be PyPI's CUDA build: the ``torchvision`` that CompressAI
imports is built against it, and beside a CPU-only torch it fails to load its operators. Compared:
GDN / IGDN outputs and gradients, the entropy bottleneck's likelihoods (any values, and eval-mode
forward around the medians) and aux loss, the Gaussian conditional's likelihoods; writes the max
absolute differences to ``benchmarks/results/compressai-check.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import torch

from sar_torch_ref.models.entropy import EntropyBottleneck, GaussianConditional
from sar_torch_ref.models.gdn import GDN, IGDN

OUT = Path(__file__).parent / "results" / "compressai-check.json"


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def check_gdn(channels: int = 8, seed: int = 0) -> dict[str, float]:
    """Output and input/parameter gradients of GDN and IGDN with the same stored beta and gamma."""
    from compressai.layers import GDN as RefGDN

    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for name, ours in (("gdn", GDN(channels)), ("igdn", IGDN(channels))):
        ref = RefGDN(channels, inverse=name == "igdn")
        with torch.no_grad():
            ours.beta.copy_(torch.sqrt(0.5 + torch.rand(channels, generator=gen)))
            gamma = torch.rand(channels, channels, generator=gen) * 0.1
            gamma[0, 1] = -0.5  # below the lower bound: the bound's gradient rule matters
            ours.gamma.copy_(gamma)
        ref.load_state_dict({"beta": ours.beta.detach(), "gamma": ours.gamma.detach()}, strict=False)
        x = torch.randn(2, channels, 6, 5, generator=gen)
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo, yr = ours(xo), ref(xr)
        w = torch.randn(yo.shape, generator=gen)
        (yo * w).sum().backward()
        (yr * w).sum().backward()
        out[f"{name}_output"] = _diff(yo, yr)
        out[f"{name}_grad_input"] = _diff(xo.grad, xr.grad)
        out[f"{name}_grad_beta"] = _diff(ours.beta.grad, ref.beta.grad)
        out[f"{name}_grad_gamma"] = _diff(ours.gamma.grad, ref.gamma.grad)
    return out


def _copy_bottleneck(ours: EntropyBottleneck, ref: Any) -> None:
    with torch.no_grad():
        for i in range(5):
            ref.matrices[i].copy_(getattr(ours, f"matrix{i}"))
            ref.biases[i].copy_(getattr(ours, f"bias{i}"))
            if i < 4:
                ref.factors[i].copy_(getattr(ours, f"factor{i}"))
        ref.quantiles.copy_(ours.quantiles)


def check_entropy_bottleneck(channels: int = 6, seed: int = 0) -> dict[str, float]:
    """Likelihoods (at arbitrary values and in eval mode around the medians) and the aux loss."""
    from compressai.entropy_models import EntropyBottleneck as RefBottleneck

    torch.manual_seed(seed)
    ours, ref = EntropyBottleneck(channels), RefBottleneck(channels)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name == "quantiles":
                p[:, 0, 1] = torch.rand(channels, generator=gen) - 0.5
                p[:, 0, 0] -= torch.rand(channels, generator=gen)
            else:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    _copy_bottleneck(ours, ref)
    y = 4 * torch.randn(2, channels, 7, 5, generator=gen)
    ref_lik = ref.likelihood_lower_bound(ref._likelihood(y.transpose(0, 1).reshape(channels, 1, -1))[0])
    out = {"bottleneck_likelihood": _diff(ours.likelihood(y), ref_lik.reshape(channels, 2, 7, 5).transpose(0, 1))}
    ours.eval(), ref.eval()
    (y_o, lik_o), (y_r, lik_r) = ours(y), ref(y, training=False)
    out.update(bottleneck_eval_y_hat=_diff(y_o, y_r), bottleneck_eval_likelihood=_diff(lik_o, lik_r),
               bottleneck_aux_loss=_diff(ours.loss(), ref.loss()))
    return out


def check_gaussian_conditional(seed: int = 0) -> dict[str, float]:
    """Eval-mode y_hat and likelihoods with the same scales (some below the 0.11 bound)."""
    from compressai.entropy_models import GaussianConditional as RefGaussian

    gen = torch.Generator().manual_seed(seed)
    y = 5 * torch.randn(2, 6, 7, 5, generator=gen)
    scales = torch.exp(2 * torch.randn(y.shape, generator=gen))
    ours, ref = GaussianConditional().eval(), RefGaussian(None).eval()
    (y_o, lik_o), (y_r, lik_r) = ours(y, scales), ref(y, scales, training=False)
    return {"gaussian_eval_y_hat": _diff(y_o, y_r), "gaussian_eval_likelihood": _diff(lik_o, lik_r),
            "gaussian_likelihood": _diff(ours.likelihood(y, scales),
                                         ref.likelihood_lower_bound(ref._likelihood(y, scales)))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import compressai
    import numpy

    diffs = {**check_gdn(), **check_entropy_bottleneck(), **check_gaussian_conditional()}
    result = {"compressai": compressai.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
              "python": platform.python_version(), "dtype": "float32", "max_abs_diff": diffs,
              "worst": max(diffs.values())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in diffs.items():
        print(f"{k:32s} {v:.3g}")
    return result


if __name__ == "__main__":
    main()
