// The one parallel loop of the capi layer.
#pragma once

#include <omp.h>

#include <atomic>
#include <cstdint>

namespace nk {

enum class Schedule { Dynamic, Static };

// body(i) for i in [0, n) over `threads` threads, then a full fence in each
// of them: outputs written with non-temporal stores are weakly ordered and
// must be visible to whoever reads them once the call returns. One fence per
// thread and call, not per kernel call: a fence waits for the write-combining
// buffers to drain.
template <class F>
void parallel_for(int threads, int64_t n, Schedule schedule, const F& body) {
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    if (schedule == Schedule::Dynamic) {
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t i = 0; i < n; ++i) body(i);
    } else {
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < n; ++i) body(i);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

}  // namespace nk
