// Switchable Normalization (arXiv 1806.10779) with the authors' reference
// conventions. One pass over x gives the instance statistics (exact, per
// (sample, channel), from the Batch Norm reduction kernel); the LN and BN
// statistics, the softmax mixing and every gradient term are computed from
// them in double, in fixed order; the normalize pass and dx are Batch Norm's
// element-wise kernels with per-(sample, channel) coefficients.
#include <cstddef>

#include "norm_common.hpp"
#include "xc_scale.hpp"

using namespace nk;
using namespace nk::norms;

namespace {

constexpr int64_t kChannelUnit = 256;

// f(n, c0, c1) over a partition of (sample, channel) pairs: channels one by
// one where they hold runs, blocks of channels where they interleave.
template <class F>
void channel_units(const SampleShape& sh, const F& f) {
  const int64_t C = sh.C;
  if (sh.inner > 1) {
    parallel_units(sh.N * C, [&](int64_t u) { f(u / C, u % C, u % C + 1); });
    return;
  }
  const int64_t cb = (C + kChannelUnit - 1) / kChannelUnit;
  parallel_units(sh.N * cb, [&](int64_t u) {
    const int64_t b = u % cb;
    f(u / cb, b * kChannelUnit, std::min(C, (b + 1) * kChannelUnit));
  });
}

// f(n, range) over a partition of the tensor for element-wise passes.
template <class F>
void element_units(const SampleShape& sh, const F& f) {
  const int64_t C = sh.C, P = sh.P;
  if (sh.inner > 1) {
    channel_units(sh, [&](int64_t n, int64_t c0, int64_t c1) { f(n, kernels::Range{c0, c1, 0, P}); });
    return;
  }
  const int64_t rb = std::clamp<int64_t>(P * C / 65536, 1, P);
  parallel_units(sh.N * rb, [&](int64_t u) {
    const int64_t b = u % rb;
    f(u / rb, kernels::Range{0, C, P * b / rb, P * (b + 1) / rb});
  });
}

void softmax(const float* raw, int K, double* w) {
  double mx = raw[0];
  for (int k = 1; k < K; ++k) mx = std::max(mx, static_cast<double>(raw[k]));
  double s = 0;
  for (int k = 0; k < K; ++k) s += (w[k] = std::exp(static_cast<double>(raw[k]) - mx));
  for (int k = 0; k < K; ++k) w[k] /= s;
}

// Instance, LN and BN statistics and their mixture, all [N*C] or [N] or [C].
struct Stats {
  int64_t N, C;
  double L;
  int K;
  double w[3] = {0, 0, 0}, v[3] = {0, 0, 0};
  DoubleVec mu, var;        // instance: mean, unbiased variance [N*C]
  DoubleVec mu_ln, var_ln;  // [N]
  DoubleVec mu_bn, var_bn;  // [C]
  DoubleVec M, V;           // mixed [N*C]

