// Group, Instance, Layer and RMS Normalization against the float64
// references, on every ISA: odd sizes, both layouts, every spatial rank, in
// place, large offsets, constant and NaN groups, determinism.
#include "layouts.hpp"
#include "norm_reference.hpp"
#include "test_util.hpp"

namespace {

using nkt::IsaTest;
using nkt::poisoned;
using nkt::random_vec;

const float* ptr_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

std::vector<float> maybe(bool on, size_t n, uint32_t seed, float mean, float sd) {
  return on ? random_vec(n, seed, mean, sd) : std::vector<float>{};
}

// Channel-first and channel-last layouts of every spatial rank.
std::vector<ref::Layout> sample_layouts(int64_t n, int64_t c) {
  return {
      {{n, c, 3, 11}, {1}},       {{n, 3, 11, c}, {-1}},     // 2-D
      {{n, c, 1, 1}, {1}},        {{n, 1, 1, c}, {-1}},      // one position
      {{n, c, 7}, {1}},           {{n, 7, c}, {-1}},         // 1-D
      {{n, c, 2, 3, 5}, {1}},     {{n, 2, 3, 5, c}, {-1}},   // 3-D
      {{n, c}, {1}},                                          // no spatial dims
  };
}

struct GnCase {
  ref::Layout l;
  int64_t G;
};

std::vector<GnCase> gn_cases() {
  std::vector<GnCase> v;
  const int64_t cg[][2] = {{1, 1}, {3, 1}, {3, 3}, {17, 1}, {17, 17}, {6, 2}, {32, 8}};
  for (int64_t n : {1, 3})
    for (auto& p : cg)
      for (auto& l : sample_layouts(n, p[0])) v.push_back({l, p[1]});
  v.push_back({{{2, 16, 9, 9}, {1}}, 4});
  v.push_back({{{2, 9, 9, 40}, {-1}}, 5});
  v.push_back({{{2, 5, 7, 80}, {-1}}, 8});   // rows of 64 channels or more: map_rows
  v.push_back({{{3, 3, 7, 130}, {-1}}, 13});
  v.push_back({{{2, 3, 6, 5}, {2}}, 3});  // channels between spatial dims
  v.push_back({{{3, 1, 6, 1}, {2}}, 2});  // size-1 dims around the channels
  return v;
}

std::string case_name(const ref::Layout& l, int64_t G) { return nkt::layout_name(l) + " G=" + std::to_string(G); }

// Group Norm (instance = true: Instance Norm through its own entry points).
void check_gn(const ref::Layout& l, int64_t G, bool affine, bool instance, uint32_t seed) {
  SCOPED_TRACE(case_name(l, G) + (affine ? " affine" : " plain") + (instance ? " instance" : ""));
  int64_t C;
  ref::channel_of(l, &C);
  const int64_t N = l.dims[0];
  const auto x = random_vec(ref::total(l), seed, 0.5f, 2.0f);
  const auto dy = random_vec(x.size(), seed + 1);
  const auto gamma = maybe(affine, C, seed + 2, 1.0f, 0.5f), beta = maybe(affine, C, seed + 3, 0.0f, 1.0f);
  const auto d = nkt::desc_of(l);
  // epsilon 1e-3 as in the BN tests: one-element groups (exact dx = 0) then
  // lose no more than BN's to the cancellation of dy * invstd terms.
  const double eps = 1e-3;
  nk_gn_options go;
  nk_gn_options_init(&go);
  go.groups = static_cast<int32_t>(G);
  go.epsilon = 1e-3f;
  nk_in_options io;
  nk_in_options_init(&io);
  io.epsilon = 1e-3f;
  auto y = poisoned(x.size()), sm = poisoned(N * G), si = poisoned(N * G);
  if (instance) {
    ASSERT_EQ(nk_instancenorm_forward_training(&d, &io, x.data(), y.data(), ptr_or_null(gamma),
                                               ptr_or_null(beta), sm.data(), si.data(), nullptr, nullptr),
              NK_OK)
        << nk_last_error();
  } else {
    ASSERT_EQ(nk_groupnorm_forward(&d, &go, x.data(), y.data(), ptr_or_null(gamma), ptr_or_null(beta), sm.data(),
                                   si.data()),
              NK_OK)
        << nk_last_error();
  }
  const auto g = ref::gn_grouping(l, G);
  const auto s = ref::group_stats(x, g);
  EXPECT_LE(nkt::rel_error(y, ref::group_normalize(x, g, s, eps, gamma, beta)), 5e-5);
  std::vector<double> rinv(s.var.size());
  for (size_t k = 0; k < rinv.size(); ++k) rinv[k] = 1.0 / std::sqrt(s.var[k] + eps);
  EXPECT_LE(nkt::rel_error(sm, s.mean, 2.0), 5e-6);
  EXPECT_LE(nkt::rel_error(si, rinv), 5e-6);

  const bool grads = seed % 3 != 0;
  auto dx = poisoned(x.size()), dg = poisoned(C), db = poisoned(C);
  if (instance) {
    ASSERT_EQ(nk_instancenorm_backward(&d, &io, x.data(), dy.data(), ptr_or_null(gamma), sm.data(), si.data(),
                                       dx.data(), grads ? dg.data() : nullptr, grads ? db.data() : nullptr),
              NK_OK)
        << nk_last_error();
  } else {
    ASSERT_EQ(nk_groupnorm_backward(&d, &go, x.data(), dy.data(), ptr_or_null(gamma), sm.data(), si.data(),
                                    dx.data(), grads ? dg.data() : nullptr, grads ? db.data() : nullptr),
              NK_OK)
        << nk_last_error();
  }
  const auto rg = ref::group_backward(x, dy, g, eps, gamma);
  // Floor 1: one-element groups have exact dx = 0, reached as the difference
  // of float coefficients times dy (gamma * invstd is up to ~80 here).
  EXPECT_LE(nkt::rel_error(dx, rg.dx, std::max(1.0, nkt::rms(rg.dx))), 5e-5);
  if (grads) {
    EXPECT_LE(nkt::rel_error(dg, rg.dgamma, std::max(1.0, nkt::rms(rg.dgamma))), 5e-5);
    EXPECT_LE(nkt::rel_error(db, rg.dbeta, std::max(1.0, nkt::rms(rg.dbeta))), 5e-5);
  } else {
    for (int64_t c = 0; c < C; ++c) EXPECT_TRUE(dg[c] == nkt::kPoison && db[c] == nkt::kPoison);
  }
}

class GroupNorm : public IsaTest {};

TEST_P(GroupNorm, MatchesReference) {
  uint32_t seed = 1;
  for (int64_t threshold : {int64_t{-1}, int64_t{0}}) {
    ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
    for (const auto& c : gn_cases()) {
      check_gn(c.l, c.G, true, false, seed++);
      check_gn(c.l, c.G, false, false, seed++);
    }
  }
}

TEST_P(GroupNorm, LargeWithStreamingStores) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  check_gn({{2, 64, 40, 41}, {1}}, 32, true, false, 7);
  check_gn({{2, 40, 41, 64}, {-1}}, 32, true, false, 8);
}

