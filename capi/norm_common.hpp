// What the per-sample norms (Group, Instance, Layer, RMS) share: options
// reading, pointer checks, a fixed-unit parallel loop, and the Chan merge.
// Work is always split into units fixed by the shape alone, each computed by
// one thread in a fixed order, so results never depend on the thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "aligned.hpp"
#include "checks.hpp"
#include "parallel.hpp"
#include "runtime.hpp"
#include "shape.hpp"

namespace nk::norms {

using nk::check_epsilon;
using nk::read_options;
using nk::require;
using nk::require_pair;

// f(u) for u in [0, units), each unit once; each thread takes one
// contiguous run of units. The units are many and small (one (sample,
// channel) of Instance Norm is 12 KiB): handed out one at a time, from a
// counter the threads share, they measured up to 1.4x slower.
template <class F>
void parallel_units(int64_t units, const F& f) {
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(units, 1)));
  parallel_for(threads, units, Schedule::Static, f);
}

inline bool stream_for(int64_t bytes) { return bytes >= stream_threshold(); }

// Chan et al.'s merge of k partials of equal count n (mean[i], m2[i]) in
// order: the merged mean and M2.
inline void merge_equal(const double* mean, const double* m2, int64_t k, double n, double& mu, double& q) {
  mu = 0;
  q = 0;
  double seen = 0;
  for (int64_t i = 0; i < k; ++i) {
    const double d = mean[i] - mu;
    mu += d * (n / (seen + n));
    q += m2[i] + d * d * (seen * n / (seen + n));
    seen += n;
  }
}

// Per-sample (grouped-channel) view of a tensor: sample n is the slab of P
// rows of the canonical (outer, C, inner) view starting at row n*P.
struct SampleShape {
  Shape s;
  int64_t N, P, C, inner;
  kernels::View sample_view() const { return {P, C, inner}; }
  int64_t sample_elems() const { return P * C * inner; }
};

// Group/Instance Norm descriptors: axis 0 the batch, one feature axis (not 0).
inline SampleShape sample_shape(const nk_tensor_desc* desc) {
  const Shape s = canonicalize(desc);
  if (desc->num_axes != 1)
    fail(NK_ERR_BAD_AXIS, "num_axes = %d: one channel axis expected (1 for NCHW, -1 for NHWC)", desc->num_axes);
  const int ax = desc->axes[0] < 0 ? desc->axes[0] + desc->ndim : desc->axes[0];
  if (ax == 0) fail(NK_ERR_BAD_AXIS, "axes[0] = %d: axis 0 is the batch, not the channels", desc->axes[0]);
  SampleShape r{s, desc->dims[0], 0, s.channels, s.view.inner};
  r.P = s.view.outer / r.N;
  return r;
}

}  // namespace nk::norms
