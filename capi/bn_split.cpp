// Split statistics for Sync Batch Norm: partials that merge exactly across
// processes, the finalize and apply steps, and the backward pair.
#include "bn_common.hpp"
#include "xc_scale.hpp"

using namespace nk;

namespace {

// Merged per-channel mean and M2 of the canonical view.
void stats(const BnExec& e, const float* x, double* mean, double* m2) {
  const int64_t C = e.v.channels;
  DoubleVec bmean(static_cast<size_t>(e.blocks * C)), bm2(bmean.size());
  e.parallel_blocks([&](int64_t s, int64_t c0, int64_t c1) {
    e.k.bn_stats(x, e.v, e.block_range(c0, c1, s), &bmean[s * C + c0], &bm2[s * C + c0]);
  });
  const BlockMerge merge(e);
  for (int64_t c = 0; c < C; ++c) merge(bmean.data(), bm2.data(), c, 0, mean[c], m2[c]);
}

// M2 is a sum of squares: a negative one is a caller's error (NaN passes,
// as NaN data gives it).
void check_m2(const double* m2, int64_t n, const char* name) {
  for (int64_t i = 0; i < n; ++i)
    if (m2[i] < 0)
      fail(NK_ERR_BAD_ARGUMENT, "%s[%lld] = %g: a sum of squared deviations must be >= 0", name,
           static_cast<long long>(i), m2[i]);
}

// The mean as the double the shared code takes: the merged double mean as
// it is, a float one widened (its low part 0).
struct Means {
  DoubleVec keep;
  const double* p;
  Means(const double* m, int64_t) : p(m) {}
  Means(const float* m, int64_t n) : keep(m, m + n), p(keep.data()) {}
};

// mean = hi + lo, hi the nearest float: the kernels center on hi, and the
// low part enters the per-channel sums and coefficients in double.
float mean_hi(double mean) { return static_cast<float>(mean); }
double mean_lo(double mean) { return mean - static_cast<double>(mean_hi(mean)); }

// sum(dy) and sum(dy * xhat) of the local part, xhat = (x - mean) * invstd:
// sum(dy * (x - hi)) from the kernels, less lo * sum(dy).
template <class M>
void backward_reduce(const Shape& s, const void* x, const void* dy, const M* mean_in, const float* invstd,
                     double* sum_dy, double* sum_dy_xhat) {
  require(mean_in, "mean");
  const Means means(mean_in, s.channels);
  const double* const mean = means.p;
  require(x, "x");
  require(dy, "dy");
  require(invstd, "invstd");
  require(sum_dy, "sum_dy");
  require(sum_dy_xhat, "sum_dy_xhat");
  const BnExec e(kernels_for_call(), s.view);
  const Canonical io(s, {x, dy}, nullptr);
  const int64_t C = s.channels;
  FloatVec hi(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) hi[c] = mean_hi(mean[c]);
  const size_t nb = static_cast<size_t>(e.blocks * C);
  DoubleVec bsum(3 * nb);
  e.parallel_blocks([&](int64_t b, int64_t c0, int64_t c1) {
    double* out[3] = {&bsum[b * C + c0], &bsum[nb + b * C + c0], &bsum[2 * nb + b * C + c0]};
    e.k.bn_backward_sums(io.in(0), io.in(1), e.v, e.block_range(c0, c1, b), hi.data(), out);
  });
  for (int64_t c = 0; c < C; ++c) {
    double sdy = 0, sdyxc = 0;
    for (int64_t b = 0; b < e.blocks; ++b) {
      sdy += bsum[b * C + c];
      sdyxc += bsum[nb + b * C + c];
    }
    const double xhat_sum = (sdyxc - mean_lo(mean[c]) * sdy) * invstd[c];  // before the stores: mean may alias them
    sum_dy[c] = sdy;
    sum_dy_xhat[c] = xhat_sum;
  }
}

// dx = g * s * (dy - sum_dy / m - xhat * sum_dy_xhat / m), as
// b * dy + c * (x - hi) + d with the low part of the mean in d.
template <class M>
void backward_apply(const Shape& s, int64_t count, const void* x, const void* dy, const float* gamma,
                    const M* mean_in, const float* invstd, const double* sum_dy, const double* sum_dy_xhat,
                    void* dx) {
  require(mean_in, "mean");
  const Means means(mean_in, s.channels);
  const double* const mean = means.p;
  if (count < 1) fail(NK_ERR_BAD_ARGUMENT, "count = %lld: must be >= 1", static_cast<long long>(count));
  if (count < s.count)
    fail(NK_ERR_BAD_ARGUMENT, "count = %lld: less than this part's %lld values per feature (count is the total "
         "over every part, nk_bn_merge_stats' count)", static_cast<long long>(count),
         static_cast<long long>(s.count));
  require(x, "x");
  require(dy, "dy");
  require(invstd, "invstd");
  require(sum_dy, "sum_dy");
  require(sum_dy_xhat, "sum_dy_xhat");
  require(dx, "dx");
  const BnExec e(kernels_for_call(), s.view);
  const double m = static_cast<double>(count);
  ChannelArrays p(s.channels);
  const FloatVec xk = xc_scales(s.channels, [&](int64_t c) { return invstd[c]; });
  for (int64_t c = 0; c < s.channels; ++c) {
    const double sd = invstd[c], g = gamma ? gamma[c] : 1.0;
    const double cc = -g * sd * sd * sum_dy_xhat[c] / m;
    p.a[c] = mean_hi(mean[c]);
    p.b[c] = static_cast<float>(g * sd);
    p.c[c] = xc_coefficient(cc, xk, c);
    p.d[c] = static_cast<float>(-g * sd * sum_dy[c] / m - cc * mean_lo(mean[c]));
  }
  const Canonical io(s, {x, dy}, dx);
  const bool stream = e.stream(3 * static_cast<int64_t>(sizeof(float)) * s.total);
  e.parallel_elementwise([&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
    e.k.bn_backward_apply(io.in(0), io.in(1), io.out(), e.v, {c0, c1, o0, o1}, p.a.data(), p.b.data(),
                          p.c.data(), p.d.data(), xc_ptr(xk), stream);
  });
  io.finish();
}

template <class M>
void apply_entry(const nk_tensor_desc* desc, const void* x, void* y, const float* gamma, const float* beta,
                 const M* mean, const float* invstd) {
  const Shape s = canonicalize(desc);
  require(x, "x");
  require(y, "y");
  require(mean, "mean");
  require(invstd, "invstd");
  apply_given_stats(s, x, y, gamma, beta, mean, invstd);
}

}  // namespace

