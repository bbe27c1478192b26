// Numerics of Group, Instance, Layer and RMS Normalization: large offsets,
// constant groups, NaN isolation, bitwise determinism across thread counts,
// alignment and streaming stores; finite differences of the references.
#include <tuple>

#include "layouts.hpp"
#include "norm_reference.hpp"
#include "test_util.hpp"

namespace {

using nkt::IsaTest;
using nkt::poisoned;
using nkt::random_vec;

class NormNumerics : public IsaTest {};

nk_gn_options gn_opts(int64_t G) {
  nk_gn_options o;
  nk_gn_options_init(&o);
  o.groups = static_cast<int32_t>(G);
  o.epsilon = 1e-3f;
  return o;
}
nk_ln_options ln_opts() {
  nk_ln_options o;
  nk_ln_options_init(&o);
  o.epsilon = 1e-3f;
  return o;
}

// mean 1e4, std 0.1: E[x^2] - E[x]^2 in float32 cannot normalize this; and
// mean 3e11, spread 1e5, over groups and rows of up to 8191 elements (a
// whole tile): every ISA to float rounding of y. Spreads of 1e25 and 3e29,
// whose backward coefficient of (x - mean) is below float's range, keep dx
// as exact.
TEST_P(NormNumerics, LargeOffsetSmallSpread) {
  struct Case {
    ref::Layout l;
    float offset, spread;
  };
  for (const Case& k : {Case{{{3, 6, 33, 31}, {1}}, 1e4f, 0.1f}, Case{{{3, 33, 31, 6}, {-1}}, 1e4f, 0.1f},
                        Case{{{2, 6, 63, 65}, {1}}, 3e11f, 1e5f}, Case{{{2, 6, 63, 65}, {1}}, 0.0f, 3e18f},
                        Case{{{2, 6, 17, 9}, {1}}, 0.0f, 1e25f}, Case{{{2, 17, 9, 6}, {-1}}, 1e30f, 3e29f}}) {
    const ref::Layout& l = k.l;
    SCOPED_TRACE(nkt::layout_name(l) + " offset " + std::to_string(k.offset));
    const auto x = random_vec(ref::total(l), 21, k.offset, k.spread), dy = random_vec(x.size(), 22);
    const auto d = nkt::desc_of(l);
    const auto o = gn_opts(3);
    auto y = poisoned(x.size()), dx = poisoned(x.size());
    std::vector<float> sm(9), si(9);
    ASSERT_EQ(nk_groupnorm_forward(&d, &o, x.data(), y.data(), nullptr, nullptr, sm.data(), si.data()), NK_OK);
    const auto g = ref::gn_grouping(l, 3);
    const auto ry = ref::group_normalize(x, g, ref::group_stats(x, g), 1e-3, {}, {});
    double err = 0;
    for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(y[i] - ry[i]));
    EXPECT_LE(err, 2e-6);
    ASSERT_EQ(nk_groupnorm_backward(&d, &o, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(), nullptr,
                                    nullptr),
              NK_OK);
    const auto rg = ref::group_backward(x, dy, g, 1e-3, {});
    EXPECT_LE(nkt::rel_error(dx, rg.dx, nkt::rms(rg.dx)), 5e-5);
  }
  // Layer Norm rows, short and long.
  for (const auto& [D, offset, spread] : {std::tuple{33, 1e4f, 0.1f}, std::tuple{4099, 1e4f, 0.1f},
                                          std::tuple{8191, 1e4f, 0.1f}, std::tuple{4099, 3e11f, 1e5f},
                                          std::tuple{8191, 3e11f, 1e5f}, std::tuple{4099, 0.0f, 3e18f},
                                          std::tuple{33, 0.0f, 1e25f}, std::tuple{4099, 1e30f, 3e29f}}) {
    SCOPED_TRACE("D=" + std::to_string(D) + " offset " + std::to_string(offset));
    const ref::Layout l{{5, D}, {-1}};
    const auto x = random_vec(ref::total(l), 23, offset, spread), dy = random_vec(x.size(), 24);
    const auto gamma = random_vec(D, 25, 1.0f, 0.3f);
    const auto d = nkt::desc_of(l);
    const auto o = ln_opts();
    auto y = poisoned(x.size()), dx = poisoned(x.size()), dg = poisoned(D), db = poisoned(D);
    std::vector<float> sm(5), si(5);
    ASSERT_EQ(nk_layernorm_forward(&d, &o, x.data(), y.data(), gamma.data(), nullptr, sm.data(), si.data()), NK_OK);
    const auto g = ref::ln_grouping(5, D);
    const auto ry = ref::group_normalize(x, g, ref::group_stats(x, g), 1e-3, gamma, {});
    EXPECT_LE(nkt::rel_error(y, ry, 1.0), 3e-6);
    ASSERT_EQ(nk_layernorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                                    dg.data(), db.data()),
              NK_OK);
    const auto rg = ref::group_backward(x, dy, g, 1e-3, gamma);
    EXPECT_LE(nkt::rel_error(dx, rg.dx, nkt::rms(rg.dx)), 5e-5);
    EXPECT_LE(nkt::rel_error(dg, rg.dgamma, std::max(1.0, nkt::rms(rg.dgamma))), 5e-5);
    EXPECT_LE(nkt::rel_error(db, rg.dbeta, std::max(1.0, nkt::rms(rg.dbeta))), 5e-5);
    // RMSNorm on the same rows (its mean of squares is the offset's).
    auto ry2 = poisoned(x.size()), rdx = poisoned(x.size()), rdg = poisoned(D);
    std::vector<float> rs(5);
    ASSERT_EQ(nk_rmsnorm_forward(&d, &o, x.data(), ry2.data(), gamma.data(), rs.data()), NK_OK);
    EXPECT_LE(nkt::rel_error(ry2, ref::rms_forward(x, 5, D, 1e-3, gamma), 1.0), 3e-6);
    ASSERT_EQ(nk_rmsnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), rs.data(), rdx.data(), rdg.data()),
              NK_OK);
    const auto rr = ref::rms_backward(x, dy, 5, D, 1e-3, gamma);
    EXPECT_LE(nkt::rel_error(rdx, rr.dx, nkt::rms(rr.dx)), 5e-5);
    EXPECT_LE(nkt::rel_error(rdg, rr.dgamma, std::max(1.0, nkt::rms(rr.dgamma))), 5e-5);
  }
}

