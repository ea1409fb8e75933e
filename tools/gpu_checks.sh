#!/usr/bin/env bash
# The measurements that need a GPU (README "On a GPU"), as one script for a short lease of an
# offline GPU machine whose python3 has torch: the wheels of tools/offline_wheels.sh are
# installed into a temporary folder, nothing is fetched, and each step has its own time limit
# and writes its numbers into OUT as it ends, the most wanted first:
#   1. the default recipe (main config, no schedule flags) on 1,000 synthetic faces with AMP:
#      its plan, time and validation NMEs                         -> OUT/recipe.log
#   2. the training benchmark: img/s of ours and of mmpose's stock WFLW config, AMP, the
#      loader workers train.py gives a GPU                       -> OUT/benchmark.{log,json}
#   3. the learning curve at the default plan for 100, 300 and 1,000 faces (each size's own
#      plan, batch 64, AMP)                                       -> OUT/learning_curve.{log,json,png}
# and OUT/summary.txt, the lines to read first, and OUT/logs.tar.gz, every other log (the data,
# each learning-curve run, the runs' records): 8 files at most.
#
# Usage: bash tools/gpu_checks.sh OUT_DIR [WHEEL_DIR (default .whl)]
# Env:   BUDGET=540 (seconds for all the steps; the steps left get what is left)
#        STEPS="recipe benchmark learning_curve"  FACES=1000  SIZES="100 300 1000"
#        RECIPE_ARGS= CURVE_ARGS= (more train.py / learning-curve flags: a dry run on a CPU, say
#        FACES=8 SIZES=4 RECIPE_ARGS="--iters 2 --batch-size 2" CURVE_ARGS="--iters 2
#        --batch-size 2 --val-faces 3"; without a GPU there is no --amp)
#        PY=python3 (an interpreter with torch)
set -uo pipefail

[[ $# -ge 1 ]] || { echo "usage: gpu_checks.sh OUT_DIR [WHEEL_DIR]" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)" || { echo "error: cannot use $1 as OUT_DIR" >&2; exit 2; }
WHEELS="${2:-$ROOT/.whl}"
[[ -d "$WHEELS" ]] && WHEELS="$(cd "$WHEELS" && pwd)"  # before the cd below
BUDGET="${BUDGET:-540}"
FACES="${FACES:-1000}"
read -ra SIZES <<< "${SIZES:-100 300 1000}"
read -ra RECIPE_ARGS <<< "${RECIPE_ARGS:-}"
read -ra CURVE_ARGS <<< "${CURVE_ARGS:-}"
STEPS="${STEPS:-recipe benchmark learning_curve}"
PY="${PY:-python3}"
WORK="$(mktemp -d)"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore MPLBACKEND=Agg

keep_logs() {  # whatever happened: the logs and run records to OUT, then the temporary files away
    (cd "$WORK" && find . -path ./site -prune -o \( -name '*.log' -o -name experiment_run.json \
        -o -name scalars.json \) -print0 | tar -czf "$OUT/logs.tar.gz" --null -T -)
    rm -rf "$WORK"
}
trap keep_logs EXIT
trap 'exit 143' TERM INT  # killed from outside: the logs are kept all the same
say() { echo "$*" | tee -a "$SUMMARY"; }
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step NAME SHARE COMMAND...: COMMAND under a timeout of SHARE % of the time left, into OUT/NAME.log
step() {
    local name=$1 share=$2; shift 2
    local limit=$(( $(left) * share / 100 ))
    if (( limit < 30 )); then say "$name: skipped (${limit} s left for it)"; return 1; fi
    local began=$(date +%s)
    # INT first (training stops as after Ctrl-C), the whole process group, KILL 20 s later
    timeout --signal=INT --kill-after=20 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    say "$name: exit $rc after $(( $(date +%s) - began )) s (limit $limit s)"
    return $rc
}

: > "$SUMMARY"
cd "$ROOT" || exit 1
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target \
        "$WORK/site" "$WHEELS"/*.whl || { say "error: the wheels in $WHEELS do not install"; exit 1; }
    export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    say "no wheels in $WHEELS: using $PY's own packages"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY" || exit 1
import platform, torch
import animal_landmarks_mm, mmcv, mmengine, mmpose
from mmcv.ops import nms  # noqa: F401  (mmpose imports the compiled ops)
from animal_landmarks_mm.training import host_cpus
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
print(f'machine: {gpu}, {host_cpus()} CPUs, Python {platform.python_version()}, '
      f'torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, '
      f'mmpose {mmpose.__version__}')
EOF
AMP=()
"$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" && AMP=(--amp)

# 1. the default recipe on FACES synthetic faces (and a quarter as many for validation)
DATA="$WORK/synthetic_$FACES"
if wanted recipe; then
    if "$PY" tools/make_synthetic_dataset.py --out-dir "$DATA" --num-images $(( FACES * 5 / 4 )) \
            --workers "$(nproc)" > "$WORK/data.log" 2>&1 &&
        "$PY" tools/dataset.py --annotation-dir "$DATA/landmarks" --image-dir "$DATA/images" \
            --output-dir "$DATA" --train-ratio 0.8 --val-ratio 0.2 --test-ratio 0 \
            >> "$WORK/data.log" 2>&1; then
        step recipe 60 "$PY" tools/train.py \
            configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py --data-root "$DATA" \
            ${AMP[@]+"${AMP[@]}"} --work-dir "$WORK/recipe" ${RECIPE_ARGS[@]+"${RECIPE_ARGS[@]}"}
        "$PY" - "$WORK/recipe" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import sys
from pathlib import Path
from animal_landmarks_mm.experiments import validations
found = validations(Path(sys.argv[1]))
print(f'default recipe: best validation NME {min(v["NME"] for v in found):.4f} (each: '
      + ', '.join(f'{v["NME"]:.4f}' for v in found) + ')' if found else
      'default recipe: no validation logged')
EOF
        grep -E "^  (faces|length|lr|loading|expected) " "$OUT/recipe.log" | tee -a "$SUMMARY"
    else
        say "data: failed, see data.log in logs.tar.gz"
    fi
fi

# 2. the training benchmark on this device (ours vs stock WFLW, same loader)
wanted benchmark && step benchmark 30 "$PY" tools/benchmark.py --only training pipeline \
    --out "$OUT/benchmark.json" &&
    grep -E "^(training|pipeline) " "$OUT/benchmark.log" | tee -a "$SUMMARY"

# 3. the learning curve at the default plan
if wanted learning_curve; then
    step learning_curve 100 "$PY" tools/recipe_experiments.py learning-curve \
        --sizes "${SIZES[@]}" --batch-size 64 ${AMP[@]+"${AMP[@]}"} \
        --out-dir "$WORK/learning_curve" ${CURVE_ARGS[@]+"${CURVE_ARGS[@]}"}
    # each size is saved as it ends: a curve cut by its time limit still has its first sizes
    cp "$WORK/learning_curve/learning_curve.png" "$OUT/" 2>/dev/null
    if cp "$WORK/learning_curve/learning_curve.json" "$OUT/" 2>/dev/null; then
        "$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); print('learning curve: ' + ', '.join(f'{x[\"faces\"]} faces NME {x[\"best_NME\"]:.4f} in {x[\"minutes\"]} min' for x in r['runs']))" \
            "$OUT/learning_curve.json" | tee -a "$SUMMARY"
    fi
fi
say "all steps: $(( $(date +%s) - START )) s"
