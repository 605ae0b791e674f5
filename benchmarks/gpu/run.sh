#!/usr/bin/env bash
# The one-shot GPU check (benchmarks/gpu/README.md):
#   bash benchmarks/gpu/run.sh OUT_DIR [WHEEL_DIR] [flags of python -m benchmarks.gpu.check, e.g. --tiny]
# Installs the wheels in WHEEL_DIR whose packages this Python lacks into a private folder
# ($SAR_GPU_SITE, default a new /tmp/sar-gpu-site.*), then runs the check; everything it prints
# also goes to OUT_DIR/run.log. PYTHON (default python3) picks the interpreter.
set -euo pipefail
if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash benchmarks/gpu/run.sh OUT_DIR [WHEEL_DIR] [--tiny ...]" >&2
    exit 2
fi
out=$1
shift
wheels=
if [[ $# -gt 0 && $1 != -* ]]; then
    wheels=$1
    shift
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1
{
    if [[ -n $wheels ]]; then
        site=${SAR_GPU_SITE:-$(mktemp -d /tmp/sar-gpu-site.XXXXXX)}
        t0=$(date +%s)
        "$py" "$repo/benchmarks/gpu/install_wheels.py" "$wheels" "$site"
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
        echo "[part] wheels: $(( $(date +%s) - t0 )) s (into $site)"
    fi
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
    cd "$repo"
    "$py" -m benchmarks.gpu.check --out "$out" "$@"
} 2>&1 | tee "$out/run.log"
