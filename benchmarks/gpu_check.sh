#!/usr/bin/env bash
# GPU check: ouroboros' training and sampling throughput against a plain diffusers loop on the
# paper's CIFAR UNet, random CIFAR-shaped data, no network. About 5 minutes on one H100/H200.
#   benchmarks/gpu_check.sh [OUT_DIR] [extra gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"; shift || true
mkdir -p "$out"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: running on CPU"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" HF_HUB_OFFLINE=1 "$PY" benchmarks/gpu_check.py --out "$out/gpu_check.json" --compile "$@" \
    2>&1 | tee "$out/gpu_check.log"
# throughput with 1, 2, 4 trainings per device, sampling batch 256…4096, DINOv2/Inception features,
# and Figure 3's projected device-hours (about 5 more minutes on one H100/H200)
OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" HF_HUB_OFFLINE=1 "$PY" benchmarks/gpu_throughput.py --out "$out/gpu_throughput.json" \
    2>&1 | tee "$out/gpu_throughput.log"
