// Batch Norm entry points: training forward with TensorFlow's whole option
// set (virtual batches, renorm, adjustment), inference, backward.
#include <cstddef>

#include "bn_common.hpp"
#include "fusion.hpp"
#include "xc_scale.hpp"

using namespace nk;

namespace {

// What one training call works with, checked.
struct Step {
  Shape shape;
  BnOptions o;
  nk_bn_state st;
  int64_t samples = 1;        // N, axis 0
  int64_t groups = 1;         // virtual batches
};

Step check_step(const nk_tensor_desc* desc, const nk_bn_options* opt, const nk_bn_state& st, bool backward) {
  Step s{canonicalize(desc), read_bn_options(opt), st};
  const int64_t V = s.o.virtual_batch;
  if (V > 0) {
    if (s.shape.batch_is_feature)
      fail(NK_ERR_BAD_AXIS, "virtual_batch_size needs axis 0 (the batch) to be reduced, not a feature axis");
    s.samples = s.shape.batch;
    if (s.samples % V != 0)
      fail(NK_ERR_BAD_ARGUMENT, "virtual_batch_size %lld does not divide the batch size %lld",
           static_cast<long long>(V), static_cast<long long>(s.samples));
    s.groups = s.samples / V;
  }
  require_pair(st.adjustment_scale, st.adjustment_bias, "adjustment_scale", "adjustment_bias");
  if (st.adjustment_scale && V > 0)
    fail(NK_ERR_BAD_ARGUMENT, "adjustment cannot be combined with virtual_batch_size (as in TensorFlow)");
  if (backward) {
    require(st.saved_mean, "saved_mean");
    require(st.saved_invstd, "saved_invstd");
    // The plain entry points have no state to carry renorm's r and d.
    if (s.o.renorm && (!st.saved_r || !st.saved_d))
      fail(NK_ERR_NULL_POINTER,
           "%s is NULL: renorm's backward needs the forward's saved_r and saved_d in nk_bn_state "
           "(nk_bn_backward_ex and nk_bn_act_backward take it; nk_bn_backward cannot renorm)",
           st.saved_r ? "saved_d" : "saved_r");
    return s;
  }
  require_pair(st.moving_mean, st.moving_var, "moving_mean", "moving_var");
  if (s.o.renorm && (!st.renorm_mean || !st.renorm_stddev))
    fail(NK_ERR_NULL_POINTER,
         "%s is NULL: renorm keeps renorm_mean and renorm_stddev in nk_bn_state "
         "(nk_bn_forward_training_ex and nk_bn_act_forward_training take it; nk_bn_forward_training cannot "
         "renorm)",
         st.renorm_mean ? "renorm_stddev" : "renorm_mean");
  if (st.moving_mean && s.o.variance == NK_VARIANCE_UNBIASED && s.shape.count / s.groups < 2)
    fail(NK_ERR_BAD_ARGUMENT, "the unbiased moving variance needs more than one value per feature (got %lld)",
         static_cast<long long>(s.shape.count / s.groups));
  return s;
}

BnExec make_exec(const Step& s) {
  BnExec e(kernels_for_call(), s.shape.view);
  if (s.groups > 1) e.set_virtual_batches(s.samples, s.o.virtual_batch, s.o.grouping == NK_GHOST_STRIDED);
  return e;
}

// Each virtual batch's mean of every channel (g * C + c), from the same
// statistics pass and merge as the training forward's: the same bits.
DoubleVec batch_means(const BnExec& e, const float* x) {
  const int64_t C = e.v.channels, G = e.groups;
  DoubleVec bmean(static_cast<size_t>(e.blocks * C)), bm2(bmean.size()), mean(static_cast<size_t>(G * C));
  e.parallel_blocks([&](int64_t b, int64_t c0, int64_t c1) {
    e.k.bn_stats(x, e.v, e.block_range(c0, c1, b), &bmean[b * C + c0], &bm2[b * C + c0]);
  });
  const BlockMerge merge(e);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t g = 0; g < G; ++g) {
      double m2;
      merge(bmean.data(), bm2.data(), c, g, mean[g * C + c], m2);
    }
  return mean;
}