TEST_P(GroupNorm, InPlace) {
  for (const ref::Layout& l : {ref::Layout{{3, 6, 7, 5}, {1}}, ref::Layout{{3, 7, 5, 6}, {-1}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    const auto x = random_vec(ref::total(l), 11, 0.5f, 2.0f), dy = random_vec(x.size(), 12);
    const auto gamma = random_vec(6, 13), beta = random_vec(6, 14);
    const auto d = nkt::desc_of(l);
    nk_gn_options o = NK_GN_OPTIONS_INIT;
    o.groups = 3;
    std::vector<float> y(x.size()), sm(9), si(9), dx(x.size());
    ASSERT_EQ(nk_groupnorm_forward(&d, &o, x.data(), y.data(), gamma.data(), beta.data(), sm.data(), si.data()),
              NK_OK);
    auto in = x;
    ASSERT_EQ(nk_groupnorm_forward(&d, &o, in.data(), in.data(), gamma.data(), beta.data(), nullptr, nullptr), NK_OK);
    EXPECT_EQ(in, y);
    ASSERT_EQ(nk_groupnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                                    nullptr, nullptr),
              NK_OK);
    auto g = dy;
    std::vector<float> dg(6), db(6), dg2(6), db2(6);
    ASSERT_EQ(nk_groupnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                                    dg.data(), db.data()),
              NK_OK);
    ASSERT_EQ(nk_groupnorm_backward(&d, &o, x.data(), g.data(), gamma.data(), sm.data(), si.data(), g.data(),
                                    dg2.data(), db2.data()),
              NK_OK);
    EXPECT_EQ(g, dx);
    EXPECT_EQ(dg, dg2);
    EXPECT_EQ(db, db2);
  }
}

