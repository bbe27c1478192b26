// Group Norm and Instance Norm (Group Norm with one channel per group).
// Statistics of each (sample, channel) come from the Batch Norm reduction
// kernels on the sample's slab of the canonical view, and are merged over a
// group's channels in fixed order (equal counts, Chan et al.). The normalize
// pass is Batch Norm's apply with per-(sample, channel) parameter arrays.
#include <cstddef>

#include "fusion.hpp"
#include "norm_common.hpp"
#include "xc_scale.hpp"

using namespace nk;
using namespace nk::norms;

namespace {

struct GnArgs {
  const kernels::KernelTable& k;
  SampleShape sh;
  int64_t G;
  double eps;
};

// Channels of a group processed as one unit when they hold contiguous runs.
bool group_resident(const SampleShape& sh) { return sh.inner > 1; }

// Channel blocks for channels-last units.
constexpr int64_t kChannelUnit = 256;

// Channels interleave, but every thread can take whole samples whose slabs
// (`streams` tensors of the passes' reads) fit the last-level cache together:
// a thread then takes a sample through all its passes, and the second read
// of the slab comes from the cache instead of memory.
bool samples_resident(const SampleShape& sh, int64_t streams) {
  const int64_t T = num_threads();
  const int64_t bytes = sh.sample_elems() * streams * static_cast<int64_t>(sizeof(float)) * T;
  return !group_resident(sh) && (sh.N % T == 0 || sh.N >= 4 * T) && bytes <= stream_threshold();
}

// Where a forward takes units from memory: the offset from a unit's x to
// the next unit's on its thread (parallel_units is static), which the unit's
// apply asks into L2 (kernels::map_view's ahead); else 0. A unit (sample,
// group) of channel runs is followed by the next group's channels; a
// resident sample by the next sample.
int64_t next_unit_offset(const SampleShape& sh, int64_t G, int64_t streams) {
  if (!kernels::from_memory(sh.s.view)) return 0;
  if (group_resident(sh)) return sh.C / G * sh.inner;
  return samples_resident(sh, streams) ? sh.sample_elems() : 0;
}

// The passes of Group/Instance Norm: reduce(n, c0, c1) per sample and channel
// range, step(n, g) per sample and group, apply(n, range). Where channels are
// runs, one unit per (sample, group) takes it through all three while it is in
// cache; where channels interleave, statistics go per (sample, channel block)
// and apply per (sample, row block), one sample per unit where
// samples_resident. The units never change the bits.
template <class Reduce, class Step, class Apply>
void run_group_passes(const SampleShape& sh, int64_t G, bool by_sample, const Reduce& reduce,
                      const Step& step, const Apply& apply) {
  const int64_t N = sh.N, C = sh.C, Cg = C / G, P = sh.P;
  if (group_resident(sh)) {
    parallel_units(N * G, [&](int64_t u) {
      const int64_t n = u / G, g = u % G;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) reduce(n, c, c + 1);
      step(n, g);
      apply(n, kernels::Range{g * Cg, (g + 1) * Cg, 0, P});
    });
    return;
  }
  const int64_t cb = (C + kChannelUnit - 1) / kChannelUnit;
  const int64_t rb = std::clamp<int64_t>(P * C / 65536, 1, P);
  auto reduce_block = [&](int64_t n, int64_t b) {
    reduce(n, b * kChannelUnit, std::min(C, (b + 1) * kChannelUnit));
  };
  auto apply_block = [&](int64_t n, int64_t b) {
    apply(n, kernels::Range{0, C, P * b / rb, P * (b + 1) / rb});
  };
  if (by_sample) {
    parallel_units(N, [&](int64_t n) {
      for (int64_t b = 0; b < cb; ++b) reduce_block(n, b);
      for (int64_t g = 0; g < G; ++g) step(n, g);
      for (int64_t b = rb - 1; b >= 0; --b) apply_block(n, b);  // the end is what the cache holds
    });
    return;
  }
  parallel_units(N * cb, [&](int64_t u) { reduce_block(u / cb, u % cb); });
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) step(n, g);
  parallel_units(N * rb, [&](int64_t u) { apply_block(u / rb, u % rb); });
}


