#!/usr/bin/env bash
# The GPU check, in one call of under 5 minutes on a machine with one CUDA GPU:
#   1. the card and the software (nvidia-smi, torch, CUDA),
#   2. the GPU tests (tests/test_gpu.py: pytest -m gpu),
#   3. the GPU rows of the perf session (benchmarks/perf.py --gpu): raw cuDNN step
#      times at the issue's reference settings, seqbench's overhead on the GPU, 16 small
#      LSTM jobs through 1 GPU slot versus 4, and stacked training of 16 and 64 members
#      versus the same jobs one after another.
# Installs nothing from the network: it runs from this checkout with the python3 that
# holds torch (PYTHON=... to choose another). Logs and results/perf-gpu-*.md/json go to
# $OUT when set (the device tool's output folder), else to results/.
#
#   scripts/gpu_check.sh                 # on the GPU machine
#   scripts/gpu_check.sh --device cpu    # dry run of the same steps on a CPU, tiny sizes
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
if [[ "${1:-}" == "--device" && -n "${2:-}" ]]; then DEVICE=$2; fi
PY=${PYTHON:-python3}
DEST=${OUT:-results}
mkdir -p "$DEST"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
start=$(date +%s)
status=0

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "(no nvidia-smi)"
"$PY" - <<'EOF' || exit 1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available()
      else "")
EOF
# seqbench's entry points, when pip can make them here without the network (optional:
# benchmarks/perf.py registers the built-ins itself when they are missing)
if [[ "$DEVICE" == cuda ]]; then
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
    && echo "seqbench installed (editable, entry points registered)" \
    || echo "seqbench not installed: running from the checkout"
fi

echo "== GPU tests"
if [[ "$DEVICE" == cuda ]]; then
  timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 \
    | tee "$DEST/gpu-tests.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
else
  echo "(skipped on $DEVICE: the GPU tests need CUDA)"
fi

echo "== GPU perf rows"
quick=()
[[ "$DEVICE" == cuda ]] || quick=(--quick)
timeout 220 "$PY" -m benchmarks.perf --gpu --device "$DEVICE" --repeats 3 --out "$DEST" \
  "${quick[@]}" 2>&1 | tee "$DEST/gpu-perf.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

echo "== done in $(( $(date +%s) - start )) s, status $status"
exit $status
