#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with raypose and its pinned dependencies.
# torch goes first and pinned so pip takes the CPU wheel instead of pulling CUDA packages.
#   ./setup.sh           the library, training, tests
#   ./setup.sh --video   the same plus MediaPipe for video input, in the same environment
#                        (numpy 1.26 / protobuf 4.25, see constraints-video.txt)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
EXTRAS=dev
CONSTRAINTS=constraints.txt
for arg in "$@"; do
  case "$arg" in
    --video) EXTRAS=dev,video; CONSTRAINTS=constraints-video.txt ;;
    *) echo "usage: ./setup.sh [--video]" >&2; exit 2 ;;
  esac
done
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c "$CONSTRAINTS" -e ".[$EXTRAS]"
echo "raypose set up in $(pwd)/.venv (extras: $EXTRAS) — activate with: source .venv/bin/activate"
