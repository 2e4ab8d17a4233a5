#!/usr/bin/env bash
# Every figure of the README's "On a GPU" section, in one run (about 12 minutes on one H100):
#
#     bash benchmarks/gpu_figures.sh [OUT_DIR]      # default: gpu_figures/
#
# Each step's output goes to OUT_DIR/<step>.txt; a failing step is reported and the next runs.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_figures}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
step() {  # step NAME COMMAND...: run, keep the output, say how it ended
    local name=$1; shift
    echo "== $name: $*"
    "$@" > "$out/$name.txt" 2>&1
    echo "   exit $? ($(tail -1 "$out/$name.txt"))"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt"
step tests python -m pytest -q tests/inference/test_cuda.py
step forward python benchmarks/networks_forward.py --devices cuda --repeat 5
step glfcr_fp16 python benchmarks/remove_pipeline.py --untrained glfcr:paper --device cuda \
    --precision fp16 --batch-size 16 --throughput-size 4096 --sizes 10980 --repeats 1
step default python benchmarks/remove_pipeline.py --device cuda --batch-size 16 \
    --throughput-size 4096 --sizes 10980 --repeats 1
step tile_default python benchmarks/tile_speed.py
step tile_references python benchmarks/tile_speed.py --size 2048 --cases references
step train python benchmarks/train_speed.py --device cuda --amp --copies 128 --batch-size 16 \
    --crop 128 --runs fillnet:small:8 fillnet:paper:8 glfcr:small:8 glfcr:small:0
