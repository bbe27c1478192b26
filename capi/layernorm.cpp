// Layer Norm and RMSNorm over rows of the last D elements. Rows are split
// into fixed blocks (by the shape alone); a block's statistics, apply and
// column partial sums (dgamma, dbeta) are one unit of work, and the column
// partials of the blocks are merged in block order, in double.
#include <cstddef>

#include "norm_common.hpp"
#include "xc_scale.hpp"

using namespace nk;
using namespace nk::norms;

namespace {

struct Rows {
  int64_t R, D;
};

// Feature axes must be the trailing axes: the canonical view is (R, D, 1).
Rows row_shape(const nk_tensor_desc* desc) {
  const Shape s = canonicalize(desc);
  const int nd = desc->ndim;
  bool feature[NK_MAX_DIMS] = {};
  for (int k = 0; k < desc->num_axes; ++k) feature[desc->axes[k] < 0 ? desc->axes[k] + nd : desc->axes[k]] = true;
  int first = nd;
  while (first > 0 && feature[first - 1]) --first;
  for (int i = 0; i < first; ++i)
    if (feature[i])
      fail(NK_ERR_BAD_AXIS, "axis %d: the normalized axes must be the trailing axes of the tensor", i);
  return {s.count, s.channels};
}

// Rows taken through all passes of a unit together (see forward).
constexpr int64_t kGroupRows = 8;

// Rows per unit: about 64K elements, at most 256 rows (column partials are
// summed in float over a block).
int64_t block_rows(const Rows& r) { return std::clamp<int64_t>(65536 / r.D, 1, 256); }

nk_ln_options read_ln(const nk_ln_options* opt) {
  const nk_ln_options o =
      read_options<nk_ln_options>(opt, &nk_ln_options_init, offsetof(nk_ln_options, epsilon) + sizeof(float));
  check_epsilon(o.epsilon);
  return o;
}

// What a row's statistics give its apply: LN p = {mean_hi, mean_lo,
// invstd}, saved mean_hi and invstd; RMSNorm p = {0, 0, rstd}, saved rstd.
struct RowStep {
  double eps;
  bool rms;
  int64_t D;
  float* saved_a;
  float* saved_b;
};
void row_step(void* ctx, int64_t r, const double* st, float* p) {
  const RowStep& c = *static_cast<const RowStep*>(ctx);
  const double mean = st[0], m2 = st[1];
  const double var = std::isnan(m2) ? m2 : std::max(m2, 0.0) / static_cast<double>(c.D);
  if (c.rms) {
    p[0] = p[1] = 0.0f;
    p[2] = static_cast<float>(1.0 / std::sqrt(var + mean * mean + c.eps));
    if (c.saved_a) c.saved_a[r] = p[2];
  } else {
    p[0] = static_cast<float>(mean);
    p[1] = static_cast<float>(mean - static_cast<double>(p[0]));
    p[2] = static_cast<float>(1.0 / std::sqrt(var + c.eps));
    if (c.saved_a) c.saved_a[r] = p[0];
    if (c.saved_b) c.saved_b[r] = p[2];
  }
}

// Forward of both: rms = false gives Layer Norm, true RMSNorm.
void forward(const Rows& rs, double eps, bool rms, const float* x, float* y, const float* gamma,
             const float* beta, float* saved_a, float* saved_b) {
  const auto& k = kernels_for_call();
  const int64_t R = rs.R, D = rs.D, rb = block_rows(rs);
  const size_t nr = static_cast<size_t>(R);
  FloatVec ones, zeros;
  if (gamma == nullptr) ones.assign(static_cast<size_t>(D), 1.0f), gamma = ones.data();
  if (beta == nullptr) zeros.assign(static_cast<size_t>(D), 0.0f), beta = zeros.data();
  const bool stream = stream_for(2 * static_cast<int64_t>(sizeof(float)) * R * D);
  const int64_t units = (R + rb - 1) / rb;
  RowStep ctx{eps, rms, D, saved_a, saved_b};
  // Rows of one tile, where any streamed row starts on a cache line, take
  // the pipelined sweep (on Zen 5 against groups' statistics then apply:
  // 8192x4096 1.2x faster at 2 threads, 1.4x at 1; 8192x2048 1.1x; 8192x768
  // in cache 1.0x). Rows are independent in the forward: a unit per thread.
  if (kernels::sweep_takes(stream, y, D)) {
    const int64_t fu = std::min<int64_t>(R, num_threads()), fb = (R + fu - 1) / fu;
    parallel_units(fu, [&](int64_t u) {
      const int64_t r0 = std::min(R, u * fb), r1 = std::min(R, r0 + fb);
      k.ln_forward(x, y, D, r0, r1, gamma, beta, stream, kernels::RowFinish{&row_step, &ctx});
    });
    return;
  }
  DoubleVec mean(nr), m2(nr);
  FloatVec hi(nr), lo(nr), scale(nr);
  // Long rows from memory: while a group's apply runs from cache, it asks
  // for the rows two groups on into L2, so that x keeps arriving meanwhile
  // (8192x3072 and 8192x4096 on Zen 4: 1.05-1.14x faster; rows of 8 KiB
  // were 1.04-1.06x slower, of 24 and 32 KiB unchanged, so only from 12
  // KiB on; a tensor in cache gains nothing).
  const bool from_memory = D >= 3072 && kernels::from_memory(kernels::View{1, R, D});
  const int64_t ahead = from_memory ? 2 * kGroupRows * D : 0;
  // Within a block, rows go in groups of kGroupRows: their statistics, then
  // their apply while the rows are still in L1 or L2, so the reads of x and
  // the stores of y interleave over the whole block (ln_stats prefetches
  // the next rows meanwhile).
  parallel_units(units, [&](int64_t u) {
    const int64_t r0 = u * rb, r1 = std::min(R, r0 + rb);
    for (int64_t g0 = r0; g0 < r1; g0 += kGroupRows) {
      const int64_t g1 = std::min(r1, g0 + kGroupRows);
      k.ln_stats(x, D, g0, g1, &mean[g0], &m2[g0]);
      for (int64_t r = g0; r < g1; ++r) {
        float p[3];
        const double st[2] = {mean[r], m2[r]};
        row_step(&ctx, r, st, p);
        hi[r] = p[0], lo[r] = p[1], scale[r] = p[2];
      }
      k.ln_apply(x, y, D, g0, g1, hi.data(), lo.data(), scale.data(), gamma, beta, stream, ahead);
    }
  });
}

// What a row's backward sums give its dx and column partials: p = {a, b,
// d, mean_lo} of dx = a * dy * gamma + b * ((x - mean) * xscale) + d.
struct BackStep {
  bool rms;
  double m;
  const float* sinv;
  const FloatVec* xk;
};
void back_step(void* ctx, int64_t r, const double* st, float* p) {
  const BackStep& c = *static_cast<const BackStep*>(ctx);
  const double sd = c.sinv[r];
  p[0] = static_cast<float>(sd);
  if (c.rms) {
    // dx = r*g*dy - r^3 * sum(g*dy*x)/D * x
    p[1] = xc_coefficient(-sd * sd * sd * st[1] / c.m, *c.xk, r);
    p[2] = 0.0f;
    p[3] = 0.0f;
  } else {
    const double dl = st[2] / c.m;
    const double P = st[1] - dl * st[0];
    const double b = -sd * sd * sd * P / c.m;
    p[1] = xc_coefficient(b, *c.xk, r);
    p[2] = static_cast<float>(-sd * st[0] / c.m - b * dl);
    p[3] = static_cast<float>(dl);
  }
}

// Backward of both. Layer Norm: mean/invstd saved; RMSNorm: mean = NULL,
// invstd = rstd.
void backward(const Rows& rs, const float* x, const float* dy, const float* gamma, const float* smean,
              const float* sinv, float* dx, float* dgamma, float* dbeta) {
  const auto& k = kernels_for_call();
  const int64_t R = rs.R, D = rs.D, rb = block_rows(rs);
  const size_t nr = static_cast<size_t>(R);
  const double m = static_cast<double>(D);
  FloatVec ones;
  if (gamma == nullptr) ones.assign(static_cast<size_t>(D), 1.0f), gamma = ones.data();
  FloatVec zero_mean;
  if (smean == nullptr) zero_mean.assign(nr, 0.0f), smean = zero_mean.data();
  const bool rms = !zero_mean.empty();
  const FloatVec xk = xc_scales(R, [&](int64_t r) { return sinv[r]; });
  const int64_t units = (R + rb - 1) / rb;
  const bool params = dgamma != nullptr || dbeta != nullptr;
  // Column partials in float per block, merged into double sums per column
  // in block order from 0, whatever the threads. The blocks run in waves,
  // so that the partials of one wave (about 1 MiB, and at least two blocks
  // for every thread) are all the scratch there is: the merge order, and so the
  // result, does not depend on the wave size. They come from the block cache
  // (aligned.hpp): allocated anew, their 2 MiB were page faults in every call
  // (8192x4096 on Zen 4: 1.3-1.45x the time of the whole backward).
  const int64_t wave =
      params ? std::min(units, std::max<int64_t>((int64_t{1} << 18) / D, 2 * num_threads())) : units;
  const size_t npart = params ? static_cast<size_t>(wave * D) : 0;
  FloatVec pg(npart), pbeta(dbeta ? npart : 0);
  DoubleVec gsum(params ? static_cast<size_t>(D) : 0, 0.0), bsum(dbeta ? gsum.size() : 0, 0.0);
  const bool stream = stream_for(3 * static_cast<int64_t>(sizeof(float)) * R * D);
  BackStep ctx{rms, m, sinv, &xk};
  // As in forward, the block's rows in one pipelined sweep (on Zen 5:
  // 8192x4096 1.1-1.2x faster, 8192x768 1.3-1.4x).
  const bool pipelined = kernels::sweep_takes(stream, dx, D);
  // Per-row sums and coefficients between the passes of the unpipelined path.
  const size_t nrow = pipelined ? 0 : nr;
  DoubleVec s0(nrow), s1(nrow), s2(nrow);
  FloatVec lo(nrow), pa(nrow), pb(nrow), pd(nrow);
  for (int64_t w0 = 0; w0 < units; w0 += wave) {
    const int64_t wn = std::min(units - w0, wave);
    parallel_units(wn, [&](int64_t i) {
      const int64_t u = w0 + i;
      const int64_t r0 = u * rb, r1 = std::min(R, r0 + rb);
      float* bg = params ? &pg[i * D] : nullptr;
      float* bb = dbeta ? &pbeta[i * D] : nullptr;
      if (bg) std::fill(bg, bg + D, 0.0f);
      if (bb) std::fill(bb, bb + D, 0.0f);
      if (pipelined) {
        k.ln_backward(x, dy, dx, gamma, D, r0, r1, smean, sinv, xc_ptr(xk), bg, bb, stream,
                      kernels::RowFinish{&back_step, &ctx});
        return;
      }
      // Rows in groups of eight through all three passes, as in forward.
      for (int64_t g0 = r0; g0 < r1; g0 += kGroupRows) {
        const int64_t g1 = std::min(r1, g0 + kGroupRows);
        double* out[3] = {s0.data(), s1.data(), s2.data()};
        k.ln_backward_sums(x, dy, gamma, D, g0, g1, smean, out);
        for (int64_t r = g0; r < g1; ++r) {
          const double st[3] = {s0[r], s1[r], s2[r]};
          float p[4];
          back_step(&ctx, r, st, p);
          pa[r] = p[0], pb[r] = p[1], pd[r] = p[2], lo[r] = p[3];
        }
        // Column partials read dy before dx (which may be dy) is written.
        if (params) k.ln_param_sums(x, dy, D, g0, g1, smean, lo.data(), sinv, bg, bb);
        k.ln_backward_apply(x, dy, dx, gamma, D, g0, g1, smean, pa.data(), pb.data(), pd.data(), xc_ptr(xk),
                            stream);
      }
    });
    if (!params) continue;
    // The wave's partials in block order; columns split over threads in
    // chunks, each block's partials read as one contiguous row.
    constexpr int64_t kChunk = 1024;
    parallel_units((D + kChunk - 1) / kChunk, [&](int64_t c) {
      const int64_t d0 = c * kChunk, d1 = std::min(D, d0 + kChunk);
      for (int64_t i = 0; i < wn; ++i) {
        const float* pu = &pg[i * D];
        for (int64_t d = d0; d < d1; ++d) gsum[d] += pu[d];
        if (dbeta) {
          const float* qu = &pbeta[i * D];
          for (int64_t d = d0; d < d1; ++d) bsum[d] += qu[d];
        }
      }
    });
  }
  for (int64_t d = 0; d < D && params; ++d) {
    if (dgamma) dgamma[d] = static_cast<float>(gsum[d]);
    if (dbeta) dbeta[d] = static_cast<float>(bsum[d]);
  }
}

}  // namespace