  // then(n, c0, c1, mu) runs in the same unit right after the unit's
  // statistics, while its slice of x is still in cache (mu[n*C + c] is
  // final there; var is not yet).
  template <class Then>
  Stats(const kernels::KernelTable& k, const SampleShape& sh, int K_, const float* x, const Then& then)
      : N(sh.N), C(sh.C), L(static_cast<double>(sh.P * sh.inner)), K(K_),
        mu(static_cast<size_t>(N * C)), var(mu.size()), mu_ln(static_cast<size_t>(N), 0.0), var_ln(mu_ln.size(), 0.0),
        mu_bn(static_cast<size_t>(C), 0.0), var_bn(mu_bn.size(), 0.0), M(mu.size()), V(mu.size()) {
    DoubleVec& m2 = var;
    channel_units(sh, [&](int64_t n, int64_t c0, int64_t c1) {
      k.bn_stats(x + n * sh.sample_elems(), sh.sample_view(), {c0, c1, 0, sh.P}, &mu[n * C + c0], &m2[n * C + c0]);
      then(n, c0, c1, mu);
    });
    for (auto& q : var) q = std::isnan(q) ? q : std::max(q, 0.0) / (L - 1);
  }
  Stats(const kernels::KernelTable& k, const SampleShape& sh, int K_, const float* x)
      : Stats(k, sh, K_, x, [](int64_t, int64_t, int64_t, const DoubleVec&) {}) {}
  // LN statistics, and BN statistics from the batch (or given).
  void derive(const float* bn_mean, const float* bn_var) {
    const double dN = static_cast<double>(N), dC = static_cast<double>(C);
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += mu[n * C + c];
      mu_ln[n] = s / dC;
      double q = 0;
      for (int64_t c = 0; c < C; ++c) {
        const double d = mu[n * C + c] - mu_ln[n];
        q += var[n * C + c] + d * d;  // = mean(var + mu^2) - mu_ln^2, without cancellation
      }
      var_ln[n] = q / dC;
    }
    if (K < 3) return;
    for (int64_t c = 0; c < C; ++c) {
      if (bn_mean) {
        mu_bn[c] = bn_mean[c];
        var_bn[c] = bn_var[c];
        continue;
      }
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += mu[n * C + c];
      mu_bn[c] = s / dN;
      double q = 0;
      for (int64_t n = 0; n < N; ++n) {
        const double d = mu[n * C + c] - mu_bn[c];
        q += var[n * C + c] + d * d;
      }
      var_bn[c] = q / dN;
    }
  }
  void mix(const float* mean_weight, const float* var_weight) {
    softmax(mean_weight, K, w);
    softmax(var_weight, K, v);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = n * C + c;
        M[i] = w[0] * mu[i] + w[1] * mu_ln[n] + (K == 3 ? w[2] * mu_bn[c] : 0.0);
        V[i] = v[0] * var[i] + v[1] * var_ln[n] + (K == 3 ? v[2] * var_bn[c] : 0.0);
      }
  }
};

void apply_forward(const kernels::KernelTable& k, const SampleShape& sh, const Stats& st, double eps, const float* x,
                   float* y, const float* gamma, const float* beta) {
  const size_t NC = static_cast<size_t>(sh.N * sh.C);
  FloatVec hi(NC), lo(NC), scale(NC), shift(NC);
  for (int64_t n = 0; n < sh.N; ++n)
    for (int64_t c = 0; c < sh.C; ++c) {
      const int64_t i = n * sh.C + c;
      hi[i] = static_cast<float>(st.M[i]);
      lo[i] = static_cast<float>(st.M[i] - static_cast<double>(hi[i]));
      scale[i] = static_cast<float>((gamma ? gamma[c] : 1.0) / std::sqrt(st.V[i] + eps));
      shift[i] = beta ? beta[c] : 0.0f;
    }
  const bool stream = stream_for(2 * static_cast<int64_t>(sizeof(float)) * sh.s.total);
  element_units(sh, [&](int64_t n, kernels::Range r) {
    const int64_t off = n * sh.sample_elems(), pc = n * sh.C;
    k.bn_apply(x + off, y + off, sh.sample_view(), r, &hi[pc], &lo[pc], &scale[pc], &shift[pc], stream);
  });
}

struct SnArgs {
  SampleShape sh;
  nk_sn_options o;
  int K;
};

SnArgs sn_args(const nk_tensor_desc* desc, const nk_sn_options* opt) {
  const SampleShape sh = sample_shape(desc);
  const nk_sn_options o =
      read_options<nk_sn_options>(opt, &nk_sn_options_init, offsetof(nk_sn_options, use_bn) + sizeof(int32_t));
  check_epsilon(o.epsilon);
  if (!(o.momentum >= 0.0f && o.momentum <= 1.0f))
    fail(NK_ERR_BAD_ARGUMENT, "momentum = %g: must be in [0, 1]", static_cast<double>(o.momentum));
  if (o.use_bn != 0 && o.use_bn != 1) fail(NK_ERR_BAD_ARGUMENT, "use_bn = %d: must be 0 or 1", o.use_bn);
  const int64_t L = sh.P * sh.inner;
  if (L < 2)
    fail(NK_ERR_BAD_SHAPE, "%lld spatial position(s): the unbiased instance variance needs at least 2",
         static_cast<long long>(L));
  return {sh, o, o.use_bn ? 3 : 2};
}

}  // namespace

extern "C" {

NK_API void nk_sn_options_init(nk_sn_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);
  const nk_sn_options d = NK_SN_OPTIONS_INIT;
  opt->struct_size = d.struct_size;
  opt->epsilon = d.epsilon;
  opt->momentum = d.momentum;
  opt->use_bn = d.use_bn;
}