NKT_INSTANTIATE_ISAS(GroupNorm);

class InstanceNorm : public IsaTest {};

TEST_P(InstanceNorm, TrainingAndBackwardMatchReference) {
  uint32_t seed = 300;
  for (int64_t n : {1, 3})
    for (int64_t c : {1, 3, 17})
      for (const auto& l : sample_layouts(n, c)) {
        const bool affine = seed % 2 == 0;
        check_gn(l, c, affine, true, seed++);
      }
}

TEST_P(InstanceNorm, MovingStatisticsAndInference) {
  uint32_t seed = 400;
  for (int64_t c : {1, 3, 17})
    for (const auto& l : sample_layouts(3, c)) {
      const int64_t L = ref::total(l) / (3 * c);
      SCOPED_TRACE(nkt::layout_name(l));
      const auto x = random_vec(ref::total(l), seed++, 1.0f, 2.0f);
      const auto d = nkt::desc_of(l);
      for (int32_t conv : {NK_MOMENTUM_TORCH, NK_MOMENTUM_TF})
        for (int32_t var : {NK_VARIANCE_UNBIASED, NK_VARIANCE_BIASED}) {
          if (var == NK_VARIANCE_UNBIASED && L < 2) continue;
          nk_in_options o;
          nk_in_options_init(&o);
          o.momentum = 0.3f;
          o.momentum_convention = conv;
          o.moving_variance = var;
          auto mm = random_vec(c, seed++), mv = random_vec(c, seed++, 2.0f, 0.3f);
          std::vector<double> rmm(mm.begin(), mm.end()), rmv(mv.begin(), mv.end());
          auto y = poisoned(x.size());
          ASSERT_EQ(nk_instancenorm_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, nullptr, nullptr,
                                                     mm.data(), mv.data()),
                    NK_OK)
              << nk_last_error();
          const auto g = ref::gn_grouping(l, c);
          const auto s = ref::group_stats(x, g);
          const double keep = conv == NK_MOMENTUM_TF ? 0.3 : 0.7;
          for (int64_t ch = 0; ch < c; ++ch) {
            double mu = 0, v = 0;
            for (int64_t n = 0; n < 3; ++n) {
              mu += s.mean[n * c + ch] / 3;
              v += s.var[n * c + ch] / 3 * (var == NK_VARIANCE_UNBIASED ? double(L) / (L - 1) : 1.0);
            }
            rmm[ch] = keep * rmm[ch] + (1 - keep) * mu;
            rmv[ch] = keep * rmv[ch] + (1 - keep) * v;
          }
          EXPECT_LE(nkt::rel_error(mm, rmm), 5e-6);
          EXPECT_LE(nkt::rel_error(mv, rmv), 5e-6);
          // Inference with those statistics is per-channel normalization.
          const auto gamma = random_vec(c, seed++), beta = random_vec(c, seed++);
          auto yi = poisoned(x.size());
          ASSERT_EQ(nk_instancenorm_forward_inference(&d, &o, x.data(), yi.data(), gamma.data(), beta.data(),
                                                      mm.data(), mv.data()),
                    NK_OK)
              << nk_last_error();
          int64_t C;
          const auto ch = ref::channel_of(l, &C);
          std::vector<double> fm(mm.begin(), mm.end()), fv(mv.begin(), mv.end());
          EXPECT_LE(nkt::rel_error(yi, ref::normalize(x, ch, fm, fv, 1e-5, gamma, beta)), 5e-5);
          auto inplace = x;
          ASSERT_EQ(nk_instancenorm_forward_inference(&d, &o, inplace.data(), inplace.data(), gamma.data(),
                                                      beta.data(), mm.data(), mv.data()),
                    NK_OK);
          EXPECT_EQ(inplace, yi);
        }
    }
}

NKT_INSTANTIATE_ISAS(InstanceNorm);

