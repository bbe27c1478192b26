// Settings every operation reads: the active kernel table, the thread count
// and the streaming-store threshold.
#pragma once

#include "../kernels/kernel_table.hpp"

namespace nk {

// The active table; fails with NK_ERR_BAD_ISA while NK_MAX_ISA is invalid.
const kernels::KernelTable& kernels_for_call();
// Threads for the next parallel region (>= 1).
int num_threads();
// Operations moving at least this many bytes write with non-temporal stores.
int64_t stream_threshold();

}  // namespace nk
