// Numerics: large offsets, constant and NaN channels, determinism across
// thread counts and buffer alignment, and finite differences of the reference.
#include "layouts.hpp"
#include "test_util.hpp"

namespace {

using nkt::IsaTest;
using nkt::poisoned;
using nkt::random_vec;

class BnNumerics : public IsaTest {};

// mean 1e4, std 0.1: E[x^2] - E[x]^2 in float32 cannot normalize this; and
// mean 3e11, spread 1e5 (the mean 3e6 standard deviations from 0). Long
// runs (tiles of 5445 elements in one channel) and short ones of 2 elements
// down 4096 rows: every ISA to float rounding of y. Spreads of 1e25 to
// 1e34, whose backward coefficient of (x - mean), ~1/spread^2, is below
// float's range, keep dx as exact.
TEST_P(BnNumerics, LargeOffsetSmallSpread) {
  struct Case {
    ref::Layout l;
    float offset, spread;
  };
  for (const Case& k : {Case{nkt::nchw(4, 3, 33, 31), 1e4f, 0.1f}, Case{nkt::nhwc(4, 17, 33, 31), 1e4f, 0.1f},
                        Case{nkt::nchw(2, 2, 300, 300), 1e4f, 0.1f}, Case{nkt::nchw(4, 3, 55, 99), 1e4f, 0.1f},
                        Case{nkt::nchw(4, 3, 55, 99), 3e11f, 1e5f}, Case{nkt::nchw(4096, 3, 2, 1), 3e11f, 1e5f},
                        // Squares past FLT_MAX within a tile, in each kind of tile.
                        Case{nkt::nchw(1, 2, 64, 64), 0.0f, 3e18f}, Case{nkt::nhwc(64, 3, 8, 8), 0.0f, 3e18f},
                        Case{nkt::nchw(4096, 3, 2, 1), 0.0f, 3e18f},
                        // Backward coefficients past float's range.
                        Case{nkt::nchw(2, 3, 17, 9), 0.0f, 1e25f}, Case{nkt::nhwc(4, 17, 5, 7), 1e30f, 3e29f},
                        Case{nkt::nchw(4096, 3, 2, 1), 0.0f, 1e30f}, Case{nkt::nhwc(2, 5, 17, 9), 0.0f, 1e34f}}) {
    const ref::Layout& l = k.l;
    SCOPED_TRACE(nkt::layout_name(l) + " offset " + std::to_string(k.offset));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 21, k.offset, k.spread);
    const auto dy = random_vec(x.size(), 22);
    const auto d = nkt::desc_of(l);
    auto y = poisoned(x.size());
    std::vector<float> sm(C), si(C);
    ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y.data(), nullptr, nullptr, sm.data(), si.data(),
                                     nullptr, nullptr),
              NK_OK);
    const auto s = ref::batch_stats(x, ch, C);
    const auto ry = ref::normalize(x, ch, s.mean, s.var, 1e-3, {}, {});
    double err = 0;
    for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(y[i] - ry[i]));
    EXPECT_LE(err, 1e-2);
    // The split mean keeps the result near float rounding of y itself.
    EXPECT_LE(err, 2e-6);
    // Backward is exact too, although the saved mean is a rounded float.
    auto dx = poisoned(x.size());
    ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(),
                             nullptr, nullptr),
              NK_OK);
    const auto g = ref::backward(x, dy, ch, C, 1e-3, {});
    EXPECT_LE(nkt::rel_error(dx, g.dx, nkt::rms(g.dx)), 5e-5);
  }
}

// A spread of 1e-22 with epsilon 1e-45 (the least positive float): invstd
// 1e22, whose backward coefficient of (x - mean), ~invstd^2, passes FLT_MAX.
TEST_P(BnNumerics, TinySpreadTinyEpsilon) {
  for (const auto& l : {nkt::nchw(3, 5, 7, 9), nkt::nhwc(3, 5, 7, 9)}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 35, 0.0f, 1e-22f), dy = random_vec(x.size(), 36);
    const auto gamma = random_vec(C, 37, 1.0f, 0.5f);
    const auto d = nkt::desc_of(l);
    nk_bn_options o;
    nk_bn_options_init(&o);
    o.epsilon = 1e-45f;
    ASSERT_GT(o.epsilon, 0.0f);
    auto y = poisoned(x.size()), dx = poisoned(x.size());
    std::vector<float> sm(C), si(C);
    ASSERT_EQ(nk_bn_forward_training(&d, &o, x.data(), y.data(), gamma.data(), nullptr, sm.data(), si.data(),
                                     nullptr, nullptr),
              NK_OK);
    const double eps = o.epsilon;
    const auto s = ref::batch_stats(x, ch, C);
    EXPECT_LE(nkt::rel_error(y, ref::normalize(x, ch, s.mean, s.var, eps, gamma, {}), 1.0), 5e-5);
    ASSERT_EQ(nk_bn_backward(&d, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(), nullptr,
                             nullptr),
              NK_OK);
    const auto g = ref::backward(x, dy, ch, C, eps, gamma);
    EXPECT_LE(nkt::rel_error(dx, g.dx, nkt::rms(g.dx)), 5e-5);
  }
}

