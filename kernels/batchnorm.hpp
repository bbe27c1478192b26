// Batch Norm kernels, written once over the xsimd arch, plain and fused with
// a residual add and an activation (act_ops.hpp). Group and Instance Norm use
// the same kernels with per-(sample, channel) parameters.
#pragma once

#include <array>
#include <type_traits>

#include "act_ops.hpp"
#include "reduce.hpp"

namespace nk::kernels {
namespace {

// y = act(((x - mean_hi) - mean_lo) * scale + shift + res). The mean is split
// in two floats so that a mean far from zero costs no precision.
template <class Arch, bool Res, class A>
void apply_fused(const A& act, const float* x, const float* res, float* y, View v, Range r,
                 const float* mean_hi, const float* mean_lo, const float* scale, const float* shift,
                 bool stream, int64_t ahead = 0) {
  using S = simd<Arch>;
  using B = typename S::batch;
  const float* in[2] = {x, res};
  const float* par[4] = {mean_hi, mean_lo, scale, shift};
  // The op always inlined: GCC otherwise calls ELU's and SELU's body per
  // vector once the ISA file holds many copies of it (AVX-512, channels
  // last: BN+SELU forward 1.23x faster at 1 thread, NHWC 32x256x56x56).
  map_view<Arch, Res ? 2 : 1, 4, A::kHeavy>(
      [&act](const B* xs, const B* p) __attribute__((always_inline)) {
        B z = S::fma((xs[0] - p[0]) - p[1], p[2], p[3]);
        if constexpr (Res) z = z + xs[1];
        return act.fwd(z);
      },
      v, r, in, y, par, stream, ahead);
}

template <class Arch>
void bn_apply(const float* x, float* y, View v, Range r, const float* mean_hi, const float* mean_lo,
              const float* scale, const float* shift, bool stream) {
  apply_fused<Arch, false>(ActIdentity<Arch>{}, x, nullptr, y, v, r, mean_hi, mean_lo, scale, shift, stream);
}

template <class Arch>
void bn_act_apply(const float* x, const float* res, float* y, View v, Range r, const float* mean_hi,
                  const float* mean_lo, const float* scale, const float* shift, Act act, bool stream,
                  int64_t ahead) {
  with_act<Arch>(act, [&](const auto& a) {
    with_array(res, [&](auto has_res) {
      apply_fused<Arch, decltype(has_res)::value>(a, x, res, y, v, r, mean_hi, mean_lo, scale, shift, stream,
                                                  ahead);
    });
  });
}

// The gradient at the activation's input, dz = act'(z) * dy with
// z = ((x - mean) - mean_lo) * zscale + zshift (+ res): the forward's z,
// recomputed with the same arithmetic (apply_fused; x - mean - 0 is x - mean
// exactly, so without the low part it is left out). Inputs {x, dy, res};
// parameters those of zlist, the mean first. of_xc takes xc = x - mean
// and the parameters after the mean (the backward apply pass shares xc and
// the mean with dx's formula).
template <class Arch, bool Res, class A, bool Lo>
struct DzOp {
  using B = typename simd<Arch>::batch;
  static constexpr int kPar = Lo ? 4 : 3;
  A act;  // a copy: its few floats then stay in registers
  B of_xc(const B& xc, const B* xs, const B* p) const {
    B z = Lo ? simd<Arch>::fma(xc - p[0], p[1], p[2]) : simd<Arch>::fma(xc, p[0], p[1]);
    if constexpr (Res) z = z + xs[2];
    return act.grad(z, xs[1]);
  }
  B operator()(const B* xs, const B* p) const { return of_xc(xs[0] - p[0], xs, p + 1); }
  static std::array<const float*, kPar> zlist(const ZParams& z) {
    if constexpr (Lo) return {z.mean, z.mean_lo, z.scale, z.shift};
    else return {z.mean, z.scale, z.shift};
  }
};

// backward_sums' dy source for the fused kernels: dz, computed into `out`
// where given (the caller wants dz), else into a buffer of kBuf floats.
// ahead_rows (channels last, from memory, an exp per element): dz goes a
// row at a time, each after asking for the inputs of the row ahead_rows on
// into L2; the exp leaves few loads in flight for the hardware prefetcher
// to keep up with (Zen 4, NHWC 32x256x56x56 BN+SELU backward: 1.05x faster
// at 2 threads, 1.1x at 1; ReLU's backward with a residual 1.07x slower).
template <class Arch, bool Res, class A, bool Lo>
struct FusedDz {
  using Op = DzOp<Arch, Res, A, Lo>;
  static constexpr int64_t kBuf = kTileInner;
  static constexpr int kPar = Op::kPar;
  static constexpr int kIn = Res ? 3 : 2;
  static constexpr int64_t kAheadRows = 16;
  Op op;
  const float *x, *res, *dy;
  float* out;
  std::array<const float*, kPar> zp;
  int64_t ahead_rows;
  alignas(64) mutable float buf[kBuf];                   // left uninitialized
  alignas(64) mutable float sp[kPar][kSpread + kPad];   // spread parameters

  FusedDz(const A& a, const float* x_, const float* res_, const float* dy_, float* out_, ZParams z,
          int64_t ahead)
      : op{a}, x(x_), res(res_), dy(dy_), out(out_), zp(Op::zlist(z)), ahead_rows(ahead) {}

