// Split statistics: a batch cut into unequal parts, merged and applied,
// equals Batch Norm of the whole batch, forward and backward.
#include <tuple>

#include "layouts.hpp"
#include "test_util.hpp"

namespace {

using nkt::random_vec;

class SyncBn : public nkt::IsaTest {};

TEST_P(SyncBn, ThreeUnequalPartsEqualTheWholeBatch) {
  const std::vector<int64_t> parts = {2, 3, 6};  // samples per process
  for (bool channels_last : {false, true}) {
    SCOPED_TRACE(channels_last ? "NHWC" : "NCHW");
    const int64_t N = 11, C = 17, H = 5, W = 7;
    const auto whole_layout = channels_last ? nkt::nhwc(N, C, H, W) : nkt::nchw(N, C, H, W);
    const int64_t per_sample = C * H * W;
    const auto x = random_vec(N * per_sample, 71, 2.0f, 3.0f);
    const auto dy = random_vec(x.size(), 72);
    const auto gamma = random_vec(C, 73), beta = random_vec(C, 74);
    nk_bn_options o;
    nk_bn_options_init(&o);
    o.momentum_convention = NK_MOMENTUM_TORCH;
    o.moving_variance = NK_VARIANCE_UNBIASED;
    o.momentum = 0.1f;

    // The whole batch in one call.
    const auto wd = nkt::desc_of(whole_layout);
    std::vector<float> y(x.size()), sm(C), si(C), mm(C, 0.25f), mv(C, 1.5f), dx(x.size()), dg(C), db(C);
    ASSERT_EQ(nk_bn_forward_training(&wd, &o, x.data(), y.data(), gamma.data(), beta.data(), sm.data(), si.data(),
                                     mm.data(), mv.data()),
              NK_OK);
    ASSERT_EQ(nk_bn_backward(&wd, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                             dg.data(), db.data()),
              NK_OK);

    // Each "process" computes partials of its own samples.
    std::vector<int64_t> counts(parts.size());
    std::vector<double> means(parts.size() * C), m2s(parts.size() * C);
    std::vector<nk_tensor_desc> descs;
    std::vector<int64_t> offsets;
    int64_t off = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
      const auto l = channels_last ? nkt::nhwc(parts[p], C, H, W) : nkt::nchw(parts[p], C, H, W);
      descs.push_back(nkt::desc_of(l));
      offsets.push_back(off);
      ASSERT_EQ(nk_bn_partial_stats(&descs[p], x.data() + off, &counts[p], &means[p * C], &m2s[p * C]), NK_OK);
      off += parts[p] * per_sample;
    }
    // The all-gather, then every process merges and finalizes alike.
    int64_t count;
    std::vector<double> mean(C), m2(C);
    ASSERT_EQ(nk_bn_merge_stats(C, parts.size(), counts.data(), means.data(), m2s.data(), &count, mean.data(),
                                m2.data()),
              NK_OK);
    EXPECT_EQ(count, N * H * W);
    std::vector<float> gm(C), gi(C), gmm(C, 0.25f), gmv(C, 1.5f);
    ASSERT_EQ(nk_bn_finalize_stats(C, &o, count, mean.data(), m2.data(), gm.data(), gi.data(), gmm.data(),
                                   gmv.data()),
              NK_OK);
    EXPECT_LE(nkt::rel_error(gm, sm), 1e-6);
    EXPECT_LE(nkt::rel_error(gi, si), 1e-6);
    EXPECT_LE(nkt::rel_error(gmm, mm), 1e-6);
    EXPECT_LE(nkt::rel_error(gmv, mv), 1e-6);

    std::vector<float> sy(x.size(), nkt::kPoison), sdx(x.size(), nkt::kPoison);
    std::vector<double> sum_dy(C, 0.0), sum_dy_xhat(C, 0.0);
    for (size_t p = 0; p < parts.size(); ++p) {
      ASSERT_EQ(nk_bn_apply(&descs[p], x.data() + offsets[p], sy.data() + offsets[p], gamma.data(), beta.data(),
                            gm.data(), gi.data()),
                NK_OK);
      std::vector<double> a(C), b(C);
      ASSERT_EQ(nk_bn_backward_reduce(&descs[p], x.data() + offsets[p], dy.data() + offsets[p], gm.data(),
                                      gi.data(), a.data(), b.data()),
                NK_OK);
      for (int64_t c = 0; c < C; ++c) sum_dy[c] += a[c], sum_dy_xhat[c] += b[c];  // the all-reduce
    }
    for (size_t p = 0; p < parts.size(); ++p)
      ASSERT_EQ(nk_bn_backward_apply(&descs[p], count, x.data() + offsets[p], dy.data() + offsets[p], gamma.data(),
                                     gm.data(), gi.data(), sum_dy.data(), sum_dy_xhat.data(), sdx.data() + offsets[p]),
                NK_OK);
    EXPECT_LE(nkt::rel_error(sy, y), 1e-5);
    EXPECT_LE(nkt::rel_error(sdx, dx, nkt::rms(dx)), 1e-5);
    EXPECT_LE(nkt::rel_error(sum_dy, db, 1.0), 1e-5);
    EXPECT_LE(nkt::rel_error(sum_dy_xhat, dg, 1.0), 1e-5);

    // And against the float64 reference.
    int64_t rc;
    const auto ch = ref::channel_of(whole_layout, &rc);
    const auto s = ref::batch_stats(x, ch, C);
    EXPECT_LE(nkt::rel_error(sy, ref::normalize(x, ch, s.mean, s.var, 1e-3, gamma, beta)), 5e-5);
  }
}