// Per-(sample, channel) partials, merged per group into the apply
// parameters (N*C arrays) and the group's mean/invstd.
struct GnForward {
  const GnArgs& a;
  const float* x;
  float* y;
  const float* gamma;
  const float* beta;
  DoubleVec cmean, cm2;             // [N*C]
  FloatVec hi, lo, scale, shift;    // [N*C]
  DoubleVec gmean, gvar;            // [N*G], for moving statistics
  float* saved_mean;
  float* saved_invstd;
  Fusion f;
  bool stream;
  int64_t ahead;  // the next unit's x, asked into L2 by this one's apply (map_view)

  GnForward(const GnArgs& args, const float* x_, float* y_, const float* g, const float* b, float* sm, float* si,
            const Fusion& fusion = {})
      : a(args), x(x_), y(y_), gamma(g), beta(b),
        cmean(static_cast<size_t>(args.sh.N * args.sh.C)), cm2(cmean.size()), hi(cmean.size()),
        lo(cmean.size()), scale(cmean.size()), shift(cmean.size()),
        gmean(static_cast<size_t>(args.sh.N * args.G)), gvar(gmean.size()), saved_mean(sm),
        saved_invstd(si), f(fusion),
        stream(stream_for((f.res ? 3 : 2) * static_cast<int64_t>(sizeof(float)) * args.sh.s.total)),
        ahead(next_unit_offset(args.sh, args.G, f.res ? 2 : 1)) {}

  void stats(int64_t n, int64_t c0, int64_t c1) {
    const int64_t off = n * a.sh.sample_elems();
    a.k.bn_stats(x + off, a.sh.sample_view(), {c0, c1, 0, a.sh.P}, &cmean[n * a.sh.C + c0], &cm2[n * a.sh.C + c0]);
  }
  void finalize(int64_t n, int64_t g) {
    const int64_t C = a.sh.C, Cg = C / a.G;
    const double cnt = static_cast<double>(a.sh.P * a.sh.inner);
    double mu, q;
    const int64_t c0 = n * C + g * Cg;
    merge_equal(&cmean[c0], &cm2[c0], Cg, cnt, mu, q);
    const double var = std::isnan(q) ? q : std::max(q, 0.0) / (cnt * static_cast<double>(Cg));
    const double invstd = 1.0 / std::sqrt(var + a.eps);
    const float h = static_cast<float>(mu);
    const float l = static_cast<float>(mu - static_cast<double>(h));
    for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
      hi[n * C + c] = h;
      if (f.fused) {
        const ZCoefficients z = fused_z(gamma ? gamma[c] : 1.0, beta ? beta[c] : 0.0, 1.0, 0.0, 1.0, 0.0,
                                        static_cast<float>(invstd));
        lo[n * C + c] = fused_mean_lo(mu, h, static_cast<float>(invstd));
        scale[n * C + c] = z.scale;
        shift[n * C + c] = z.shift;
        continue;
      }
      lo[n * C + c] = l;
      scale[n * C + c] = static_cast<float>((gamma ? gamma[c] : 1.0) * invstd);
      shift[n * C + c] = beta ? beta[c] : 0.0f;
    }
    gmean[n * a.G + g] = mu;
    gvar[n * a.G + g] = var;
    if (saved_mean) saved_mean[n * a.G + g] = h;
    if (saved_invstd) saved_invstd[n * a.G + g] = static_cast<float>(invstd);
  }
  void apply(int64_t n, kernels::Range r) {
    const int64_t off = n * a.sh.sample_elems(), pc = n * a.sh.C;
    a.k.bn_act_apply(x + off, f.res ? f.res + off : nullptr, y + off, a.sh.sample_view(), r, &hi[pc], &lo[pc],
                     &scale[pc], &shift[pc], f.act, stream, ahead);
  }

  void run() {
    run_group_passes(a.sh, a.G, samples_resident(a.sh, f.res ? 2 : 1),
                     [&](int64_t n, int64_t c0, int64_t c1) { stats(n, c0, c1); },
                     [&](int64_t n, int64_t g) { finalize(n, g); },
                     [&](int64_t n, const kernels::Range& r) { apply(n, r); });
  }
};

