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
# each learning-curve run, the runs' records): 8 files at most. A TERM or INT to the script stops
# the running step (the same signal to its process group, KILL 20 s later), writes the summary
# and logs all the same, and exits 143 or 130. Otherwise it exits 1 when a step failed or was
# skipped (the summary says which), 2 for bad settings (one line, before anything is made).
#
# Usage: bash tools/gpu_checks.sh OUT_DIR [WHEEL_DIR (default .whl)]
# Env:   BUDGET=540 (seconds for all the steps; the steps left get what is left)
#        STEPS="recipe benchmark learning_curve" (any of them)  FACES=1000  SIZES="100 300 1000"
#        RECIPE_ARGS= CURVE_ARGS= (more train.py / learning-curve flags: a dry run on a CPU, say
#        FACES=8 SIZES=4 RECIPE_ARGS="--iters 2 --batch-size 2" CURVE_ARGS="--iters 2
#        --batch-size 2 --val-faces 3"; without a GPU there is no --amp)
#        PY=python3 (an interpreter with torch)
set -uo pipefail

[[ $# -ge 1 ]] || { echo "usage: gpu_checks.sh OUT_DIR [WHEEL_DIR]" >&2; exit 2; }
ALL_STEPS="recipe benchmark learning_curve"
read -ra STEPS <<< "${STEPS:-$ALL_STEPS}"
for name in ${STEPS[@]+"${STEPS[@]}"}; do
    [[ " $ALL_STEPS " == *" $name "* ]] ||
        { echo "error: unknown step '$name' in STEPS (the steps: $ALL_STEPS)" >&2; exit 2; }
done
# bash's arithmetic reads a word as a variable (BUDGET=abc is 0: every step skipped) and 1e3 as
# an error in the middle of the run: whole numbers only, said before anything is made
positive() { [[ $1 =~ ^[0-9]+$ && $1 =~ [1-9] ]]; }
positive "${BUDGET:-540}" || { echo "error: BUDGET must be a positive whole number of" \
    "seconds, got '$BUDGET'" >&2; exit 2; }
positive "${FACES:-1000}" ||
    { echo "error: FACES must be a positive whole number, got '$FACES'" >&2; exit 2; }
for size in ${SIZES:-100 300 1000}; do
    positive "$size" ||
        { echo "error: SIZES must be positive whole numbers, got '$SIZES'" >&2; exit 2; }
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)" || { echo "error: cannot use $1 as OUT_DIR" >&2; exit 2; }
WHEELS="${2:-$ROOT/.whl}"
[[ -d "$WHEELS" ]] && WHEELS="$(cd "$WHEELS" && pwd)"  # before the cd below
BUDGET="$(( 10#${BUDGET:-540} ))"  # base 10: a leading 0 is no octal
FACES="$(( 10#${FACES:-1000} ))"
read -ra SIZES <<< "${SIZES:-100 300 1000}"
read -ra RECIPE_ARGS <<< "${RECIPE_ARGS:-}"
read -ra CURVE_ARGS <<< "${CURVE_ARGS:-}"
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
say() { echo "$*" | tee -a "$SUMMARY"; }
wanted() { [[ " ${STEPS[*]-} " == *" $1 "* ]]; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
STEP_NAME='' STEP_BEGAN=0 FAILED=0
# step NAME SHARE LOG COMMAND...: COMMAND under a timeout of SHARE % of the time left, its output
# appended to LOG. In the background, waited for: bash runs a trap only once the foreground
# command has ended, and a TERM or INT from outside is to stop the step at once. A step that
# fails or is skipped makes the script's exit status 1.
step() {
    local name=$1 share=$2 log=$3; shift 3
    local limit=$(( $(left) * share / 100 ))
    if (( limit < 30 )); then
        say "$name: skipped (its share of the time left, ${limit} s, is under 30 s)"
        FAILED=1
        return 1
    fi
    STEP_NAME=$name STEP_BEGAN=$(date +%s)
    # INT first (training stops as after Ctrl-C), the whole process group (timeout's own), KILL
    # 20 s later
    timeout --signal=INT --kill-after=20 "$limit" "$@" >> "$log" 2>&1 &
    local pid=$!
    wait $pid
    local rc=$?
    kill -KILL -- "-$pid" 2>/dev/null  # what outlived the step in its group (loader workers, say)
    STEP_NAME=''
    say "$name: exit $rc after $(( $(date +%s) - STEP_BEGAN )) s (limit $limit s)"
    (( rc == 0 )) || FAILED=1
    return $rc
}
# the learning curve's sizes into OUT and the summary (each size is saved as it ends: a curve cut
# short still has its first sizes)
curve_results() {
    cp "$WORK/learning_curve/learning_curve.png" "$OUT/" 2>/dev/null
    if cp "$WORK/learning_curve/learning_curve.json" "$OUT/" 2>/dev/null; then
        # a diverged run's NME is null in the JSON (NaN is no JSON)
        "$PY" - "$OUT/learning_curve.json" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import json
import sys
runs = json.load(open(sys.argv[1]))['runs']
print('learning curve: ' + ', '.join(
    f'{x["faces"]} faces NME '
    + ('none (diverged)' if x['best_NME'] is None else f'{x["best_NME"]:.4f}')
    + f' in {x["minutes"]} min' for x in runs))
EOF
    fi
}
# stopped SIGNAL STATUS: a TERM or INT from outside. The running step gets the same signal
# (timeout passes it to the step's process group and sends KILL 20 s later) and is waited for;
# then the summary, the logs (the EXIT trap) and the exit status 128 + the signal's number.
stopped() {
    trap '' INT TERM
    local pids
    pids=$(jobs -p)
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086  # the pids, one word each
        kill -s "$1" $pids 2>/dev/null
        wait
        for pid in $pids; do kill -KILL -- "-$pid" 2>/dev/null; done
        say "${STEP_NAME:-step}: stopped by SIG$1 after $(( $(date +%s) - STEP_BEGAN )) s"
        [[ "$STEP_NAME" == learning_curve ]] && curve_results
    fi
    say "all steps: stopped by SIG$1 after $(( $(date +%s) - START )) s"
    exit "$2"
}
trap 'stopped INT 130' INT
trap 'stopped TERM 143' TERM

: > "$SUMMARY"
# what an earlier run left in OUT is not taken for this run's
rm -f "$OUT"/{recipe,benchmark,learning_curve}.log "$OUT"/benchmark.json \
    "$OUT"/learning_curve.{json,png} "$OUT/logs.tar.gz"
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
    if step data 20 "$WORK/data.log" "$PY" tools/make_synthetic_dataset.py --out-dir "$DATA" \
            --num-images $(( FACES * 5 / 4 )) --workers "$(nproc)" &&
        step split 50 "$WORK/data.log" "$PY" tools/dataset.py --annotation-dir "$DATA/landmarks" \
            --image-dir "$DATA/images" --output-dir "$DATA" --train-ratio 0.8 --val-ratio 0.2 \
            --test-ratio 0; then
        step recipe 60 "$OUT/recipe.log" "$PY" tools/train.py \
            configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py --data-root "$DATA" \
            ${AMP[@]+"${AMP[@]}"} --work-dir "$WORK/recipe" ${RECIPE_ARGS[@]+"${RECIPE_ARGS[@]}"}
    else
        say "recipe: not run, the data was not made (data.log in logs.tar.gz)"
    fi
    if [[ -f "$OUT/recipe.log" ]]; then  # not when the data failed or the step was skipped
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
    fi
fi

# 2. the training benchmark on this device (ours vs stock WFLW, same loader)
wanted benchmark && step benchmark 30 "$OUT/benchmark.log" "$PY" tools/benchmark.py \
    --only training pipeline --out "$OUT/benchmark.json" &&
    grep -E "^(training|pipeline) " "$OUT/benchmark.log" | tee -a "$SUMMARY"

# 3. the learning curve at the default plan
if wanted learning_curve; then
    step learning_curve 100 "$OUT/learning_curve.log" "$PY" tools/recipe_experiments.py \
        learning-curve --sizes "${SIZES[@]}" --batch-size 64 ${AMP[@]+"${AMP[@]}"} \
        --out-dir "$WORK/learning_curve" ${CURVE_ARGS[@]+"${CURVE_ARGS[@]}"}
    curve_results
fi
say "all steps: $(( $(date +%s) - START )) s$( (( FAILED )) && echo ', not all done')"
exit "$FAILED"
