// One float at a time: the fallback on every CPU.
#include "kernel_table_fill.hpp"
NK_DEFINE_TABLE(table_scalar, scalar_arch, "scalar")
