#!/usr/bin/env bash
# GPU check, under 8 minutes on one GPU:
#  1. images/s of pretraining (context restoration) and finetuning (BraTS segmentation) at paper scale (paper
#     preset: VGG encoder 64-512 channels, batch 32, 64x64 patches) with and without the GPU path options
#     (bf16 autocast, channels_last, DataLoader workers, torch.compile), and GPU utilisation -> gpu_check.json;
#  2. the smoke grid end to end on the GPU with those options on (every job must finish);
#  3. packing: the wall time of a smoke subset (segmentation, three initialisations) with 1, 2 and 4 jobs per GPU.
# Usage: benchmarks/gpu_check.sh [results folder]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 300 python -m benchmark.throughput --grid paper --device cuda --steps "${STEPS:-60}" --json "$out/gpu_check.json"
timeout 170 python -m benchmark run --grid smoke --device cuda --out "$out/smoke" --no-progress \
    --set runtime.precision=bf16 --set runtime.channels_last=true --set runtime.loader_workers=2 | tail -4
for jobs in 1 2 4; do
    start=$SECONDS
    timeout 150 python -m benchmark run --grid smoke --device cuda --out "$out/packing-$jobs" --no-progress --yes \
        --jobs-per-gpu "$jobs" --set 'downstream_tasks=[brats_segmentation]' --set 'protocols_by_task={}' \
        --set 'initialisations=[random, context_restoration, rotation]' >/dev/null
    echo "jobs per GPU $jobs: $((SECONDS - start)) s of wall time"
done
