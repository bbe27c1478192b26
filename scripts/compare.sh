#!/usr/bin/env bash
# normkit, PyTorch and oneDNN side by side on the same shapes and threads:
# Batch Norm (bench/compare.py), then Group, Instance, Layer, RMS and
# Switchable Norm (bench/compare_norms.py), then the activations
# (bench/compare_activations.py) and the fused norm + activation ops
# (bench/compare_fused.py).
#   scripts/compare.sh [--quick] ...   (options of bench/compare.py; those
#   compare_norms.py shares carry over: --quick, --threads, --reps,
#   --min-time, --isa, --probe-mib, --no-torch, --no-onednn, --torch-malloc;
#   --normkit-only runs the others without PyTorch and oneDNN; with --from
#   only compare.py runs)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build compare
{ [ -f build/build.ninja ] || meson setup build >/dev/null; } && meson configure build -Donednn=enabled >/dev/null
ninja -C build >/dev/null
/usr/bin/python3 bench/compare.py "$@"

norms=()
torch=()
common=()  # what compare_activations.py and compare_fused.py take too
while [ $# -gt 0 ]; do
  case $1 in
    --quick | --no-onednn) norms+=("$1") ;;
    --no-torch) norms+=("$1"); torch+=(--no-torch) ;;
    --normkit-only) norms+=(--no-torch --no-onednn); torch+=(--no-torch) ;;
    --threads=* | --reps=* | --build=*) norms+=("$1"); common+=("$1") ;;
    --threads | --reps | --build)
      norms+=("$1" "${2:-}"); common+=("$1" "${2:-}")
      shift ;;
    --min-time=* | --isa=* | --probe-mib=* | --torch-malloc=*) norms+=("$1") ;;
    --min-time | --isa | --probe-mib | --torch-malloc)
      norms+=("$1" "${2:-}")
      shift ;;
    --from | --from=*) exit 0 ;;
  esac
  shift
done
echo
/usr/bin/python3 bench/compare_norms.py "${norms[@]}"
echo
/usr/bin/python3 bench/compare_activations.py "${common[@]}"
echo
/usr/bin/python3 bench/compare_fused.py "${common[@]}" "${torch[@]}"
