// AVX-512 (F, CD, DQ, BW) with FMA; built with exactly those flags.
#include "kernel_table_fill.hpp"
NK_DEFINE_TABLE(table_avx512, xsimd::avx512bw, "avx512")
