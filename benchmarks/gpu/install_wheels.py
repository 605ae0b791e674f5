"""Install the wheels of WHEEL_DIR whose distributions this Python lacks into TARGET (standard library only:
it runs before anything else is importable). A distribution already installed, in any version, is kept.

    python benchmarks/gpu/install_wheels.py WHEEL_DIR TARGET
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def plan(wheel_dir: Path) -> tuple[list[Path], list[str]]:
    """(wheels to install, one line per wheel saying what happens to it). Two wheels of one
    distribution are refused (pip would stop on the conflict)."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    seen: dict[str, Path] = {}
    install, lines = [], []
    for w in wheels:
        name, version = w.name.split("-")[:2]
        key = canonical(name)
        if key in seen:
            raise SystemExit(f"error: {wheel_dir}: two wheels of {key}: {seen[key].name} and {w.name}")
        seen[key] = w
        try:
            have = metadata.version(key)
        except metadata.PackageNotFoundError:
            install.append(w)
            lines.append(f"install {key} {version}")
        else:
            lines.append(f"keep    {key} {have} (installed; wheel {version} not used)")
    return install, lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    wheel_dir, target = Path(argv[0]), Path(argv[1])
    if not wheel_dir.is_dir():
        print(f"error: {wheel_dir}: no such folder of wheels", file=sys.stderr)
        return 2
    install, lines = plan(wheel_dir)
    print("\n".join(f"wheels: {line}" for line in lines) or f"wheels: none in {wheel_dir}", flush=True)
    if not install:
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--disable-pip-version-check", "--upgrade", "--target", str(target), *map(str, install)]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
