// Process-wide settings: the thread count and the streaming-store threshold.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "error.hpp"
#include "runtime.hpp"

namespace nk {
namespace {
std::atomic<int> g_threads{0};             // 0: OpenMP's default
std::atomic<int64_t> g_stream_bytes{-1};   // -1: default_stream_bytes()

// The default threshold: the last-level cache, but no more than 16 MiB. A
// virtual machine may report its host's whole cache (hundreds of MiB, shared
// with other guests); measured there, streaming already wins at 25 MiB.
int64_t default_stream_bytes() {
  int64_t llc = int64_t{16} << 20;
  for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) {
      llc = v;
      break;
    }
  }
  return std::min<int64_t>(llc, int64_t{16} << 20);
}
}  // namespace

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

int64_t stream_threshold() {
  const int64_t t = g_stream_bytes.load(std::memory_order_relaxed);
  if (t >= 0) return t;
  static const int64_t bytes = default_stream_bytes();
  return bytes;
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

NK_API nk_status nk_set_stream_threshold(int64_t bytes) {
  return nk::guarded("nk_set_stream_threshold", [&] {
    if (bytes < -1)
      nk::fail(NK_ERR_BAD_ARGUMENT, "bytes = %lld: must be >= 0, or -1 for the default",
               static_cast<long long>(bytes));
    nk::g_stream_bytes.store(bytes, std::memory_order_relaxed);
  });
}
NK_API int64_t nk_get_stream_threshold(void) { return nk::stream_threshold(); }
}