// The mean of each (sample, group) (n * G + g), from the same per-channel
// statistics and merge as the forward's: the same bits.
DoubleVec group_means(const GnArgs& a, const float* x) {
  const int64_t N = a.sh.N, C = a.sh.C, G = a.G, Cg = C / G;
  DoubleVec cmean(static_cast<size_t>(N * C)), cm2(cmean.size()), mean(static_cast<size_t>(N * G));
  parallel_units(N, [&](int64_t n) {
    a.k.bn_stats(x + n * a.sh.sample_elems(), a.sh.sample_view(), {0, C, 0, a.sh.P}, &cmean[n * C], &cm2[n * C]);
    for (int64_t g = 0; g < G; ++g) {
      double q;
      merge_equal(&cmean[n * C + g * Cg], &cm2[n * C + g * Cg], Cg, static_cast<double>(a.sh.P * a.sh.inner),
                  mean[n * G + g], q);
    }
  });
  return mean;
}

// Fused (f.fused): as Batch Norm's fused backward, on dz = act'(z) * dy with
// z recomputed from x (and the residual); where dz_buffer says (or own_dz
// below), dz goes there in the sums pass and the apply pass reads it back.
void gn_backward(const GnArgs& a, const float* x, const float* dy, const float* gamma, const float* smean,
                 const float* sinvstd, float* dx, float* dgamma, float* dbeta, const Fusion& f = {},
                 const float* beta = nullptr, float* dres = nullptr) {
  const int64_t N = a.sh.N, C = a.sh.C, G = a.G, Cg = C / G, P = a.sh.P;
  const size_t NC = static_cast<size_t>(N * C);
  const double m = static_cast<double>(P * a.sh.inner * Cg);
  FloatVec mexp(NC), pa(NC), pb(NC), pd(NC), zscale, zshift, zlo;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) mexp[n * C + c] = smean[n * G + c / Cg];
  const FloatVec xk = xc_scales(N * C, [&](int64_t i) { return sinvstd[i / C * G + i % C / Cg]; });
  if (f.fused) {
    zscale.resize(NC);
    zshift.resize(NC);
    // The forward's mean_lo where it used one: the exact group means again
    // (zlo stays empty, and the kernels leave it out, where none did).
    bool any = false;
    for (int64_t i = 0; i < N * G; ++i) any = any || needs_mean_lo(smean[i], sinvstd[i]);
    if (any) {
      const DoubleVec mean = group_means(a, x);
      zlo.resize(NC);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = n * G + c / Cg;
          zlo[n * C + c] = fused_mean_lo(mean[i], smean[i], sinvstd[i]);
        }
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const ZCoefficients z = fused_z(gamma ? gamma[c] : 1.0, beta ? beta[c] : 0.0, 1.0, 0.0, 1.0, 0.0,
                                        sinvstd[n * G + c / Cg]);
        zscale[n * C + c] = z.scale;
        zshift[n * C + c] = z.shift;
      }
  }
  DoubleVec s0(NC), s1(NC), s2(NC), delta(static_cast<size_t>(N * G));
  const bool by_sample = samples_resident(a.sh, f.res ? 3 : 2);
  // A resident sample's dz waits in a buffer of the thread's own, which the
  // cache holds from the sums pass to the apply pass, rather than in dx's
  // lines, which the sums pass would first read from memory (Zen 4, GN+SELU
  // NHWC 32x256x56x56 backward 1.05-1.45x faster, by how much of the shared
  // cache is left to it). It also serves dx over x. Only for samples the
  // block cache keeps (a raised streaming threshold makes any sample
  // "resident"; dx's buffer then costs no memory).
  const bool own_dz = by_sample && dz_costly(f) && !dres &&
                      a.sh.sample_elems() * static_cast<int64_t>(sizeof(float)) <=
                          static_cast<int64_t>(BlockCache::kMaxCached);
  float* const dz = own_dz ? nullptr : dz_buffer(f, x, dx, dres);
  const ThreadScratch scratch(own_dz ? static_cast<size_t>(a.sh.sample_elems()) : 0, num_threads());
  const BackwardStores out = backward_stores(f, own_dz || dz, dz == dx, a.sh.s.total, group_resident(a.sh));
  const bool stream = out.dx;
  const kernels::View sv = a.sh.sample_view();
  auto at = [](auto* p, int64_t off) { return p ? p + off : nullptr; };
  // dz of sample n's slab (off its offset), where it is kept.
  auto dz_at = [&](int64_t off) { return own_dz ? scratch.get() : at(dz, off); };
  auto zparams = [&](int64_t pc) {
    return kernels::ZParams{&mexp[pc], zlo.empty() ? nullptr : &zlo[pc], &zscale[pc], &zshift[pc]};
  };
  auto sums = [&](int64_t n, int64_t c0, int64_t c1) {
    const int64_t off = n * a.sh.sample_elems(), pc = n * C;
    double* sums3[3] = {&s0[pc + c0], &s1[pc + c0], &s2[pc + c0]};
    if (f.fused)
      a.k.bn_act_backward_sums(x + off, at(f.res, off), dy + off, dz_at(off), sv, {c0, c1, 0, P}, zparams(pc),
                               f.act, sums3);
    else
      a.k.bn_backward_sums(x + off, dy + off, sv, {c0, c1, 0, P}, &mexp[pc], sums3);
  };
  // dx = g*s*dy + b*(x - mu_s) + d per channel, with the group's A = sum(g*dy),
  // Pb = sum(g*dy*(x - mean)), delta = mean - mu_s.
  auto coefficients = [&](int64_t n, int64_t g) {
    double A = 0, B = 0, S = 0;
    for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
      const double gm = gamma ? gamma[c] : 1.0;
      A += gm * s0[n * C + c];
      B += gm * s1[n * C + c];
      S += s2[n * C + c];
    }
    const double sd = sinvstd[n * G + g];
    const double dl = S / m;
    const double Pb = B - dl * A;
    const double b = -sd * sd * sd * Pb / m;
    const double d = -sd * A / m - b * dl;
    delta[n * G + g] = dl;
    for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
      pa[n * C + c] = static_cast<float>((gamma ? gamma[c] : 1.0) * sd);
      pb[n * C + c] = xc_coefficient(b, xk, n * C + c);
      pd[n * C + c] = static_cast<float>(d);
    }
  };
  auto apply = [&](int64_t n, kernels::Range r) {
    const int64_t off = n * a.sh.sample_elems(), pc = n * C;
    if (f.fused && out.recompute)
      a.k.bn_act_backward_apply(x + off, at(f.res, off), dy + off, dx + off, sv, r, &pa[pc], &pb[pc], &pd[pc],
                                xc_ptr(xk, pc), zparams(pc), f.act, stream);
    else
      a.k.bn_backward_apply(x + off, f.fused ? dz_at(off) : dy + off, dx + off, sv, r, &mexp[pc], &pa[pc],
                            &pb[pc], &pd[pc], xc_ptr(xk, pc), stream);
  };
  run_group_passes(a.sh, G, by_sample, sums, coefficients, apply);
  for (int64_t c = 0; c < C; ++c) {
    double dg = 0, db = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t g = c / Cg;
      dg += static_cast<double>(sinvstd[n * G + g]) * (s1[n * C + c] - delta[n * G + g] * s0[n * C + c]);
      db += s0[n * C + c];
    }
    if (dgamma) dgamma[c] = static_cast<float>(dg);
    if (dbeta) dbeta[c] = static_cast<float>(db);
  }
}

