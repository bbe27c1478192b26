// How Batch Norm's passes are split over threads. Statistics are reduced per
// super-block of outer rows (fixed by the shape alone) and merged in order,
// so every partition of the work gives the same bits.
#pragma once

#include <omp.h>

#include <algorithm>
#include <vector>

#include "runtime.hpp"
#include "shape.hpp"

namespace nk {

struct BnExec {
  const kernels::KernelTable& k;
  kernels::View v;
  int threads;
  int64_t blocks;  // super-blocks of outer rows

  BnExec(const kernels::KernelTable& table, const kernels::View& view)
      : k(table), v(view), threads(num_threads()) {
    // Enough blocks to share among threads, none too small: where channels
    // are runs a block is one channel's rows (64K elements); where they
    // interleave a block holds every channel (128K elements).
    const int64_t work = v.inner == 1 ? v.outer * v.channels : v.outer * v.inner;
    const int64_t per_block = v.inner == 1 ? int64_t{1} << 17 : int64_t{1} << 16;
    blocks = std::clamp<int64_t>((work + per_block - 1) / per_block, 1, std::min<int64_t>(64, v.outer));
  }
  int64_t row(int64_t s) const { return v.outer * s / blocks; }
  double block_count(int64_t s) const { return static_cast<double>((row(s + 1) - row(s)) * v.inner); }
  kernels::Range block_range(int64_t c0, int64_t c1, int64_t s) const { return {c0, c1, row(s), row(s + 1)}; }
  // Channels hold contiguous runs and are many: one thread takes a channel
  // through all its passes while the channel stays in its cache.
  bool channel_resident() const { return v.inner > 1 && v.channels >= 2 * threads; }
  // Outputs bypass the cache where the bytes moved would not fit in it
  // anyway (this also saves the read-for-ownership of the output).
  bool stream(int64_t bytes) const { return bytes >= stream_threshold(); }

  // Runs f(c0, c1, o0, o1) over a partition of the whole view. Pieces are
  // taken from the end of the tensor first: after a reduction pass over it,
  // the end is what the cache still holds.
  // Pieces are contiguous in memory (blocks of rows, or of channels when
  // rows are too few), so threads never share more than a boundary line.
  template <class F>
  void parallel_elementwise(const F& f) const {
    const int64_t C = v.channels, O = v.outer;
    const bool by_rows = v.inner == 1 || O >= 4 * threads || C < threads;
    const int64_t units = std::min<int64_t>(by_rows ? O : C, 8 * threads);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t i = 0; i < units; ++i) {
      const int64_t u = units - 1 - i;
      if (by_rows) f(int64_t{0}, C, O * u / units, O * (u + 1) / units);
      else f(C * u / units, C * (u + 1) / units, int64_t{0}, O);
    }
  }

  // Per-block partials of every channel: f(s, c0, c1) fills block s.
  template <class F>
  void parallel_blocks(const F& f) const {
    const int64_t C = v.channels;
    const int64_t per_block = v.inner == 1 ? 1 : C;  // channels last: a block is one unit
    const int64_t units = blocks * per_block;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t s = u / per_block;
      if (v.inner == 1) f(s, int64_t{0}, C);
      else f(s, u % per_block, u % per_block + 1);
    }
  }
};

// Chan et al.'s merge of block partials of channel c (block-major arrays).
inline void merge_blocks(const BnExec& e, const double* bmean, const double* bm2, int64_t c,
                         double& mean, double& m2) {
  const int64_t C = e.v.channels;
  double n = 0;
  mean = 0;
  m2 = 0;
  for (int64_t s = 0; s < e.blocks; ++s) {
    const double nb = e.block_count(s);
    const double d = bmean[s * C + c] - mean;
    mean += d * (nb / (n + nb));
    m2 += bm2[s * C + c] + d * d * (n * nb / (n + nb));
    n += nb;
  }
}

}  // namespace nk
