#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, builds, and runs every ISA's tests, the sanitizer build, the NEON
# build under qemu, the installed-library check, the ABI check, and the
# bindings (Rust, Python, the Julia ccall checker) and Sync BN over MPI.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build test || exit 1

passed=0 failed=0
step() {  # step NAME COMMAND...
  echo "=== $1"
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "*** FAILED"; fi
}
setup() {  # setup DIR MESON-ARGS...: configure once, then build
  local dir=$1; shift
  { [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null; } && ninja -C "$dir" >/dev/null
}

export NK_REQUIRE_ISAS=${NK_REQUIRE_ISAS:-$(scripts/cpu_isas.sh)}
echo "ISAs required: $NK_REQUIRE_ISAS"

step "build" setup build
step "tests ($NK_REQUIRE_ISAS)" meson test -C build --print-errorlogs

step "build (address + undefined sanitizers)" \
  setup build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false \
  -Dcpp_args=-fno-sanitize-recover=all -Dc_args=-fno-sanitize-recover=all
step "tests under sanitizers" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 \
  meson test -C build-asan --print-errorlogs --timeout-multiplier 3

if [ "$(uname -m)" = x86_64 ]; then
  step "build (aarch64 NEON, cross)" \
    setup build-aarch64 --cross-file scripts/cross/aarch64-linux-gnu.ini -Dbench=false
  step "tests on aarch64 under qemu (neon, scalar)" env NK_REQUIRE_ISAS=neon,scalar \
    meson test -C build-aarch64 --print-errorlogs --timeout-multiplier 3
fi

step "installed library through pkg-config and CMake" scripts/check_install.sh build
step "ABI against abi/libnormkit.so.0.abi" \
  abidiff --no-added-syms --headers-dir1 include --headers-dir2 include \
  abi/libnormkit.so.0.abi build/libnormkit.so

# ---- bindings, against build/libnormkit.so ----
export NORMKIT_LIB="$PWD/build/libnormkit.so" NORMKIT_LIB_DIR="$PWD/build" NORMKIT_INCLUDE_DIR="$PWD/include"
cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
step "Rust bindings: cargo test (offline)" \
  "$cargo" test --offline -q -j2 --manifest-path bindings/rust/Cargo.toml
pytest_bindings() {  # exit code 5 (no tests collected) is a failure too
  /usr/bin/python3 -m pytest -q -p no:cacheprovider bindings/python/tests
  local rc=$?
  [ "$rc" -eq 5 ] && echo "pytest collected no tests"
  [ "$rc" -eq 0 ]
}
step "Python bindings: pytest (against torch and float64)" pytest_bindings
step "Julia bindings: every ccall against normkit.h (Julia itself not run)" \
  /usr/bin/python3 bindings/julia/check_ccalls.py
step "Sync BN over MPI: build" \
  bash -c 'mkdir -p build-mpi && mpicc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/mpi_sync_bn.c \
    -Lbuild -lnormkit -Wl,-rpath,"$PWD/build" -lm -o build-mpi/mpi_sync_bn'
for np in 2 3; do
  step "Sync BN over MPI: mpirun -np $np equals single-process BN" \
    timeout 300 mpirun --allow-run-as-root --oversubscribe -np "$np" build-mpi/mpi_sync_bn
done

echo
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
