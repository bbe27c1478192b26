// The canonical view every kernel works on, and the element-wise drivers
// shared by all of them. A kernel gets a (outer, C, inner) view and a range of
// channels and outer rows; it knows nothing of threads or of the C API.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "simd.hpp"
#include "view_types.hpp"

namespace nk::kernels {

namespace {  // every helper is compiled anew, with its ISA's flags, in each ISA file

// Asks for the cache lines of p[0, n) (Locality: __builtin_prefetch's; 2
// keeps them out of L1, 3 brings them to every level).
template <int Locality = 3>
inline void prefetch_run(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / static_cast<int64_t>(sizeof(float))) __builtin_prefetch(p + i, 0, Locality);
}

// f(std::integral_constant<bool, p != nullptr>): an optional array as a
// template flag, so the kernels without a residual read no third stream and
// those without the mean's low part (or backward's scale of x - mean) load
// no extra parameter.
template <class F>
inline void with_array(const float* p, const F& f) {
  if (p) f(std::true_type{});
  else f(std::false_type{});
}

// Per-channel parameters broadcast over a run of one channel (inner > 1).
template <class Arch, int NPar>
struct BroadcastParams {
  using B = typename simd<Arch>::batch;
  B p[NPar > 0 ? NPar : 1];
  const B* full(int64_t) const { return p; }
  void partial(int64_t, int64_t, B* out) const {
    for (int k = 0; k < NPar; ++k) out[k] = p[k];
  }
};

// Per-channel parameters loaded lane by lane along a run of channels (inner == 1).
template <class Arch, int NPar>
struct LaneParams {
  using S = simd<Arch>;
  using B = typename S::batch;
  const float* p[NPar > 0 ? NPar : 1];
  static constexpr bool kPerLane = true;
  LaneParams at(int64_t j) const {
    LaneParams q = *this;
    for (int k = 0; k < NPar; ++k) q.p[k] += j;
    return q;
  }
  // Into the caller's local array, which stays in registers.
  void load(int64_t i, B* out) const {
    for (int k = 0; k < NPar; ++k) out[k] = S::load(p[k] + i);
  }
  void partial(int64_t i, int64_t n, B* out) const {
    for (int k = 0; k < NPar; ++k) out[k] = S::load_partial(p[k] + i, n);
  }
};

template <class P, class = void>
struct loads_per_lane : std::false_type {};
template <class P>
struct loads_per_lane<P, std::void_t<decltype(P::kPerLane)>> : std::true_type {};

// One contiguous run of n elements: out[i] = op(in[.][i], params). Partial
// vectors are computed as whole vectors with masked loads and stores, so
// every element gets exactly the same arithmetic wherever it sits (results
// never depend on alignment).
// Always inlined: its callers' parameters must stay in registers, which an
// out-of-line copy (GCC's choice once an ISA's file holds many kernels)
// reloads for every vector. For the same reason it works on local copies of
// the pointers, the parameters and the op, and its lambdas are inlined too:
// a store of the vector type may alias anything, so GCC reloads what it
// reaches through the caller's objects after every store (three dependent
// loads per input and vector), but not locals whose address never escapes.
template <class Arch, int NIn, int NPar, class Op, class Par>
[[gnu::always_inline]] inline void map_run(const Op& op, int64_t n, const float* const* in, float* out,
                                           const Par& par, bool stream) {
  using S = simd<Arch>;
  using B = typename S::batch;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  const float* src[NIn];
  for (int k = 0; k < NIn; ++k) src[k] = in[k];
  const Par pr = par;
  const Op f = op;
  auto partial = [&](int64_t i, int64_t m) {
    B xs[NIn];
    B ps[NPar > 0 ? NPar : 1];
    for (int k = 0; k < NIn; ++k) xs[k] = S::load_partial(src[k] + i, m);
    pr.partial(i, m, ps);
    S::store_partial(out + i, f(xs, ps), m);
  };
  auto full = [&](int64_t i) __attribute__((always_inline)) {
    B xs[NIn];
    for (int k = 0; k < NIn; ++k) xs[k] = S::load(src[k] + i);
    if constexpr (loads_per_lane<Par>::value) {
      B ps[NPar > 0 ? NPar : 1];
      pr.load(i, ps);
      return f(xs, ps);
    } else {
      return f(xs, pr.full(i));
    }
  };
  // Ordinary stores up to `end`, whole vectors then one partial.
  auto stores = [&](int64_t i, int64_t end) __attribute__((always_inline)) {
    for (; i + W <= end; i += W) S::store(out + i, full(i));
    if (i < end) partial(i, end - i);
  };
  // Non-temporal stores only for whole cache lines: a line that a run shares
  // with its neighbour gets ordinary stores from both, never a mix. Short
  // runs (mostly shared lines) measured several times slower streamed.
  constexpr int64_t kLine = 64 / sizeof(float);
  const auto addr = reinterpret_cast<uintptr_t>(out);
  if (!stream || W == 1 || n < kMinStreamRun || addr % sizeof(float) != 0) {
    stores(0, n);
    return;
  }
  const int64_t head = static_cast<int64_t>((kLine - (addr / sizeof(float)) % kLine) % kLine);
  const int64_t body_end = head + (n - head) / kLine * kLine;
  stores(0, head);
  for (int64_t i = head; i < body_end; i += W) S::stream(out + i, full(i));
  stores(body_end, n);
}

// map_run over pieces of Piece floats, each first asking for its counterpart
// `ahead` floats on from in[0] into L2 (map_view's ahead). Out of line: the
// loops of map_view without it keep their code (with a second inlined copy
// of the op beside them, the plain channels-last path ran 2-4% slower).
template <class Arch, int NIn, int NPar, int64_t Piece, class Op, class Par>
[[gnu::noinline]] void map_run_ahead(const Op& op, int64_t n, const float* const* in, float* out, const Par& par,
                                     bool stream, int64_t ahead) {
  const float* ins[NIn];
  for (int64_t j = 0; j < n; j += Piece) {
    const int64_t m = std::min(Piece, n - j);
    for (int k = 0; k < NIn; ++k) ins[k] = in[k] + j;
    prefetch_run<2>(ins[0] + ahead, m);
    map_run<Arch, NIn, NPar>(op, m, ins, out + j, par.at(j), stream);
  }
}

// Channels last: parameter floats (all arrays together) per chunk of a row,
// and the rows each chunk goes through before the next (map_rows, NHWC
// 32x256x56x56 on Zen 4, against per-vector parameter loads: 16 rows made
// the apply passes 1.09-1.16x faster; 8 rows 0.96-1.14x, 2 and 4 slower).
constexpr int64_t kParamChunk = 4096;
constexpr int64_t kChunkRows = 16;
// Parameter floats per chunk of rows wider than kParamChunk (see map_view).
constexpr int64_t kWideChunk = 1024;
// Rows of at least this many channels go through map_rows; narrower ones
// are tiled into long runs (map_view).
constexpr int64_t kBlockedChannels = 64;

// nrows rows of n positions (row i at in[.] + i * stride, out + i *
// ostride), a parameter per position: channels last, or a block's stretch
// of short runs. The parameters of U vectors of positions are loaded into
// registers once and held through all the rows, where a load of each
// parameter per vector (LaneParams) made the apply passes 1.3x slower than
// over channel-major runs on Zen 4. Every element gets op's arithmetic, as
// in map_run. Streaming stores only for whole cache lines, where every row
// starts at the same place in a line: the part of a row before its first
// line boundary and after its last one (lines it may share with the row
// before or after, or with a neighbouring block) gets ordinary stores.
// ahead (nonzero): each row's inputs that many floats on are asked into L2
// as the row's chunks go by (the next block of short runs, which the
// caller's statistics read next).
template <class Arch, int NIn, int NPar, class Op>
[[gnu::always_inline]] inline void map_rows(const Op& op, int64_t nrows, int64_t n, const float* const* in,
                                            int64_t stride, float* out, int64_t ostride,
                                            const float* const* par, bool stream, int64_t ahead = 0) {
  using S = simd<Arch>;
  using B = typename S::batch;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  constexpr int64_t kLine = 64 / sizeof(float);
  // U * NPar parameter registers (U = 2 and 1 measured slower for 4 parameters, SELU's too)
  constexpr int U = NPar <= 2 ? 8 : NPar <= 4 ? 4 : 2;
  constexpr int P = NPar > 0 ? NPar : 1;
  const float* src[NIn];
  const float* pp[P];
  for (int k = 0; k < NIn; ++k) src[k] = in[k];
  for (int k = 0; k < NPar; ++k) pp[k] = par[k];
  const Op f = op;
  const auto addr = reinterpret_cast<uintptr_t>(out);
  const bool nt = stream && W > 1 && ostride % kLine == 0 && addr % sizeof(float) == 0;
  // Positions [head, body_end) are whole lines of every row.
  const int64_t head = nt ? std::min(n, static_cast<int64_t>((kLine - addr / sizeof(float) % kLine) % kLine)) : 0;
  const int64_t body_end = nt ? head + (n - head) / kLine * kLine : 0;
  // One inlined copy of op per register-held vector and one for the rest
  // (the compile time of the ISA files grows with each).
  // streamed: whether the vector's position lies in [head, body_end),
  // decided once per column of vectors, outside the loops over rows.
  auto put = [&](float* p, const B& v, bool streamed) __attribute__((always_inline)) {
    if (streamed) S::stream(p, v);
    else S::store(p, v);
  };
  // Positions [j0, j1) one vector at a time, whole or partial.
  auto singles = [&](int64_t j0, int64_t j1) {
    for (; j0 < j1; j0 += W) {
      const int64_t m = std::min(W, j1 - j0);
      const bool streamed = j0 >= head && j0 < body_end;
      B ps[P];
      for (int k = 0; k < NPar; ++k) ps[k] = S::load_partial_fill(pp[k] + j0, m, S::zero());
      for (int64_t i = 0; i < nrows; ++i) {
        const int64_t o = i * stride + j0;
        float* const d = out + i * ostride + j0;
        if (ahead)
          for (int k = 0; k < NIn; ++k) prefetch_run<2>(src[k] + o + ahead, m);
        B xs[NIn];
        for (int k = 0; k < NIn; ++k) xs[k] = m == W ? S::load(src[k] + o) : S::load_partial(src[k] + o, m);
        const B y = f(xs, ps);
        if (m == W) put(d, y, streamed);
        else S::store_partial(d, y, m);
      }
    }
  };
  singles(0, head);
  int64_t j0 = head;
  for (; j0 + U * W <= n; j0 += U * W) {
    B ps[U][P];
    bool streamed[U];  // j0 >= head here
    for (int u = 0; u < U; ++u) {
      for (int k = 0; k < NPar; ++k) ps[u][k] = S::load(pp[k] + j0 + u * W);
      streamed[u] = j0 + u * W < body_end;
    }
    for (int64_t i = 0; i < nrows; ++i) {
      const int64_t o = i * stride + j0;
      float* const d = out + i * ostride + j0;
      if (ahead)
        for (int k = 0; k < NIn; ++k) prefetch_run<2>(src[k] + o + ahead, U * W);
      for (int u = 0; u < U; ++u) {
        B xs[NIn];
        for (int k = 0; k < NIn; ++k) xs[k] = S::load(src[k] + o + u * W);
        put(d + u * W, f(xs, ps[u]), streamed[u]);
      }
    }
  }
  singles(j0, n);
}

// Floats of a spread stretch per parameter array: kSpread, fewer for ops
// of more than four parameters, so that all the spread arrays together stay
// within 16 KiB of Zen 4's 32 KiB L1.
template <int NPar>
constexpr int64_t spread_floats() {
  return NPar > 4 ? kSpread * 4 / NPar : kSpread;
}

constexpr int64_t kAheadPiece = 128;  // floats; twice that for ops of little arithmetic
constexpr int64_t kAheadRun = 2048;

// Element-wise map over a range of the view with per-channel parameters.
// Seq (ops of much arithmetic per element): channels-last rows go by in
// memory order, whole rows tiled into long runs where the range has them,
// else one row at a time. Such an op leaves few loads in flight, so the
// hardware prefetcher must carry the reads, and it follows one stream well
// but not 16 rows visited a few vectors at a time (BN+SELU forward apply,
// NHWC 32x256x56x56 on Zen 4, against 16 rows: 1.5-1.6x faster tiled,
// 1.1-1.4x one row at a time, 0.9-1.0x with 2, 4 or 8 rows; the plain
// apply and the ReLU and SELU backward applies run 1.02-1.14x slower tiled).
//
// ahead (channels of long runs, or Seq ops over rows tiled into runs; 0:
// none): the offset from in[0] to what the caller's next unit reduces, the
// next channel-resident unit's x or the next resident sample's. Each piece
// of kAheadPiece floats first asks for its counterpart there into L2, so that
// the next unit's statistics pass, bound by one core's reads from memory,
// finds its lines in L2, and those reads overlap this pass's arithmetic and
// stores. On Zen 4, NCHW training forwards, in-process A/B at 1 and 2
// threads: BN+SELU 1.15-1.3x faster (32x64x56x56 to 32x256x56x56), GN+SELU
// 1.09-1.38x, BN+add+ReLU 1.0-1.13x, plain BN 1.09-1.17x on runs of 3,136
// floats but 1.06x slower on runs of 784 (32x512x28x28), so ops of little
// arithmetic take it only on runs of kAheadRun floats or more. Pieces of 512
// floats gained half as much, one burst per run almost nothing. Pieces of
// 128 are too short for map_run's non-temporal stores: with those SELU's
// ops ran 1.0-1.15x faster than streamed, plain BN 1.03-1.07x slower, so
// the ops of little arithmetic take pieces of 256 and stream. Only x:
// the backward's next unit reads x and dy, which with this unit's two
// overflow L2 (1.1-1.2x slower). Channels last, GN+SELU NHWC 32x256x56x56
// forward (a resident sample a unit): 1.09-1.10x faster at 2 threads,
// 1.17x at 1; not for ops of little arithmetic there (plain GN 1.17x
// slower), nor for the backward's next x and dy (GN+SELU 1.08-1.19x slower).
template <class Arch, int NIn, int NPar, bool Seq = false, class Op>
inline void map_view(const Op& op, const View& v, const Range& r, const float* const* in,
                     float* out, const float* const* par, bool stream, int64_t ahead = 0) {
  using S = simd<Arch>;
  const int64_t C = v.channels;
  const float* ins[NIn];
  alignas(64) float spread[NPar > 0 ? NPar : 1][kSpread];
  if (v.inner == 1) {
    if (!Seq) ahead = 0;
    LaneParams<Arch, NPar> lp;
    // Whole rows of few channels are consecutive in memory: several rows
    // make one run, with the parameters tiled over them (the same
    // arithmetic per element), where a run per row would spend more on its
    // setup and its partial lines than on its few vectors.
    const int64_t per =
        r.c1 - r.c0 == C && r.step == 1 && (Seq || C < kBlockedChannels) ? spread_floats<NPar>() / C : 0;
    if (per > 1) {
      for (int k = 0; k < NPar; ++k)
        for (int64_t i = 0; i < per; ++i) std::copy(par[k], par[k] + C, spread[k] + i * C);
      for (int k = 0; k < NPar; ++k) lp.p[k] = spread[k];
      if (ahead) {  // as the long runs below (a sample-resident unit asks for the next sample)
        for (int64_t o = r.o0; o < r.o1; o += per) {
          for (int k = 0; k < NIn; ++k) ins[k] = in[k] + o * C;
          map_run_ahead<Arch, NIn, NPar, kAheadPiece>(op, std::min(per, r.o1 - o) * C, ins, out + o * C, lp,
                                                      stream, ahead);
        }
        return;
      }
      for (int64_t o = r.o0; o < r.o1; o += per) {
        for (int k = 0; k < NIn; ++k) ins[k] = in[k] + o * C;
        map_run<Arch, NIn, NPar>(op, std::min(per, r.o1 - o) * C, ins, out + o * C, lp, stream);
      }
      return;
    }
    // Chunks of channels through kChunkRows rows at a time (map_rows), so a
    // chunk's parameters stay in registers while the rows' bytes still go
    // by in order. Rows wider than a chunk (merged feature axes), where the
    // view comes from memory, take chunks of kWideChunk floats of
    // parameters, and each row's next chunk is asked into L2 as the row
    // goes by: a chunk is a few lines of rows far apart, where the hardware
    // prefetcher starts anew at every page. (Two-axis Batch Norm NHWC on Zen
    // 5, rows of 14,336 channels, against chunks of kParamChunk floats
    // through 2 rows with the next chunk asked for in one burst: forward
    // 0.81-0.88x the time, backward 0.89-0.93x; rows of 3,584 channels, 9
    // rows before: forward 0.92-0.96x, backward 0.97-1.07x. 8 or 4 rows, or
    // the burst, gained less.)
    const bool wide = NPar > 0 && kParamChunk / NPar < r.c1 - r.c0 && from_memory(v);
    const int64_t chunk = NPar == 0 ? r.c1 - r.c0 : (wide ? kWideChunk : kParamChunk) / NPar;
    const float* pc[NPar > 0 ? NPar : 1];
    const int64_t group_rows = Seq ? 1 : kChunkRows;
    for (int64_t o0 = r.o0; o0 < r.o1; o0 += group_rows * r.step) {
      const int64_t nrows = rows_between(o0, std::min(r.o1, o0 + group_rows * r.step), r.step);
      for (int64_t c = r.c0; c < r.c1; c += chunk) {
        const int64_t n = std::min(chunk, r.c1 - c), off = o0 * C + c;
        for (int k = 0; k < NPar; ++k) pc[k] = par[k] + c;
        for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off;
        map_rows<Arch, NIn, NPar>(op, nrows, n, ins, r.step * C, out + off, r.step * C, pc, stream, wide ? n : 0);
      }
    }
  } else {
    BroadcastParams<Arch, NPar> bp;
    auto run = [&](int64_t c, int64_t o) {
      const int64_t off = (o * C + c) * v.inner;
      for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off;
      map_run<Arch, NIn, NPar>(op, v.inner, ins, out + off, bp, stream);
    };
    // Ops of much arithmetic keep runs of kLongRun floats or more to
    // themselves: their short-run path loads every parameter per vector.
    if (long_runs(v) || (Seq && v.inner >= kLongRun)) {
      if (!Seq && v.inner < kAheadRun) ahead = 0;
      for (int64_t c = r.c0; c < r.c1; ++c) {
        for (int k = 0; k < NPar; ++k) bp.p[k] = S::set1(par[k][c]);
        for (int64_t o = r.o0; o < r.o1; o += r.step) {
          if (!ahead) {
            run(c, o);
            continue;
          }
          const int64_t off = (o * C + c) * v.inner;
          constexpr int64_t piece = Seq ? kAheadPiece : 2 * kAheadPiece;
          for (int64_t j = 0; j < v.inner; j += piece) {
            const int64_t n = std::min(piece, v.inner - j);
            for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off + j;
            prefetch_run<2>(ins[0] + ahead, n);
            map_run<Arch, NIn, NPar>(op, n, ins, out + off + j, bp, stream);
          }
        }
      }
    } else {
      // Short runs: the parameters of a block of channels spread over their
      // runs, so that each row of the block is one long stretch (the same
      // arithmetic per element). Ops of little arithmetic take the rows of
      // a block through map_rows, each stretch's parameters loaded once per
      // group of rows.
      const int64_t per = std::max<int64_t>(1, spread_floats<NPar>() / v.inner);
      const bool prefetch = from_memory(v);
      const int64_t rstride = r.step * C * v.inner;
      const int64_t group_rows = Seq ? 1 : kChunkRows;
      LaneParams<Arch, NPar> lp;
      const float* pc[NPar > 0 ? NPar : 1];
      for (int k = 0; k < NPar; ++k) lp.p[k] = pc[k] = spread[k];
      for (int64_t cb = r.c0; cb < r.c1; cb += per) {
        const int64_t ce = std::min(r.c1, cb + per), len = (ce - cb) * v.inner;
        for (int k = 0; k < NPar; ++k)
          for (int64_t c = cb; c < ce; ++c) std::fill_n(spread[k] + (c - cb) * v.inner, v.inner, par[k][c]);
        for (int64_t o = r.o0; o < r.o1; o += group_rows * r.step) {
          const int64_t nrows = rows_between(o, std::min(r.o1, o + group_rows * r.step), r.step);
          const int64_t off = (o * C + cb) * v.inner;
          for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off;
          // The next block's stretch of these rows, into L2: the next block
          // here, or the caller's next one (a thread's channel-resident
          // units are neighbours), whose reads then find it there. Rows far
          // apart in stretches of 4 KiB give the hardware prefetcher little
          // to follow (up to 1.16x faster, forward and backward; only where
          // the view comes from memory).
          if constexpr (Seq) {
            if (prefetch)
              for (int k = 0; k < NIn; ++k) prefetch_run<2>(ins[k] + len, len);
            map_run<Arch, NIn, NPar>(op, len, ins, out + off, lp, stream);
          } else {
            map_rows<Arch, NIn, NPar>(op, nrows, len, ins, rstride, out + off, rstride, pc, stream,
                                      prefetch ? len : 0);
          }
        }
      }
    }
  }
  // No fence here: the capi layer fences once per thread and call (a fence
  // per run would wait for the write-combining buffers every time).
}

}  // namespace
}  // namespace nk::kernels
