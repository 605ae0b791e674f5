"""Where the checkout's folders are: configs, and the real SAR samples beside the checkout."""

from __future__ import annotations

from pathlib import Path

#: The checkout (the folder holding ``sar_jax/`` and ``configs/``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Named configs (``--config NAME`` reads ``CONFIG_DIR/NAME.json``).
CONFIG_DIR = REPO_ROOT / "configs"
#: Two real 8-bit SAR PNG renderings in ``../shared/data/sar`` beside the checkout (may be absent).
SHARED_SAR_DIR = REPO_ROOT.parent / "shared" / "data" / "sar"