NK_API nk_status nk_switchnorm_forward_training(const nk_tensor_desc* desc, const nk_sn_options* opt,
                                                const void* x, void* y, const float* gamma, const float* beta,
                                                const float* mean_weight, const float* var_weight,
                                                float* moving_mean, float* moving_var) {
  return guarded("nk_switchnorm_forward_training", [&] {
    const SnArgs a = sn_args(desc, opt);
    require(x, "x");
    require(y, "y");
    require(mean_weight, "mean_weight");
    require(var_weight, "var_weight");
    require_pair(moving_mean, moving_var, "moving_mean", "moving_var");
    const auto& k = kernels_for_call();
    Stats st(k, a.sh, a.K, static_cast<const float*>(x));
    st.derive(nullptr, nullptr);
    st.mix(mean_weight, var_weight);
    apply_forward(k, a.sh, st, a.o.epsilon, static_cast<const float*>(x), static_cast<float*>(y), gamma, beta);
    if (moving_mean && a.K == 3) {
      const double m = a.o.momentum;
      for (int64_t c = 0; c < a.sh.C; ++c) {
        moving_mean[c] = static_cast<float>(m * moving_mean[c] + (1.0 - m) * st.mu_bn[c]);
        moving_var[c] = static_cast<float>(m * moving_var[c] + (1.0 - m) * st.var_bn[c]);
      }
    }
  });
}

NK_API nk_status nk_switchnorm_forward_inference(const nk_tensor_desc* desc, const nk_sn_options* opt,
                                                 const void* x, void* y, const float* gamma, const float* beta,
                                                 const float* mean_weight, const float* var_weight,
                                                 const float* moving_mean, const float* moving_var) {
  return guarded("nk_switchnorm_forward_inference", [&] {
    const SnArgs a = sn_args(desc, opt);
    require(x, "x");
    require(y, "y");
    require(mean_weight, "mean_weight");
    require(var_weight, "var_weight");
    if (a.K == 3) {
      require(moving_mean, "moving_mean");
      require(moving_var, "moving_var");
    }
    const auto& k = kernels_for_call();
    Stats st(k, a.sh, a.K, static_cast<const float*>(x));
    st.derive(moving_mean, moving_var);
    st.mix(mean_weight, var_weight);
    apply_forward(k, a.sh, st, a.o.epsilon, static_cast<const float*>(x), static_cast<float*>(y), gamma, beta);
  });
}

