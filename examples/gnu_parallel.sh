#!/usr/bin/env bash
# JOBS scenes at a time with GNU parallel, with a job log so a rerun only redoes what failed.
# Usage: examples/gnu_parallel.sh [SCENES (default: examples/data)] [OUT (default: cloudfree_out)] [JOBS (default: 2)]
# Across machines: add  --sshloginfile nodes.txt  (same paths on every node, e.g. NFS).
# Exits with the number of failed scenes (0 when all succeeded).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scenes=${1:-$here/data}
out=${2:-cloudfree_out}
jobs=${3:-2}
mkdir -p "$out"
find "$scenes" -name s2.tif -print0 \
  | parallel -0 -j "$jobs" --joblog "$out/joblog.txt" --resume-failed \
      "$here/process_scene.sh" {//} "$out"
