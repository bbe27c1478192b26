#!/usr/bin/env bash
# Installs a build into a scratch root and builds a C program against it
# through pkg-config, and through CMake's find_package, then runs each:
# what a user linking normkit does.
set -euo pipefail
build=${1:-build}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
meson install -C "$build" --destdir "$root" --quiet
pc=$(dirname "$(find "$root" -name normkit.pc | head -n1)")
export PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$root
cflags=$(pkg-config --cflags normkit)
libs=$(pkg-config --libs normkit)
libdir=$(pkg-config --variable=libdir normkit)  # pkgconf adds the sysroot
cc -std=c99 -Wall -Werror $cflags tests/c99_api.c $libs -Wl,-rpath,"$libdir" -o "$root/consumer"
"$root/consumer"
# CMake: find_package(normkit 0.1) from the installed config files; a
# request for another major version must be refused.
cmake_dir=$(dirname "$(find "$root" -name normkitConfig.cmake | head -n1)")
cmake -S tests/cmake_consumer -B "$root/cmake-build" -DCMAKE_PREFIX_PATH="$cmake_dir" >/dev/null
cmake --build "$root/cmake-build" >/dev/null
"$root/cmake-build/consumer"
if cmake -S tests/cmake_consumer -B "$root/cmake-major" -DCMAKE_PREFIX_PATH="$cmake_dir" \
     -DNORMKIT_WANT=1.0 >/dev/null 2>&1; then
  echo "find_package(normkit 1.0) accepted version $(pkg-config --modversion normkit)"; exit 1
fi
# Only nk_ symbols are exported.
bad=$(nm -D --defined-only "$libdir/libnormkit.so" | awk '{print $3}' | grep -v -E '^(nk_|NK_0)' || true)
[ -z "$bad" ] || { echo "exported symbols outside nk_: $bad"; exit 1; }
readelf -d "$libdir/libnormkit.so" | grep -q 'SONAME.*libnormkit.so.0' || { echo "SONAME missing"; exit 1; }
echo "installed library OK: $(pkg-config --modversion normkit), SONAME libnormkit.so.0, pkg-config and CMake consumers"
