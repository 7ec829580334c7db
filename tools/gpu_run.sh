#!/usr/bin/env bash
# On a lent GPU machine (see docs/gpu.md): unpack the bundle that tools/gpu_bundle.sh made
# (its pieces copied to /tmp/vcpgpu by earlier calls), then run the CUDA tests (TESTS=1),
# `make bench-gpu`'s script (BENCH=1) and bench.gpu_profile (PROFILE=1; its py-spy cases
# under py-spy when .gpu/py-spy.whl was carried too); each is on unless set to 0, so one
# call can run the first two and the next call, on the still-warm machine, the profile.
# Everything lands in $OUT, in at most 8 files (a device call brings back no more).
# Run from the checkout's root.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/vcp-gpu-out}; mkdir -p "$OUT"
if [ ! -d /tmp/site/nvidia/dali ]; then
  (cd /tmp/vcpgpu && sha256sum -c "$OLDPWD/.gpu/bundle.sha256") || { echo "bundle pieces missing or damaged"; exit 9; }
  mkdir -p /tmp/site && cat /tmp/vcpgpu/part-* | xz -d -T0 | tar -x -C /tmp/site || exit 9
fi
export PYTHONPATH=/tmp/site:$PWD
# the box's `nvidia` is a regular package: it hides the namespace portion in /tmp/site
python3 -c "import nvidia.dali" 2>/dev/null || ln -sfn /tmp/site/nvidia/dali \
    "$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])')/dali"
{ nvidia-smi; python3 -c "import torch, nvidia.dali, av; print('torch', torch.__version__, 'dali', nvidia.dali.__version__, 'av', av.__version__)"; } 2>&1 | tee "$OUT/env.txt"
[ "${TESTS:-1}" = 1 ] && timeout "${TEST_TIMEOUT:-170}" python3 -m pytest -q -m needs_cuda -p no:cacheprovider tests/ 2>&1 \
  | tee "$OUT/needs_cuda.txt" | tail -40
[ "${BENCH:-1}" = 1 ] && timeout "${BENCH_TIMEOUT:-300}" python3 -m bench.gpu --out "$OUT/benchmarks-gpu.md" 2>&1 \
  | tee "$OUT/bench.txt" | tail -40
if [ "${PROFILE:-1}" = 1 ]; then
  if [ -f .gpu/py-spy.whl ]; then  # a static binary inside its wheel
    (cd /tmp && python3 -m zipfile -e "$OLDPWD/.gpu/py-spy.whl" pyspy) && PY_SPY=$(ls /tmp/pyspy/*.data/scripts/py-spy) \
      && chmod +x "$PY_SPY" && export PY_SPY
  fi
  timeout "${PROFILE_TIMEOUT:-400}" python3 -m bench.gpu_profile --out "$OUT/profile" 2>&1 | tee "$OUT/profile.txt" | tail -10
  # the raw CUDA traces apart (the larger part), so the summaries come back whatever their size
  [ -d "$OUT/profile/traces" ] && tar czf "$OUT/traces.tgz" -C "$OUT/profile" traces && rm -rf "$OUT/profile/traces"
  [ -d "$OUT/profile" ] && tar czf "$OUT/profile.tgz" -C "$OUT" profile && rm -rf "$OUT/profile"
fi
