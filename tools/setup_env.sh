#!/usr/bin/env bash
# Create or update .venv with the tested OpenMMLab stack for torch 2.14 (see README "Install").
#
# Idempotent: every step checks what is already there, so a second run takes seconds.
# Usage: bash tools/setup_env.sh            (or: make setup; make setup VENV=/path/to/venv)
# Env:   PYTHON=python3.11  VENV=.venv (relative to the repository root)
#        WHEELHOUSE=../shared/wheelhouse
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-$ROOT/.venv}"
WHEELHOUSE="${WHEELHOUSE:-$ROOT/../shared/wheelhouse}"
STAMP="$VENV/.animal_landmarks_mm-setup"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
start=$(date +%s)

# The stamp records the hash of everything that decides the environment; when nothing changed and
# the key imports work, there is nothing to do.
want_hash=$(cat tools/setup_env.sh requirements/*.txt pyproject.toml | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_hash" ]] &&
    "$VENV/bin/python" -c "import animal_landmarks_mm, mmpose, mmdet; from mmcv.ops import nms" 2>/dev/null; then
    log "environment up to date ($VENV)"
    exit 0
fi

# Chromium for the annotator's browser test (tests/test_annotator_browser.py), from Debian: the
# machine's package manager reaches Debian's mirrors, Playwright's own browser download does not.
# Without root or sudo, or without apt-get, the test is skipped and says why. Tried only when the
# environment is set up or updated, not on every run that finds it up to date.
CHROMIUM=/usr/bin/chromium
if [[ ! -x "$CHROMIUM" ]]; then
    # sudo resets the environment: DEBIAN_FRONTEND goes through env
    if [[ $(id -u) -eq 0 ]]; then APT=(env DEBIAN_FRONTEND=noninteractive apt-get)
    else APT=(sudo -n env DEBIAN_FRONTEND=noninteractive apt-get); fi
    if command -v apt-get >/dev/null && { [[ $(id -u) -eq 0 ]] || sudo -n true 2>/dev/null; }; then
        log "installing Debian chromium + chromium-driver for the browser test (about 30 s)"
        if ! { "${APT[@]}" update -qq &&
               "${APT[@]}" install -y -qq --no-install-recommends chromium chromium-driver \
                   >/dev/null; }; then
            log "could not install chromium: the browser test will be skipped"
        fi
    else
        log "no $CHROMIUM and no way to install it (root or sudo, apt-get): the browser test will be skipped"
    fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip, minus the noise of this machine's pip.conf naming index folders that lack a package.
pip_() {
    "$PY" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# install_or_repair DIST PIP_INSTALL_ARGS...: for a package whose import check failed. Where DIST
# is installed all the same (broken files, a wheel for another torch), a plain install says
# "Requirement already satisfied" and changes nothing: its files are reinstalled first, without its
# dependencies; the plain install then brings whatever it needs that is missing.
install_or_repair() {
    local dist=$1; shift
    if "$PY" -c "import importlib.metadata as m, sys; m.distribution(sys.argv[1])" "$dist" 2>/dev/null; then
        log "    $dist is installed but does not import: reinstalling it"
        pip_ install --force-reinstall --no-deps "$@" || return
    fi
    pip_ install "$@"
}

log "1/7 build tools (setuptools<81: mmengine and mmcv's setup import pkg_resources)"
pip_ install -q -c requirements/constraints.txt pip setuptools wheel cython

log "2/7 torch + torchvision (CUDA build; taken from local disk where pip has it)"
pip_ install -q -c requirements/constraints.txt torch torchvision numpy

log "3/7 mmcv 2.1.0 with compiled ops"
# Its compiled ops load only with the torch they were built against (C++ ABI): the wheels this
# script builds are kept per torch version.
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)")
LOCAL_WHEELS="$ROOT/.cache/wheels/torch-$TORCH_VERSION"
MMCV=(-q -c requirements/constraints.txt --only-binary mmcv mmcv==2.1.0)
mmcv_ops() { "$PY" -c "from mmcv.ops import nms" 2>/dev/null; }
if ! mmcv_ops; then
    # a wheel built here for this torch, else the prebuilt one of the shared wheelhouse (built for
    # one torch, see its README: the import check decides), else one built now
    mmcv_ok=false
    for wheels in "$LOCAL_WHEELS" "$WHEELHOUSE"; do
        compgen -G "$wheels/mmcv-2.1.0-*.whl" >/dev/null || continue
        log "    the mmcv wheel of $wheels"
        if install_or_repair mmcv --find-links "$wheels" "${MMCV[@]}" && mmcv_ops; then
            mmcv_ok=true
            break
        fi
        log "    its compiled ops do not load with torch $TORCH_VERSION"
    done
    if ! $mmcv_ok; then
        log "no mmcv wheel for torch $TORCH_VERSION: building it from the sdist (about 5 minutes on 2 cores)"
        rm -f "$LOCAL_WHEELS"/mmcv-2.1.0-*.whl
        bash tools/build_mmcv_wheel.sh "$PY" "$LOCAL_WHEELS"
        install_or_repair mmcv --find-links "$LOCAL_WHEELS" "${MMCV[@]}"
        "$PY" -c "from mmcv.ops import nms"
    fi
fi

log "4/7 xtcocotools from source (its wheels are built against numpy 1)"
if ! "$PY" -c "import xtcocotools.coco" 2>/dev/null; then
    install_or_repair xtcocotools -q -c requirements/constraints.txt --no-build-isolation \
        --no-binary xtcocotools xtcocotools
fi

log "5/7 mmpose + mmdet without their declared deps (chumpy does not build and is never imported)"
pip_ install -q -c requirements/constraints.txt --no-deps -r requirements/openmmlab.txt

log "6/7 this project, editable, with dev and tools extras"
pip_ install -q -c requirements/constraints.txt -e ".[dev,tools]"

log "7/7 anime-face-detector 0.1.0, the consumer of exported checkpoints (it declares Python>=3.12"
log "    but runs on 3.11; its cv2 comes from opencv-python, so not opencv-python-headless)"
if ! "$PY" -c "import anime_face_detector" 2>/dev/null; then
    install_or_repair anime-face-detector -q -c requirements/constraints.txt --no-deps \
        --ignore-requires-python anime-face-detector==0.1.0
fi

"$PY" - <<'EOF'
import anime_face_detector  # noqa: F401
import animal_landmarks_mm  # noqa: F401  (registers the dataset)
import gradio, mmcv, mmdet, mmengine, mmpose, torch
from mmcv.ops import nms  # noqa: F401
from mmpose.registry import DATASETS
assert DATASETS.get('AnimalCharacterFaceDataset') is not None
print(f'torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, '
      f'mmpose {mmpose.__version__}, mmdet {mmdet.__version__}, gradio {gradio.__version__}')
EOF
echo "$want_hash" > "$STAMP"
log "done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