NK_API nk_status nk_switchnorm_backward(const nk_tensor_desc* desc, const nk_sn_options* opt, const void* xv,
                                        const void* dyv, const float* gamma, const float* mean_weight,
                                        const float* var_weight, void* dxv, float* dgamma, float* dbeta,
                                        float* dmean_weight, float* dvar_weight) {
  return guarded("nk_switchnorm_backward", [&] {
    const SnArgs a = sn_args(desc, opt);
    require(xv, "x");
    require(dyv, "dy");
    require(dxv, "dx");
    require(mean_weight, "mean_weight");
    require(var_weight, "var_weight");
    const auto* x = static_cast<const float*>(xv);
    const auto* dy = static_cast<const float*>(dyv);
    auto* dx = static_cast<float*>(dxv);
    const auto& k = kernels_for_call();
    const SampleShape& sh = a.sh;
    const int64_t N = sh.N, C = sh.C;
    const size_t NC = static_cast<size_t>(N * C);
    // Per (n, c): S0 = sum(dy), S1 = sum(dy * (x - m)), m the instance mean
    // as a float; in the statistics' units, so x is read from memory once
    // for both.
    FloatVec mexp(NC), pa(NC), pb(NC), pd(NC);
    DoubleVec S0(NC), S1(NC), S2(NC);
    Stats st(k, sh, a.K, x, [&](int64_t n, int64_t c0, int64_t c1, const DoubleVec& mu) {
      const int64_t off = n * sh.sample_elems(), pc = n * C;
      for (int64_t c = c0; c < c1; ++c) mexp[pc + c] = static_cast<float>(mu[pc + c]);
      double* out[3] = {&S0[pc + c0], &S1[pc + c0], &S2[pc + c0]};
      k.bn_backward_sums(x + off, dy + off, sh.sample_view(), {c0, c1, 0, sh.P}, &mexp[pc], out);
    });
    st.derive(nullptr, nullptr);
    st.mix(mean_weight, var_weight);
    // Gradients of the mixed mean M and variance V of each (n, c).
    const double eps = a.o.epsilon, L = st.L, dN = static_cast<double>(N), dC = static_cast<double>(C);
    DoubleVec gM(NC), gV(NC), s(NC), P(NC);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = n * C + c;
        const double g = gamma ? gamma[c] : 1.0;
        s[i] = 1.0 / std::sqrt(st.V[i] + eps);
        P[i] = S1[i] - (st.M[i] - static_cast<double>(mexp[i])) * S0[i];  // sum(dy * (x - M))
        gM[i] = -g * s[i] * S0[i];
        gV[i] = -0.5 * g * s[i] * s[i] * s[i] * P[i];
      }
    // Through the LN and BN statistics to the instance statistics.
    DoubleVec gmu_ln(static_cast<size_t>(N), 0.0), gvar_ln(gmu_ln.size(), 0.0);
    DoubleVec gmu_bn(static_cast<size_t>(C), 0.0), gvar_bn(gmu_bn.size(), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        gmu_ln[n] += st.w[1] * gM[n * C + c];
        gvar_ln[n] += st.v[1] * gV[n * C + c];
      }
    if (a.K == 3)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t n = 0; n < N; ++n) {
          gmu_bn[c] += st.w[2] * gM[n * C + c];
          gvar_bn[c] += st.v[2] * gV[n * C + c];
        }
    const FloatVec xk = xc_scales(N * C, [&](int64_t i) { return s[i]; });
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = n * C + c;
        double Gmu = st.w[0] * gM[i] + gmu_ln[n] / dC + gvar_ln[n] * 2.0 * (st.mu[i] - st.mu_ln[n]) / dC;
        double Gvar = st.v[0] * gV[i] + gvar_ln[n] / dC;
        if (a.K == 3) {
          Gmu += gmu_bn[c] / dN + gvar_bn[c] * 2.0 * (st.mu[i] - st.mu_bn[c]) / dN;
          Gvar += gvar_bn[c] / dN;
        }
        // dx = g*s*dy + Gmu/L + Gvar * 2 (x - mu) / (L - 1)
        const double b = 2.0 * Gvar / (L - 1);
        pa[i] = static_cast<float>((gamma ? gamma[c] : 1.0) * s[i]);
        pb[i] = xc_coefficient(b, xk, i);
        pd[i] = static_cast<float>(Gmu / L - b * (st.mu[i] - static_cast<double>(mexp[i])));
      }
    const bool stream = stream_for(3 * static_cast<int64_t>(sizeof(float)) * sh.s.total);
    element_units(sh, [&](int64_t n, kernels::Range r) {
      const int64_t off = n * sh.sample_elems(), pc = n * C;
      k.bn_backward_apply(x + off, dy + off, dx + off, sh.sample_view(), r, &mexp[pc], &pa[pc], &pb[pc], &pd[pc],
                          xc_ptr(xk, pc), stream);
    });
    for (int64_t c = 0; c < C; ++c) {
      double dg = 0, db = 0;
      for (int64_t n = 0; n < N; ++n) {
        dg += s[n * C + c] * P[n * C + c];
        db += S0[n * C + c];
      }
      if (dgamma) dgamma[c] = static_cast<float>(dg);
      if (dbeta) dbeta[c] = static_cast<float>(db);
    }
    // Softmax: d raw_j = w_j * sum(gM * (mu_j - M)), likewise for the variance.
    double gw[3] = {0, 0, 0}, gv[3] = {0, 0, 0};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = n * C + c;
        const double mus[3] = {st.mu[i], st.mu_ln[n], st.mu_bn[c]};
        const double vars[3] = {st.var[i], st.var_ln[n], st.var_bn[c]};
        for (int j = 0; j < a.K; ++j) {
          gw[j] += gM[i] * (mus[j] - st.M[i]);
          gv[j] += gV[i] * (vars[j] - st.V[i]);
        }
      }
    for (int j = 0; j < a.K; ++j) {
      if (dmean_weight) dmean_weight[j] = static_cast<float>(st.w[j] * gw[j]);
      if (dvar_weight) dvar_weight[j] = static_cast<float>(st.v[j] * gv[j]);
    }
  });
}

}  // extern "C"
