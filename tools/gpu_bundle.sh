#!/usr/bin/env bash
# Build the bundle a lent GPU machine needs (it has torch/timm/h5py/pytest/rich on
# Python 3.12 but no DALI, PyAV or typer, and no network): CPython 3.12 wheels of the
# same versions as this checkout's .venv, tarred and split into 60 MB pieces (a device
# call carries at most 64 MiB). Output: .gpu/part-* and .gpu/bundle.sha256 (git-ignored).
# docs/gpu.md says how the pieces travel and get installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
pins=$("$PY" - <<'PYEOF'
from importlib.metadata import version
names = ["nvidia-dali-cuda120", "av", "typer", "click", "shellingham", "astunparse", "gast",
         "optree", "makefun", "nvtx", "libcst", "nvidia-nvimgcodec-cu12", "nvidia-libnvcomp-cu12"]
print(" ".join(f"{n}=={version(n)}" for n in names))
PYEOF
)
rm -rf .gpu && mkdir -p .gpu/bundle
# shellcheck disable=SC2086
"$PY" -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --no-deps -d .gpu/bundle $pins
tar -C .gpu -cf .gpu/bundle.tar bundle
(cd .gpu && sha256sum bundle.tar > bundle.sha256 && split -b 60M bundle.tar part- && rm -r bundle.tar bundle)
ls -la .gpu