// A spread of 1e-22 with epsilon 1e-45: invstd 1e22, whose backward
// coefficient of (x - mean), ~invstd^2, passes FLT_MAX.
TEST_P(NormNumerics, TinySpreadTinyEpsilon) {
  const double eps = 1e-45f;
  for (const ref::Layout& l : {ref::Layout{{3, 6, 7, 9}, {1}}, ref::Layout{{3, 7, 9, 6}, {-1}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    const auto x = random_vec(ref::total(l), 41, 0.0f, 1e-22f), dy = random_vec(x.size(), 42);
    const auto d = nkt::desc_of(l);
    auto o = gn_opts(3);
    o.epsilon = 1e-45f;
    auto y = poisoned(x.size()), dx = poisoned(x.size());
    std::vector<float> sm(9), si(9);
    ASSERT_EQ(nk_groupnorm_forward(&d, &o, x.data(), y.data(), nullptr, nullptr, sm.data(), si.data()), NK_OK);
    ASSERT_EQ(nk_groupnorm_backward(&d, &o, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(), nullptr,
                                    nullptr),
              NK_OK);
    const auto rg = ref::group_backward(x, dy, ref::gn_grouping(l, 3), eps, {});
    EXPECT_LE(nkt::rel_error(dx, rg.dx, nkt::rms(rg.dx)), 5e-5);
  }
  const int64_t R = 5, D = 33;
  const ref::Layout l{{R, D}, {-1}};
  const auto x = random_vec(ref::total(l), 43, 0.0f, 1e-22f), dy = random_vec(x.size(), 44);
  const auto gamma = random_vec(D, 45, 1.0f, 0.3f);
  const auto d = nkt::desc_of(l);
  auto o = ln_opts();
  o.epsilon = 1e-45f;
  auto y = poisoned(x.size()), dx = poisoned(x.size()), rdx = poisoned(x.size());
  std::vector<float> sm(R), si(R), rs(R);
  ASSERT_EQ(nk_layernorm_forward(&d, &o, x.data(), y.data(), gamma.data(), nullptr, sm.data(), si.data()), NK_OK);
  ASSERT_EQ(nk_layernorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(), nullptr,
                                  nullptr),
            NK_OK);
  const auto rg = ref::group_backward(x, dy, ref::ln_grouping(R, D), eps, gamma);
  EXPECT_LE(nkt::rel_error(dx, rg.dx, nkt::rms(rg.dx)), 5e-5);
  ASSERT_EQ(nk_rmsnorm_forward(&d, &o, x.data(), y.data(), gamma.data(), rs.data()), NK_OK);
  ASSERT_EQ(nk_rmsnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), rs.data(), rdx.data(), nullptr), NK_OK);
  const auto rr = ref::rms_backward(x, dy, R, D, eps, gamma);
  EXPECT_LE(nkt::rel_error(rdx, rr.dx, nkt::rms(rr.dx)), 5e-5);
}

