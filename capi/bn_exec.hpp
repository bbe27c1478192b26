// How Batch Norm's passes are split over threads. Statistics are reduced per
// block of outer rows (fixed by the shape alone) and merged in order, so every
// partition of the work gives the same bits. With virtual batches (Ghost BN)
// a block is a whole virtual batch (strided rows) where a sample is one row,
// else one sample; the blocks of a virtual batch merge together.
#pragma once

#include <algorithm>
#include <vector>

#include "aligned.hpp"
#include "parallel.hpp"
#include "runtime.hpp"
#include "shape.hpp"

namespace nk {

struct BnExec {
  static constexpr int64_t kMinBlockRows = 256;
  // Channels last: the reduction over a block spreads over threads in parts
  // of this many channels (each channel's sums are its own: the parts never
  // change the bits).
  static constexpr int64_t kChannelPart = 1024;

  const kernels::KernelTable& k;
  kernels::View v;
  int threads;
  int64_t groups = 1;     // virtual batches
  int64_t per_group;      // blocks in each
  int64_t blocks;         // groups * per_group
  bool ghost = false;
  bool strided = true;    // TF's grouping: sample n is in virtual batch n mod groups
  int64_t samples = 0, members = 0, rows_per_sample = 0;

  BnExec(const kernels::KernelTable& table, const kernels::View& view)
      : k(table), v(view), threads(num_threads()) {
    // Enough blocks to share among threads, none too small: where channels
    // are runs a block is one channel's rows (64K elements); where they
    // interleave a block holds every channel (128K elements).
    // Where channels interleave, a block keeps at least kMinBlockRows rows:
    // merging the blocks costs per channel, and merged feature axes give
    // rows of very many channels.
    const int64_t work = v.inner == 1 ? v.outer * v.channels : v.outer * v.inner;
    const int64_t per_block = v.inner == 1 ? int64_t{1} << 17 : int64_t{1} << 16;
    const int64_t max_blocks = v.inner == 1 ? std::max<int64_t>(1, v.outer / kMinBlockRows) : v.outer;
    blocks = per_group =
        std::clamp<int64_t>((work + per_block - 1) / per_block, 1, std::min<int64_t>(64, max_blocks));
  }

  // N samples (axis 0, the leading factor of the outer rows) in virtual
  // batches of V; G = N / V > 1. Where a sample is one row (NCHW), a block is
  // a whole virtual batch, its rows taken with a stride under TF's grouping;
  // else a block is one sample.
  void set_virtual_batches(int64_t n, int64_t virtual_batch, bool strided_grouping) {
    ghost = true;
    strided = strided_grouping;
    samples = n;
    groups = n / virtual_batch;
    members = virtual_batch;
    rows_per_sample = v.outer / n;
    per_group = rows_per_sample == 1 ? 1 : virtual_batch;
    blocks = groups * per_group;
  }

  int64_t block_group(int64_t b) const { return ghost ? b / per_group : 0; }
  kernels::Range block_range(int64_t c0, int64_t c1, int64_t b) const {
    if (!ghost) return {c0, c1, v.outer * b / blocks, v.outer * (b + 1) / blocks};
    const int64_t g = b / per_group;
    if (rows_per_sample == 1) {
      if (strided) return {c0, c1, g, samples, groups};
      return {c0, c1, g * members, (g + 1) * members};
    }
    const int64_t m = b % per_group;
    const int64_t n = strided ? m * groups + g : g * members + m;
    return {c0, c1, n * rows_per_sample, (n + 1) * rows_per_sample};
  }
  double block_count(int64_t b) const {
    const kernels::Range r = block_range(0, 0, b);
    return static_cast<double>(kernels::rows_between(r.o0, r.o1, r.step) * v.inner);
  }
  // Elements per channel in one virtual batch.
  double group_count() const { return static_cast<double>(v.outer / groups * v.inner); }

  // Channels hold contiguous runs and are many: one thread takes a channel
  // through all its passes while the channel stays in its cache.
  bool channel_resident() const { return v.inner > 1 && v.channels >= 2 * threads; }
  // Outputs bypass the cache where the bytes moved would not fit in it
  // anyway (this also saves the read-for-ownership of the output).
  bool stream(int64_t bytes) const { return bytes >= stream_threshold(); }

  // Where run_passes takes channel-resident units from memory: the offset
  // from a unit's x to the next unit's, which its apply pass asks into L2
  // for that unit's statistics (kernels::map_view's ahead); else 0.
  int64_t next_unit_offset() const {
    return channel_resident() && kernels::from_memory(v) ? v.inner * channels_per_unit() : 0;
  }

  // Channels (inner > 1) a thread takes at a time: for short runs a block
  // of neighbours (kernels::spread_channels), while there are enough units
  // for the threads.
  int64_t channels_per_unit() const {
    return std::clamp<int64_t>(v.channels / (4 * threads), 1, kernels::spread_channels(v));
  }