void check_groups(int64_t groups, int64_t channels) {
  if (groups < 1) fail(NK_ERR_BAD_ARGUMENT, "groups = %lld: must be >= 1", static_cast<long long>(groups));
  if (channels % groups != 0)
    fail(NK_ERR_BAD_ARGUMENT, "groups %lld do not divide channels %lld", static_cast<long long>(groups),
         static_cast<long long>(channels));
}

nk_gn_options read_gn(const nk_gn_options* opt) {
  const nk_gn_options o = read_options<nk_gn_options>(opt, &nk_gn_options_init, offsetof(nk_gn_options, groups) + sizeof(int32_t));
  check_epsilon(o.epsilon);
  return o;
}

nk_in_options read_in(const nk_in_options* opt) {
  const nk_in_options o =
      read_options<nk_in_options>(opt, &nk_in_options_init, offsetof(nk_in_options, moving_variance) + sizeof(int32_t));
  check_epsilon(o.epsilon);
  check_moving_options(o.momentum, o.momentum_convention, o.moving_variance);
  return o;
}

}  // namespace

extern "C" {

NK_API void nk_gn_options_init(nk_gn_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);
  const nk_gn_options d = NK_GN_OPTIONS_INIT;
  opt->struct_size = d.struct_size;
  opt->epsilon = d.epsilon;
  opt->groups = d.groups;
}

