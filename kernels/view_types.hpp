// The canonical view and work range, shared by kernels and the capi layer.
#pragma once

#include <cstdint>

namespace nk::kernels {

struct View {
  int64_t outer, channels, inner;
};

struct Range {
  int64_t c0, c1;     // channels [c0, c1)
  int64_t o0, o1;     // outer rows o0, o0 + step, ... below o1
  int64_t step = 1;
};

// Channels whose runs (inner > 1) are shorter than kLongRun are taken in
// blocks of neighbouring channels: their runs in one row are one stretch of
// memory, at most kSpread floats, and the kernels work along it with the
// per-channel values spread over the runs. Every channel gets the same
// arithmetic in any block. 4 KiB a stretch: the apply pass's four spread
// parameter arrays then leave room in L1 for the rows streaming through
// (8 KiB stretches measured 1.3x slower).
constexpr int64_t kLongRun = 128;
constexpr int64_t kSpread = 1024;
inline int64_t spread_channels(int64_t inner) { return inner < kLongRun ? kSpread / inner : 1; }

// Views of at least this many bytes are read from memory rather than from
// cache: the passes over short runs prefetch the next block's stretches for
// them (on a 12 MiB view, which stays in cache, the prefetches only cost
// 5-10%).
constexpr int64_t kPrefetchBytes = int64_t{16} << 20;
inline bool from_memory(const View& v) {
  return v.outer * v.channels * v.inner * static_cast<int64_t>(sizeof(float)) >= kPrefetchBytes;
}

// Rows of r in [o, oe) (o one of r's rows).
inline int64_t rows_between(int64_t o, int64_t oe, int64_t step) { return (oe - o + step - 1) / step; }

}  // namespace nk::kernels
