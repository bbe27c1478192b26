// Batch Norm against the float64 reference, on every ISA.
#include "layouts.hpp"
#include "test_util.hpp"

namespace {

using nkt::IsaTest;
using nkt::poisoned;
using nkt::random_vec;

struct Params {
  std::vector<float> gamma, beta;
};

Params random_params(int64_t C, bool affine, uint32_t seed) {
  if (!affine) return {};
  auto g = random_vec(C, seed, 1.0f, 0.5f);
  auto b = random_vec(C, seed + 1, 0.0f, 1.0f);
  return {g, b};
}

const float* ptr_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

class BatchNorm : public IsaTest {};

void check_forward_training(const ref::Layout& l, bool affine, int32_t convention, int32_t variance,
                            uint32_t seed) {
  SCOPED_TRACE(nkt::layout_name(l) + (affine ? " affine" : " plain"));
  int64_t C;
  const auto ch = ref::channel_of(l, &C);
  const auto x = random_vec(ref::total(l), seed, 0.5f, 2.0f);
  const Params p = random_params(C, affine, seed + 7);
  const auto d = nkt::desc_of(l);
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.epsilon = 1e-3f;
  o.momentum = 0.9f;
  o.momentum_convention = convention;
  o.moving_variance = variance;
  auto y = poisoned(x.size()), sm = poisoned(C), si = poisoned(C);
  auto mm = random_vec(C, seed + 3), mv = random_vec(C, seed + 4, 2.0f, 0.5f);
  std::vector<double> rmm(mm.begin(), mm.end()), rmv(mv.begin(), mv.end());

  const int64_t count = ref::total(l) / C;
  const bool moving = !(variance == NK_VARIANCE_UNBIASED && count < 2);
  ASSERT_EQ(nk_bn_forward_training(&d, &o, x.data(), y.data(), ptr_or_null(p.gamma), ptr_or_null(p.beta),
                                   sm.data(), si.data(), moving ? mm.data() : nullptr,
                                   moving ? mv.data() : nullptr),
            NK_OK)
      << nk_last_error();

  const auto s = ref::batch_stats(x, ch, C);
  const auto ry = ref::normalize(x, ch, s.mean, s.var, 1e-3, p.gamma, p.beta);
  EXPECT_LE(nkt::rel_error(y, ry), 5e-5);
  std::vector<double> rinv(C);
  for (int64_t c = 0; c < C; ++c) rinv[c] = 1.0 / std::sqrt(s.var[c] + 1e-3);
  EXPECT_LE(nkt::rel_error(sm, s.mean, 2.0), 5e-6);
  EXPECT_LE(nkt::rel_error(si, rinv), 5e-6);
  if (moving) {
    ref::update_moving(rmm, rmv, s, 0.9, convention == NK_MOMENTUM_TORCH, variance == NK_VARIANCE_UNBIASED);
    EXPECT_LE(nkt::rel_error(mm, rmm), 5e-6);
    EXPECT_LE(nkt::rel_error(mv, rmv), 5e-6);
  }
}

TEST_P(BatchNorm, ForwardTrainingMatchesReference) {
  uint32_t seed = 1;
  for (int64_t threshold : {int64_t{-1}, int64_t{0}}) {  // default, then every output streamed
    ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
    for (const auto& l : nkt::sweep_layouts()) {
      check_forward_training(l, true, NK_MOMENTUM_TF, NK_VARIANCE_BIASED, seed++);
      check_forward_training(l, false, NK_MOMENTUM_TORCH, NK_VARIANCE_UNBIASED, seed++);
    }
  }
}

TEST_P(BatchNorm, ForwardInferenceMatchesReference) {
  uint32_t seed = 100;
  for (const auto& l : nkt::sweep_layouts()) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), seed++, -1.0f, 3.0f);
    const Params p = random_params(C, seed % 2 == 0, seed);
    auto mm = random_vec(C, seed + 1), mv = random_vec(C, seed + 2, 2.0f, 0.5f);
    for (auto& v : mv) v = std::fabs(v);
    const auto d = nkt::desc_of(l);
    nk_bn_options o = NK_BN_OPTIONS_INIT;
    auto y = poisoned(x.size());
    ASSERT_EQ(nk_bn_forward_inference(&d, &o, x.data(), y.data(), ptr_or_null(p.gamma), ptr_or_null(p.beta),
                                      mm.data(), mv.data()),
              NK_OK)
        << nk_last_error();
    std::vector<double> rm(mm.begin(), mm.end()), rv(mv.begin(), mv.end());
    EXPECT_LE(nkt::rel_error(y, ref::normalize(x, ch, rm, rv, 1e-3, p.gamma, p.beta)), 5e-5);
  }
}