// Training forward on the canonical view: statistics per virtual batch, the
// per-channel step (renorm, moving statistics, coefficients), then apply.
void forward_training(const BnExec& e, const BnOptions& o, const nk_bn_state& st, const float* x, float* y,
                      const float* gamma, const float* beta, const Fusion& f) {
  const int64_t C = e.v.channels, G = e.groups;
  const double m = e.group_count();
  DoubleVec bmean(static_cast<size_t>(e.blocks * C)), bm2(bmean.size());
  DoubleVec gmean(static_cast<size_t>(G * C)), gm2(gmean.size());  // merged, per virtual batch
  const BlockMerge merge(e);
  ChannelArrays p(G * C);
  const bool stream = e.stream((f.res ? 3 : 2) * static_cast<int64_t>(sizeof(float)) * e.v.outer * C * e.v.inner);

  auto stats = [&](int64_t b, int64_t c0, int64_t c1) {
    e.k.bn_stats(x, e.v, e.block_range(c0, c1, b), &bmean[b * C + c0], &bm2[b * C + c0]);
  };
  auto channel_step = [&](int64_t c) {
    // The batch statistics: under virtual batches, their averages.
    double mean_avg = 0, var_avg = 0;
    for (int64_t g = 0; g < G; ++g) {
      double& mean = gmean[g * C + c];
      double& m2 = gm2[g * C + c];
      merge(bmean.data(), bm2.data(), c, g, mean, m2);
      mean_avg += mean / G;
      var_avg += std::max(m2, 0.0) / m / G;  // NaN stays NaN
    }
    double r = 1, d = 0;
    if (o.renorm) {
      const double sigma = std::sqrt(var_avg + o.epsilon);
      const double s = std::max(static_cast<double>(st.renorm_stddev[c]), std::sqrt(o.epsilon));
      r = std::clamp(sigma / s, o.rmin, o.rmax);
      d = std::clamp((mean_avg - st.renorm_mean[c]) / s, -o.dmax, o.dmax);
      const double keep = o.renorm_momentum;  // TF's argument, so TF's convention always
      st.renorm_mean[c] = static_cast<float>(keep * st.renorm_mean[c] + (1.0 - keep) * mean_avg);
      st.renorm_stddev[c] = static_cast<float>(keep * st.renorm_stddev[c] + (1.0 - keep) * sigma);
      // The float values backward gets (fused_z uses them).
      r = static_cast<float>(r);
      d = static_cast<float>(d);
      if (st.saved_r) st.saved_r[c] = static_cast<float>(r);
      if (st.saved_d) st.saved_d[c] = static_cast<float>(d);
    } else {
      if (st.saved_r) st.saved_r[c] = 1.0f;
      if (st.saved_d) st.saved_d[c] = 0.0f;
    }
    update_moving(o, c, m, mean_avg, var_avg, st);
    // y = gamma * (a * (xhat * r + d) + b) + beta = xhat * scale + shift.
    const double gm = gamma ? gamma[c] : 1.0, bt = beta ? beta[c] : 0.0;
    const double a = st.adjustment_scale ? st.adjustment_scale[c] : 1.0;
    const double b = st.adjustment_bias ? st.adjustment_bias[c] : 0.0;
    for (int64_t g = 0; g < G; ++g) {
      const double mean = gmean[g * C + c], m2 = gm2[g * C + c];
      const double var = std::isnan(m2) ? m2 : std::max(m2, 0.0) / m;
      const double invstd = 1.0 / std::sqrt(var + o.epsilon);
      const int64_t i = g * C + c;
      if (f.fused) {
        const ZCoefficients z = fused_z(gm, bt, a, b, r, d, static_cast<float>(invstd));
        p.a[i] = static_cast<float>(mean);
        p.b[i] = fused_mean_lo(mean, p.a[i], static_cast<float>(invstd));
        p.c[i] = z.scale;
        p.d[i] = z.shift;
      } else {
        set_coefficients(p, i, mean, gm * a * r * invstd, gm * (a * d + b) + bt);
      }
      if (st.saved_mean) st.saved_mean[g * C + c] = p.a[g * C + c];
      if (st.saved_invstd) st.saved_invstd[g * C + c] = static_cast<float>(invstd);
    }
  };
  const int64_t ahead = e.next_unit_offset();
  auto apply = [&](const kernels::Range& r, int64_t g) {
    const int64_t off = g * C;
    e.k.bn_act_apply(x, f.res, y, e.v, r, p.a.data() + off, p.b.data() + off, p.c.data() + off,
                     p.d.data() + off, f.act, stream, ahead);
  };
  e.run_passes(stats, channel_step, apply);
}

