#!/usr/bin/env bash
# Build the bundle a lent GPU machine needs. It has Python 3.12 with torch (CUDA),
# torchvision, timm, h5py, typer, rich, pytest and psutil, and the driver's libnvcuvid,
# but no DALI and no PyAV, and no network. This script downloads CPython 3.12 wheels of
# exactly the versions in this checkout's .venv (DALI, av and DALI's small Python needs),
# unzips them into one site folder, drops DALI's extension modules for other Pythons and
# its C++ headers, and writes .gpu/part-* (xz, <= 60 MB each: one device call carries at
# most 64 MiB) and .gpu/bundle.sha256. .gpu/ is git-ignored. docs/gpu.md says how the
# pieces travel; tools/gpu_run.sh unpacks them there and runs the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
case $PY in /*) ;; *) PY=$PWD/$PY ;; esac
pins=$("$PY" - <<'PYEOF'
from importlib.metadata import version
names = ["nvidia-dali-cuda120", "av", "astunparse", "gast", "optree", "makefun", "nvtx", "libcst", "six"]
print(" ".join(f"{n}=={version(n)}" for n in names))
PYEOF
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/whl" "$work/site"
# shellcheck disable=SC2086
"$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --no-deps -d "$work/whl" $pins
(cd "$work/site" && for w in ../whl/*.whl; do "$PY" -m zipfile -e "$w" .; done)
(cd "$work/site/nvidia/dali" && { ls | grep -E 'cpython-3' | grep -v 312 | xargs -r rm -f; rm -rf include; })
rm -rf .gpu && mkdir -p .gpu
tar -C "$work/site" -cf - . | xz -T2 -6 | split -b 60000000 -a 2 - .gpu/part-
(cd .gpu && sha256sum part-* > bundle.sha256)
# py-spy for bench.gpu_profile: its wheel is a static binary; carried beside bundle.sha256
"$PY" -m pip download -q --only-binary=:all: --no-deps -d "$work/spy" py-spy
cp "$work"/spy/py_spy-*.whl .gpu/py-spy.whl
ls -la .gpu
