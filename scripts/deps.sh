#!/usr/bin/env bash
# Installs the Debian 12 packages a task needs, where missing.
#   scripts/deps.sh build|test|bench|compare|bindings|examples ...
# (test includes bindings: the Rust, Python and Julia-checker tests and Sync BN over MPI.)
set -euo pipefail

pkgs=(meson ninja-build pkg-config g++ libxsimd-dev)
need_arm64=0
add_bindings() {
  pkgs+=(python3-pytest python3-numpy python3-torch libopenmpi-dev openmpi-bin)
  # cargo: a rustup one (~/.cargo/bin) or anything on PATH will do, else Debian's.
  command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || pkgs+=(cargo)
}
for what in "$@"; do
  case "$what" in
    build) ;;
    test)
      # libbenchmark-dev: the test build compiles the benchmarks too.
      pkgs+=(libgtest-dev libbenchmark-dev abigail-tools cmake g++-aarch64-linux-gnu qemu-user
             libgtest-dev:arm64 libxsimd-dev:arm64)
      need_arm64=1
      add_bindings ;;
    bindings) add_bindings ;;
    bench) pkgs+=(libbenchmark-dev) ;;
    examples) pkgs+=(libopenblas-dev python3-matplotlib) ;;
    # ocl-icd-opencl-dev: libdnnl-dev recommends it, and its CMake config fails without it.
    compare) pkgs+=(libbenchmark-dev libdnnl-dev ocl-icd-opencl-dev python3-torch python3-numpy) ;;
    *) echo "deps.sh: unknown task '$what'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing: ${missing[*]}"
if [ "$need_arm64" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
