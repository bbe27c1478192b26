#!/usr/bin/env bash
# normkit, PyTorch and oneDNN side by side on the same shapes and threads.
#   scripts/compare.sh [--quick] ...   (options of bench/compare.py)
# then the activations and the fused norm + activation ops against PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build compare
{ [ -f build/build.ninja ] || meson setup build >/dev/null; } && meson configure build -Donednn=enabled >/dev/null
ninja -C build >/dev/null
/usr/bin/python3 bench/compare.py "$@"
echo
/usr/bin/python3 bench/compare_activations.py
echo
/usr/bin/python3 bench/compare_fused.py