TEST_P(NormNumerics, ConstantGroupGivesBeta) {
  for (const ref::Layout& l : {ref::Layout{{3, 6, 7, 9}, {1}}, ref::Layout{{3, 7, 9, 6}, {-1}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    const auto g = ref::gn_grouping(l, 3);
    auto x = random_vec(ref::total(l), 31);
    for (size_t i = 0; i < x.size(); ++i)
      if (g.grp[i] == 4) x[i] = 1234.567f;  // sample 1, group 1 (channels 2, 3)
    const auto gamma = random_vec(6, 32), beta = random_vec(6, 33);
    const auto d = nkt::desc_of(l);
    const auto o = gn_opts(3);
    auto y = poisoned(x.size());
    std::vector<float> sm(9), si(9);
    ASSERT_EQ(nk_groupnorm_forward(&d, &o, x.data(), y.data(), gamma.data(), beta.data(), sm.data(), si.data()),
              NK_OK);
    EXPECT_EQ(sm[4], 1234.567f);
    EXPECT_FLOAT_EQ(si[4], static_cast<float>(1.0 / std::sqrt(1e-3f)));
    for (size_t i = 0; i < x.size(); ++i)
      if (g.grp[i] == 4) {
        ASSERT_EQ(y[i], beta[g.param[i]]) << "at " << i;
      }
  }
  const ref::Layout l{{4, 37}, {-1}};
  auto x = random_vec(ref::total(l), 34);
  for (int64_t d = 0; d < 37; ++d) x[2 * 37 + d] = -55.5f;
  const auto gamma = random_vec(37, 35), beta = random_vec(37, 36);
  const auto d = nkt::desc_of(l);
  const auto o = ln_opts();
  auto y = poisoned(x.size());
  ASSERT_EQ(nk_layernorm_forward(&d, &o, x.data(), y.data(), gamma.data(), beta.data(), nullptr, nullptr), NK_OK);
  for (int64_t k = 0; k < 37; ++k) ASSERT_EQ(y[2 * 37 + k], beta[k]);
}

// Bad values in one group (row) give NaN there and finite values elsewhere.
TEST_P(NormNumerics, NanStaysInItsGroupOrRow) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    SCOPED_TRACE("bad=" + std::to_string(bad));
    for (const ref::Layout& l : {ref::Layout{{3, 6, 7, 9}, {1}}, ref::Layout{{3, 7, 9, 6}, {-1}}}) {
      SCOPED_TRACE(nkt::layout_name(l));
      const auto g = ref::gn_grouping(l, 3);
      auto x = random_vec(ref::total(l), 41);
      size_t first = 0;
      while (g.grp[first] != 4) ++first;
      x[first] = bad;
      const auto d = nkt::desc_of(l);
      const auto o = gn_opts(3);
      auto y = poisoned(x.size());
      std::vector<float> sm(9), si(9);
      ASSERT_EQ(nk_groupnorm_forward(&d, &o, x.data(), y.data(), nullptr, nullptr, sm.data(), si.data()), NK_OK);
      for (size_t i = 0; i < x.size(); ++i) {
        if (g.grp[i] == 4) ASSERT_TRUE(std::isnan(y[i])) << "at " << i;
        else ASSERT_TRUE(std::isfinite(y[i])) << "at " << i;
      }
      for (int k = 0; k < 9; ++k) {
        EXPECT_EQ(std::isnan(sm[k]), k == 4) << k;
        EXPECT_EQ(std::isnan(si[k]), k == 4) << k;
      }
      // Instance Norm: only channel 2 of sample 1.
      std::vector<float> im(18), is(18);
      ASSERT_EQ(nk_instancenorm_forward_training(&d, nullptr, x.data(), y.data(), nullptr, nullptr, im.data(),
                                                 is.data(), nullptr, nullptr),
                NK_OK);
      const auto gi = ref::gn_grouping(l, 6);
      for (size_t i = 0; i < x.size(); ++i) {
        if (gi.grp[i] == gi.grp[first]) ASSERT_TRUE(std::isnan(y[i])) << "at " << i;
        else ASSERT_TRUE(std::isfinite(y[i])) << "at " << i;
      }
      for (int k = 0; k < 18; ++k) {
        EXPECT_EQ(std::isnan(im[k]), k == gi.grp[first]) << k;
        EXPECT_EQ(std::isnan(is[k]), k == gi.grp[first]) << k;
      }
    }
    const ref::Layout l{{4, 37}, {-1}};
    auto x = random_vec(ref::total(l), 42);
    x[2 * 37 + 5] = bad;
    const auto d = nkt::desc_of(l);
    auto y = poisoned(x.size());
    for (int rms = 0; rms < 2; ++rms) {
      std::vector<float> sa(4), sb(4);
      ASSERT_EQ(rms ? nk_rmsnorm_forward(&d, nullptr, x.data(), y.data(), nullptr, sb.data())
                    : nk_layernorm_forward(&d, nullptr, x.data(), y.data(), nullptr, nullptr, sa.data(), sb.data()),
                NK_OK);
      for (int r = 0; r < 4; ++r) {
        if (!rms) {
          EXPECT_EQ(std::isnan(sa[r]), r == 2) << r;
        }
        EXPECT_EQ(std::isnan(sb[r]), r == 2) << r;
      }
      for (int64_t i = 0; i < ref::total(l); ++i) {
        if (i / 37 == 2) ASSERT_TRUE(std::isnan(y[i])) << "at " << i;
        else ASSERT_TRUE(std::isfinite(y[i])) << "at " << i;
      }
    }
  }
}

