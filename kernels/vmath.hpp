// Vectorized exp and expm1 over the xsimd arch (and the one-lane scalar
// arch), written for the activations: range reduction x = k*ln2 + r with
// |r| <= ln2/2 (Cody-Waite, two-part ln2), a degree-8 Taylor polynomial for
// expm1(r), and the scale 2^k built from the exponent bits. Fused
// multiply-adds where the ISA has them (AVX2, AVX-512, NEON): they halve the
// arithmetic of this compute-bound code, and only make it more exact.
// Measured error (tests/test_activations.cpp): a few ulp at most.
#pragma once

#include <cstring>

#include "simd.hpp"

namespace nk::kernels {
namespace {  // compiled anew, with its ISA's flags, in each ISA file

// What exp/expm1 need beyond simd<Arch>: masks, select, bit casts.
template <class Arch>
struct vm {
  using B = xsimd::batch<float, Arch>;
  using M = xsimd::batch_bool<float, Arch>;
  using I = xsimd::batch<uint32_t, Arch>;  // unsigned: shifts wrap, no UB
  static B select(const M& m, const B& a, const B& b) { return xsimd::select(m, a, b); }
  static B fma(const B& a, const B& b, const B& c) { return simd<Arch>::fma(a, b, c); }
  // AVX-512 intrinsics in their zero-masked forms here: GCC 12 warns
  // (falsely) about the undefined source of the plain ones.
  static B min(const B& a, const B& b) {
#if defined(__AVX512F__)
    if constexpr (B::size == 16) return _mm512_maskz_min_ps(0xFFFF, a, b);
#endif
    return xsimd::min(a, b);
  }
  static B max(const B& a, const B& b) {
#if defined(__AVX512F__)
    if constexpr (B::size == 16) return _mm512_maskz_max_ps(0xFFFF, a, b);
#endif
    return xsimd::max(a, b);
  }
  // a * 2^k, k an integer in [-300, 254], rounded once where the result is
  // normal. AVX-512 has the instruction; elsewhere three factors 2^k1 *
  // 2^k2 * 2^k3 = 2^k, each a normal float, applied largest first: the one
  // rounding happens where the product leaves the normal range (a second one
  // at most, in the subnormal range, for a < 1). k above 127 comes from
  // ELU alphas of 2^126 and more (EluGradScale's shift).
  static B times_pow2(const B& a, const B& k) {
#if defined(__AVX512F__)
    if constexpr (B::size == 16) return _mm512_maskz_scalef_ps(0xFFFF, a, k);
#endif
    const B magic(12582912.0f), lo(-126.0f), hi(127.0f);
    const B k1 = min(max(k, lo), hi), k2 = max(k - k1, lo), k3 = (k - k1) - k2;
    return ((a * pow2_of_magic(k1 + magic)) * pow2_of_magic(k2 + magic)) * pow2_of_magic(k3 + magic);
  }
  // t = k + 1.5*2^23 (k integer, |k| <= 127, -126 <= k): returns 2^k.
  static B pow2_of_magic(const B& t) {
    const I i = xsimd::bitwise_cast<I>(t);
    // AVX-512: the variable shift, since GCC 12 warns (falsely) about the
    // undefined source of _mm512_slli_epi32.
    if constexpr (B::size == 16) return xsimd::bitwise_cast<B>((i << I(23u)) + I(127u << 23));
    else return xsimd::bitwise_cast<B>((i << 23) + I(127u << 23));
  }
};

template <>
struct vm<scalar_arch> {
  using B = float;
  using M = bool;
  static B select(M m, B a, B b) { return m ? a : b; }
  static B fma(B a, B b, B c) { return a * b + c; }
  static B min(B a, B b) { return a < b ? a : b; }
  static B max(B a, B b) { return a > b ? a : b; }
  static B times_pow2(B a, B k) {
    const B magic(12582912.0f), lo(-126.0f), hi(127.0f);
    const B k1 = min(max(k, lo), hi), k2 = max(k - k1, lo), k3 = (k - k1) - k2;
    return ((a * pow2_of_magic(k1 + magic)) * pow2_of_magic(k2 + magic)) * pow2_of_magic(k3 + magic);
  }
  static B pow2_of_magic(B t) {
    uint32_t i;
    std::memcpy(&i, &t, sizeof i);
    const uint32_t e = (i << 23) + (127u << 23);
    float f;
    std::memcpy(&f, &e, sizeof f);
    return f;
  }
};

// The reduced argument of x (finite, in [-150, 0]... see callers): r with
// x = k*ln2 + r, and t = k + 1.5*2^23 (k recoverable from t's low bits).
template <class Arch>
inline void exp_reduce(const typename vm<Arch>::B& x, typename vm<Arch>::B& t, typename vm<Arch>::B& r) {
  using V = vm<Arch>;
  using B = typename V::B;
  const B magic(12582912.0f);            // 1.5 * 2^23: adding it rounds to an integer
  const B inv_ln2(1.44269504088896341f);
  const B ln2_hi_neg(-0.693359375f);     // 9 significant bits: k*ln2_hi is exact
  const B ln2_lo_neg(2.12194440e-4f);    // -(ln2 - ln2_hi)
  t = V::fma(x, inv_ln2, magic);
  const B k = t - magic;
  r = V::fma(k, ln2_lo_neg, V::fma(k, ln2_hi_neg, x));
}

// expm1(r) for |r| <= ln2/2 + a little: r + r^2 * (1/2 + r/6 + ... + r^6/8!).
template <class Arch>
inline typename vm<Arch>::B expm1_poly(const typename vm<Arch>::B& r) {
  using V = vm<Arch>;
  using B = typename V::B;
  B q(2.48015873e-5f);                   // 1/8!
  q = V::fma(q, r, B(1.98412698e-4f));   // 1/7!
  q = V::fma(q, r, B(1.38888889e-3f));   // 1/6!
  q = V::fma(q, r, B(8.33333333e-3f));   // 1/5!
  q = V::fma(q, r, B(4.16666667e-2f));   // 1/4!
  q = V::fma(q, r, B(1.66666667e-1f));   // 1/3!
  q = V::fma(q, r, B(0.5f));
  return V::fma(r * r, q, r);
}

// expm1(x) for x <= 0 (x >= -30 gives -1 + 2^-43 at worst, which rounds to
// -1 exactly as expm1 does). Callers clamp: NaN and x > 0 must not get here.
template <class Arch>
inline typename vm<Arch>::B expm1_neg(const typename vm<Arch>::B& x) {
  using V = vm<Arch>;
  using B = typename V::B;
  B t, r;
  exp_reduce<Arch>(x, t, r);
  const B p = expm1_poly<Arch>(r);
  const B s = V::pow2_of_magic(t);  // 2^k, k in [-44, 0]
  // 2^k * (1 + p) - 1 = 2^k * p + (2^k - 1); 2^k - 1 is exact for k >= -24.
  return V::fma(s, p, s - B(1.0f));
}

// exp(x) * m * 2^shift for x <= 0 (x >= -300*ln2 + shift), as
// (1 + p) * m * 2^(k + shift): the scaling comes last, so a result in the
// subnormal range is rounded there once (not exp(x) rounded to a subnormal,
// then multiplied). |m| <= FLT_MAX / 2, so (1 + p) * m stays finite.
template <class Arch>
inline typename vm<Arch>::B exp_neg_times(const typename vm<Arch>::B& x, const typename vm<Arch>::B& m,
                                          const typename vm<Arch>::B& shift) {
  using V = vm<Arch>;
  using B = typename V::B;
  B t, r;
  exp_reduce<Arch>(x, t, r);
  const B p = expm1_poly<Arch>(r);
  return V::times_pow2(V::fma(p, m, m), (t - B(12582912.0f)) + shift);
}

}  // namespace
}  // namespace nk::kernels