// Training backward on the canonical view. With gamma' = gamma * a * r (r,
// d and the adjustment are constants), per virtual batch:
//   dx = gamma' * s * dy - gamma' * s^3 * P / m * (x - mu) - gamma' * s * sum(dy) / m,
// P = sum(dy * (x - mu)). The saved mean is a float; delta = sum(x - mean) / m
// is its offset from the exact mean, which the coefficients absorb.
//
// Fused (f.fused): dy is the gradient at y = act(z), z recomputed from x
// (and the residual) with fused_z's coefficients; the passes work on
// dz = act'(z) * dy. Where dz_buffer says, the sums pass writes dz and the
// apply pass reads it back (one stream fewer than recomputing it with the
// residual; one exp instead of two for ELU and SELU).
void backward(const BnExec& e, const nk_bn_state& st, const float* x, const float* dy, const float* gamma,
              float* dx, float* dgamma, float* dbeta, const Fusion& f, const float* beta, float* dres) {
  const int64_t C = e.v.channels, G = e.groups;
  const double m = e.group_count();
  const size_t nb = static_cast<size_t>(e.blocks * C);
  DoubleVec bsum(3 * nb);
  ChannelArrays p(G * C);
  const FloatVec xk = xc_scales(G * C, [&](int64_t i) { return st.saved_invstd[i]; });
  FloatVec zscale, zshift, zlo;
  if (f.fused) {
    zscale.resize(static_cast<size_t>(G * C));
    zshift.resize(zscale.size());
    // The forward's mean_lo where it used one: the exact mean again (zlo
    // stays empty, and the kernels leave it out, where none did).
    bool any = false;
    for (int64_t i = 0; i < G * C; ++i) any = any || needs_mean_lo(st.saved_mean[i], st.saved_invstd[i]);
    if (any) {
      const DoubleVec mean = batch_means(e, x);
      zlo.resize(zscale.size());
      for (int64_t i = 0; i < G * C; ++i) zlo[i] = fused_mean_lo(mean[i], st.saved_mean[i], st.saved_invstd[i]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const double gm = gamma ? gamma[c] : 1.0, bt = beta ? beta[c] : 0.0;
      const double a = st.adjustment_scale ? st.adjustment_scale[c] : 1.0;
      const double b = st.adjustment_bias ? st.adjustment_bias[c] : 0.0;
      const double r = st.saved_r ? st.saved_r[c] : 1.0, d = st.saved_d ? st.saved_d[c] : 0.0;
      for (int64_t g = 0; g < G; ++g) {
        const ZCoefficients z = fused_z(gm, bt, a, b, r, d, st.saved_invstd[g * C + c]);
        zscale[g * C + c] = z.scale;
        zshift[g * C + c] = z.shift;
      }
    }
  }
  float* const dz = dz_buffer(f, x, dx, dres);
  const BackwardStores out =
      backward_stores(f, dz != nullptr, dz == dx, e.v.outer * C * e.v.inner, e.channel_resident());
  const bool stream = out.dx;
  auto zparams = [&](int64_t goff) {
    return kernels::ZParams{st.saved_mean + goff, zlo.empty() ? nullptr : zlo.data() + goff, zscale.data() + goff,
                            zshift.data() + goff};
  };
  auto sums = [&](int64_t b, int64_t c0, int64_t c1) {
    double* sums3[3] = {&bsum[b * C + c0], &bsum[nb + b * C + c0], &bsum[2 * nb + b * C + c0]};
    const int64_t goff = e.block_group(b) * C;
    const kernels::Range r = e.block_range(c0, c1, b);
    if (f.fused)
      e.k.bn_act_backward_sums(x, f.res, dy, dz, e.v, r, zparams(goff), f.act, sums3);
    else
      e.k.bn_backward_sums(x, dy, e.v, r, st.saved_mean + goff, sums3);
  };
  auto coefficients = [&](int64_t c) {
    const double gm = gamma ? gamma[c] : 1.0;
    const double a = st.adjustment_scale ? st.adjustment_scale[c] : 1.0;
    const double b = st.adjustment_bias ? st.adjustment_bias[c] : 0.0;
    const double r = st.saved_r ? st.saved_r[c] : 1.0, d = st.saved_d ? st.saved_d[c] : 0.0;
    const double ge = gm * a * r;
    double dg = 0, db = 0;
    for (int64_t g = 0; g < G; ++g) {
      double sdy = 0, sdyxc = 0, sxc = 0;
      for (int64_t blk = g * e.per_group; blk < (g + 1) * e.per_group; ++blk) {
        sdy += bsum[blk * C + c];
        sdyxc += bsum[nb + blk * C + c];
        sxc += bsum[2 * nb + blk * C + c];
      }
      const int64_t i = g * C + c;
      const double sd = st.saved_invstd[i];
      const double delta = sxc / m;
      const double P = sdyxc - delta * sdy;
      const double bc = -ge * sd * sd * sd * P / m;
      p.a[i] = st.saved_mean[i];
      p.b[i] = static_cast<float>(ge * sd);
      p.c[i] = xc_coefficient(bc, xk, i);
      // With the rounded dy coefficient, so the mean of dy cancels exactly.
      p.d[i] = static_cast<float>(-static_cast<double>(p.b[i]) * sdy / m - bc * delta);
      dg += a * r * P * sd + (a * d + b) * sdy;
      db += sdy;
    }
    if (dgamma) dgamma[c] = static_cast<float>(dg);
    if (dbeta) dbeta[c] = static_cast<float>(db);
  };
  auto apply = [&](const kernels::Range& r, int64_t g) {
    const int64_t off = g * C;
    if (f.fused && out.recompute)
      e.k.bn_act_backward_apply(x, f.res, dy, dx, e.v, r, p.b.data() + off, p.c.data() + off, p.d.data() + off,
                                xc_ptr(xk, off), zparams(off), f.act, stream);
    else
      e.k.bn_backward_apply(x, dz ? dz : dy, dx, e.v, r, p.a.data() + off, p.b.data() + off,
                            p.c.data() + off, p.d.data() + off, xc_ptr(xk, off), stream);
  };
  e.run_passes(sums, coefficients, apply);
}

// What a fused entry point asks for; plain entry points leave it empty.
struct FuseRequest {
  bool fused = false;
  int32_t act = NK_ACT_NONE;
  float param = 0.0f;
  Fusion read() const {
    Fusion f;
    f.fused = fused;
    if (fused) f.act = read_activation(act, param);
    return f;
  }
};

nk_status train(const char* where, const nk_tensor_desc* desc, const nk_bn_options* opt, const void* x,
                const void* res, void* y, const float* gamma, const float* beta, const nk_bn_state* state,
                const FuseRequest& fr = {}) {
  return guarded(where, [&] {
    const Step s = check_step(desc, opt, read_bn_state(state), false);
    Fusion f = fr.read();
    require(x, "x");
    require(y, "y");
    const BnExec e = make_exec(s);
    const Canonical io(s.shape, {x, res}, y);
    f.res = io.in(1);
    forward_training(e, s.o, s.st, io.in(0), io.out(), gamma, beta, f);
    io.finish();
  });
}

nk_status train_backward(const char* where, const nk_tensor_desc* desc, const nk_bn_options* opt,
                         const void* x, const void* res, const void* dy, const float* gamma, const float* beta,
                         const nk_bn_state* state, void* dx, void* dres, float* dgamma, float* dbeta,
                         const FuseRequest& fr = {}) {
  return guarded(where, [&] {
    const Step s = check_step(desc, opt, read_bn_state(state), true);
    Fusion f = fr.read();
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    check_fused_backward(x, res, dx, dres);
    const BnExec e = make_exec(s);
    const Canonical io(s.shape, {x, dy, res}, dx, dres);
    f.res = io.in(2);
    backward(e, s.st, io.in(0), io.in(1), gamma, io.out(), dgamma, dbeta, f, beta, io.out2());
    io.finish();
  });
}

}  // namespace