// Every output of every entry point, concatenated.
std::vector<float> run_all(const ref::Layout& l, int64_t G, int threads, int shift, int64_t threshold = -1) {
  EXPECT_EQ(nk_set_num_threads(threads), NK_OK);
  EXPECT_EQ(nk_set_stream_threshold(threshold), NK_OK);
  int64_t C;
  ref::channel_of(l, &C);
  const int64_t N = l.dims[0], T = ref::total(l);
  const auto x = random_vec(T, 51, 3.0f, 2.0f), dy = random_vec(T, 52);
  const auto gamma = random_vec(C, 53), beta = random_vec(C, 54);
  const auto d = nkt::desc_of(l);
  const auto o = gn_opts(G);
  std::vector<float> out, buf(T + 16), sm(N * C), si(N * C), dg(C), db(C), mm(C, 0.5f), mv(C, 2.0f);
  auto take = [&](const std::vector<float>& v, size_t n, int off = 0) {
    out.insert(out.end(), v.begin() + off, v.begin() + off + n);
  };
  EXPECT_EQ(nk_groupnorm_forward(&d, &o, x.data(), buf.data() + shift, gamma.data(), beta.data(), sm.data(),
                                 si.data()),
            NK_OK);
  take(buf, T, shift), take(sm, N * G), take(si, N * G);
  EXPECT_EQ(nk_groupnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), buf.data() + shift,
                                  dg.data(), db.data()),
            NK_OK);
  take(buf, T, shift), take(dg, C), take(db, C);
  EXPECT_EQ(nk_instancenorm_forward_training(&d, nullptr, x.data(), buf.data() + shift, gamma.data(), beta.data(),
                                             sm.data(), si.data(), mm.data(), mv.data()),
            NK_OK);
  take(buf, T, shift), take(sm, N * C), take(si, N * C), take(mm, C), take(mv, C);
  EXPECT_EQ(nk_instancenorm_backward(&d, nullptr, x.data(), dy.data(), gamma.data(), sm.data(), si.data(),
                                     buf.data() + shift, dg.data(), db.data()),
            NK_OK);
  take(buf, T, shift), take(dg, C), take(db, C);
  // The same data as rows of the last dims for Layer Norm and RMSNorm.
  nk_tensor_desc rd = d;
  rd.num_axes = 1;
  rd.axes[0] = -1;
  const int64_t D = l.dims.back(), R = T / D;
  const auto g2 = random_vec(D, 55), b2 = random_vec(D, 56);
  std::vector<float> rm(R), rs(R), dg2(D), db2(D);
  EXPECT_EQ(nk_layernorm_forward(&rd, nullptr, x.data(), buf.data() + shift, g2.data(), b2.data(), rm.data(), rs.data()),
            NK_OK);
  take(buf, T, shift), take(rm, R), take(rs, R);
  EXPECT_EQ(nk_layernorm_backward(&rd, nullptr, x.data(), dy.data(), g2.data(), rm.data(), rs.data(),
                                  buf.data() + shift, dg2.data(), db2.data()),
            NK_OK);
  take(buf, T, shift), take(dg2, D), take(db2, D);
  EXPECT_EQ(nk_rmsnorm_forward(&rd, nullptr, x.data(), buf.data() + shift, g2.data(), rs.data()), NK_OK);
  take(buf, T, shift), take(rs, R);
  EXPECT_EQ(nk_rmsnorm_backward(&rd, nullptr, x.data(), dy.data(), g2.data(), rs.data(), buf.data() + shift,
                                dg2.data()),
            NK_OK);
  take(buf, T, shift), take(dg2, D);
  return out;
}

