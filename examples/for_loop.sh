#!/usr/bin/env bash
# One scene after another: every folder holding s2.tif + s1.tif, SCENES itself included.
# Usage: examples/for_loop.sh [SCENES (default: examples/data)] [OUT (default: cloudfree_out)]
# A failed scene is reported and the loop goes on; the exit status is 1 if any failed.
set -uo pipefail
here=$(dirname "$0")
scenes=${1:-$here/data}
out=${2:-cloudfree_out}
mkdir -p "$out"
status=0
for d in "$scenes" "$scenes"/*/; do
  [[ -f $d/s2.tif ]] || continue
  "$here/process_scene.sh" "$d" "$out" || { echo "failed: $d" >&2; status=1; }
done
exit $status