// A caller's saved invstd of 0 in one channel (no forward saves one) gives
// that channel a finite dx and leaves the others' bits as they were.
TEST_P(BnNumerics, ZeroSavedInvstdStaysInItsChannel) {
  for (const auto& l : {nkt::nchw(3, 5, 7, 9), nkt::nhwc(3, 5, 7, 9)}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 38), dy = random_vec(x.size(), 39);
    const auto d = nkt::desc_of(l);
    auto y = poisoned(x.size()), dx = poisoned(x.size()), dx0 = poisoned(x.size());
    std::vector<float> sm(C), si(C);
    ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y.data(), nullptr, nullptr, sm.data(), si.data(),
                                     nullptr, nullptr),
              NK_OK);
    ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(), nullptr,
                             nullptr),
              NK_OK);
    si[1] = 0.0f;
    ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx0.data(), nullptr,
                             nullptr),
              NK_OK);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::isfinite(dx0[i])) << "at " << i;
      if (ch[i] != 1) {
        ASSERT_EQ(dx0[i], dx[i]) << "at " << i;
      }
    }
  }
}

TEST_P(BnNumerics, ConstantChannelGivesBeta) {
  for (const auto& l : {nkt::nchw(3, 5, 7, 9), nkt::nhwc(3, 5, 7, 9)}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    auto x = random_vec(ref::total(l), 31);
    for (size_t i = 0; i < x.size(); ++i)
      if (ch[i] == 2) x[i] = 1234.567f;
    const auto gamma = random_vec(C, 32), beta = random_vec(C, 33);
    const auto d = nkt::desc_of(l);
    auto y = poisoned(x.size());
    std::vector<float> sm(C), si(C);
    ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y.data(), gamma.data(), beta.data(), sm.data(),
                                     si.data(), nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(sm[2], 1234.567f);
    EXPECT_FLOAT_EQ(si[2], static_cast<float>(1.0 / std::sqrt(1e-3f)));
    for (size_t i = 0; i < x.size(); ++i)
      if (ch[i] == 2) {
        ASSERT_EQ(y[i], beta[2]) << "at " << i;
      }
  }
}

TEST_P(BnNumerics, NanStaysInItsChannel) {
  for (const auto& l : {nkt::nchw(3, 5, 7, 9), nkt::nhwc(3, 5, 7, 9), nkt::nchw(2, 4, 1, 1)}) {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      SCOPED_TRACE(nkt::layout_name(l) + " bad=" + std::to_string(bad));
      int64_t C;
      const auto ch = ref::channel_of(l, &C);
      auto x = random_vec(ref::total(l), 41);
      size_t first = 0;
      while (ch[first] != 1) ++first;
      x[first + 0] = bad;
      const auto d = nkt::desc_of(l);
      auto y = poisoned(x.size());
      std::vector<float> sm(C), si(C), mm(C, 0.0f), mv(C, 1.0f);
      ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y.data(), nullptr, nullptr, sm.data(), si.data(),
                                       mm.data(), mv.data()),
                NK_OK);
      // Every statistic of the channel, the mean too (an Inf alone would
      // leave it infinite).
      EXPECT_TRUE(std::isnan(sm[1]) && std::isnan(si[1]));
      EXPECT_TRUE(std::isnan(mm[1]) && std::isnan(mv[1]));
      for (size_t i = 0; i < x.size(); ++i) {
        if (ch[i] == 1) ASSERT_TRUE(std::isnan(y[i])) << "at " << i;
        else ASSERT_TRUE(std::isfinite(y[i])) << "at " << i;
      }
      for (int64_t c = 0; c < C; ++c)
        if (c != 1) {
          EXPECT_TRUE(std::isfinite(sm[c]) && std::isfinite(si[c]) && std::isfinite(mm[c]));
        }
    }
  }
}

struct Outputs {
  std::vector<float> y, sm, si, mm, mv, dx, dg, db;
  bool operator==(const Outputs& o) const {
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    return same(y, o.y) && same(sm, o.sm) && same(si, o.si) && same(mm, o.mm) && same(mv, o.mv) &&
           same(dx, o.dx) && same(dg, o.dg) && same(db, o.db);
  }
};

