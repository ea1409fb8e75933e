#!/usr/bin/env bash
# Build mmcv's wheel, with its compiled CPU ops, from the sdist for the torch of PYTHON's
# environment: the one recipe of tools/setup_env.sh (no wheel whose ops load with the venv's torch
# found; it keeps the wheel in .cache/wheels/torch-<version>/) and tools/offline_wheels.sh (a GPU
# machine's torch). The ops must be compiled against the very torch that loads them (its C++
# ABI); this model uses none of them, but mmpose imports them.
#
# Usage: bash tools/build_mmcv_wheel.sh PYTHON OUT_DIR
#        (PYTHON's environment has torch, numpy, setuptools<81 and wheel; about 5 minutes on
#        2 cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${1:?usage: build_mmcv_wheel.sh PYTHON OUT_DIR}"
OUT="${2:?usage: build_mmcv_wheel.sh PYTHON OUT_DIR}"
# the build runs in the sdist's folder: a relative interpreter path (.venv/bin/python) made
# absolute, without resolving the venv's link to its base interpreter
[[ "$PYTHON" == */* && "$PYTHON" != /* ]] && PYTHON="$PWD/$PYTHON"
VERSION="$(grep -E '^mmcv==' "$ROOT/requirements/constraints.txt" | cut -d= -f3)"
[[ -n "$VERSION" ]] || { echo "error: mmcv is not pinned in requirements/constraints.txt" >&2; exit 1; }
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "mmcv==$VERSION" -d "$src" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
tar -xzf "$src/mmcv-$VERSION.tar.gz" -C "$src"
# torch >= 2.10 headers refuse C++17 ("C++20 or later compatible compiler is required").
sed -i "s/'-std=c++17'/'-std=c++20'/" "$src/mmcv-$VERSION/setup.py"
grep -q "'-std=c++20'" "$src/mmcv-$VERSION/setup.py"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
# CPU ops only (FORCE_CUDA=0), no debug info (-g0: 2 MB instead of tens)
(cd "$src/mmcv-$VERSION" &&
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" CFLAGS="-g0" CXXFLAGS="-g0" \
    "$PYTHON" -m pip wheel -q --no-build-isolation --no-deps . -w "$OUT" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2))