NK_API void nk_in_options_init(nk_in_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);
  const nk_in_options d = NK_IN_OPTIONS_INIT;
  opt->struct_size = d.struct_size;
  opt->epsilon = d.epsilon;
  opt->momentum = d.momentum;
  opt->momentum_convention = d.momentum_convention;
  opt->moving_variance = d.moving_variance;
}

NK_API nk_status nk_groupnorm_forward(const nk_tensor_desc* desc, const nk_gn_options* opt, const void* x,
                                      void* y, const float* gamma, const float* beta, float* saved_mean,
                                      float* saved_invstd) {
  return guarded("nk_groupnorm_forward", [&] {
    const SampleShape sh = sample_shape(desc);
    const nk_gn_options o = read_gn(opt);
    check_groups(o.groups, sh.C);
    require(x, "x");
    require(y, "y");
    const GnArgs a{kernels_for_call(), sh, o.groups, o.epsilon};
    GnForward f(a, static_cast<const float*>(x), static_cast<float*>(y), gamma, beta, saved_mean, saved_invstd);
    f.run();
  });
}

NK_API nk_status nk_groupnorm_backward(const nk_tensor_desc* desc, const nk_gn_options* opt, const void* x,
                                       const void* dy, const float* gamma, const float* saved_mean,
                                       const float* saved_invstd, void* dx, float* dgamma, float* dbeta) {
  return guarded("nk_groupnorm_backward", [&] {
    const SampleShape sh = sample_shape(desc);
    const nk_gn_options o = read_gn(opt);
    check_groups(o.groups, sh.C);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    require(saved_mean, "saved_mean");
    require(saved_invstd, "saved_invstd");
    const GnArgs a{kernels_for_call(), sh, o.groups, o.epsilon};
    gn_backward(a, static_cast<const float*>(x), static_cast<const float*>(dy), gamma, saved_mean, saved_invstd,
                static_cast<float*>(dx), dgamma, dbeta);
  });
}

NK_API nk_status nk_groupnorm_act_forward(const nk_tensor_desc* desc, const nk_gn_options* opt, int32_t act,
                                          float act_param, const void* x, const void* residual, void* y,
                                          const float* gamma, const float* beta, float* saved_mean,
                                          float* saved_invstd) {
  return guarded("nk_groupnorm_act_forward", [&] {
    const SampleShape sh = sample_shape(desc);
    const nk_gn_options o = read_gn(opt);
    check_groups(o.groups, sh.C);
    const Fusion f = read_fusion(act, act_param, residual);
    require(x, "x");
    require(y, "y");
    const GnArgs a{kernels_for_call(), sh, o.groups, o.epsilon};
    GnForward fw(a, static_cast<const float*>(x), static_cast<float*>(y), gamma, beta, saved_mean, saved_invstd, f);
    fw.run();
  });
}

NK_API nk_status nk_groupnorm_act_backward(const nk_tensor_desc* desc, const nk_gn_options* opt, int32_t act,
                                           float act_param, const void* x, const void* residual, const void* dy,
                                           const float* gamma, const float* beta, const float* saved_mean,
                                           const float* saved_invstd, void* dx, void* dresidual, float* dgamma,
                                           float* dbeta) {
  return guarded("nk_groupnorm_act_backward", [&] {
    const SampleShape sh = sample_shape(desc);
    const nk_gn_options o = read_gn(opt);
    check_groups(o.groups, sh.C);
    const Fusion f = read_fusion(act, act_param, residual);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    require(saved_mean, "saved_mean");
    require(saved_invstd, "saved_invstd");
    check_fused_backward(x, residual, dx, dresidual);
    const GnArgs a{kernels_for_call(), sh, o.groups, o.epsilon};
    gn_backward(a, static_cast<const float*>(x), static_cast<const float*>(dy), gamma, saved_mean, saved_invstd,
                static_cast<float*>(dx), dgamma, dbeta, f, beta, static_cast<float*>(dresidual));
  });
}

