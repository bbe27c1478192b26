// Batch Norm entry points: training and inference forward, backward.
#include <cstddef>

#include "bn_common.hpp"

using namespace nk;

namespace {

// Training forward on the canonical view: statistics, coefficients, apply.
void forward_training(const BnExec& e, const BnOptions& o, const float* x, float* y,
                      const float* gamma, const float* beta, float* saved_mean,
                      float* saved_invstd, float* moving_mean, float* moving_var) {
  const int64_t C = e.v.channels;
  const double count = static_cast<double>(e.v.outer * e.v.inner);
  std::vector<double> bmean(static_cast<size_t>(e.blocks * C)), bm2(bmean.size());
  ChannelArrays p(C);
  const bool stream = e.stream(2 * static_cast<int64_t>(sizeof(float)) * e.v.outer * C * e.v.inner);
  auto finalize = [&](int64_t c) {
    double mean, m2;
    merge_blocks(e, bmean.data(), bm2.data(), c, mean, m2);
    finalize_channel(o, c, count, mean, m2, gamma, beta, p, saved_mean, saved_invstd);
    update_moving(o, c, count, mean, m2, moving_mean, moving_var);
  };
  auto apply = [&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
    e.k.bn_apply(x, y, e.v, {c0, c1, o0, o1}, p.a.data(), p.b.data(), p.c.data(), p.d.data(), stream);
  };
  if (e.channel_resident()) {
#pragma omp parallel for num_threads(e.threads) schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t s = 0; s < e.blocks; ++s)
        e.k.bn_stats(x, e.v, e.block_range(c, c + 1, s), &bmean[s * C + c], &bm2[s * C + c]);
      finalize(c);
      apply(c, c + 1, 0, e.v.outer);
    }
    return;
  }
  e.parallel_blocks([&](int64_t s, int64_t c0, int64_t c1) {
    e.k.bn_stats(x, e.v, e.block_range(c0, c1, s), &bmean[s * C + c0], &bm2[s * C + c0]);
  });
  for (int64_t c = 0; c < C; ++c) finalize(c);
  e.parallel_elementwise(apply);
}

// Training backward on the canonical view.
void backward(const BnExec& e, const float* x, const float* dy, const float* gamma,
              const float* mean, const float* invstd, float* dx, float* dgamma, float* dbeta) {
  const int64_t C = e.v.channels;
  const double count = static_cast<double>(e.v.outer * e.v.inner);
  const size_t nb = static_cast<size_t>(e.blocks * C);
  std::vector<double> bsum(3 * nb);
  ChannelArrays p(C);
  const bool stream = e.stream(3 * static_cast<int64_t>(sizeof(float)) * e.v.outer * C * e.v.inner);
  auto sums = [&](int64_t s, int64_t c0, int64_t c1) {
    double* out[3] = {&bsum[s * C + c0], &bsum[nb + s * C + c0], &bsum[2 * nb + s * C + c0]};
    e.k.bn_backward_sums(x, dy, e.v, e.block_range(c0, c1, s), mean, out);
  };
  // dx = g*s*dy - g*s^3*P/m*(x - mu) - g*s*sum(dy)/m, with P = sum(dy*(x - mu)).
  // The saved mean is a float; delta = sum(x - mean)/m is its offset from the
  // exact batch mean, which the coefficients absorb.
  auto coefficients = [&](int64_t c) {
    double sdy = 0, sdyxc = 0, sxc = 0;
    for (int64_t s = 0; s < e.blocks; ++s) {
      sdy += bsum[s * C + c];
      sdyxc += bsum[nb + s * C + c];
      sxc += bsum[2 * nb + s * C + c];
    }
    const double sd = invstd[c], g = gamma ? gamma[c] : 1.0;
    const double delta = sxc / count;
    const double P = sdyxc - delta * sdy;
    const double b = -g * sd * sd * sd * P / count;
    p.a[c] = mean[c];
    p.b[c] = static_cast<float>(g * sd);
    p.c[c] = static_cast<float>(b);
    p.d[c] = static_cast<float>(-g * sd * sdy / count - b * delta);
    if (dgamma) dgamma[c] = static_cast<float>(P * sd);
    if (dbeta) dbeta[c] = static_cast<float>(sdy);
  };
  auto apply = [&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
    e.k.bn_backward_apply(x, dy, dx, e.v, {c0, c1, o0, o1}, p.a.data(), p.b.data(), p.c.data(),
                          p.d.data(), stream);
  };
  if (e.channel_resident()) {
#pragma omp parallel for num_threads(e.threads) schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t s = 0; s < e.blocks; ++s) sums(s, c, c + 1);
      coefficients(c);
      apply(c, c + 1, 0, e.v.outer);
    }
    return;
  }
  e.parallel_blocks(sums);
  for (int64_t c = 0; c < C; ++c) coefficients(c);
  e.parallel_elementwise(apply);
}

}  // namespace