// Mean 1e4, spread 0.1: with the merged mean in double (the *_mean64
// forms) the split path is as exact as the whole batch in one call.
// Spreads of 1e25 and 3e29: backward coefficients past float's range.
TEST_P(SyncBn, LargeOffsetWithTheDoubleMean) {
  const std::vector<int64_t> parts = {2, 3, 6};
  for (const auto& [channels_last, offset, spread] :
       {std::tuple{false, 1e4f, 0.1f}, std::tuple{true, 1e4f, 0.1f}, std::tuple{false, 0.0f, 1e25f},
        std::tuple{true, 1e30f, 3e29f}}) {
    SCOPED_TRACE(std::string(channels_last ? "NHWC" : "NCHW") + " spread " + std::to_string(spread));
    const int64_t N = 11, C = 5, H = 3, W = 7, per_sample = C * H * W;
    const auto whole_layout = channels_last ? nkt::nhwc(N, C, H, W) : nkt::nchw(N, C, H, W);
    const auto x = random_vec(N * per_sample, 75, offset, spread);
    const auto dy = random_vec(x.size(), 76);
    const auto gamma = random_vec(C, 77), beta = random_vec(C, 78);
    const auto wd = nkt::desc_of(whole_layout);
    std::vector<float> y(x.size()), sm(C), si(C), dx(x.size()), dg(C), db(C);
    ASSERT_EQ(nk_bn_forward_training(&wd, nullptr, x.data(), y.data(), gamma.data(), beta.data(), sm.data(),
                                     si.data(), nullptr, nullptr),
              NK_OK);
    ASSERT_EQ(nk_bn_backward(&wd, nullptr, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                             dg.data(), db.data()),
              NK_OK);
    std::vector<int64_t> counts(parts.size()), offsets;
    std::vector<double> means(parts.size() * C), m2s(parts.size() * C);
    std::vector<nk_tensor_desc> descs;
    int64_t off = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
      descs.push_back(nkt::desc_of(channels_last ? nkt::nhwc(parts[p], C, H, W) : nkt::nchw(parts[p], C, H, W)));
      offsets.push_back(off);
      ASSERT_EQ(nk_bn_partial_stats(&descs[p], x.data() + off, &counts[p], &means[p * C], &m2s[p * C]), NK_OK);
      off += parts[p] * per_sample;
    }
    int64_t count;
    std::vector<double> mean(C), m2(C);
    ASSERT_EQ(nk_bn_merge_stats(C, parts.size(), counts.data(), means.data(), m2s.data(), &count, mean.data(),
                                m2.data()),
              NK_OK);
    std::vector<float> gm(C), gi(C);
    ASSERT_EQ(nk_bn_finalize_stats(C, nullptr, count, mean.data(), m2.data(), gm.data(), gi.data(), nullptr,
                                   nullptr),
              NK_OK);
    auto sy = nkt::poisoned(x.size()), sdx = nkt::poisoned(x.size());
    std::vector<double> sum_dy(C, 0.0), sum_dy_xhat(C, 0.0);
    for (size_t p = 0; p < parts.size(); ++p) {
      ASSERT_EQ(nk_bn_apply_mean64(&descs[p], x.data() + offsets[p], sy.data() + offsets[p], gamma.data(),
                                   beta.data(), mean.data(), gi.data()),
                NK_OK);
      std::vector<double> a(C), b(C);
      ASSERT_EQ(nk_bn_backward_reduce_mean64(&descs[p], x.data() + offsets[p], dy.data() + offsets[p],
                                             mean.data(), gi.data(), a.data(), b.data()),
                NK_OK);
      for (int64_t c = 0; c < C; ++c) sum_dy[c] += a[c], sum_dy_xhat[c] += b[c];
    }
    for (size_t p = 0; p < parts.size(); ++p)
      ASSERT_EQ(nk_bn_backward_apply_mean64(&descs[p], count, x.data() + offsets[p], dy.data() + offsets[p],
                                            gamma.data(), mean.data(), gi.data(), sum_dy.data(), sum_dy_xhat.data(),
                                            sdx.data() + offsets[p]),
                NK_OK);
    int64_t rc;
    const auto ch = ref::channel_of(whole_layout, &rc);
    const auto s = ref::batch_stats(x, ch, C);
    EXPECT_LE(nkt::rel_error(sy, ref::normalize(x, ch, s.mean, s.var, 1e-3, gamma, beta)), 5e-5);
    EXPECT_LE(nkt::rel_error(sy, y), 5e-5);
    EXPECT_LE(nkt::rel_error(sdx, dx, nkt::rms(dx)), 5e-5);
    const auto g = ref::backward(x, dy, ch, C, 1e-3, gamma);
    EXPECT_LE(nkt::rel_error(sdx, g.dx, nkt::rms(g.dx)), 5e-5);
    EXPECT_LE(nkt::rel_error(dx, g.dx, nkt::rms(g.dx)), 5e-5);
    EXPECT_LE(nkt::rel_error(sum_dy_xhat, dg, 1.0), 5e-5);
    EXPECT_LE(nkt::rel_error(sum_dy, db, 1.0), 5e-5);
  }
}

