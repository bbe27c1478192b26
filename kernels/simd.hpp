// Thin layer over xsimd 8.1 so each kernel is written once for every ISA,
// including a one-lane scalar "arch" that xsimd 8.1 does not provide.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cmath>

#include <xsimd/xsimd.hpp>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace nk::kernels {

// Tag for the scalar fallback: batches of one float.
struct scalar_arch {
  static constexpr const char* name() { return "scalar"; }
};

template <class Arch>
struct simd {
  using batch = xsimd::batch<float, Arch>;
  static constexpr std::size_t width = batch::size;

  static batch load(const float* p) { return batch::load_unaligned(p); }
  static void store(float* p, const batch& v) { v.store_unaligned(p); }
  static batch set1(float v) { return batch(v); }
  static batch zero() { return batch(0.0f); }
  // a * b + c, fused where the ISA has FMA (xsimd 8.1 fuses it for AVX2 and
  // NEON but not for AVX-512, so that one is spelled out).
  static batch fma(const batch& a, const batch& b, const batch& c) {
#if defined(__AVX512F__)
    if constexpr (width == 16) return _mm512_fmadd_ps(a, b, c);
#endif
    return xsimd::fma(a, b, c);
  }
  static float sum(const batch& v) { return xsimd::hadd(v); }

  // The first n (< width) lanes; the others load as 0 and store nothing.
  // Masked where the ISA has masks, so tails cost no more than a vector.
  static batch load_partial(const float* p, int64_t n) {
#if defined(__AVX512F__)
    if constexpr (width == 16) return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
#endif
#if defined(__AVX2__)
    if constexpr (width == 8) return _mm256_maskload_ps(p, tail_mask8(n));
#endif
    alignas(64) float buf[width] = {};
    for (int64_t i = 0; i < n; ++i) buf[i] = p[i];
    return batch::load_aligned(buf);
  }
  // The first n (< width) lanes from p, the others from fill.
  static batch load_partial_fill(const float* p, int64_t n, const batch& fill) {
#if defined(__AVX512F__)
    if constexpr (width == 16) return _mm512_mask_loadu_ps(fill, static_cast<__mmask16>((1u << n) - 1), p);
#endif
#if defined(__AVX2__)
    if constexpr (width == 8) {
      const __m256i m = tail_mask8(n);
      return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
    }
#endif
    alignas(64) float buf[width];
    fill.store_aligned(buf);
    for (int64_t i = 0; i < n; ++i) buf[i] = p[i];
    return batch::load_aligned(buf);
  }
  static void store_partial(float* p, const batch& v, int64_t n) {
#if defined(__AVX512F__)
    if constexpr (width == 16) {
      _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
      return;
    }
#endif
#if defined(__AVX2__)
    if constexpr (width == 8) {
      _mm256_maskstore_ps(p, tail_mask8(n), v);
      return;
    }
#endif
    alignas(64) float buf[width];
    v.store_aligned(buf);
    for (int64_t i = 0; i < n; ++i) p[i] = buf[i];
  }
#if defined(__AVX2__)
  static __m256i tail_mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
#endif

  // Non-temporal store of one full batch; p is aligned to the batch width.
  static void stream(float* p, const batch& v) {
#if defined(__AVX512F__)
    if constexpr (width == 16) { _mm512_stream_ps(p, v); return; }
#endif
#if defined(__AVX__)
    if constexpr (width == 8) { _mm256_stream_ps(p, v); return; }
#endif
#if defined(__SSE2__)
    if constexpr (width == 4) { _mm_stream_ps(p, v); return; }
#endif
    v.store_aligned(p);
  }
  static void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
  }
};

template <>
struct simd<scalar_arch> {
  using batch = float;
  static constexpr std::size_t width = 1;
  static batch load(const float* p) { return *p; }
  static void store(float* p, batch v) { *p = v; }
  static batch set1(float v) { return v; }
  static batch zero() { return 0.0f; }
  static batch fma(batch a, batch b, batch c) { return a * b + c; }
  static batch load_partial(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
  static batch load_partial_fill(const float* p, int64_t n, batch fill) { return n > 0 ? *p : fill; }
  static void store_partial(float* p, batch v, int64_t n) {
    if (n > 0) *p = v;
  }
  static float sum(batch v) { return v; }
  static void stream(float* p, batch v) { *p = v; }
  static void stream_fence() {}
};

}  // namespace nk::kernels
