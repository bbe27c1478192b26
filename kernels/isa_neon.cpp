// aarch64 NEON (always present on aarch64).
#include "kernel_table_fill.hpp"
NK_DEFINE_TABLE(table_neon, xsimd::neon64, "neon")