extern "C" {

NK_API void nk_bn_options_init(nk_bn_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);  // padding too: callers may compare bytes
  const nk_bn_options defaults = NK_BN_OPTIONS_INIT;
  std::memcpy(opt, &defaults, offsetof(nk_bn_options, dmax) + sizeof defaults.dmax);
}

NK_API void nk_bn_state_init(nk_bn_state* state) {
  if (state == nullptr) return;
  std::memset(state, 0, sizeof *state);
  state->struct_size = sizeof *state;
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
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.saved_mean = saved_mean;
  st.saved_invstd = saved_invstd;
  st.moving_mean = moving_mean;
  st.moving_var = moving_var;
  return train("nk_bn_forward_training", desc, opt, x, nullptr, y, gamma, beta, &st);
}

NK_API nk_status nk_bn_forward_training_ex(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                           const void* x, void* y, const float* gamma,
                                           const float* beta, nk_bn_state* state) {
  return train("nk_bn_forward_training_ex", desc, opt, x, nullptr, y, gamma, beta, state);
}

NK_API nk_status nk_bn_backward(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                const void* x, const void* dy, const float* gamma,
                                const float* saved_mean, const float* saved_invstd, void* dx,
                                float* dgamma, float* dbeta) {
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.saved_mean = const_cast<float*>(saved_mean);
  st.saved_invstd = const_cast<float*>(saved_invstd);
  return train_backward("nk_bn_backward", desc, opt, x, nullptr, dy, gamma, nullptr, &st, dx, nullptr, dgamma,
                        dbeta);
}