void check_backward(const ref::Layout& l, bool affine, bool param_grads, uint32_t seed) {
  SCOPED_TRACE(nkt::layout_name(l) + (affine ? " affine" : " plain"));
  int64_t C;
  const auto ch = ref::channel_of(l, &C);
  const auto x = random_vec(ref::total(l), seed, 0.5f, 2.0f);
  const auto dy = random_vec(x.size(), seed + 1, 0.0f, 1.0f);
  const Params p = random_params(C, affine, seed + 2);
  const auto d = nkt::desc_of(l);
  std::vector<float> y(x.size()), sm(C), si(C);
  ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y.data(), ptr_or_null(p.gamma), ptr_or_null(p.beta),
                                   sm.data(), si.data(), nullptr, nullptr),
            NK_OK);
  auto dx = poisoned(x.size()), dg = poisoned(C), db = poisoned(C);
  ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), ptr_or_null(p.gamma), sm.data(), si.data(),
                           dx.data(), param_grads ? dg.data() : nullptr, param_grads ? db.data() : nullptr),
            NK_OK)
      << nk_last_error();
  const auto g = ref::backward(x, dy, ch, C, 1e-3, p.gamma);
  // Relative to the RMS of dx where dx is near zero (a floor for the
  // degenerate one-element channel, whose exact dx is 0).
  EXPECT_LE(nkt::rel_error(dx, g.dx, std::max(0.1, nkt::rms(g.dx))), 5e-5);
  if (param_grads) {
    EXPECT_LE(nkt::rel_error(dg, g.dgamma, std::max(1.0, nkt::rms(g.dgamma))), 5e-5);
    EXPECT_LE(nkt::rel_error(db, g.dbeta, std::max(1.0, nkt::rms(g.dbeta))), 5e-5);
  } else {
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_EQ(dg[c], nkt::kPoison);
      EXPECT_EQ(db[c], nkt::kPoison);
    }
  }
}

TEST_P(BatchNorm, BackwardMatchesReference) {
  uint32_t seed = 200;
  for (int64_t threshold : {int64_t{-1}, int64_t{0}}) {
    ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
    for (const auto& l : nkt::sweep_layouts()) {
      check_backward(l, true, true, seed++);
      const bool param_grads = seed % 2 == 0;
      check_backward(l, false, param_grads, seed++);
    }
  }
}

// Large enough for several reduction blocks per channel and for outputs that
// bypass the cache (non-temporal stores), with an output misaligned by one
// float so the stores' aligned body starts mid-run. 16x1344x14x14 (17 MiB)
// comes from memory: its runs of 196 floats go in blocks of channels.
TEST_P(BatchNorm, LargeTensorsWithStreamingStores) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  // The last: two axes (W, C) of NHWC, rows of 4,257 channels, wider than a
  // parameter chunk, 1,005 of them (not a whole number of row groups).
  for (const auto& l : {nkt::nchw(8, 16, 256, 129), nkt::nhwc(16, 33, 128, 129), nkt::nchw(16, 1344, 14, 14),
                        ref::Layout{{15, 67, 33, 129}, {2, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 5, 1.0f, 2.0f);
    const auto dy = random_vec(x.size(), 6);
    const Params p = random_params(C, true, 7);
    const auto d = nkt::desc_of(l);
    std::vector<float> ybuf(x.size() + 1, nkt::kPoison), sm(C), si(C);
    float* y = ybuf.data() + 1;
    ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y, p.gamma.data(), p.beta.data(), sm.data(),
                                     si.data(), nullptr, nullptr),
              NK_OK);
    const auto s = ref::batch_stats(x, ch, C);
    const auto ry = ref::normalize(x, ch, s.mean, s.var, 1e-3, p.gamma, p.beta);
    EXPECT_LE(nkt::rel_error(y, ry), 5e-5);
    EXPECT_EQ(ybuf[0], nkt::kPoison);
    std::vector<float> dxbuf(x.size() + 1, nkt::kPoison);
    ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), p.gamma.data(), sm.data(), si.data(),
                             dxbuf.data() + 1, nullptr, nullptr),
              NK_OK);
    const auto g = ref::backward(x, dy, ch, C, 1e-3, p.gamma);
    std::vector<float> dx(dxbuf.begin() + 1, dxbuf.end());
    EXPECT_LE(nkt::rel_error(dx, g.dx, nkt::rms(g.dx)), 5e-5);
    EXPECT_EQ(dxbuf[0], nkt::kPoison);
  }
}