extern "C" {

NK_API void nk_ln_options_init(nk_ln_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);
  const nk_ln_options d = NK_LN_OPTIONS_INIT;
  opt->struct_size = d.struct_size;
  opt->epsilon = d.epsilon;
}

NK_API nk_status nk_layernorm_forward(const nk_tensor_desc* desc, const nk_ln_options* opt, const void* x,
                                      void* y, const float* gamma, const float* beta, float* saved_mean,
                                      float* saved_invstd) {
  return guarded("nk_layernorm_forward", [&] {
    const Rows rs = row_shape(desc);
    const nk_ln_options o = read_ln(opt);
    require(x, "x");
    require(y, "y");
    forward(rs, o.epsilon, false, static_cast<const float*>(x), static_cast<float*>(y), gamma, beta, saved_mean,
            saved_invstd);
  });
}

NK_API nk_status nk_layernorm_backward(const nk_tensor_desc* desc, const nk_ln_options* opt, const void* x,
                                       const void* dy, const float* gamma, const float* saved_mean,
                                       const float* saved_invstd, void* dx, float* dgamma, float* dbeta) {
  return guarded("nk_layernorm_backward", [&] {
    const Rows rs = row_shape(desc);
    read_ln(opt);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    require(saved_mean, "saved_mean");
    require(saved_invstd, "saved_invstd");
    backward(rs, static_cast<const float*>(x), static_cast<const float*>(dy), gamma, saved_mean, saved_invstd,
             static_cast<float*>(dx), dgamma, dbeta);
  });
}

NK_API nk_status nk_rmsnorm_forward(const nk_tensor_desc* desc, const nk_ln_options* opt, const void* x, void* y,
                                    const float* gamma, float* saved_rstd) {
  return guarded("nk_rmsnorm_forward", [&] {
    const Rows rs = row_shape(desc);
    const nk_ln_options o = read_ln(opt);
    require(x, "x");
    require(y, "y");
    forward(rs, o.epsilon, true, static_cast<const float*>(x), static_cast<float*>(y), gamma, nullptr, saved_rstd,
            nullptr);
  });
}

NK_API nk_status nk_rmsnorm_backward(const nk_tensor_desc* desc, const nk_ln_options* opt, const void* x,
                                     const void* dy, const float* gamma, const float* saved_rstd, void* dx,
                                     float* dgamma) {
  return guarded("nk_rmsnorm_backward", [&] {
    const Rows rs = row_shape(desc);
    read_ln(opt);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    require(saved_rstd, "saved_rstd");
    backward(rs, static_cast<const float*>(x), static_cast<const float*>(dy), gamma, nullptr, saved_rstd,
             static_cast<float*>(dx), dgamma, nullptr);
  });
}

}  // extern "C"
