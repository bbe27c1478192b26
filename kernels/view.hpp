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
  constexpr int64_t kMinStreamRun = 256;
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

// Channels last: parameter floats (all arrays together) per chunk of a row,
// and the rows each chunk goes through before the next.
constexpr int64_t kParamChunk = 4096;
constexpr int64_t kChunkRows = 8;

// Element-wise map over a range of the view with per-channel parameters.
template <class Arch, int NIn, int NPar, class Op>
inline void map_view(const Op& op, const View& v, const Range& r, const float* const* in,
                     float* out, const float* const* par, bool stream) {
  using S = simd<Arch>;
  const int64_t C = v.channels;
  const float* ins[NIn];
  alignas(64) float spread[NPar > 0 ? NPar : 1][kSpread];
  if (v.inner == 1) {
    LaneParams<Arch, NPar> lp;
    // Whole rows of few channels are consecutive in memory: several rows
    // make one run, with the parameters tiled over them (the same
    // arithmetic per element), where a run per row would spend more on its
    // setup and its partial lines than on its few vectors.
    const int64_t per = r.c1 - r.c0 == C && r.step == 1 ? kSpread / C : 0;
    if (per > 1) {
      for (int k = 0; k < NPar; ++k)
        for (int64_t i = 0; i < per; ++i) std::copy(par[k], par[k] + C, spread[k] + i * C);
      for (int k = 0; k < NPar; ++k) lp.p[k] = spread[k];
      for (int64_t o = r.o0; o < r.o1; o += per) {
        for (int k = 0; k < NIn; ++k) ins[k] = in[k] + o * C;
        map_run<Arch, NIn, NPar>(op, std::min(per, r.o1 - o) * C, ins, out + o * C, lp, stream);
      }
      return;
    }
    // Wide rows (merged feature axes): chunks of channels through a few
    // rows at a time, so a chunk's parameters stay in L1 while the rows'
    // bytes still go by in order. Each row's next chunk is asked into L2
    // meanwhile: a chunk is a page or less of rows far apart, where the
    // hardware prefetcher starts anew at every page (1.25x faster on Zen 4;
    // only where the view comes from memory).
    const int64_t chunk = NPar > 0 ? kParamChunk / NPar : r.c1 - r.c0;
    const bool prefetch = from_memory(v);
    for (int64_t o0 = r.o0; o0 < r.o1; o0 += kChunkRows * r.step) {
      const int64_t o1 = std::min(r.o1, o0 + kChunkRows * r.step);
      for (int64_t c = r.c0; c < r.c1; c += chunk) {
        const int64_t n = std::min(chunk, r.c1 - c);
        for (int k = 0; k < NPar; ++k) lp.p[k] = par[k] + c;
        for (int64_t o = o0; o < o1; o += r.step) {
          const int64_t off = o * C + c;
          for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off;
          if (prefetch)
            for (int k = 0; k < NIn; ++k) prefetch_run<2>(ins[k] + n, n);
          map_run<Arch, NIn, NPar>(op, n, ins, out + off, lp, stream);
        }
      }
    }
  } else {
    BroadcastParams<Arch, NPar> bp;
    auto run = [&](int64_t c, int64_t o) {
      const int64_t off = (o * C + c) * v.inner;
      for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off;
      map_run<Arch, NIn, NPar>(op, v.inner, ins, out + off, bp, stream);
    };
    if (v.inner >= kLongRun) {
      for (int64_t c = r.c0; c < r.c1; ++c) {
        for (int k = 0; k < NPar; ++k) bp.p[k] = S::set1(par[k][c]);
        for (int64_t o = r.o0; o < r.o1; o += r.step) run(c, o);
      }
    } else {
      // Short runs: the parameters of a block of channels spread over their
      // runs, so that each row of the block is one long run (the same
      // arithmetic per element).
      const int64_t per = spread_channels(v.inner);
      const bool prefetch = from_memory(v);
      LaneParams<Arch, NPar> lp;
      for (int k = 0; k < NPar; ++k) lp.p[k] = spread[k];
      for (int64_t cb = r.c0; cb < r.c1; cb += per) {
        const int64_t ce = std::min(r.c1, cb + per), len = (ce - cb) * v.inner;
        for (int k = 0; k < NPar; ++k)
          for (int64_t c = cb; c < ce; ++c) std::fill_n(spread[k] + (c - cb) * v.inner, v.inner, par[k][c]);
        for (int64_t o = r.o0; o < r.o1; o += r.step) {
          const int64_t off = (o * C + cb) * v.inner;
          for (int k = 0; k < NIn; ++k) ins[k] = in[k] + off;
          // The next block's stretch of this row, into L2: the next block
          // here, or the caller's next one (a thread's channel-resident
          // units are neighbours), whose reads then find it there. Rows far
          // apart in stretches of 4 KiB give the hardware prefetcher little
          // to follow (up to 1.16x faster, forward and backward; only where
          // the view comes from memory).
          if (prefetch)
            for (int k = 0; k < NIn; ++k) prefetch_run<2>(ins[k] + len, len);
          map_run<Arch, NIn, NPar>(op, len, ins, out + off, lp, stream);
        }
      }
    }
  }
  // No fence here: the capi layer fences once per thread and call (a fence
  // per run would wait for the write-combining buffers every time).
}

}  // namespace
}  // namespace nk::kernels
