#!/usr/bin/env bash
# GPU check, under 8 minutes on one GPU:
#  1. images/s of pretraining (context restoration) and finetuning (BraTS segmentation) at paper scale (paper
#     preset: VGG encoder 64-512 channels, batch 32, 64x64 patches) with and without the GPU path options
#     (bf16 autocast, channels_last, DataLoader workers, torch.compile), and GPU utilisation -> gpu_check.json;
#  2. the smoke grid end to end on the GPU with those options on (every job must finish).
# Usage: benchmarks/gpu_check.sh [results folder]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 300 python -m benchmark.throughput --grid paper --device cuda --steps "${STEPS:-60}" --json "$out/gpu_check.json"
timeout 170 python -m benchmark run --grid smoke --device cuda --out "$out/smoke" --no-progress \
    --set runtime.precision=bf16 --set runtime.channels_last=true --set runtime.loader_workers=2 | tail -4