// ---- Layer Norm and RMSNorm ----

struct LnCase {
  ref::Layout l;
  int64_t R, D;
};

std::vector<LnCase> ln_cases() {
  std::vector<LnCase> v;
  for (int64_t D : {1, 3, 4, 7, 8, 9, 15, 16, 17, 33, 4099})
    for (int64_t R : {1, 3, 37}) {
      if (D == 4099 && R == 37) continue;
      v.push_back({{{R, D}, {-1}}, R, D});
    }
  v.push_back({{{2, 3, 33}, {2}}, 6, 33});        // several leading dims
  v.push_back({{{5, 3, 11}, {-2, -1}}, 5, 33});   // two normalized dims
  v.push_back({{{2, 1, 7}, {-1}}, 2, 7});
  v.push_back({{{300, 20}, {-1}}, 300, 20});      // several row blocks
  v.push_back({{{3, 2, 40000}, {-1}}, 6, 40000}); // several tiles per row
  return v;
}

void check_ln(const LnCase& c, bool affine, bool rms, uint32_t seed) {
  SCOPED_TRACE(nkt::layout_name(c.l) + (affine ? " affine" : " plain") + (rms ? " rms" : ""));
  const auto x = random_vec(ref::total(c.l), seed, 0.5f, 2.0f);
  const auto dy = random_vec(x.size(), seed + 1);
  const auto gamma = maybe(affine, c.D, seed + 2, 1.0f, 0.5f), beta = maybe(affine, c.D, seed + 3, 0.0f, 1.0f);
  const auto d = nkt::desc_of(c.l);
  const double eps = 1e-3;
  nk_ln_options lo;
  nk_ln_options_init(&lo);
  lo.epsilon = 1e-3f;
  auto y = poisoned(x.size()), sm = poisoned(c.R), si = poisoned(c.R);
  auto dx = poisoned(x.size()), dg = poisoned(c.D), db = poisoned(c.D);
  const bool grads = seed % 3 != 0;
  if (rms) {
    ASSERT_EQ(nk_rmsnorm_forward(&d, &lo, x.data(), y.data(), ptr_or_null(gamma), si.data()), NK_OK)
        << nk_last_error();
    EXPECT_LE(nkt::rel_error(y, ref::rms_forward(x, c.R, c.D, eps, gamma)), 5e-5);
    EXPECT_LE(nkt::rel_error(si, ref::rms_rstd(x, c.R, c.D, eps)), 5e-6);
    ASSERT_EQ(nk_rmsnorm_backward(&d, &lo, x.data(), dy.data(), ptr_or_null(gamma), si.data(), dx.data(),
                                  grads ? dg.data() : nullptr),
              NK_OK)
        << nk_last_error();
    const auto rg = ref::rms_backward(x, dy, c.R, c.D, eps, gamma);
    EXPECT_LE(nkt::rel_error(dx, rg.dx, std::max(0.1, nkt::rms(rg.dx))), 5e-5);
    if (grads) EXPECT_LE(nkt::rel_error(dg, rg.dgamma, std::max(1.0, nkt::rms(rg.dgamma))), 5e-5);
    else EXPECT_EQ(dg[0], nkt::kPoison);
    return;
  }
  ASSERT_EQ(nk_layernorm_forward(&d, &lo, x.data(), y.data(), ptr_or_null(gamma), ptr_or_null(beta), sm.data(),
                                 si.data()),
            NK_OK)
      << nk_last_error();
  const auto g = ref::ln_grouping(c.R, c.D);
  const auto s = ref::group_stats(x, g);
  EXPECT_LE(nkt::rel_error(y, ref::group_normalize(x, g, s, eps, gamma, beta)), 5e-5);
  std::vector<double> rinv(c.R);
  for (int64_t r = 0; r < c.R; ++r) rinv[r] = 1.0 / std::sqrt(s.var[r] + eps);
  EXPECT_LE(nkt::rel_error(sm, s.mean, 2.0), 5e-6);
  EXPECT_LE(nkt::rel_error(si, rinv), 5e-6);
  ASSERT_EQ(nk_layernorm_backward(&d, &lo, x.data(), dy.data(), ptr_or_null(gamma), sm.data(), si.data(),
                                  dx.data(), grads ? dg.data() : nullptr, grads ? db.data() : nullptr),
            NK_OK)
      << nk_last_error();
  const auto rg = ref::group_backward(x, dy, g, eps, gamma);
  EXPECT_LE(nkt::rel_error(dx, rg.dx, std::max(0.1, nkt::rms(rg.dx))), 5e-5);
  if (grads) {
    EXPECT_LE(nkt::rel_error(dg, rg.dgamma, std::max(1.0, nkt::rms(rg.dgamma))), 5e-5);
    EXPECT_LE(nkt::rel_error(db, rg.dbeta, std::max(1.0, nkt::rms(rg.dbeta))), 5e-5);
  } else {
    EXPECT_TRUE(dg[0] == nkt::kPoison && db[0] == nkt::kPoison);
  }
}