NK_API nk_status nk_instancenorm_forward_training(const nk_tensor_desc* desc, const nk_in_options* opt,
                                                  const void* x, void* y, const float* gamma, const float* beta,
                                                  float* saved_mean, float* saved_invstd, float* moving_mean,
                                                  float* moving_var) {
  return guarded("nk_instancenorm_forward_training", [&] {
    const SampleShape sh = sample_shape(desc);
    const nk_in_options o = read_in(opt);
    require(x, "x");
    require(y, "y");
    require_pair(moving_mean, moving_var, "moving_mean", "moving_var");
    const int64_t L = sh.P * sh.inner;
    if (moving_mean && o.moving_variance == NK_VARIANCE_UNBIASED && L < 2)
      fail(NK_ERR_BAD_ARGUMENT, "the unbiased moving variance needs more than one value per instance (got %lld)",
           static_cast<long long>(L));
    const GnArgs a{kernels_for_call(), sh, sh.C, o.epsilon};
    GnForward f(a, static_cast<const float*>(x), static_cast<float*>(y), gamma, beta, saved_mean, saved_invstd);
    f.run();
    if (moving_mean) {
      const double keep = o.momentum_convention == NK_MOMENTUM_TF ? o.momentum : 1.0 - o.momentum;
      const double bessel = o.moving_variance == NK_VARIANCE_UNBIASED ? static_cast<double>(L) / (L - 1) : 1.0;
      for (int64_t c = 0; c < sh.C; ++c) {
        double mu = 0, var = 0;
        for (int64_t n = 0; n < sh.N; ++n) {
          mu += f.gmean[n * sh.C + c];
          var += f.gvar[n * sh.C + c];
        }
        mu /= static_cast<double>(sh.N);
        var = var / static_cast<double>(sh.N) * bessel;
        moving_mean[c] = static_cast<float>(keep * moving_mean[c] + (1.0 - keep) * mu);
        moving_var[c] = static_cast<float>(keep * moving_var[c] + (1.0 - keep) * var);
      }
    }
  });
}

NK_API nk_status nk_instancenorm_forward_inference(const nk_tensor_desc* desc, const nk_in_options* opt,
                                                   const void* x, void* y, const float* gamma, const float* beta,
                                                   const float* moving_mean, const float* moving_var) {
  return guarded("nk_instancenorm_forward_inference", [&] {
    const SampleShape sh = sample_shape(desc);
    const nk_in_options o = read_in(opt);
    require(x, "x");
    require(y, "y");
    require(moving_mean, "moving_mean");
    require(moving_var, "moving_var");
    const int64_t C = sh.C;
    FloatVec lo(static_cast<size_t>(C), 0.0f), scale(lo.size()), shift(lo.size());
    for (int64_t c = 0; c < C; ++c) {
      scale[c] = static_cast<float>((gamma ? gamma[c] : 1.0) / std::sqrt(static_cast<double>(moving_var[c]) + o.epsilon));
      shift[c] = beta ? beta[c] : 0.0f;
    }
    const auto& k = kernels_for_call();
    const kernels::View v = sh.s.view;
    const bool stream = stream_for(2 * static_cast<int64_t>(sizeof(float)) * sh.s.total);
    const int64_t units = std::clamp<int64_t>(sh.s.total / 65536, 1, v.outer);
    parallel_units(units, [&](int64_t u) {
      k.bn_apply(static_cast<const float*>(x), static_cast<float*>(y), v,
                 {0, C, v.outer * u / units, v.outer * (u + 1) / units}, moving_mean, lo.data(), scale.data(),
                 shift.data(), stream);
    });
  });
}

NK_API nk_status nk_instancenorm_backward(const nk_tensor_desc* desc, const nk_in_options* opt, const void* x,
                                          const void* dy, const float* gamma, const float* saved_mean,
                                          const float* saved_invstd, void* dx, float* dgamma, float* dbeta) {
  return guarded("nk_instancenorm_backward", [&] {
    const SampleShape sh = sample_shape(desc);
    read_in(opt);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    require(saved_mean, "saved_mean");
    require(saved_invstd, "saved_invstd");
    const GnArgs a{kernels_for_call(), sh, sh.C, 0.0};
    gn_backward(a, static_cast<const float*>(x), static_cast<const float*>(dy), gamma, saved_mean, saved_invstd,
                static_cast<float*>(dx), dgamma, dbeta);
  });
}

}  // extern "C"
