#!/usr/bin/env bash
# The GPU acceptance check within a total budget (benchmarks/gpu_check.py: resume, sample, features,
# select, loop, throughput, compile, sweep, projection, each in a process of its own with its share
# of the budget). The machine's start is not in the budget; the offline install from the wheelhouse
# is, and is taken out of it first. Ends with one summary table; the exit code is gpu_check.py's.
#   benchmarks/gpu_check.sh [OUT_DIR] [--budget SECONDS (default 300)] [gpu_check.py options, e.g. --tiny, --skip loop]
# On an air-gapped node: build the wheelhouse where there is network (`make wheelhouse`), copy the
# repository with wheelhouse/ to the node; the check installs what the node lacks from it, offline,
# into OUT_DIR/site-packages (WHEELHOUSE=DIR to take it from elsewhere).
set -u
started=$SECONDS
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"; shift || true
mkdir -p "$out"
budget=300
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget="$2"; shift 2 ;;
    --budget=*) budget="${1#--budget=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" HF_HUB_OFFLINE=1
wheels="${WHEELHOUSE:-wheelhouse}"
# found, not imported: importing them all would cost seconds of the budget that each phase pays again
need='import importlib.util as u, sys
names = "torch diffusers huggingface_hub safetensors snakemake torch_fidelity scipy PIL torchvision transformers"
missing = [n for n in names.split() if u.find_spec(n) is None]
sys.exit("no module named " + ", ".join(missing) if missing else 0)'
if ! "$PY" -c "$need" 2>/dev/null; then
  if [ -d "$wheels" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
    # the wheelhouse is complete by construction (benchmarks/wheelhouse.py): no resolver, no index
    site="$(cd "$out" && pwd)/site-packages"
    "$PY" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$site" "$wheels"/*.whl \
      || { echo "offline install from $wheels failed"; exit 2; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels in $((SECONDS - started)) s"
  fi
  if ! missing=$("$PY" -c "$need" 2>&1); then
    echo "this Python ($PY) lacks what the check needs: ${missing##*$'\n'}"
    echo "build the wheelhouse where there is network (make wheelhouse; see benchmarks/wheelhouse.py for a node without scipy, Pillow or torchvision) and copy it to $wheels"
    exit 2
  fi
fi
left=$((budget - (SECONDS - started)))
"$PY" benchmarks/gpu_check.py --out "$out/gpu_check.json" --budget "$left" "${args[@]}" > "$out/gpu_check.log" 2>&1
check=$?
# the per-phase lines and the summary table
sed -n '/^budget /,$p' "$out/gpu_check.log"
[ $check -eq 2 ] && tail -n 5 "$out/gpu_check.log"
echo "gpu_check.py exit $check in $((SECONDS - started)) s of a ${budget} s budget; JSON, logs and per-phase logs in $out"
exit $check
