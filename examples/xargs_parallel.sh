#!/usr/bin/env bash
# JOBS scenes at a time with xargs -P: every folder under SCENES holding s2.tif + s1.tif.
# Usage: examples/xargs_parallel.sh [SCENES (default: examples/data)] [OUT (default: cloudfree_out)] [JOBS (default: 2)]
# On one GPU keep JOBS at 1-2; on CPU, JOBS x threads per job should not exceed the cores
# (each cloudfree process uses all cores unless OMP_NUM_THREADS is set).
# xargs exits 123 when any scene failed; the failed ones say so on stderr.
set -euo pipefail
here=$(dirname "$0")
scenes=${1:-$here/data}
out=${2:-cloudfree_out}
jobs=${3:-2}
mkdir -p "$out"
find "$scenes" -name s2.tif -printf '%h\0' \
  | xargs -0 -P "$jobs" -I{} "$here/process_scene.sh" {} "$out"
