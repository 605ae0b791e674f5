#!/usr/bin/env bash
# Download the wheels the GPU machine lacks (benchmarks/gpu/wheels.txt) into DIR (default .whl),
# for CPython 3.12 on x86-64 Linux, without their dependencies (the machine has those):
#   bash benchmarks/gpu/fetch_wheels.sh [DIR]        # PYTHON picks the interpreter whose pip runs
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-.whl}
mkdir -p "$dir"
mapfile -t pins < <(grep -v '^\s*#' "$here/wheels.txt" | grep -v '^\s*$')
"${PYTHON:-python3}" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dir" "${pins[@]}"
ls -l "$dir"/*.whl
du -ch "$dir"/*.whl | tail -n 1