// Streamed outputs at every alignment: rows whose stride is whole cache
// lines (short runs of channels, a block's stretch per row; channels last
// through the register-held parameters) stream their whole lines and store
// the rest, wherever the output starts. Every offset must give the bits of
// the aligned output and write nothing outside it.
TEST_P(BatchNorm, StreamedOutputsAtEveryAlignment) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  for (const auto& l : {nkt::nchw(4, 32, 8, 7), ref::Layout{{4, 32, 8, 7}, {1, 2}}, nkt::nhwc(4, 64, 5, 3),
                        ref::Layout{{4, 5, 3, 64}, {2, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    const auto ch = ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 21, 1.0f, 2.0f);
    const auto dy = random_vec(x.size(), 22);
    const Params p = random_params(C, true, 23);
    const auto d = nkt::desc_of(l);
    const size_t S = x.size();
    std::vector<float> y0, dx0, sm(C), si(C);
    for (size_t off = 0; off < 16; ++off) {
      SCOPED_TRACE("output offset " + std::to_string(off));
      auto ybuf = poisoned(S + 32), dxbuf = poisoned(S + 32);
      ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), ybuf.data() + off, p.gamma.data(), p.beta.data(),
                                       sm.data(), si.data(), nullptr, nullptr),
                NK_OK);
      ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), p.gamma.data(), sm.data(), si.data(),
                               dxbuf.data() + off, nullptr, nullptr),
                NK_OK);
      const std::vector<float> y(ybuf.begin() + off, ybuf.begin() + off + S),
          dx(dxbuf.begin() + off, dxbuf.begin() + off + S);
      for (size_t i = 0; i < S + 32; ++i) {
        if (i >= off && i < off + S) continue;
        ASSERT_EQ(ybuf[i], nkt::kPoison) << i;
        ASSERT_EQ(dxbuf[i], nkt::kPoison) << i;
      }
      if (off == 0) {
        const auto s = ref::batch_stats(x, ch, C);
        EXPECT_LE(nkt::rel_error(y, ref::normalize(x, ch, s.mean, s.var, 1e-3, p.gamma, p.beta)), 5e-5);
        const auto g = ref::backward(x, dy, ch, C, 1e-3, p.gamma);
        EXPECT_LE(nkt::rel_error(dx, g.dx, nkt::rms(g.dx)), 5e-5);
        y0 = y;
        dx0 = dx;
      } else {
        EXPECT_TRUE(y == y0);
        EXPECT_TRUE(dx == dx0);
      }
    }
  }
  ASSERT_EQ(nk_set_stream_threshold(-1), NK_OK);
}

TEST_P(BatchNorm, InPlace) {
  for (const auto& l : {nkt::nchw(3, 17, 7, 5), nkt::nhwc(3, 17, 7, 5), ref::Layout{{3, 4, 5, 6}, {1, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 11, 0.5f, 2.0f);
    const auto dy = random_vec(x.size(), 12);
    const Params p = random_params(C, true, 13);
    const auto d = nkt::desc_of(l);
    std::vector<float> y(x.size()), sm(C), si(C), dx(x.size());
    ASSERT_EQ(nk_bn_forward_training(&d, nullptr, x.data(), y.data(), p.gamma.data(), p.beta.data(), sm.data(),
                                     si.data(), nullptr, nullptr),
              NK_OK);
    auto inplace = x;
    ASSERT_EQ(nk_bn_forward_training(&d, nullptr, inplace.data(), inplace.data(), p.gamma.data(),
                                     p.beta.data(), nullptr, nullptr, nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(inplace, y);
    ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), dy.data(), p.gamma.data(), sm.data(), si.data(), dx.data(),
                             nullptr, nullptr),
              NK_OK);
    auto g = dy;
    ASSERT_EQ(nk_bn_backward(&d, nullptr, x.data(), g.data(), p.gamma.data(), sm.data(), si.data(), g.data(),
                             nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(g, dx);
    auto yi = x;
    const auto mm = random_vec(C, 1), mv = random_vec(C, 2, 3.0f, 0.1f);
    std::vector<float> yo(x.size());
    ASSERT_EQ(nk_bn_forward_inference(&d, nullptr, x.data(), yo.data(), nullptr, nullptr, mm.data(), mv.data()),
              NK_OK);
    ASSERT_EQ(nk_bn_forward_inference(&d, nullptr, yi.data(), yi.data(), nullptr, nullptr, mm.data(), mv.data()),
              NK_OK);
    EXPECT_EQ(yi, yo);
  }
}

NKT_INSTANTIATE_ISAS(BatchNorm);

}  // namespace
