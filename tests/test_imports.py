"""Import boundaries: the JAX product imports without torch, and the framework-neutral core and
data pipeline (shared with the PyTorch reference) import neither JAX nor torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Modules that need the ``[torch]`` extra: the reference, conversion and the parity suite.
TORCH_MODULES = ("sar_jax.parity", "sar_jax.convert")

_WALK = """
import importlib, pkgutil, sys
import sar_jax

def modules(prefixes):
    names = ["sar_jax"] + [m.name for m in pkgutil.walk_packages(sar_jax.__path__, "sar_jax.")]
    return [n for n in names if n.startswith(prefixes) and not n.endswith("__main__")]
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(_WALK) + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_jax_product_imports_without_torch():
    """Every sar_jax module outside TORCH_MODULES imports with torch, pytorch_msssim and
    sar_torch_ref made unimportable (as after ``pip install sar-jax`` without the extra)."""
    proc = _run(f"""
        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "pytorch_msssim", "sar_torch_ref"):
                    raise ImportError("not installed: " + name)
        sys.meta_path.insert(0, Refuse())
        names = [n for n in modules(("sar_jax",)) if not n.startswith({TORCH_MODULES!r})]
        for name in names:
            importlib.import_module(name)
        assert "torch" not in sys.modules
        print(len(names), " ".join(names))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, names = proc.stdout.split(" ", 1)
    assert int(count) >= 30
    for name in ("sar_jax.training.loop", "sar_jax.inference.evaluate", "sar_jax.metrics.ssim", "sar_jax.ops.conv"):
        assert name in names.split(), name


@pytest.mark.slow
def test_core_and_data_import_neither_jax_nor_torch():
    proc = _run("""
        names = modules(("sar_jax.core", "sar_jax.data"))
        for name in names:
            importlib.import_module(name)
        heavy = sorted(m for m in ("jax", "jaxlib", "flax", "torch") if m in sys.modules)
        assert not heavy, heavy
        print(len(names))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) >= 12  # 8 core modules + 6 data modules at the time of writing