TEST_P(NormNumerics, BitwiseIdenticalForAnyThreadCountAndAlignment) {
  const struct {
    ref::Layout l;
    int64_t G;
  } cases[] = {{{{4, 8, 65, 67}, {1}}, 4}, {{{4, 65, 67, 8}, {-1}}, 2}, {{{2, 300, 60, 3}, {-1}}, 3},
               {{{3, 6, 5, 2000}, {-1}}, 2}, {{{1, 2, 600, 300}, {1}}, 1}};
  for (const auto& c : cases) {
    SCOPED_TRACE(nkt::layout_name(c.l));
    const auto base = run_all(c.l, c.G, 1, 0);
    auto same = [&](const std::vector<float>& o) {
      return o.size() == base.size() && std::memcmp(o.data(), base.data(), o.size() * sizeof(float)) == 0;
    };
    EXPECT_TRUE(same(run_all(c.l, c.G, 1, 0))) << "run to run";
    EXPECT_TRUE(same(run_all(c.l, c.G, 2, 0))) << "2 threads";
    EXPECT_TRUE(same(run_all(c.l, c.G, 3, 1))) << "3 threads, shifted output";
    EXPECT_TRUE(same(run_all(c.l, c.G, 2, 3, 0))) << "2 threads, streaming stores";
  }
}

