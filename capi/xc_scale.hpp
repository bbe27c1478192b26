// Backward's coefficient of (x - mean) in dx is about gamma * dy * invstd^2:
// past a spread (1 / invstd) of ~1e19 it falls below float's normal range,
// and with a tiny epsilon and spread it can pass FLT_MAX. For such units the
// element-wise kernels take (x - mean) times k, a power of two near invstd,
// and the coefficient divided by k (both exact scalings). Units of ordinary
// spread keep k = 1, and a call where every unit has k = 1 passes no k at
// all, so their arithmetic is unchanged.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "aligned.hpp"

namespace nk {

// k for one unit: 1 for ordinary spreads and for invstd 0, Inf or NaN (a
// caller's saved arrays may hold anything); else a normal float's power of
// two.
inline float xc_scale(double invstd) {
  const double a = std::fabs(invstd);
  if (!(a > 0.0) || !std::isfinite(a) || (a >= 0x1p-32 && a <= 0x1p32)) return 1.0f;
  return std::ldexp(1.0f, std::clamp(std::ilogb(a), -126, 127));
}

// k of units [0, n), invstd_of(i) giving unit i's invstd; empty where every
// unit's k is 1.
template <class F>
FloatVec xc_scales(int64_t n, const F& invstd_of) {
  int64_t i = 0;
  while (i < n && xc_scale(invstd_of(i)) == 1.0f) ++i;
  if (i == n) return FloatVec();
  FloatVec k(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) k[j] = xc_scale(invstd_of(j));
  return k;
}

// The kernels' pointer to k from unit `off` on: NULL where there is none.
inline const float* xc_ptr(const FloatVec& k, int64_t off = 0) { return k.empty() ? nullptr : k.data() + off; }

// The coefficient b of (x - mean) as the kernels take it, given unit i's k.
inline float xc_coefficient(double b, const FloatVec& k, int64_t i) {
  return static_cast<float>(k.empty() ? b : b / k[i]);
}

}  // namespace nk
