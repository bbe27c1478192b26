// Row-wise normalization kernels (Layer Norm, RMSNorm): a row is D
// contiguous elements with its own scalars (mean, scale, ...), and the
// parameters (gamma[d], beta[d]) run along the row. Written once over the
// xsimd arch; rows [r0, r1) of a (rows, D) matrix.
#pragma once

#include "reduce.hpp"

namespace nk::kernels {
namespace {

// NLane parameters loaded along the row, then NRow per-row scalars
// broadcast, in that order (p[0 .. NLane) lane, p[NLane ..) row). full()
// returns its vectors by value, a temporary of the one map_run step, so
// that they stay in registers (a member array written on every step is
// kept in memory: three extra stores and loads per vector).
template <class B, int N>
struct ParamPack {
  B v[N];
  operator const B*() const { return v; }
};
template <class Arch, int NLane, int NRow>
struct RowParams {
  using S = simd<Arch>;
  using B = typename S::batch;
  const float* lane[NLane > 0 ? NLane : 1];
  B row[NRow > 0 ? NRow : 1];
  ParamPack<B, NLane + NRow> full(int64_t i) const {
    ParamPack<B, NLane + NRow> t;
    for (int k = 0; k < NLane; ++k) t.v[k] = S::load(lane[k] + i);
    for (int k = 0; k < NRow; ++k) t.v[NLane + k] = row[k];
    return t;
  }
  void partial(int64_t i, int64_t n, B* out) const {
    for (int k = 0; k < NLane; ++k) out[k] = S::load_partial(lane[k] + i, n);
    for (int k = 0; k < NRow; ++k) out[NLane + k] = row[k];
  }
};

// Pass 2 of row_stats for NR rows: sd[r] = sum(x - m[r]), sq[r] =
// sum((x - m[r])^2), each in acc_slots() vector accumulators (as RunAcc) and
// a scalar tail. At most two rows per call: with four, GCC kept half the
// accumulators on the stack (a store-forwarded add chain per vector).
template <class Arch, int NR>
inline void row_deviations(const float* const* row, const float* m, int64_t D, int64_t ahead, float* sd_out,
                           float* sq_out) {
  using S = simd<Arch>;
  using B = typename S::batch;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  constexpr int J = acc_slots<Arch>();
  RunAcc<Arch, 2 * NR> acc;  // sd of row r in acc.a[2r], sq in acc.a[2r + 1]
  B mb[NR];
  float td[NR], tq[NR];
  for (int r = 0; r < NR; ++r) {
    mb[r] = S::set1(m[r]);
    td[r] = tq[r] = 0.0f;
  }
  auto add = [&](int r, int j, int64_t i) {
    const B d = S::load(row[r] + i) - mb[r];
    acc.a[2 * r][j] = acc.a[2 * r][j] + d;
    acc.a[2 * r + 1][j] = S::fma(d, d, acc.a[2 * r + 1][j]);
  };
  int64_t i = 0;
  for (; i + J * W <= D; i += J * W)
    for (int r = 0; r < NR; ++r) {
      if (ahead != 0)
        for (int64_t b = 0; b < J * W; b += 16) __builtin_prefetch(row[r] + ahead + i + b, 0, 2);
      for (int j = 0; j < J; ++j) add(r, j, i + j * W);
    }
  static_for<J>([&](auto j) {
    if (i + W > D) return;
    for (int r = 0; r < NR; ++r) add(r, j, i);
    i += W;
  });
  for (; i < D; ++i)
    for (int r = 0; r < NR; ++r) {
      const float d = row[r][i] - m[r];
      td[r] += d;
      tq[r] += d * d;
    }
  for (int r = 0; r < NR; ++r) {
    sd_out[r] = acc.total(2 * r) + td[r];
    sq_out[r] = acc.total(2 * r + 1) + tq[r];
  }
}

// Mean and M2 of NR rows of D <= kTileInner elements, with the arithmetic
// bn_stats applies to a row of the (1, rows, D) view (one tile: a sum, then
// the sums of deviations from its float mean, each in acc_slots() vector
// accumulators and a scalar tail; tile_moments; one chan_merge from zero),
// the NR rows interleaved so that their accumulator chains overlap.
// ahead: the offset from each row to the row whose lines pass 2 prefetches
// into L2 (0: none). Pass 2 runs from L1; the prefetches let the next rows
// arrive meanwhile instead of stalling the next pass 1, whose interleaved
// rows give the hardware prefetcher short streams only.
template <class Arch, int NR>
inline void row_stats(const float* const* row, int64_t D, double* mean, double* m2, int64_t ahead) {
  using S = simd<Arch>;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  constexpr int J = acc_slots<Arch>();
  const double nt = static_cast<double>(D);
  RunAcc<Arch, NR> acc;
  float t[NR];
  for (int r = 0; r < NR; ++r) t[r] = 0.0f;
  int64_t i = 0;
  for (; i + J * W <= D; i += J * W)
    for (int r = 0; r < NR; ++r)
      for (int j = 0; j < J; ++j) acc.a[r][j] = acc.a[r][j] + S::load(row[r] + i + j * W);
  static_for<J>([&](auto j) {
    if (i + W > D) return;
    for (int r = 0; r < NR; ++r) acc.a[r][j] = acc.a[r][j] + S::load(row[r] + i);
    i += W;
  });
  for (; i < D; ++i)
    for (int r = 0; r < NR; ++r) t[r] += row[r][i];
  float m[NR], sd[NR], sq[NR];
  for (int r = 0; r < NR; ++r) m[r] = (acc.total(r) + t[r]) / static_cast<float>(nt);
  constexpr int P = NR < 2 ? NR : 2;
  for (int r = 0; r < NR; r += P) row_deviations<Arch, P>(row + r, m + r, D, ahead, sd + r, sq + r);
  for (int r = 0; r < NR; ++r) {
    double mt, m2t, mu = 0, q = 0;
    tile_moments(1.0 / nt, m[r], sd[r], sq[r], mt, m2t);
    chan_merge(mu, q, mt, m2t, MergeWeights(0.0, nt));
    refine_moments(row[r], View{1, 1, D}, Range{0, 1, 0, 1}, 0, mu, q);
    mean[r] = mu;
    m2[r] = q;
  }
}

// Mean and M2 of rows [r0, r1) of a (rows, D) matrix into mean[r - r0],
// m2[r - r0], with bn_stats' tiles and merges on the (1, rows, D) view (a
// row's tail adds in scalars here, in a partial vector there).
template <class Arch>
void ln_stats(const float* x, int64_t D, int64_t r0, int64_t r1, double* mean, double* m2) {
  if (D > kTileInner) {
    bn_stats<Arch>(x, View{1, r1, D}, Range{r0, r1, 0, 1}, mean, m2);
    return;
  }
  // Four rows at a time where there are 32 vector registers, else two.
  // Each group prefetches the next NR rows (those after r1 too: the caller
  // goes on there, and a prefetch never faults).
  constexpr int NR = simd<Arch>::width >= 16 ? 4 : 2;
  constexpr int64_t kAhead = simd<Arch>::width >= 4 ? NR : 0;
  int64_t r = r0;
  for (; r + NR <= r1; r += NR) {
    const float* rows[NR];
    for (int k = 0; k < NR; ++k) rows[k] = x + (r + k) * D;
    row_stats<Arch, NR>(rows, D, mean + (r - r0), m2 + (r - r0), kAhead * D);
  }
  for (; r < r1; ++r) {
    const float* one = x + r * D;
    row_stats<Arch, 1>(&one, D, mean + (r - r0), m2 + (r - r0), 0);
  }
}

// y = ((x - mean_hi[r]) - mean_lo[r]) * scale[r] * gamma[d] + beta[d].
// ahead: the offset from each row to the row whose lines are asked into L2
// before it is normalized (0: none).
// No fence after streaming stores here or in ln_backward_apply: the capi
// layer fences once per thread and call.
template <class Arch>
void ln_apply(const float* x, float* y, int64_t D, int64_t r0, int64_t r1, const float* mean_hi,
              const float* mean_lo, const float* scale, const float* gamma, const float* beta,
              bool stream, int64_t ahead) {
  using S = simd<Arch>;
  using B = typename S::batch;
  RowParams<Arch, 2, 3> p;
  p.lane[0] = gamma;
  p.lane[1] = beta;
  for (int64_t r = r0; r < r1; ++r) {
    p.row[0] = S::set1(mean_hi[r]);
    p.row[1] = S::set1(mean_lo[r]);
    p.row[2] = S::set1(scale[r]);
    const float* in[1] = {x + r * D};
    if (ahead) prefetch_run<2>(in[0] + ahead, D);
    map_run<Arch, 1, 5>([](const B* xs, const B* q) { return S::fma(((xs[0] - q[2]) - q[3]) * q[4], q[0], q[1]); },
                        D, in, y + r * D, p, stream);
  }
}

// The whole vectors of a row of D floats for the pipelined sweeps:
// full(j, o, nt_store) on the vector at o, into accumulator slot j (a
// constant), streamed where nt_store (NT, and a whole line of the row:
// below line_end). Returns where the row's last partial vector starts.
template <class Arch, bool NT, class F>
[[gnu::always_inline]] inline int64_t sweep_row(int64_t D, int64_t line_end, const F& full) {
  constexpr int64_t W = static_cast<int64_t>(simd<Arch>::width);
  constexpr int J = acc_slots<Arch>();
  int64_t i = 0;
  for (; i + J * W <= D; i += J * W) static_for<J>([&](auto j) { full(j, i + j * W, NT); });
  // The last whole vectors (fewer than J), each into its slot.
  static_for<J>([&](auto j) {
    if (i + W > D) return;
    full(j, i, NT && i + W <= line_end);
    i += W;
  });
  return i;
}

// Layer Norm's (and RMSNorm's) forward on rows [r0, r1) of D <=
// kPipelinedRow: ln_stats, fin and ln_apply in one pipelined sweep. Step s
// sums row s (row_stats' pass 1, from memory), takes row s - 1's deviations
// from its float mean (pass 2, from L1) and normalizes row s - 2, all in
// one loop along the rows, so that x keeps arriving while the rows before
// are worked on (statistics, then apply, of groups of rows left the bus
// idle between them). Each row gets row_stats' and ln_apply's arithmetic
// in their order: the same bits.
static_assert(kPipelinedRow <= kTileInner, "ln_forward has ln_stats' arithmetic for rows of one tile");
template <class Arch>
void ln_forward(const float* x, float* y, int64_t D, int64_t r0, int64_t r1, const float* gamma,
                const float* beta, bool stream, RowFinish fin) {
  using S = simd<Arch>;
  using B = typename S::batch;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  constexpr int J = acc_slots<Arch>();
  constexpr int64_t kLine = 64 / sizeof(float);
  const double nt = static_cast<double>(D);
  float mean_f[3];  // row s's float mean from pass 1, in slot s % 3
  float par[3][3];  // row s's apply parameters (fin), in slot s % 3
  // Non-temporal stores for whole lines, where every row starts on one (as
  // map_run: never a line shared with a neighbouring row).
  const bool lines = W > 1 && sweep_streams(stream, y, D);
  const int64_t line_end = D / kLine * kLine;
  // Row s + 1 is asked into L2 as row s is summed: the hardware prefetcher
  // stops at every page (8192x4096 on Zen 5, against no prefetch: 1.4x
  // faster at 2 threads, 1.65x at 1; two or four rows on gained less at 1
  // thread).
  const int64_t ahead = W >= 4 ? D : 0;
  static_assert(J * W % kLine == 0, "i stays a multiple of a line: (j * W) % kLine is each vector's place in one");
  // M: bit 0 sums row s, bit 1 takes row s - 1's deviations, bit 2
  // normalizes row s - 2, bit 3 streams its whole lines. The accumulators
  // are indexed by constants only (sweep_row), so they stay in registers.
  auto step = [&](auto mask, int64_t s) {
    constexpr int M = decltype(mask)::value;
    constexpr bool A = (M & 1) != 0, Dev = (M & 2) != 0, Apply = (M & 4) != 0, NT = (M & 8) != 0;
    const float* xa = A ? x + s * D : x;
    const float* xb = Dev ? x + (s - 1) * D : x;
    const float* xc = Apply ? x + (s - 2) * D : x;
    float* yc = Apply ? y + (s - 2) * D : y;
    B sum[J], sd[J], sq[J];  // row s's sum; row s - 1's sd and sq
    for (int j = 0; j < J; ++j) sum[j] = sd[j] = sq[j] = S::zero();
    float ts = 0.0f, td = 0.0f, tq = 0.0f;
    const float mb_f = Dev ? mean_f[(s - 1) % 3] : 0.0f;
    const B mb = S::set1(mb_f);
    const float* q = par[Apply ? (s - 2) % 3 : 0];
    const B hi = S::set1(Apply ? q[0] : 0.0f), lo = S::set1(Apply ? q[1] : 0.0f), sc = S::set1(Apply ? q[2] : 0.0f);
    auto out = [hi, lo, sc](const B& xv, const B& g, const B& b) { return S::fma(((xv - hi) - lo) * sc, g, b); };
    // The vector at o into slot j of each stage.
    auto full = [&](auto j, int64_t o, bool nt_store) {
      if constexpr (A) {
        if (ahead != 0 && (j * W) % kLine == 0) __builtin_prefetch(xa + ahead + o, 0, 2);
        sum[j] = sum[j] + S::load(xa + o);
      }
      if constexpr (Dev) {
        const B d = S::load(xb + o) - mb;
        sd[j] = sd[j] + d;
        sq[j] = S::fma(d, d, sq[j]);
      }
      if constexpr (Apply) {
        const B v = out(S::load(xc + o), S::load(gamma + o), S::load(beta + o));
        if (nt_store) S::stream(yc + o, v);
        else S::store(yc + o, v);
      }
    };
    int64_t i = sweep_row<Arch, NT>(D, line_end, full);
    if constexpr (Apply)
      if (i < D) {
        const int64_t n = D - i;
        S::store_partial(yc + i, out(S::load_partial(xc + i, n), S::load_partial(gamma + i, n), S::load_partial(beta + i, n)), n);
      }
    for (; i < D; ++i) {
      if constexpr (A) ts += xa[i];
      if constexpr (Dev) {
        const float d = xb[i] - mb_f;
        td += d;
        tq += d * d;
      }
    }
    RunAcc<Arch, 3> acc;  // for total()'s order of the slots
    for (int j = 0; j < J; ++j) acc.a[0][j] = sum[j], acc.a[1][j] = sd[j], acc.a[2][j] = sq[j];
    if constexpr (A) mean_f[s % 3] = (acc.total(0) + ts) / static_cast<float>(nt);
    if constexpr (Dev) {
      double mt, m2t, mu = 0, m2 = 0;
      tile_moments(1.0 / nt, mb_f, acc.total(1) + td, acc.total(2) + tq, mt, m2t);
      chan_merge(mu, m2, mt, m2t, MergeWeights(0.0, nt));
      refine_moments(xb, View{1, 1, D}, Range{0, 1, 0, 1}, 0, mu, m2);
      const double st[2] = {mu, m2};
      fin.fn(fin.ctx, s - 1, st, par[(s - 1) % 3]);
    }
  };
  for (int64_t s = r0; s < r1 + 2; ++s) {
    const int mask = (s < r1 ? 1 : 0) | (s - 1 >= r0 && s - 1 < r1 ? 2 : 0) | (s - 2 >= r0 ? 4 : 0);
    switch (mask | (lines && mask >= 4 ? 8 : 0)) {
      case 1: step(std::integral_constant<int, 1>{}, s); break;
      case 2: step(std::integral_constant<int, 2>{}, s); break;
      case 3: step(std::integral_constant<int, 3>{}, s); break;
      case 4: step(std::integral_constant<int, 4>{}, s); break;
      case 6: step(std::integral_constant<int, 6>{}, s); break;
      case 7: step(std::integral_constant<int, 7>{}, s); break;
      case 12: step(std::integral_constant<int, 12>{}, s); break;
      case 14: step(std::integral_constant<int, 14>{}, s); break;
      case 15: step(std::integral_constant<int, 15>{}, s); break;
      default: break;  // rows s and s - 2 without s - 1 cannot occur
    }
  }
}

// Per row r, with g = dy * gamma[d] and xc = x - mean[r]:
// sums[0][r] = sum(g), sums[1][r] = sum(g * xc), sums[2][r] = sum(xc).
// Fixed tiles along the row, combined in double.
template <class Arch>
void ln_backward_sums(const float* x, const float* dy, const float* gamma, int64_t D, int64_t r0,
                      int64_t r1, const float* mean, double* const* sums) {
  using S = simd<Arch>;
  using B = typename S::batch;
  for (int64_t r = r0; r < r1; ++r) {
    const B mb = S::set1(mean[r]);
    const B fill[3] = {mb, S::zero(), S::zero()};  // past the row: x - mean = 0, dy * gamma = 0
    double s[3] = {0, 0, 0};
    for (int64_t i0 = 0; i0 < D; i0 += kTileInner) {
      const int64_t len = std::min(kTileInner, D - i0);
      RunAcc<Arch, 3> a;
      const float* in[3] = {x + r * D + i0, dy + r * D + i0, gamma + i0};
      acc_run<Arch, 3>(
          len, in, a,
          [&](const B* xs, auto acc, int j) {
            const B g = xs[1] * xs[2];
            const B xc = xs[0] - mb;
            acc[0][j] = acc[0][j] + g;
            acc[1][j] = S::fma(g, xc, acc[1][j]);
            acc[2][j] = acc[2][j] + xc;
          },
          fill);
      for (int k = 0; k < 3; ++k) s[k] += static_cast<double>(a.total(k));
    }
    for (int k = 0; k < 3; ++k) sums[k][r] = s[k];
  }
}

// dx = a[r] * (dy * gamma[d]) + (b[r] * ((x - mean[r]) * k[r]) + d[r]), with
// k = xscale (a power of two where b alone would leave float's range) or 1.
template <class Arch>
void ln_backward_apply(const float* x, const float* dy, float* dx, const float* gamma, int64_t D,
                       int64_t r0, int64_t r1, const float* mean, const float* a, const float* b,
                       const float* d, const float* xscale, bool stream) {
  using S = simd<Arch>;
  using B = typename S::batch;
  with_array(xscale, [&](auto has_k) {
    constexpr bool K = decltype(has_k)::value;
    RowParams<Arch, 1, K ? 5 : 4> p;
    p.lane[0] = gamma;
    for (int64_t r = r0; r < r1; ++r) {
      p.row[0] = S::set1(mean[r]);
      p.row[1] = S::set1(a[r]);
      p.row[2] = S::set1(b[r]);
      p.row[3] = S::set1(d[r]);
      if constexpr (K) p.row[4] = S::set1(xscale[r]);
      const float* in[2] = {x + r * D, dy + r * D};
      map_run<Arch, 2, K ? 6 : 5>(
          [](const B* xs, const B* q) { return backward_dx<Arch, K>(xs[0], xs[1] * q[0], q + 1, 4); },
          D, in, dx + r * D, p, stream);
    }
  });
}

// Layer Norm's (and RMSNorm's) backward on rows [r0, r1) of D <=
// kPipelinedRow: ln_backward_sums, fin, ln_param_sums and
// ln_backward_apply in one pipelined sweep. Step s sums row s (from
// memory, row s + 1 asked into L2 meanwhile) and adds row s - 1 into the
// column partials dgamma, dbeta (dgamma null: none) and writes its dx, from
// L1, reading each dy before dx (which may be dy) is written over it. Each
// row gets those kernels' arithmetic in their order: the same bits.
template <class Arch>
void ln_backward(const float* x, const float* dy, float* dx, const float* gamma, int64_t D, int64_t r0,
                 int64_t r1, const float* mean, const float* scale, const float* xscale, float* dgamma,
                 float* dbeta, bool stream, RowFinish fin) {
  using S = simd<Arch>;
  using B = typename S::batch;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  constexpr int J = acc_slots<Arch>();
  constexpr int64_t kLine = 64 / sizeof(float);
  static_assert(J * W % kLine == 0, "i stays a multiple of a line: (j * W) % kLine is each vector's place in one");
  float par[2][4];  // row s's {a, b, d, mean_lo}, in slot s % 2
  const bool lines = W > 1 && sweep_streams(stream, dx, D);
  const int64_t line_end = D / kLine * kLine;
  const int64_t ahead = W >= 4 ? D : 0;  // as in ln_forward
  with_array(xscale, [&](auto has_k) {
    with_array(dgamma, [&](auto has_p) {
      constexpr bool K = decltype(has_k)::value, P = decltype(has_p)::value;
      // M: bit 0 sums row s, bit 1 takes row s - 1, bit 2 streams its dx.
      auto step = [&](auto mask, int64_t s) {
        constexpr int M = decltype(mask)::value;
        constexpr bool A = (M & 1) != 0, Rest = (M & 2) != 0, NT = (M & 4) != 0;
        const float* xa = A ? x + s * D : x;
        const float* ga = A ? dy + s * D : dy;
        const float* xb = Rest ? x + (s - 1) * D : x;
        const float* gb = Rest ? dy + (s - 1) * D : dy;
        float* ob = Rest ? dx + (s - 1) * D : dx;
        B s0[J], s1[J], s2[J];  // row s's sums of g, g * xc, xc
        for (int j = 0; j < J; ++j) s0[j] = s1[j] = s2[j] = S::zero();
        const B ma = S::set1(A ? mean[s] : 0.0f);
        const float* q = par[Rest ? (s - 1) % 2 : 0];
        const int64_t rb = Rest ? s - 1 : r0;
        // backward_dx's {mean, a, b, d, xscale}; the column partials' mean_lo, scale.
        const B pv[5] = {S::set1(mean[rb]), S::set1(Rest ? q[0] : 0.0f), S::set1(Rest ? q[1] : 0.0f),
                         S::set1(Rest ? q[2] : 0.0f), S::set1(K && Rest ? xscale[rb] : 1.0f)};
        const B lo = S::set1(Rest ? q[3] : 0.0f), sc = S::set1(scale[rb]);
        auto sums = [&](auto j, const B& xv, const B& dv, const B& gm) {
          const B g = dv * gm;
          const B xc = xv - ma;
          s0[j] = s0[j] + g;
          s1[j] = S::fma(g, xc, s1[j]);
          s2[j] = s2[j] + xc;
        };
        // Row s - 1 at i: its column partials, then dx.
        auto rest = [&](int64_t i, const B& xv, const B& dv, const B& gm, auto load, auto put) {
          if constexpr (P) {
            put(dgamma + i, S::fma(dv, ((xv - pv[0]) - lo) * sc, load(dgamma + i)));
            if (dbeta) put(dbeta + i, load(dbeta + i) + dv);
          }
          return backward_dx<Arch, K>(xv, dv * gm, pv, 4);
        };
        auto load = [](const float* p) { return S::load(p); };
        auto put = [](float* p, const B& v) { S::store(p, v); };
        auto full = [&](auto j, int64_t o, bool nt_store) {
          const B gm = S::load(gamma + o);
          if constexpr (A) {
            if (ahead != 0 && (j * W) % kLine == 0) {
              __builtin_prefetch(xa + ahead + o, 0, 2);
              __builtin_prefetch(ga + ahead + o, 0, 2);
            }
            sums(j, S::load(xa + o), S::load(ga + o), gm);
          }
          if constexpr (Rest) {
            const B v = rest(o, S::load(xb + o), S::load(gb + o), gm, load, put);
            if (nt_store) S::stream(ob + o, v);
            else S::store(ob + o, v);
          }
        };
        const int64_t i = sweep_row<Arch, NT>(D, line_end, full);
        if (i < D) {
          const int64_t n = D - i;
          if constexpr (A) {
            // acc_run's last partial vector: lanes past the row add nothing.
            const B xv = S::load_partial_fill(xa + i, n, ma);
            const B dv = S::load_partial_fill(ga + i, n, S::zero());
            const B gm = S::load_partial_fill(gamma + i, n, S::zero());
            sums(std::integral_constant<int, J - 1>{}, xv, dv, gm);
          }
          if constexpr (Rest) {
            auto load_n = [n](const float* p) { return S::load_partial(p, n); };
            auto put_n = [n](float* p, const B& v) { S::store_partial(p, v, n); };
            S::store_partial(ob + i, rest(i, load_n(xb + i), load_n(gb + i), load_n(gamma + i), load_n, put_n), n);
          }
        }
        if constexpr (A) {
          RunAcc<Arch, 3> acc;  // for total()'s order of the slots
          for (int j = 0; j < J; ++j) acc.a[0][j] = s0[j], acc.a[1][j] = s1[j], acc.a[2][j] = s2[j];
          double st[3];
          for (int k = 0; k < 3; ++k) st[k] = 0.0 + static_cast<double>(acc.total(k));  // as ln_backward_sums
          fin.fn(fin.ctx, s, st, par[s % 2]);
        }
      };
      for (int64_t s = r0; s < r1 + 1; ++s) {
        const int mask = (s < r1 ? 1 : 0) | (s - 1 >= r0 ? 2 : 0);
        switch (mask | (lines && mask >= 2 ? 4 : 0)) {
          case 1: step(std::integral_constant<int, 1>{}, s); break;
          case 2: step(std::integral_constant<int, 2>{}, s); break;
          case 3: step(std::integral_constant<int, 3>{}, s); break;
          case 6: step(std::integral_constant<int, 6>{}, s); break;
          case 7: step(std::integral_constant<int, 7>{}, s); break;
          default: break;
        }
      }
    });
  });
}

// Column sums over rows [r0, r1) in float, added row by row into dgamma
// and dbeta, which the caller zeroes (and keeps short of many rows, merging
// blocks in double): dgamma[d] += sum(dy * ((x - hi[r]) - lo[r]) * s[r]),
// dbeta[d] += sum(dy) (dbeta may be null).
template <class Arch>
void ln_param_sums(const float* x, const float* dy, int64_t D, int64_t r0, int64_t r1,
                   const float* mean_hi, const float* mean_lo, const float* scale, float* dgamma,
                   float* dbeta) {
  using S = simd<Arch>;
  using B = typename S::batch;
  constexpr int64_t W = static_cast<int64_t>(S::width);
  // Up to four rows per sweep along the columns: dgamma and dbeta are loaded
  // and stored once per sweep, each column still adding its rows in order.
  // Each sweep also prefetches the rows (r1 - r0) further on into L2: the
  // caller's next group, which its next pass reads from memory.
  const int64_t ahead = W >= 4 ? (r1 - r0) * D : 0;
  // NR rows from row r; a constant where it is 4, so that the sweep's loop
  // over the rows unrolls without a test per row and vector.
  auto rows = [&](int64_t r, auto nrows) {
    const int nr = nrows;
    B hi[4], lo[4], s[4];
    const float* xr[4];
    const float* gr[4];
    for (int k = 0; k < nr; ++k) {
      hi[k] = S::set1(mean_hi[r + k]);
      lo[k] = S::set1(mean_lo[r + k]);
      s[k] = S::set1(scale[r + k]);
      xr[k] = x + (r + k) * D;
      gr[k] = dy + (r + k) * D;
    }
    auto sweep = [&](int64_t j, B dg, B db, const auto& load) {
      for (int k = 0; k < nr; ++k) {
        const B g = load(gr[k] + j);
        dg = S::fma(g, ((load(xr[k] + j) - hi[k]) - lo[k]) * s[k], dg);
        db = db + g;
      }
      return std::pair<B, B>(dg, db);
    };
    int64_t j = 0;
    for (; j + W <= D; j += W) {
      if (ahead != 0 && j % 16 == 0)
        for (int k = 0; k < nr; ++k) {
          __builtin_prefetch(xr[k] + ahead + j, 0, 2);
          __builtin_prefetch(gr[k] + ahead + j, 0, 2);
        }
      const auto o = sweep(j, S::load(dgamma + j), dbeta ? S::load(dbeta + j) : S::zero(),
                           [](const float* p) { return S::load(p); });
      S::store(dgamma + j, o.first);
      if (dbeta) S::store(dbeta + j, o.second);
    }
    if (j < D) {
      const int64_t n = D - j;
      const auto o = sweep(j, S::load_partial(dgamma + j, n), dbeta ? S::load_partial(dbeta + j, n) : S::zero(),
                           [n](const float* p) { return S::load_partial(p, n); });
      S::store_partial(dgamma + j, o.first, n);
      if (dbeta) S::store_partial(dbeta + j, o.second, n);
    }
  };
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) rows(r, std::integral_constant<int, 4>{});
  if (r < r1) rows(r, static_cast<int>(r1 - r));
}

}  // namespace
}  // namespace nk::kernels