TEST_P(SyncBn, MergeOfOnePartIsThatPart) {
  const auto l = nkt::nchw(3, 4, 5, 6);
  const auto x = random_vec(ref::total(l), 81, 5.0f, 1.0f);
  const auto d = nkt::desc_of(l);
  int64_t n, n2;
  std::vector<double> mean(4), m2(4), mean2(4), m22(4);
  ASSERT_EQ(nk_bn_partial_stats(&d, x.data(), &n, mean.data(), m2.data()), NK_OK);
  ASSERT_EQ(nk_bn_merge_stats(4, 1, &n, mean.data(), m2.data(), &n2, mean2.data(), m22.data()), NK_OK);
  EXPECT_EQ(n, n2);
  EXPECT_EQ(mean, mean2);
  EXPECT_EQ(m2, m22);
  // A part with count 0 contributes nothing.
  const int64_t counts[2] = {0, n};
  std::vector<double> means(8, 123.0), m2s(8, 456.0);
  std::copy(mean.begin(), mean.end(), means.begin() + 4);
  std::copy(m2.begin(), m2.end(), m2s.begin() + 4);
  ASSERT_EQ(nk_bn_merge_stats(4, 2, counts, means.data(), m2s.data(), &n2, mean2.data(), m22.data()), NK_OK);
  EXPECT_EQ(mean, mean2);
  EXPECT_EQ(m2, m22);
  // Parts all of count 0 merge into an empty part (a node of a hierarchical
  // reduction whose processes had no data), which a later merge skips.
  const int64_t none[2] = {0, 0};
  int64_t n0 = -1;
  std::vector<double> mean0(4, 7.0), m20(4, 7.0);
  ASSERT_EQ(nk_bn_merge_stats(4, 2, none, means.data(), m2s.data(), &n0, mean0.data(), m20.data()), NK_OK);
  EXPECT_EQ(n0, 0);
  EXPECT_EQ(mean0, std::vector<double>(4, 0.0));
  EXPECT_EQ(m20, std::vector<double>(4, 0.0));
}

// A constant channel: the tiles' float sums cancel to rounding noise, which
// must not leave a negative M2 that the merge and finalize would reject.
TEST_P(SyncBn, ConstantChannelsGiveNoNegativeM2) {
  for (bool channels_last : {false, true})
    for (int64_t n : {49, 91, 105, 245, 1000, 4099})
      for (float v : {0.1f, -1.4659674167633057f, 3.3f, 1e4f + 0.1f}) {
        SCOPED_TRACE(testing::Message() << (channels_last ? "NHWC " : "NCHW ") << n << " x " << v);
        const auto l = channels_last ? nkt::nhwc(1, 1, 1, n) : nkt::nchw(1, 1, 1, n);
        const auto d = nkt::desc_of(l);
        const std::vector<float> x(static_cast<size_t>(n), v);
        int64_t count, merged;
        double mean, m2, means[2], m2s[2];
        ASSERT_EQ(nk_bn_partial_stats(&d, x.data(), &count, &mean, &m2), NK_OK) << nk_last_error();
        EXPECT_EQ(mean, static_cast<double>(v));
        EXPECT_GE(m2, 0.0);
        EXPECT_LE(m2, 1e-20 * n * static_cast<double>(v) * v);
        const int64_t counts[2] = {count, count};
        means[0] = means[1] = mean;
        m2s[0] = m2s[1] = m2;
        ASSERT_EQ(nk_bn_merge_stats(1, 2, counts, means, m2s, &merged, &mean, &m2), NK_OK) << nk_last_error();
        nk_bn_options o;
        nk_bn_options_init(&o);
        float mo, io;
        ASSERT_EQ(nk_bn_finalize_stats(1, &o, merged, &mean, &m2, &mo, &io, nullptr, nullptr), NK_OK)
            << nk_last_error();
        EXPECT_EQ(mo, v);
      }
}

NKT_INSTANTIATE_ISAS(SyncBn);

}  // namespace
