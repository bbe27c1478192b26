#!/usr/bin/env bash
# The normkit ISAs this CPU has, comma-separated: what the tests must cover.
flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo)
has() { for f in "$@"; do [[ " $flags " == *" $f "* ]] || return 1; done; }
isas=()
case "$(uname -m)" in
  x86_64)
    has avx512f avx512cd avx512dq avx512bw avx2 fma && isas+=(avx512)
    has avx2 fma && isas+=(avx2)
    isas+=(sse2 scalar) ;;
  aarch64) isas+=(neon scalar) ;;
  *) isas+=(scalar) ;;
esac
(IFS=,; echo "${isas[*]}")
