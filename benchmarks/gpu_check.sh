#!/usr/bin/env bash
# GPU acceptance check (benchmarks/gpu_check.py: resume, sample, features, select, loop, throughput,
# projection), then the throughput sweep (benchmarks/gpu_throughput.py). Each writes its JSON as it
# goes; a failing phase or script is recorded and the rest still run; the exit code is the worst.
#   benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options, e.g. --tiny, --skip loop]
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"; shift || true
mkdir -p "$out"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: running on CPU"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" HF_HUB_OFFLINE=1
"$PY" benchmarks/gpu_check.py --out "$out/gpu_check.json" "$@" > "$out/gpu_check.log" 2>&1
check=$?
tail -n 12 "$out/gpu_check.log"
throughput=0
case " $* " in
  *" --tiny "*) echo "--tiny: the throughput sweep is skipped" ;;
  *) "$PY" benchmarks/gpu_throughput.py --out "$out/gpu_throughput.json" > "$out/gpu_throughput.log" 2>&1
     throughput=$?
     tail -n 12 "$out/gpu_throughput.log" ;;
esac
echo "gpu_check.py exit $check, gpu_throughput.py exit $throughput; JSON and logs in $out"
exit $(( check > throughput ? check : throughput ))