extern "C" {

NK_API nk_status nk_bn_partial_stats(const nk_tensor_desc* desc, const void* x, int64_t* count,
                                     double* mean, double* m2) {
  return guarded("nk_bn_partial_stats", [&] {
    const Shape s = canonicalize(desc);
    require(x, "x");
    require(count, "count");
    require(mean, "mean");
    require(m2, "m2");
    const BnExec e(kernels_for_call(), s.view);
    const Canonical io(s, {x}, nullptr);
    DoubleVec mu(static_cast<size_t>(s.channels)), q(mu.size());
    stats(e, io.in(0), mu.data(), q.data());
    std::copy(mu.begin(), mu.end(), mean);
    std::copy(q.begin(), q.end(), m2);
    *count = s.count;
  });
}

NK_API nk_status nk_bn_merge_stats(int64_t channels, int64_t num_parts, const int64_t* counts,
                                   const double* means, const double* m2s, int64_t* count,
                                   double* mean, double* m2) {
  return guarded("nk_bn_merge_stats", [&] {
    check_channels(channels);
    if (num_parts < 1)
      fail(NK_ERR_BAD_ARGUMENT, "num_parts = %lld: must be >= 1", static_cast<long long>(num_parts));
    checked_mul(channels, num_parts, "channels * num_parts");
    require(counts, "counts");
    require(means, "means");
    require(m2s, "m2s");
    require(count, "count");
    require(mean, "mean");
    require(m2, "m2");
    int64_t total = 0;
    for (int64_t k = 0; k < num_parts; ++k) {
      if (counts[k] < 0)
        fail(NK_ERR_BAD_ARGUMENT, "counts[%lld] = %lld: must be >= 0", static_cast<long long>(k),
             static_cast<long long>(counts[k]));
      if (counts[k] > 0) check_m2(m2s + k * channels, channels, "m2s (a part's row)");
      if (__builtin_add_overflow(total, counts[k], &total)) fail(NK_ERR_OVERFLOW, "total count overflows int64");
    }
    // Merged into scratch first: the outputs may alias the inputs.
    DoubleVec merged(2 * static_cast<size_t>(channels), 0.0);
    for (int64_t c = 0; c < channels; ++c) {
      double n = 0, mu = 0, q = 0;
      for (int64_t k = 0; k < num_parts; ++k) {
        const double nk_ = static_cast<double>(counts[k]);
        if (nk_ == 0) continue;
        const double d = means[k * channels + c] - mu;
        mu += d * (nk_ / (n + nk_));
        q += m2s[k * channels + c] + d * d * (n * nk_ / (n + nk_));
        n += nk_;
      }
      merged[2 * c] = mu;
      merged[2 * c + 1] = q;
    }
    for (int64_t c = 0; c < channels; ++c) {
      mean[c] = merged[2 * c];
      m2[c] = merged[2 * c + 1];
    }
    *count = total;
  });
}

NK_API nk_status nk_bn_finalize_stats(int64_t channels, const nk_bn_options* opt, int64_t count,
                                      const double* mean, const double* m2, float* mean_out,
                                      float* invstd_out, float* moving_mean, float* moving_var) {
  return guarded("nk_bn_finalize_stats", [&] {
    check_channels(channels);
    const BnOptions o = read_bn_options(opt);
    if (count < 1) fail(NK_ERR_BAD_ARGUMENT, "count = %lld: must be >= 1", static_cast<long long>(count));
    require(mean, "mean");
    require(m2, "m2");
    require(mean_out, "mean_out");
    require(invstd_out, "invstd_out");
    require_pair(moving_mean, moving_var, "moving_mean", "moving_var");
    if (moving_mean && o.variance == NK_VARIANCE_UNBIASED && count < 2)
      fail(NK_ERR_BAD_ARGUMENT, "the unbiased moving variance needs count >= 2");
    if (o.renorm || o.virtual_batch > 0)
      fail(NK_ERR_UNSUPPORTED, "renorm and virtual batches are not available through split statistics");
    check_m2(m2, channels, "m2");
    nk_bn_state st;
    nk_bn_state_init(&st);
    st.moving_mean = moving_mean;
    st.moving_var = moving_var;
    const double n = static_cast<double>(count);
    for (int64_t c = 0; c < channels; ++c) {
      const double var = std::isnan(m2[c]) ? m2[c] : std::max(m2[c], 0.0) / n;
      mean_out[c] = static_cast<float>(mean[c]);
      invstd_out[c] = static_cast<float>(1.0 / std::sqrt(var + o.epsilon));
      update_moving(o, c, n, mean[c], var, st);
    }
  });
}

NK_API nk_status nk_bn_apply(const nk_tensor_desc* desc, const void* x, void* y,
                             const float* gamma, const float* beta, const float* mean,
                             const float* invstd) {
  return guarded("nk_bn_apply", [&] { apply_entry(desc, x, y, gamma, beta, mean, invstd); });
}

NK_API nk_status nk_bn_apply_mean64(const nk_tensor_desc* desc, const void* x, void* y,
                                    const float* gamma, const float* beta, const double* mean,
                                    const float* invstd) {
  return guarded("nk_bn_apply_mean64", [&] { apply_entry(desc, x, y, gamma, beta, mean, invstd); });
}

NK_API nk_status nk_bn_backward_reduce(const nk_tensor_desc* desc, const void* x, const void* dy,
                                       const float* mean, const float* invstd, double* sum_dy,
                                       double* sum_dy_xhat) {
  return guarded("nk_bn_backward_reduce",
                 [&] { backward_reduce(canonicalize(desc), x, dy, mean, invstd, sum_dy, sum_dy_xhat); });
}

NK_API nk_status nk_bn_backward_reduce_mean64(const nk_tensor_desc* desc, const void* x, const void* dy,
                                              const double* mean, const float* invstd, double* sum_dy,
                                              double* sum_dy_xhat) {
  return guarded("nk_bn_backward_reduce_mean64",
                 [&] { backward_reduce(canonicalize(desc), x, dy, mean, invstd, sum_dy, sum_dy_xhat); });
}

NK_API nk_status nk_bn_backward_apply(const nk_tensor_desc* desc, int64_t count, const void* x,
                                      const void* dy, const float* gamma, const float* mean,
                                      const float* invstd, const double* sum_dy,
                                      const double* sum_dy_xhat, void* dx) {
  return guarded("nk_bn_backward_apply", [&] {
    backward_apply(canonicalize(desc), count, x, dy, gamma, mean, invstd, sum_dy, sum_dy_xhat, dx);
  });
}

NK_API nk_status nk_bn_backward_apply_mean64(const nk_tensor_desc* desc, int64_t count, const void* x,
                                             const void* dy, const float* gamma, const double* mean,
                                             const float* invstd, const double* sum_dy,
                                             const double* sum_dy_xhat, void* dx) {
  return guarded("nk_bn_backward_apply_mean64", [&] {
    backward_apply(canonicalize(desc), count, x, dy, gamma, mean, invstd, sum_dy, sum_dy_xhat, dx);
  });
}
}  // extern "C"
