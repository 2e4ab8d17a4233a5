#!/usr/bin/env bash
# Process one scene folder holding s2.tif (Sentinel-2 L1C) and s1.tif (Sentinel-1 VV,VH).
# Usage: examples/process_scene.sh SCENE_DIR OUT_DIR
# Writes OUT_DIR/<scene>.tif (cloud-free image); with CLOUDFREE_COMMAND=mask, OUT_DIR/<scene>_mask.tif.
# The drivers for_loop.sh, xargs_parallel.sh and gnu_parallel.sh call it once per scene;
# edit the cloudfree lines to add options (--model, --device, --co COMPRESS=ZSTD ...).
# A scene whose output exists is skipped, so a rerun does only what is missing or failed
# (outputs appear only when complete); delete an output to redo its scene.
set -euo pipefail
scene=${1%/}
out=$2
name=$(basename "$scene")
case ${CLOUDFREE_COMMAND:-remove} in
  remove) target=$out/$name.tif
          run=(cloudfree remove --s1 "$scene/s1.tif" --s2 "$scene/s2.tif" -o "$target" --quiet) ;;
  mask) target=$out/${name}_mask.tif
        run=(cloudfree mask "$scene/s2.tif" -o "$target" --quiet) ;;
  *) echo "CLOUDFREE_COMMAND must be remove or mask" >&2; exit 2 ;;
esac
if [[ -e $target ]]; then
  echo "$target exists: skipped (delete it to redo $name)" >&2
  exit 0
fi
"${run[@]}"
