#!/usr/bin/env bash
# Wheels of the OpenMMLab stack for an offline GPU machine that has its own Python and torch
# (a cluster node without internet, a lent cloud GPU): built here, copied there, installed with
#   python3 -m pip install --no-index --no-deps --target /tmp/site WHEELS/*.whl
# (tools/gpu_checks.sh does that itself). torch, numpy, opencv, scipy, matplotlib, tensorboard
# and huggingface_hub are the machine's own; only what it lacks is built or downloaded:
#   mmcv          compiled here against the target's torch by tools/build_mmcv_wheel.sh (its
#                 C++ ops must match torch's ABI), as tools/setup_env.sh builds it
#   xtcocotools   compiled here against numpy 2 (its published wheels are built for numpy 1)
#   the rest      mmpose, mmdet (mmpose imports it), mmengine and what they import: pure-
#                 Python or manylinux wheels of the versions in requirements/constraints.txt
#
# Usage: bash tools/offline_wheels.sh OUT_DIR
# Env:   TARGET_PYTHON=3.12  TARGET_TORCH=2.11.0  TARGET_TORCHVISION=0.26.0  TARGET_NUMPY=2.5.2
#        (what the target has; the defaults are this project's lent GPU machines)  BUILD_PYTHON=python3.12 (an interpreter
#        of TARGET_PYTHON's minor version on this machine)
# Needs the package index and about 5 minutes on 2 cores; the wheels come to about 10 MB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:?usage: offline_wheels.sh OUT_DIR}" && cd "$1" && pwd)"
if compgen -G "$OUT/*.whl" >/dev/null; then  # wheels of another target would go along
    echo "error: $OUT already holds wheels; give an empty folder" >&2
    exit 1
fi
TARGET_PYTHON="${TARGET_PYTHON:-3.12}"
TARGET_TORCH="${TARGET_TORCH:-2.11.0}"
TARGET_NUMPY="${TARGET_NUMPY:-2.5.2}"
TARGET_TORCHVISION="${TARGET_TORCHVISION:-0.26.0}"  # torchvision of TARGET_TORCH
BUILD_PYTHON="${BUILD_PYTHON:-python$TARGET_PYTHON}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
log() { printf '\033[1;34m[offline-wheels]\033[0m %s\n' "$*"; }

version_of() {  # the pinned version of a package in requirements/constraints.txt
    local found
    found=$(grep -i -E "^$1==" "$CONSTRAINTS" | head -n 1 | cut -d= -f3)
    [[ -n "$found" ]] || { echo "error: $1 is not pinned in $CONSTRAINTS" >&2; return 1; }
    echo "$found"
}
# every pin looked up before anything is built: a failed $(version_of ...) inside a command's
# arguments would not stop the script (set -e sees only assignments)
MMCV_VERSION=$(version_of mmcv) || exit 1
XTCOCOTOOLS_VERSION=$(version_of xtcocotools) || exit 1
packages=()
for name in mmengine mmpose mmdet json-tricks munkres addict yapf platformdirs termcolor \
    terminaltables shapely pycocotools; do
    version=$(version_of "$name") || exit 1
    packages+=("$name==$version")
done

if ! "$BUILD_PYTHON" -c "import sys; assert sys.version.startswith('$TARGET_PYTHON.')" 2>/dev/null; then
    echo "error: BUILD_PYTHON=$BUILD_PYTHON is not a Python $TARGET_PYTHON (set BUILD_PYTHON)" >&2
    exit 1
fi
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
# pip, without this machine's global constraints (they pin the local torch, not the target's):
# an empty PIP_CONSTRAINT would be skipped by pip, /dev/null replaces them with none
pip_() { PIP_CONSTRAINT=/dev/null "$BUILD/venv/bin/python" -m pip --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

log "1/4 a build venv with the target's torch $TARGET_TORCH and numpy $TARGET_NUMPY"
"$BUILD_PYTHON" -m venv "$BUILD/venv"
# (torchvision, opencv, pillow, matplotlib, scipy, six, rich, pyyaml: the target's own, for
# the import check at the end)
pip_ install -q "torch==$TARGET_TORCH" "numpy==$TARGET_NUMPY" "setuptools<81" wheel cython ninja \
    "torchvision==$TARGET_TORCHVISION" opencv-python-headless pillow matplotlib scipy six rich \
    pyyaml

log "2/4 mmcv $MMCV_VERSION with compiled CPU ops (about 5 minutes on 2 cores)"
PIP_CONSTRAINT=/dev/null bash "$ROOT/tools/build_mmcv_wheel.sh" "$BUILD/venv/bin/python" "$OUT"

log "3/4 xtcocotools $XTCOCOTOOLS_VERSION against numpy 2"
pip_ wheel -q --no-build-isolation --no-deps --no-binary xtcocotools \
    "xtcocotools==$XTCOCOTOOLS_VERSION" -w "$OUT"

log "4/4 the rest, for Python $TARGET_PYTHON"
pip_ download -q --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$OUT" "${packages[@]}"

# the compiled ops load against the target's torch, and mmpose finds everything it imports:
# checked here, with the same torch
pip_ install -q --no-index --no-deps --target "$BUILD/site" "$OUT"/*.whl
(cd "$BUILD" && PYTHONPATH="$BUILD/site" "$BUILD/venv/bin/python" -c \
    "from mmcv.ops import nms; import xtcocotools.coco, mmengine, mmdet.utils; import mmpose.models, mmpose.datasets, mmpose.evaluation, mmpose.visualization")
wheels=("$OUT"/*.whl)
log "done: ${#wheels[@]} wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