extern "C" {

NK_API void nk_bn_options_init(nk_bn_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);  // padding too: callers may compare bytes
  const nk_bn_options defaults = NK_BN_OPTIONS_INIT;
  std::memcpy(opt, &defaults, offsetof(nk_bn_options, dmax) + sizeof defaults.dmax);
}

NK_API nk_status nk_tensor_desc_init(nk_tensor_desc* desc, int32_t ndim, const int64_t* dims,
                                     int32_t axis) {
  return guarded("nk_tensor_desc_init", [&] {
    require(desc, "desc");
    require(dims, "dims");
    if (ndim < 1 || ndim > NK_MAX_DIMS)
      fail(NK_ERR_BAD_SHAPE, "ndim = %d: must be in 1..%d", ndim, NK_MAX_DIMS);
    nk_tensor_desc d{};
    d.dtype = NK_DTYPE_F32;
    d.ndim = ndim;
    for (int i = 0; i < ndim; ++i) d.dims[i] = dims[i];
    d.num_axes = 1;
    d.axes[0] = axis;
    *desc = d;
  });
}

NK_API nk_status nk_bn_forward_training(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                        const void* x, void* y, const float* gamma,
                                        const float* beta, float* saved_mean,
                                        float* saved_invstd, float* moving_mean,
                                        float* moving_var) {
  return guarded("nk_bn_forward_training", [&] {
    const Shape s = canonicalize(desc);
    const BnOptions o = read_bn_options(opt);
    require(x, "x");
    require(y, "y");
    require_pair(moving_mean, moving_var, "moving_mean", "moving_var");
    if (moving_mean && o.variance == NK_VARIANCE_UNBIASED && s.count < 2)
      fail(NK_ERR_BAD_ARGUMENT,
           "the unbiased moving variance needs more than one value per feature (got %lld)",
           static_cast<long long>(s.count));
    const BnExec e(kernels_for_call(), s.view);
    const Canonical io(s, {x}, y);
    forward_training(e, o, io.in(0), io.out(), gamma, beta, saved_mean, saved_invstd, moving_mean,
                     moving_var);
    io.finish();
  });
}

NK_API nk_status nk_bn_forward_inference(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                         const void* x, void* y, const float* gamma,
                                         const float* beta, const float* moving_mean,
                                         const float* moving_var) {
  return guarded("nk_bn_forward_inference", [&] {
    const Shape s = canonicalize(desc);
    const BnOptions o = read_bn_options(opt);
    require(x, "x");
    require(y, "y");
    require(moving_mean, "moving_mean");
    require(moving_var, "moving_var");
    const BnExec e(kernels_for_call(), s.view);
    const int64_t C = s.channels;
    ChannelArrays p(C);
    for (int64_t c = 0; c < C; ++c) {
      p.a[c] = moving_mean[c];
      p.b[c] = 0.0f;
      p.c[c] = static_cast<float>((gamma ? gamma[c] : 1.0) / std::sqrt(static_cast<double>(moving_var[c]) + o.epsilon));
      p.d[c] = beta ? beta[c] : 0.0f;
    }
    const Canonical io(s, {x}, y);
    const bool stream = e.stream(2 * static_cast<int64_t>(sizeof(float)) * s.total);
    e.parallel_elementwise([&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
      e.k.bn_apply(io.in(0), io.out(), e.v, {c0, c1, o0, o1}, p.a.data(), p.b.data(), p.c.data(),
                   p.d.data(), stream);
    });
    io.finish();
  });
}

NK_API nk_status nk_bn_backward(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                const void* x, const void* dy, const float* gamma,
                                const float* saved_mean, const float* saved_invstd, void* dx,
                                float* dgamma, float* dbeta) {
  return guarded("nk_bn_backward", [&] {
    const Shape s = canonicalize(desc);
    read_bn_options(opt);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    require(saved_mean, "saved_mean");
    require(saved_invstd, "saved_invstd");
    const BnExec e(kernels_for_call(), s.view);
    const Canonical io(s, {x, dy}, dx);
    backward(e, io.in(0), io.in(1), gamma, saved_mean, saved_invstd, io.out(), dgamma, dbeta);
    io.finish();
  });
}

}  // extern "C"