  // Runs f(c0, c1, o0, o1) over a partition of the whole view. Pieces are
  // taken from the end of the tensor first: after a reduction pass over it,
  // the end is what the cache still holds. Pieces are contiguous in memory
  // (blocks of rows, or of channels when rows are too few), so threads never
  // share more than a boundary line.
  template <class F>
  void parallel_elementwise(const F& f) const {
    const int64_t C = v.channels, O = v.outer;
    const bool by_rows = v.inner == 1 || O >= 4 * threads || C < threads;
    const int64_t units = std::min<int64_t>(by_rows ? O : C, 8 * threads);
    parallel_for(threads, units, Schedule::Dynamic, [&](int64_t i) {
      const int64_t u = units - 1 - i;
      if (by_rows) f(int64_t{0}, C, O * u / units, O * (u + 1) / units);
      else f(C * u / units, C * (u + 1) / units, int64_t{0}, O);
    });
  }

  // Like parallel_elementwise, for coefficients per virtual batch:
  // f(range, g), each range within virtual batch g.
  template <class F>
  void parallel_apply(const F& f) const {
    if (!ghost) {
      parallel_elementwise([&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
        f(kernels::Range{c0, c1, o0, o1}, int64_t{0});
      });
      return;
    }
    parallel_for(threads, blocks, Schedule::Dynamic, [&](int64_t i) {
      const int64_t b = blocks - 1 - i;
      f(block_range(0, v.channels, b), block_group(b));
    });
  }

  // Channels [c0, c1), all rows: f(range, g).
  template <class F>
  void apply_channels(int64_t c0, int64_t c1, const F& f) const {
    if (!ghost) {
      f(kernels::Range{c0, c1, 0, v.outer}, int64_t{0});
      return;
    }
    for (int64_t b = 0; b < blocks; ++b) f(block_range(c0, c1, b), block_group(b));
  }

  // The passes of a training step: reduce(b, c0, c1) per block, step(c) per
  // channel, then apply(c0, c1, o0, o1, g). Where channels stay in cache one
  // thread takes each channel through all three; else each pass spreads
  // over all threads.
  template <class Reduce, class Step, class Apply>
  void run_passes(const Reduce& reduce, const Step& step, const Apply& apply) const {
    if (channel_resident()) {
      const int64_t C = v.channels;
      const int64_t k = channels_per_unit();
      parallel_for(threads, (C + k - 1) / k, Schedule::Static, [&](int64_t u) {
        const int64_t c0 = u * k, c1 = std::min(C, c0 + k);
        for (int64_t b = 0; b < blocks; ++b) reduce(b, c0, c1);
        for (int64_t c = c0; c < c1; ++c) step(c);
        apply_channels(c0, c1, apply);
      });
      return;
    }
    parallel_blocks(reduce);
    // The per-channel step in parallel where channels are many (each
    // channel's step is independent of the others).
    const int step_threads = v.channels >= 1024 ? threads : 1;
    parallel_for(step_threads, v.channels, Schedule::Static, [&](int64_t c) { step(c); });
    parallel_apply(apply);
  }

  // Per-block partials of every channel: f(b, c0, c1) fills block b's
  // channels [c0, c1): parts of kChannelPart channels where they
  // interleave; where channels are runs, one channel per unit, or for short
  // runs a block of neighbouring channels, as run_passes takes them (one
  // stretch of memory per row; one channel of 28 floats a unit had made
  // Sync BN's statistics of a two-axis NCHW tensor 4x slower than plain BN's).
  template <class F>
  void parallel_blocks(const F& f) const {
    const int64_t C = v.channels;
    const int64_t part = v.inner == 1 ? kChannelPart : channels_per_unit();
    const int64_t per_block = (C + part - 1) / part;
    parallel_for(threads, blocks * per_block, Schedule::Dynamic, [&](int64_t u) {
      const int64_t c0 = u % per_block * part;
      f(u / per_block, c0, std::min(C, c0 + part));
    });
  }
};

// Chan et al.'s merge of the block partials of each virtual batch
// (block-major arrays). The weights depend on the counts only, the same for
// every channel, so they are computed once per call: merged feature axes give
// thousands of channels, each merging its blocks.
class BlockMerge {
 public:
  explicit BlockMerge(const BnExec& e) : C_(e.v.channels), per_group_(e.per_group) {
    for (int64_t g = 0; g < e.groups; ++g) {
      double n = 0;
      for (int64_t b = g * per_group_; b < (g + 1) * per_group_; ++b) {
        const double nb = e.block_count(b);
        w_mean_.push_back(nb / (n + nb));
        w_m2_.push_back(n * nb / (n + nb));
        n += nb;
      }
    }
  }
  // Channel c of virtual batch g.
  void operator()(const double* bmean, const double* bm2, int64_t c, int64_t g, double& mean, double& m2) const {
    mean = 0;
    m2 = 0;
    for (int64_t b = g * per_group_; b < (g + 1) * per_group_; ++b) {
      const double d = bmean[b * C_ + c] - mean;
      mean += d * w_mean_[b];
      m2 += bm2[b * C_ + c] + d * d * w_m2_[b];
    }
  }

 private:
  int64_t C_, per_group_;
  DoubleVec w_mean_, w_m2_;
};

}  // namespace nk