class LayerNorm : public IsaTest {};

TEST_P(LayerNorm, MatchesReference) {
  uint32_t seed = 500;
  for (int64_t threshold : {int64_t{-1}, int64_t{0}}) {
    ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
    for (const auto& c : ln_cases()) {
      check_ln(c, true, false, seed++);
      check_ln(c, false, false, seed++);
    }
  }
}

TEST_P(LayerNorm, RmsMatchesReference) {
  uint32_t seed = 600;
  for (int64_t threshold : {int64_t{-1}, int64_t{0}}) {
    ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
    for (const auto& c : ln_cases()) {
      check_ln(c, true, true, seed++);
      check_ln(c, false, true, seed++);
    }
  }
}

TEST_P(LayerNorm, InPlace) {
  const ref::Layout l{{37, 33}, {-1}};
  const auto x = random_vec(ref::total(l), 21, 0.5f, 2.0f), dy = random_vec(x.size(), 22);
  const auto gamma = random_vec(33, 23), beta = random_vec(33, 24);
  const auto d = nkt::desc_of(l);
  std::vector<float> y(x.size()), sm(37), si(37), dx(x.size()), dg(33), db(33), dg2(33), db2(33);
  ASSERT_EQ(nk_layernorm_forward(&d, nullptr, x.data(), y.data(), gamma.data(), beta.data(), sm.data(), si.data()),
            NK_OK);
  auto in = x;
  ASSERT_EQ(nk_layernorm_forward(&d, nullptr, in.data(), in.data(), gamma.data(), beta.data(), nullptr, nullptr),
            NK_OK);
  EXPECT_EQ(in, y);
  ASSERT_EQ(nk_layernorm_backward(&d, nullptr, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                                  dg.data(), db.data()),
            NK_OK);
  auto g = dy;
  ASSERT_EQ(nk_layernorm_backward(&d, nullptr, x.data(), g.data(), gamma.data(), sm.data(), si.data(), g.data(),
                                  dg2.data(), db2.data()),
            NK_OK);
  EXPECT_EQ(g, dx);
  EXPECT_EQ(dg, dg2);
  EXPECT_EQ(db, db2);
  ASSERT_EQ(nk_rmsnorm_forward(&d, nullptr, x.data(), y.data(), gamma.data(), si.data()), NK_OK);
  in = x;
  ASSERT_EQ(nk_rmsnorm_forward(&d, nullptr, in.data(), in.data(), gamma.data(), nullptr), NK_OK);
  EXPECT_EQ(in, y);
  ASSERT_EQ(nk_rmsnorm_backward(&d, nullptr, x.data(), dy.data(), gamma.data(), si.data(), dx.data(), dg.data()),
            NK_OK);
  g = dy;
  ASSERT_EQ(nk_rmsnorm_backward(&d, nullptr, x.data(), g.data(), gamma.data(), si.data(), g.data(), dg2.data()),
            NK_OK);
  EXPECT_EQ(g, dx);
  EXPECT_EQ(dg, dg2);
}