NK_API nk_status nk_bn_backward_ex(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                   const void* x, const void* dy, const float* gamma,
                                   const nk_bn_state* state, void* dx, float* dgamma,
                                   float* dbeta) {
  return train_backward("nk_bn_backward_ex", desc, opt, x, nullptr, dy, gamma, nullptr, state, dx, nullptr, dgamma,
                        dbeta);
}

NK_API nk_status nk_bn_act_forward_training(const nk_tensor_desc* desc, const nk_bn_options* opt, int32_t act,
                                            float act_param, const void* x, const void* residual, void* y,
                                            const float* gamma, const float* beta, nk_bn_state* state) {
  return train("nk_bn_act_forward_training", desc, opt, x, residual, y, gamma, beta, state,
               {true, act, act_param});
}

NK_API nk_status nk_bn_act_backward(const nk_tensor_desc* desc, const nk_bn_options* opt, int32_t act,
                                    float act_param, const void* x, const void* residual, const void* dy,
                                    const float* gamma, const float* beta, const nk_bn_state* state, void* dx,
                                    void* dresidual, float* dgamma, float* dbeta) {
  return train_backward("nk_bn_act_backward", desc, opt, x, residual, dy, gamma, beta, state, dx, dresidual,
                        dgamma, dbeta, {true, act, act_param});
}

namespace {
nk_status inference(const char* where, const nk_tensor_desc* desc, const nk_bn_options* opt, const void* x,
                    const void* res, void* y, const float* gamma, const float* beta, const float* moving_mean,
                    const float* moving_var, const FuseRequest& fr = {}) {
  return guarded(where, [&] {
    const Shape s = canonicalize(desc);
    const BnOptions o = read_bn_options(opt);
    const Fusion f = fr.read();
    require(x, "x");
    require(y, "y");
    require(moving_mean, "moving_mean");
    require(moving_var, "moving_var");
    FloatVec invstd(static_cast<size_t>(s.channels));
    for (int64_t c = 0; c < s.channels; ++c)
      invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(moving_var[c]) + o.epsilon));
    apply_given_stats(s, x, y, gamma, beta, moving_mean, invstd.data(), res, f.act);
  });
}
}  // namespace

NK_API nk_status nk_bn_forward_inference(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                         const void* x, void* y, const float* gamma,
                                         const float* beta, const float* moving_mean,
                                         const float* moving_var) {
  return inference("nk_bn_forward_inference", desc, opt, x, nullptr, y, gamma, beta, moving_mean, moving_var);
}

NK_API nk_status nk_bn_act_forward_inference(const nk_tensor_desc* desc, const nk_bn_options* opt, int32_t act,
                                             float act_param, const void* x, const void* residual, void* y,
                                             const float* gamma, const float* beta, const float* moving_mean,
                                             const float* moving_var) {
  return inference("nk_bn_act_forward_inference", desc, opt, x, residual, y, gamma, beta, moving_mean,
                   moving_var, {true, act, act_param});
}

}  // extern "C"
