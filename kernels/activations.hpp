// Activation kernels, written once over the xsimd arch: the element-wise
// family (ReLU, LeakyReLU, ELU, SELU) on a flat range, PReLU and CReLU on the
// canonical view, AlphaDropout and the normal fill from Philox4x32-10.
#pragma once

#include <cmath>

#include "act_ops.hpp"
#include "kernel_table.hpp"
#include "philox.hpp"
#include "view.hpp"
#include "vmath.hpp"

namespace nk::kernels {
namespace {

template <class Arch, class Op>
inline void map_flat1(const Op& op, const float* x, float* y, int64_t n, bool stream) {
  const float* in[1] = {x};
  map_run<Arch, 1, 0>(op, n, in, y, BroadcastParams<Arch, 0>{}, stream);
  if (stream) simd<Arch>::stream_fence();
}
template <class Arch, class Op>
inline void map_flat2(const Op& op, const float* x, const float* dy, float* dx, int64_t n, bool stream) {
  const float* in[2] = {x, dy};
  map_run<Arch, 2, 0>(op, n, in, dx, BroadcastParams<Arch, 0>{}, stream);
  if (stream) simd<Arch>::stream_fence();
}

template <class Arch>
void act_forward(int32_t kind, float p, const float* x, float* y, int64_t n, bool stream) {
  using B = typename vm<Arch>::B;
  with_act<Arch>({kind, p}, [&](const auto& act) {
    map_flat1<Arch>([&act](const B* xs, const B*) { return act.fwd(xs[0]); }, x, y, n, stream);
  });
}

// Backward from x (the activation's input).
template <class Arch>
void act_backward(int32_t kind, float p, const float* x, const float* dy, float* dx, int64_t n, bool stream) {
  using B = typename vm<Arch>::B;
  with_act<Arch>({kind, p}, [&](const auto& act) {
    map_flat2<Arch>([&act](const B* xs, const B*) { return act.grad(xs[0], xs[1]); }, x, dy, dx, n, stream);
  });
}

// PReLU: y = x < 0 ? slope[c] * x : x.
template <class Arch>
void prelu_forward(const float* x, float* y, View v, Range r, const float* slope, bool stream) {
  using V = vm<Arch>;
  using B = typename V::B;
  const float* in[1] = {x};
  const float* par[1] = {slope};
  map_view<Arch, 1, 1>([](const B* xs, const B* p) { return V::select(xs[0] < B(0.0f), xs[0] * p[0], xs[0]); },
                       v, r, in, y, par, stream);
}

// PReLU backward: dx = x < 0 ? slope[c] * dy : dy, and dslope[c] += the sum
// over the range of (x < 0 ? x * dy : 0), summed in a fixed order: runs of
// at most 64 vectors in float lanes, then in double.
template <class Arch>
void prelu_backward(const float* x, const float* dy, float* dx, View v, Range r, const float* slope,
                    double* dslope, bool stream) {
  using S = simd<Arch>;
  using V = vm<Arch>;
  using B = typename V::B;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  const int64_t C = v.channels;
  auto grad = [](const B& xv, const B& dv) { return V::select(xv < B(0.0f), xv * dv, B(0.0f)); };
  if (v.inner > 1) {
    for (int64_t c = r.c0; c < r.c1; ++c) {
      const B a(slope[c]);
      double acc = 0;
      for (int64_t o = r.o0; o < r.o1; ++o) {
        const int64_t off = (o * C + c) * v.inner;
        const float* xp = x + off;
        const float* dp = dy + off;
        float* op = dx + off;
        const int64_t n = v.inner;
        B part = S::zero();
        int64_t cnt = 0, i = 0;
        for (; i + W <= n; i += W) {
          const B xv = S::load(xp + i), dv = S::load(dp + i);
          part = part + grad(xv, dv);
          S::store(op + i, V::select(xv < B(0.0f), dv * a, dv));
          if (++cnt == 64) {
            acc += static_cast<double>(S::sum(part));
            part = S::zero();
            cnt = 0;
          }
        }
        if (i < n) {
          const B xv = S::load_partial(xp + i, n - i), dv = S::load_partial(dp + i, n - i);
          part = part + grad(xv, dv);
          S::store_partial(op + i, V::select(xv < B(0.0f), dv * a, dv), n - i);
        }
        acc += static_cast<double>(S::sum(part));
      }
      dslope[c] += acc;
    }
  } else {
    // Channels interleave: tiles of up to 64 rows (counted from r.o0, so
    // fixed by the range), each channel vector summed over the tile's rows
    // in float lanes, then added in double.
    alignas(64) float buf[W];
    constexpr int64_t kTile = 64;
    for (int64_t t0 = r.o0; t0 < r.o1; t0 += kTile) {
      const int64_t t1 = std::min(r.o1, t0 + kTile);
      for (int64_t c = r.c0; c < r.c1; c += W) {
        const int64_t m = std::min<int64_t>(W, r.c1 - c);
        const B a = m == W ? S::load(slope + c) : S::load_partial(slope + c, m);
        B part = S::zero();
        for (int64_t o = t0; o < t1; ++o) {
          const int64_t off = o * C + c;
          const B xv = m == W ? S::load(x + off) : S::load_partial(x + off, m);
          const B dv = m == W ? S::load(dy + off) : S::load_partial(dy + off, m);
          const B d = V::select(xv < B(0.0f), dv * a, dv);
          if (m == W) S::store(dx + off, d);
          else S::store_partial(dx + off, d, m);
          part = part + grad(xv, dv);
        }
        if constexpr (W == 1) buf[0] = part;
        else part.store_aligned(buf);
        for (int64_t l = 0; l < m; ++l) dslope[c + l] += static_cast<double>(buf[l]);
      }
    }
  }
  (void)stream;
}

// CReLU: y (outer, 2C, inner) holds relu(x) in channels [0, C) and relu(-x)
// in [C, 2C), for the rows [r.o0, r.o1) (all channels).
template <class Arch>
void crelu_forward(const float* x, float* y, View v, Range r, bool stream) {
  using V = vm<Arch>;
  using B = typename V::B;
  const int64_t run = v.channels * v.inner;  // one row of x
  auto pos = [](const B* xs, const B*) { return V::select(xs[0] < B(0.0f), B(0.0f), xs[0]); };
  // relu(-x) with -x = -1 * x, so that x = +0 gives -0 as relu(-0) does
  // (xsimd's AVX-512 negation is 0 - x, which gives +0).
  auto neg = [](const B* xs, const B*) {
    const B n = B(-1.0f) * xs[0];
    return V::select(n < B(0.0f), B(0.0f), n);
  };
  for (int64_t o = r.o0; o < r.o1; ++o) {
    const float* in[1] = {x + o * run};
    map_run<Arch, 1, 0>(pos, run, in, y + 2 * o * run, BroadcastParams<Arch, 0>{}, stream);
    map_run<Arch, 1, 0>(neg, run, in, y + 2 * o * run + run, BroadcastParams<Arch, 0>{}, stream);
  }
  if (stream) simd<Arch>::stream_fence();
}

// CReLU backward: dx = (x > 0 ? dy_pos : 0) - (x < 0 ? dy_neg : 0).
template <class Arch>
void crelu_backward(const float* x, const float* dy, float* dx, View v, Range r, bool stream) {
  using V = vm<Arch>;
  using B = typename V::B;
  const int64_t run = v.channels * v.inner;
  auto op = [](const B* xs, const B*) {
    return V::select(xs[0] > B(0.0f), xs[1], B(0.0f)) - V::select(xs[0] < B(0.0f), xs[2], B(0.0f));
  };
  for (int64_t o = r.o0; o < r.o1; ++o) {
    const float* in[3] = {x + o * run, dy + 2 * o * run, dy + 2 * o * run + run};
    map_run<Arch, 3, 0>(op, run, in, dx + o * run, BroadcastParams<Arch, 0>{}, stream);
  }
  if (stream) simd<Arch>::stream_fence();
}

// AlphaDropout over elements [i0, i1) of the whole tensor (i is the global
// element index, so the mask never depends on the partition). Forward:
// y = keep ? a*x + b : x*0 + drop; backward (x = dy): dx = keep ? a*dy : dy*0
// (b = drop = -0, which leaves a product's -0 as a*m*dy has it). The x*0
// term keeps a NaN or Inf input NaN where it is dropped, as
// a*(x*m + alpha'*(1-m)) + b does. Element i keeps when the top
// 24 bits of Philox word i%4 of counter block i/4 are below keep24. No FMA:
// the same bits on every ISA.
template <class Arch>
void alpha_dropout(const float* x, float* y, int64_t i0, int64_t i1, uint64_t seed, uint64_t offset,
                   uint32_t keep24, float a, float b, float drop, bool stream) {
  using S = simd<Arch>;
  using V = vm<Arch>;
  using B = typename V::B;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  constexpr int64_t kChunk = 256;
  alignas(64) float keepf[kChunk];
  const B av(a), bv(b), dv(drop);
  for (int64_t c0 = i0; c0 < i1; c0 += kChunk) {
    const int64_t m = std::min(kChunk, i1 - c0);
    dropout_keep_mask(keepf, c0, m, seed, offset, keep24);
    const float* in[2] = {x + c0, keepf};
    auto op = [&](const B* xs, const B*) {
      return V::select(xs[1] != B(0.0f), av * xs[0] + bv, xs[0] * B(0.0f) + dv);
    };
    map_run<Arch, 2, 0>(op, m, in, y + c0, BroadcastParams<Arch, 0>{}, stream);
  }
  if (stream) S::stream_fence();
  (void)W;
}

}  // namespace
}  // namespace nk::kernels