// Streamed outputs at every alignment: rows of whole cache lines stream
// them where every row starts on a line (the pipelined sweeps) and take
// ordinary stores elsewhere. Each offset must give the bits of the first
// and write nothing outside the output; the first matches the reference.
// Rows of 256 and 4,096 floats (pipelined, lines streamed when aligned),
// 48 (pipelined, too short to stream) and 4,099 (never line-aligned).
TEST_P(LayerNorm, StreamedOutputsAtEveryAlignment) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  uint32_t seed = 700;
  for (const auto& rd : {std::pair<int64_t, int64_t>{21, 256}, {5, 4096}, {19, 48}, {3, 4099}})
    for (bool rms : {false, true}) {
      const int64_t R = rd.first, D = rd.second;
      SCOPED_TRACE(std::to_string(R) + "x" + std::to_string(D) + (rms ? " rms" : ""));
      const ref::Layout l{{R, D}, {-1}};
      const auto d = nkt::desc_of(l);
      const auto x = random_vec(ref::total(l), seed++, 0.5f, 2.0f), dy = random_vec(x.size(), seed++);
      const auto gamma = random_vec(D, seed++, 1.0f, 0.5f), beta = random_vec(D, seed++);
      const size_t S = x.size();
      std::vector<float> y0, dx0, dg0, db0;
      for (size_t off = 0; off < 16; ++off) {
        SCOPED_TRACE("output offset " + std::to_string(off));
        auto ybuf = poisoned(S + 32), dxbuf = poisoned(S + 32), sm = poisoned(R), si = poisoned(R);
        auto dg = poisoned(D), db = poisoned(D);
        if (rms) {
          ASSERT_EQ(nk_rmsnorm_forward(&d, nullptr, x.data(), ybuf.data() + off, gamma.data(), si.data()), NK_OK);
          ASSERT_EQ(nk_rmsnorm_backward(&d, nullptr, x.data(), dy.data(), gamma.data(), si.data(),
                                        dxbuf.data() + off, dg.data()),
                    NK_OK);
        } else {
          ASSERT_EQ(nk_layernorm_forward(&d, nullptr, x.data(), ybuf.data() + off, gamma.data(), beta.data(),
                                         sm.data(), si.data()),
                    NK_OK);
          ASSERT_EQ(nk_layernorm_backward(&d, nullptr, x.data(), dy.data(), gamma.data(), sm.data(), si.data(),
                                          dxbuf.data() + off, dg.data(), db.data()),
                    NK_OK);
        }
        for (size_t i = 0; i < S + 32; ++i) {
          if (i >= off && i < off + S) continue;
          ASSERT_EQ(ybuf[i], nkt::kPoison) << i;
          ASSERT_EQ(dxbuf[i], nkt::kPoison) << i;
        }
        const std::vector<float> y(ybuf.begin() + off, ybuf.begin() + off + S),
            dx(dxbuf.begin() + off, dxbuf.begin() + off + S);
        if (off == 0) {
          const double eps = 1e-5;
          if (rms) {
            EXPECT_LE(nkt::rel_error(y, ref::rms_forward(x, R, D, eps, gamma)), 5e-5);
            const auto rg = ref::rms_backward(x, dy, R, D, eps, gamma);
            EXPECT_LE(nkt::rel_error(dx, rg.dx, std::max(0.1, nkt::rms(rg.dx))), 5e-5);
            EXPECT_LE(nkt::rel_error(dg, rg.dgamma, std::max(1.0, nkt::rms(rg.dgamma))), 5e-5);
          } else {
            const auto g = ref::ln_grouping(R, D);
            const auto st = ref::group_stats(x, g);
            EXPECT_LE(nkt::rel_error(y, ref::group_normalize(x, g, st, eps, gamma, beta)), 5e-5);
            const auto rg = ref::group_backward(x, dy, g, eps, gamma);
            EXPECT_LE(nkt::rel_error(dx, rg.dx, std::max(0.1, nkt::rms(rg.dx))), 5e-5);
            EXPECT_LE(nkt::rel_error(dg, rg.dgamma, std::max(1.0, nkt::rms(rg.dgamma))), 5e-5);
            EXPECT_LE(nkt::rel_error(db, rg.dbeta, std::max(1.0, nkt::rms(rg.dbeta))), 5e-5);
          }
          y0 = y, dx0 = dx, dg0 = dg, db0 = db;
        } else {
          EXPECT_TRUE(y == y0);
          EXPECT_TRUE(dx == dx0);
          EXPECT_TRUE(dg == dg0);
          EXPECT_TRUE(db == db0);
        }
      }
    }
  ASSERT_EQ(nk_set_stream_threshold(-1), NK_OK);
}

NKT_INSTANTIATE_ISAS(LayerNorm);

}  // namespace
