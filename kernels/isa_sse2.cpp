// The x86-64 baseline: SSE2, no FMA.
#include "kernel_table_fill.hpp"
NK_DEFINE_TABLE(table_sse2, xsimd::sse2, "sse2")
