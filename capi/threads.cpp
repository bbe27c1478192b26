#include <omp.h>

#include <atomic>

#include "error.hpp"
#include "runtime.hpp"

namespace nk {
namespace {
std::atomic<int> g_threads{0};  // 0: OpenMP's default
}

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

}  // namespace nk

extern "C" {
NK_API nk_status nk_set_num_threads(int32_t n) {
  return nk::guarded("nk_set_num_threads", [&] {
    if (n < 0) nk::fail(NK_ERR_BAD_ARGUMENT, "threads = %d: must be >= 1, or 0 for the default", n);
    nk::g_threads.store(n, std::memory_order_relaxed);
  });
}
NK_API int32_t nk_get_num_threads(void) { return nk::num_threads(); }
}