  bool in_place() const { return out != nullptr; }
  void prefetch(int64_t off, int64_t n) const {
    prefetch_run(dy + off, n);
    if (Res) prefetch_run(res + off, n);
  }
  const float* run(int64_t off, int64_t n, int64_t c) const {
    BroadcastParams<Arch, kPar> p;
    for (int q = 0; q < kPar; ++q) p.p[q] = simd<Arch>::set1(zp[q][c]);
    return rows(off, 0, 1, n, p).p;
  }
  int64_t max_rows(int64_t len) const { return in_place() ? INT64_MAX : std::max<int64_t>(1, kBuf / len); }
  // Channels last: through map_rows, the parameters held in registers.
  RowSet rows_of_block(int64_t off, int64_t stride, int64_t nrows, int64_t cb, int64_t nb) const {
    const float* p[kPar];
    for (int q = 0; q < kPar; ++q) p[q] = zp[q] + cb;
    float* const d = in_place() ? out + off : buf;
    const int64_t ds = in_place() ? stride : nb;
    if (!ahead_rows) {
      const float* in[3] = {x + off, dy + off, Res ? res + off : nullptr};
      map_rows<Arch, kIn, kPar>(op, nrows, nb, in, stride, d, ds, p, false);
      return {d, ds};
    }
    for (int64_t i = 0; i < nrows; ++i) {
      const int64_t o = off + i * stride;
      const float* in[3] = {x + o, dy + o, Res ? res + o : nullptr};
      for (int q = 0; q < kIn; ++q) prefetch_run<2>(in[q] + ahead_rows * stride, nb);
      map_rows<Arch, kIn, kPar>(op, 1, nb, in, stride, d + i * ds, ds, p, false);
    }
    return {d, ds};
  }
  void spread(int64_t cb, int64_t nb, int64_t L) const {
    for (int q = 0; q < kPar; ++q)
      for (int64_t k = 0; k < nb; ++k) std::fill_n(sp[q] + k * L, L, zp[q][cb + k]);
  }
  RowSet rows_of_stretch(int64_t off, int64_t stride, int64_t nrows, int64_t len) const {
    LaneParams<Arch, kPar> p;
    for (int q = 0; q < kPar; ++q) p.p[q] = sp[q];
    return rows(off, stride, nrows, len, p);
  }
  // dz of nrows rows of n elements, row i from off + i * stride.
  template <class Par>
  RowSet rows(int64_t off, int64_t stride, int64_t nrows, int64_t n, const Par& p) const {
    for (int64_t i = 0; i < nrows; ++i) {
      const int64_t o = off + i * stride;
      const float* in[3] = {x + o, dy + o, Res ? res + o : nullptr};
      float* dst = in_place() ? out + o : buf + i * n;
      map_run<Arch, kIn, kPar>(op, n, in, dst, p, false);
    }
    return in_place() ? RowSet{out + off, stride} : RowSet{buf, n};
  }
};

template <class Arch>
void bn_act_backward_sums(const float* x, const float* res, const float* dy, float* dz_out, View v, Range r,
                          ZParams z, Act act, double* const* sums) {
  with_act<Arch>(act, [&](const auto& a) {
    with_array(res, [&](auto has_res) {
      with_array(z.mean_lo, [&](auto has_lo) {
        using A = std::decay_t<decltype(a)>;
        using Dz = FusedDz<Arch, decltype(has_res)::value, A, decltype(has_lo)::value>;
        const Dz dz(a, x, res, dy, dz_out, z, A::kHeavy && v.inner == 1 && from_memory(v) ? Dz::kAheadRows : 0);
        backward_sums<Arch>(x, dz, v, r, z.mean, sums);
      });
    });
  });
}

// dx = a * dz + b * ((x - mean) * k) + d (backward_dx, reduce.hpp), per
// channel; dz = dy, or the fused dz recomputed from x (and res).
template <class Arch>
void bn_backward_apply(const float* x, const float* dy, float* dx, View v, Range r,
                       const float* mean, const float* a, const float* b, const float* d,
                       const float* xscale, bool stream) {
  using B = typename simd<Arch>::batch;
  const float* in[2] = {x, dy};
  const float* par[5] = {mean, a, b, d, xscale};
  with_array(xscale, [&](auto has_k) {
    constexpr bool K = decltype(has_k)::value;
    map_view<Arch, 2, K ? 5 : 4>(
        [](const B* xs, const B* p) { return backward_dx<Arch, K>(xs[0], xs[1], p, 4); }, v, r, in, dx, par,
        stream);
  });
}

template <class Arch>
void bn_act_backward_apply(const float* x, const float* res, const float* dy, float* dx, View v, Range r,
                           const float* a, const float* b, const float* d, const float* xscale, ZParams z,
                           Act act, bool stream) {
  using B = typename simd<Arch>::batch;
  with_act<Arch>(act, [&](const auto& fn) {
    with_array(res, [&](auto has_res) {
      with_array(z.mean_lo, [&](auto has_lo) {
        with_array(xscale, [&](auto has_k) {
          constexpr bool R = decltype(has_res)::value, K = decltype(has_k)::value;
          using Op = DzOp<Arch, R, std::decay_t<decltype(fn)>, decltype(has_lo)::value>;
          const Op dz{fn};
          // Parameters: mean, a, b, d, the dz op's after its mean, then k.
          constexpr int kZ = 3 + Op::kPar, kPar = kZ + (K ? 1 : 0);
          const auto zl = Op::zlist(z);
          const float* par[kZ + 1] = {z.mean, a, b, d};
          std::copy(zl.begin() + 1, zl.end(), par + 4);
          par[kZ] = xscale;
          const float* in[3] = {x, dy, res};
          map_view<Arch, R ? 3 : 2, kPar>(
              [&dz](const B* xs, const B* p) {
                const B xc = xs[0] - p[0];
                return backward_dx_xc<Arch, K>(xc, dz.of_xc(xc, xs, p + 4), p, kZ);
              },
              v, r,
              in, dx, par, stream);
        });
      });
    });
  });
}

}  // namespace
}  // namespace nk::kernels
