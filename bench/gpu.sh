#!/usr/bin/env bash
# The GPU bench in one go (about 6-8 minutes on one GPU), for a machine set up with ./setup.sh
# and a CUDA build of torch 2.13. It writes every figure to OUT_DIR/gpu_bench.md (default
# bench-gpu/) as it goes, so a run cut short keeps what it measured:
#   1. training samples/s and MFU, P-STMO at 243 frames: the Ray Train loop (DDP fp32, DDP TF32,
#      DeepSpeed ZeRO-1 bf16) beside a bare torch loop with the same settings (bench/train_step.py);
#   2. lifting frames/s of P-STMO at 243 frames (eager, inference_mode, torch.compile; batch 1,
#      256, 1024) beside the paper's 3,040 FPS on an RTX 3080 Ti (bench/infer.py);
#   3. Ray Data's ingest rate (clips/s from local Parquet and from S3 on 127.0.0.1) beside the
#      training step's consumption rate from 1 (bench/ingest.py).
#
#   bench/gpu.sh [OUT_DIR]             on the GPU
#   bench/gpu.sh --dry-run [OUT_DIR]   the same steps at toy sizes on the CPU (checks the plumbing)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR=${1:-bench-gpu}
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/gpu_bench.md"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  TRAIN=(--config configs/pstmo_s_smoke.yaml --steps 3 --warmup 1 --workers 1 --with-checkpoints 0)
  GPU_SETS=()
  INFER=(--model pstmo_s --frames 27 --batch-sizes 2 --modes eager inference --seconds 0.2)
  INGEST=(--virtual-cameras 1 --num-frames 27 --chunk-frames 128 --epochs 1)
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: torch in $PY sees no CUDA device; install a CUDA build of torch==2.13.0 (or use --dry-run)" >&2
    exit 2
  fi
  DEVICE=cuda
  # P-STMO at its paper size (d 256, 4 layers, 243 frames) on the embedded mocap (no dataset to
  # download); batch 32 chunks x 8 clips = 256 clips per step; one worker on the one GPU
  TRAIN=(--config configs/pstmo_smoke.yaml --set model.dim=256 --set model.ffn_dim=512
         --set model.heads=8 --set model.depth=4 --set model.sem_hidden=512 --set model.dropout=0.1
         --set data.num_frames=243 --set data.chunk_frames=512 --set data.batch_size=32
         --set data.clips_per_sequence=8 --steps 40 --warmup 5 --workers 1)
  GPU_SETS=(--set train.use_gpu=true --set train.cpus_per_worker=4)
  INFER=(--model pstmo --frames 243 --batch-sizes 1 256 1024 --modes eager inference bf16 compile --seconds 3)
  INGEST=(--virtual-cameras 8 --num-frames 243 --chunk-frames 1024 --epochs 2)
fi

{
  echo "# raypose GPU bench — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo '```'
  "$PY" -c "import torch; print('torch', torch.__version__, '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
  echo '```'
} > "$REPORT"

section() { printf '\n## %s\n\n```\n' "$1" >> "$REPORT"; }
run() { "$@" 2>"$OUT_DIR/stderr.log" | tee -a "$REPORT"; echo '```' >> "$REPORT"; }

section "1. Training step: Ray Train vs bare torch (DDP fp32)"
run "$PY" bench/train_step.py "${TRAIN[@]}" "${GPU_SETS[@]}"
if [ "$DRY" = 0 ]; then
  section "1b. Training step: DDP with TF32"
  run "$PY" bench/train_step.py "${TRAIN[@]}" "${GPU_SETS[@]}" --set train.tf32=true
  section "1c. Training step: DeepSpeed ZeRO-1 bf16"
  run "$PY" bench/train_step.py "${TRAIN[@]}" "${GPU_SETS[@]}" --set train.strategy=deepspeed \
      --set train.zero_stage=1 --set train.precision=bf16
fi

section "2. Lifting frames/s (paper: P-STMO 3,040 FPS at 243 frames on an RTX 3080 Ti)"
run "$PY" bench/infer.py --device "$DEVICE" "${INFER[@]}"

section "3. Ray Data ingest (clips/s) — compare with the training samples/s of section 1"
run "$PY" bench/ingest.py "${INGEST[@]}"

echo "figures: $REPORT"