// Outputs of forward training and backward, written at `shift` floats past
// an aligned allocation.
Outputs run_all(const ref::Layout& l, int threads, int shift, int64_t stream_threshold = -1) {
  EXPECT_EQ(nk_set_num_threads(threads), NK_OK);
  EXPECT_EQ(nk_set_stream_threshold(stream_threshold), NK_OK);
  int64_t C;
  ref::channel_of(l, &C);
  const auto x = random_vec(ref::total(l), 51, 3.0f, 2.0f);
  const auto dy = random_vec(x.size(), 52);
  const auto gamma = random_vec(C, 53), beta = random_vec(C, 54);
  const auto d = nkt::desc_of(l);
  Outputs o{{}, std::vector<float>(C), std::vector<float>(C), std::vector<float>(C, 0.5f),
            std::vector<float>(C, 2.0f), {}, std::vector<float>(C), std::vector<float>(C)};
  std::vector<float> ybuf(x.size() + 16), dxbuf(x.size() + 16);
  EXPECT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), ybuf.data() + shift, gamma.data(), beta.data(),
                                   o.sm.data(), o.si.data(), o.mm.data(), o.mv.data()),
            NK_OK);
  EXPECT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), gamma.data(), o.sm.data(), o.si.data(),
                           dxbuf.data() + shift, o.dg.data(), o.db.data()),
            NK_OK);
  o.y.assign(ybuf.begin() + shift, ybuf.begin() + shift + x.size());
  o.dx.assign(dxbuf.begin() + shift, dxbuf.begin() + shift + x.size());
  return o;
}

TEST_P(BnNumerics, BitwiseIdenticalForAnyThreadCountAndAlignment) {
  // Shapes that take different work partitions at 1, 2 and 3 threads, with
  // several reduction blocks per channel, and outputs large enough to stream.
  for (const auto& l : {nkt::nchw(4, 3, 130, 130), nkt::nchw(4, 8, 33, 33), nkt::nhwc(64, 33, 33, 3),
                        nkt::nhwc(3, 300, 17, 5), nkt::nchw(2, 40, 300, 301), ref::Layout{{6, 5, 4, 3}, {1, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    const Outputs base = run_all(l, 1, 0);
    EXPECT_TRUE(run_all(l, 1, 0) == base) << "run to run";
    EXPECT_TRUE(run_all(l, 2, 0) == base) << "2 threads";
    EXPECT_TRUE(run_all(l, 3, 1) == base) << "3 threads, shifted output";
    EXPECT_TRUE(run_all(l, 2, 5) == base) << "2 threads, shifted output";
    EXPECT_TRUE(run_all(l, 2, 3, 0) == base) << "2 threads, streaming stores";
    EXPECT_TRUE(run_all(l, 1, 0, 0) == base) << "1 thread, streaming stores";
  }
}

NKT_INSTANTIATE_ISAS(BnNumerics);

// The reference gradient itself, against central differences in double.
TEST(BnReference, GradientMatchesFiniteDifferences) {
  for (const auto& l : {nkt::nchw(2, 3, 2, 3), nkt::nhwc(3, 2, 1, 3), ref::Layout{{2, 3, 2, 2}, {1, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 61, 0.3f, 1.5f);
    const auto dy = random_vec(x.size(), 62);
    const auto gamma = random_vec(C, 63, 1.0f, 0.3f), beta = random_vec(C, 64);
    const double eps = 1e-3;
    auto loss = [&](const std::vector<double>& xv, const std::vector<double>& gv, const std::vector<double>& bv) {
      std::vector<double> mean(C, 0.0), var(C, 0.0), n(C, 0.0);
      for (size_t i = 0; i < xv.size(); ++i) mean[ch[i]] += xv[i], n[ch[i]] += 1;
      for (int64_t c = 0; c < C; ++c) mean[c] /= n[c];
      for (size_t i = 0; i < xv.size(); ++i) var[ch[i]] += (xv[i] - mean[ch[i]]) * (xv[i] - mean[ch[i]]);
      double L = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        const int64_t c = ch[i];
        L += dy[i] * (gv[c] * (xv[i] - mean[c]) / std::sqrt(var[c] / n[c] + eps) + bv[c]);
      }
      return L;
    };
    std::vector<double> xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end()), bd(beta.begin(), beta.end());
    const auto g = ref::backward(x, dy, ch, C, eps, gamma);
    const double h = 1e-6;
    auto central = [&](std::vector<double>& v, size_t i) {
      const double keep = v[i];
      v[i] = keep + h;
      const double up = loss(xd, gd, bd);
      v[i] = keep - h;
      const double down = loss(xd, gd, bd);
      v[i] = keep;
      return (up - down) / (2 * h);
    };
    for (size_t i = 0; i < xd.size(); ++i) EXPECT_NEAR(central(xd, i), g.dx[i], 1e-6) << "dx " << i;
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(central(gd, c), g.dgamma[c], 1e-6) << "dgamma " << c;
      EXPECT_NEAR(central(bd, c), g.dbeta[c], 1e-6) << "dbeta " << c;
    }
  }
}

}  // namespace
