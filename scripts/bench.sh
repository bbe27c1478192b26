#!/usr/bin/env bash
# The main job: normkit's Batch Norm benchmark table against the memory
# bandwidth measured in the same run. Installs what is missing and builds.
#   scripts/bench.sh [--isa all] [--quick] ...   (options of bench/compare.py)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build bench
{ [ -f build/build.ninja ] || meson setup build >/dev/null; } && ninja -C build >/dev/null
exec /usr/bin/python3 bench/compare.py --normkit-only "$@"