NKT_INSTANTIATE_ISAS(NormNumerics);

// The reference gradients themselves, against central differences in double.
template <class Loss>
double central(std::vector<double>& v, size_t i, const Loss& loss) {
  const double h = 1e-6, keep = v[i];
  v[i] = keep + h;
  const double up = loss();
  v[i] = keep - h;
  const double down = loss();
  v[i] = keep;
  return (up - down) / (2 * h);
}

TEST(NormReference, GroupAndLayerGradientsMatchFiniteDifferences) {
  const double eps = 1e-3;
  struct Case {
    ref::Grouping g;
    size_t n;
  };
  const ref::Layout gl{{2, 4, 2, 3}, {1}}, gh{{2, 3, 2, 4}, {-1}};
  const Case cases[] = {{ref::gn_grouping(gl, 2), 48}, {ref::gn_grouping(gh, 2), 48}, {ref::ln_grouping(3, 5), 15}};
  for (const auto& c : cases) {
    const auto x = random_vec(c.n, 61, 0.3f, 1.5f), dy = random_vec(c.n, 62);
    const auto gamma = random_vec(c.g.params, 63, 1.0f, 0.3f), beta = random_vec(c.g.params, 64);
    std::vector<double> xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end()), bd(beta.begin(), beta.end());
    auto loss = [&] {
      std::vector<double> mean(c.g.groups, 0.0), var(c.g.groups, 0.0), n(c.g.groups, 0.0);
      for (size_t i = 0; i < c.n; ++i) mean[c.g.grp[i]] += xd[i], n[c.g.grp[i]] += 1;
      for (int64_t k = 0; k < c.g.groups; ++k) mean[k] /= n[k];
      for (size_t i = 0; i < c.n; ++i) var[c.g.grp[i]] += (xd[i] - mean[c.g.grp[i]]) * (xd[i] - mean[c.g.grp[i]]);
      double L = 0;
      for (size_t i = 0; i < c.n; ++i) {
        const int64_t k = c.g.grp[i], p = c.g.param[i];
        L += dy[i] * (gd[p] * (xd[i] - mean[k]) / std::sqrt(var[k] / n[k] + eps) + bd[p]);
      }
      return L;
    };
    const auto r = ref::group_backward(x, dy, c.g, eps, gamma);
    for (size_t i = 0; i < c.n; ++i) EXPECT_NEAR(central(xd, i, loss), r.dx[i], 1e-6) << "dx " << i;
    for (int64_t p = 0; p < c.g.params; ++p) {
      EXPECT_NEAR(central(gd, p, loss), r.dgamma[p], 1e-6) << "dgamma " << p;
      EXPECT_NEAR(central(bd, p, loss), r.dbeta[p], 1e-6) << "dbeta " << p;
    }
  }
}

TEST(NormReference, RmsGradientMatchesFiniteDifferences) {
  const int64_t R = 3, D = 5;
  const double eps = 1e-3;
  const auto x = random_vec(R * D, 71, 0.3f, 1.5f), dy = random_vec(R * D, 72);
  const auto gamma = random_vec(D, 73, 1.0f, 0.3f);
  std::vector<double> xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end());
  auto loss = [&] {
    double L = 0;
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += xd[r * D + d] * xd[r * D + d];
      const double rs = 1.0 / std::sqrt(s / D + eps);
      for (int64_t d = 0; d < D; ++d) L += dy[r * D + d] * xd[r * D + d] * rs * gd[d];
    }
    return L;
  };
  const auto g = ref::rms_backward(x, dy, R, D, eps, gamma);
  for (size_t i = 0; i < xd.size(); ++i) EXPECT_NEAR(central(xd, i, loss), g.dx[i], 1e-6) << "dx " << i;
  for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(central(gd, d, loss), g.dgamma[d], 1e-6) << "dgamma " << d;
}

}  // namespace
