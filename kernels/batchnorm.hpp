// Batch Norm kernels, written once over the xsimd arch.
#pragma once

#include "reduce.hpp"

namespace nk::kernels {
namespace {

// y = ((x - mean_hi) - mean_lo) * scale + shift. The mean is split in two
// floats so that a mean far from zero costs no precision.
template <class Arch>
void bn_apply(const float* x, float* y, View v, Range r, const float* mean_hi,
              const float* mean_lo, const float* scale, const float* shift, bool stream) {
  using S = simd<Arch>;
  using B = typename S::batch;
  const float* in[1] = {x};
  const float* par[4] = {mean_hi, mean_lo, scale, shift};
  map_view<Arch, 1, 4>([](const B* xs, const B* p) { return S::fma((xs[0] - p[0]) - p[1], p[2], p[3]); },
                       v, r, in, y, par, stream);
}

// dx = a * dy + b * (x - mean) + d, per channel a, b, d.
template <class Arch>
void bn_backward_apply(const float* x, const float* dy, float* dx, View v, Range r,
                       const float* mean, const float* a, const float* b, const float* d,
                       bool stream) {
  using S = simd<Arch>;
  using B = typename S::batch;
  const float* in[2] = {x, dy};
  const float* par[4] = {mean, a, b, d};
  map_view<Arch, 2, 4>(
      [](const B* xs, const B* p) { return S::fma(p[1], xs[1], S::fma(p[2], xs[0] - p[0], p[3])); }, v, r,
      in, dx, par, stream);
}

}  // namespace
}  // namespace nk::kernels
