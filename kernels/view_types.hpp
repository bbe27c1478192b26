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

// Views of at least this many bytes are read from memory rather than from
// cache: the passes over short runs prefetch the next block's stretches for
// them (on a 12 MiB view, which stays in cache, the prefetches only cost
// 5-10%).
constexpr int64_t kPrefetchBytes = int64_t{16} << 20;
inline bool from_memory(const View& v) {
  return v.outer * v.channels * v.inner * static_cast<int64_t>(sizeof(float)) >= kPrefetchBytes;
}

// Channels whose runs (inner > 1) are short (long_runs false) are taken in
// blocks of neighbouring channels: their runs in one row are one stretch of
// memory, at most kSpread floats, and the kernels work along it with the
// per-channel values spread over the runs. Every channel gets the same
// arithmetic in any block. 4 KiB a stretch: the apply pass's four spread
// parameter arrays then leave room in L1 for the rows streaming through
// (8 KiB stretches measured 1.3x slower; on Zen 5, 2 KiB ones, stretches
// of two runs, 1.28-1.34x slower than single runs of 400 floats).
// Runs of kLongRun to kLongRunFromMemory floats are short where the view
// comes from memory (NCHW 32x1024x14x14 on Zen 5, forward and backward, 1
// and 2 threads: 1.15-1.45x faster in blocks), long where it sits in cache
// (32x256x12x12 in blocks: 1.1-1.4x slower).
constexpr int64_t kSpread = 1024;
constexpr int64_t kLongRun = 128;
constexpr int64_t kLongRunFromMemory = 256;
inline bool long_runs(const View& v) { return v.inner >= (from_memory(v) ? kLongRunFromMemory : kLongRun); }
// Channels of a block (1 for long runs or channels last).
inline int64_t spread_channels(const View& v) { return v.inner == 1 || long_runs(v) ? 1 : kSpread / v.inner; }

// Runs of at least this many floats have their whole cache lines streamed
// (map_run says why no shorter ones).
constexpr int64_t kMinStreamRun = 256;

// Rows of kMinPipelinedRow to kPipelinedRow floats take Layer Norm's
// pipelined sweeps (ln_forward, ln_backward; the row_stats path of
// ln_stats); longer ones are tiled. Shorter ones cost more in each row's
// three-stage set-up than the sweep saves (65536x7: 1.2x slower, 65536x33
// 1.1x faster).
constexpr int64_t kMinPipelinedRow = 16;
constexpr int64_t kPipelinedRow = 8192;

// Whether a pipelined sweep streams rows of D floats written at out: whole
// lines only, and only where every row starts on one (never a line shared
// with a neighbouring row).
inline bool sweep_streams(bool stream, const float* out, int64_t D) {
  return stream && D >= kMinStreamRun && D % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0;
}
// Whether the sweep takes such rows: where it streams what map_run's path
// would stream (map_run also streams the inner lines of misaligned rows).
inline bool sweep_takes(bool stream, const float* out, int64_t D) {
  const bool streamed = stream && D >= kMinStreamRun;
  return D >= kMinPipelinedRow && D <= kPipelinedRow && (!streamed || sweep_streams(stream, out, D));
}

// The per-row step of the pipelined row norms, between a row's sums and
// its element-wise pass: fn(ctx, r, s, p) gets row r's sums s and writes
// its parameters p. ln_forward: s = {mean, M2} (as ln_stats gives them),
// p = {mean_hi, mean_lo, scale}. ln_backward: s = {sum(g), sum(g * xc),
// sum(xc)} (as ln_backward_sums), p = {a, b, d, mean_lo} (as
// ln_backward_apply's and ln_param_sums').
struct RowFinish {
  void (*fn)(void* ctx, int64_t r, const double* s, float* p);
  void* ctx;
};

// Rows of r in [o, oe) (o one of r's rows).
inline int64_t rows_between(int64_t o, int64_t oe, int64_t step) { return (oe - o + step - 1) / step; }

}  // namespace nk::kernels
