#!/usr/bin/env bash
# The GPU check, in one call of under 5 minutes on a machine with one CUDA GPU:
#   1. the card and the software (nvidia-smi, torch, CUDA; the dtype torch's autocast
#      gives a cuDNN LSTM under bfloat16, see seqbench.models.torchnet.autocast_rnn_dtype),
#   2. the GPU tests (tests/test_gpu.py: pytest -m gpu),
#   3. the GPU rows of the perf session (benchmarks/perf.py --gpu): raw cuDNN step
#      times at the reference settings, seqbench's overhead on the GPU, 16 small
#      LSTM jobs through 1 GPU slot versus 4, and stacked training of 16 and 64 members
#      versus the same jobs one after another (and the 64 once more with autograd through
#      the step equations instead of the fused LSTM cell kernels).
# Installs nothing from the network: it runs from this checkout with the python3 that
# holds torch (PYTHON=... to choose another), which must also have what the GPU path
# imports: numpy, scipy, pandas, scikit-learn, rich, psutil, pytest (pytest-timeout is
# used when present; hmmlearn, filterpy and dask are imported only by other families and
# executors). The logs and perf-gpu-*.md/json (4 files)
# go to $OUT when set, else to results/.
#
# About 3 minutes on a GPU machine (168-185 s on an NVIDIA H100 80GB HBM3, 2026-11-27:
# tests 15-19 s; perf rows 125-135 s with 7 repeats: raw 8-9 s, overhead 29-34 s, slots
# 46-51 s, stacked 41-42 s; the rest is start-up); the time limits below (machine 30 s,
# install 20 s, tests 60 s, perf rows 190 s) add up to 300 s, so a run never takes more
# than about 5 minutes.
#
#   scripts/gpu_check.sh                 # on the GPU machine
#   scripts/gpu_check.sh --device cpu    # dry run of the same steps on a CPU, tiny sizes
#   GPU_PERF_ROWS=gpu-stacked,gpu-overhead scripts/gpu_check.sh   # some perf rows, in order
#   GPU_PERF_LIMIT=300 scripts/gpu_check.sh                       # the perf rows' limit (s)
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
timeout 30 "$PY" - <<'EOF' || exit 1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available()
      else "")
if torch.cuda.is_available():
    print("cudnn", torch.backends.cudnn.version())
    try:  # seqbench.models.torchnet.autocast_rnn_dtype probes the same
        lstm = torch.nn.LSTM(4, 4).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            dtype = lstm(torch.zeros(3, 2, 4, device="cuda"))[0].dtype
        print("torch.autocast(bfloat16) runs nn.LSTM (cuDNN) in", dtype)
    except Exception as exc:  # information only
        print("torch.autocast(bfloat16) with nn.LSTM (cuDNN) failed:", exc)
EOF
# seqbench's entry points, when pip can make them here without the network (optional:
# benchmarks/perf.py registers the built-ins itself when they are missing)
if [[ "$DEVICE" == cuda ]]; then
  timeout 20 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    >/dev/null 2>&1 \
    && echo "seqbench installed (editable, entry points registered)" \
    || echo "seqbench not installed: running from the checkout"
fi

echo "== GPU tests"
if [[ "$DEVICE" == cuda ]]; then
  # one stuck test fails alone (pytest-timeout), not the whole step
  per_test=()
  "$PY" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 45)
  timeout 60 "$PY" -m pytest -q -m gpu -p no:cacheprovider "${per_test[@]}" tests/test_gpu.py 2>&1 \
    | tee "$DEST/gpu-tests.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
else
  echo "(skipped on $DEVICE: the GPU tests need CUDA)"
fi

echo "== GPU perf rows"
quick=()
[[ "$DEVICE" == cuda ]] || quick=(--quick)
# each row's line is logged as it finishes: if the limit stops the session, the log
# keeps the rows done
rows=()
[[ -n "${GPU_PERF_ROWS:-}" ]] && rows=(--rows "$GPU_PERF_ROWS")
timeout "${GPU_PERF_LIMIT:-190}" "$PY" -m benchmarks.perf --gpu --device "$DEVICE" --repeats 7 --out "$DEST" \
  "${quick[@]}" "${rows[@]}" 2>&1 | tee "$DEST/gpu-perf.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

echo "== done in $(( $(date +%s) - start )) s, status $status"
exit $status
