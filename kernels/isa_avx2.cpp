// AVX2 with FMA; built with -mavx2 -mfma.
#include "kernel_table_fill.hpp"
NK_DEFINE_TABLE(table_avx2, xsimd::fma3<xsimd::avx2>, "avx2")
