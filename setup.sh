#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with raypose and its pinned dependencies.
# torch goes first and pinned so pip takes the CPU wheel instead of pulling CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
echo "raypose set up in $(pwd)/.venv — activate with: source .venv/bin/activate"
