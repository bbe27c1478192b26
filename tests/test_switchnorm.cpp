// Switchable Normalization against the float64 reference on every ISA, the
// reference's gradients (weights included) against finite differences,
// numerics, determinism and every error path.
#include <tuple>

#include "layouts.hpp"
#include "norm_reference.hpp"
#include "test_util.hpp"

namespace {

using nkt::IsaTest;
using nkt::poisoned;
using nkt::random_vec;

const float* ptr_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }
std::vector<double> dbl(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<ref::Layout> sn_layouts() {
  std::vector<ref::Layout> v;
  for (int64_t n : {1, 2, 3})
    for (int64_t c : {1, 3, 17}) {
      v.push_back({{n, c, 3, 11}, {1}});
      v.push_back({{n, 3, 11, c}, {-1}});
      v.push_back({{n, c, 7}, {1}});
      v.push_back({{n, 2, c}, {-1}});
      v.push_back({{n, c, 2, 3, 5}, {1}});
      v.push_back({{n, 2, 3, 5, c}, {-1}});
    }
  v.push_back({{2, 40, 9, 9}, {1}});
  v.push_back({{2, 9, 9, 300}, {-1}});
  return v;
}

nk_sn_options sn_opts(int K) {
  nk_sn_options o;
  nk_sn_options_init(&o);
  o.epsilon = 1e-3f;
  o.momentum = 0.9f;
  o.use_bn = K == 3;
  return o;
}

void check_sn(const ref::Layout& l, int K, bool affine, uint32_t seed) {
  SCOPED_TRACE(nkt::layout_name(l) + " K=" + std::to_string(K) + (affine ? " affine" : " plain"));
  int64_t C;
  ref::channel_of(l, &C);
  const int64_t N = l.dims[0];
  // Channel means spread a little, so LN and BN statistics differ from IN.
  auto x = random_vec(ref::total(l), seed, 0.5f, 2.0f);
  const auto ch = ref::channel_of(l, &C);
  for (size_t i = 0; i < x.size(); ++i) x[i] += 0.3f * static_cast<float>(ch[i] % 5);
  const auto dy = random_vec(x.size(), seed + 1);
  const auto gamma = affine ? random_vec(C, seed + 2, 1.0f, 0.5f) : std::vector<float>{};
  const auto beta = affine ? random_vec(C, seed + 3) : std::vector<float>{};
  const auto mw = random_vec(K, seed + 4), vw = random_vec(K, seed + 5);
  const auto d = nkt::desc_of(l);
  const auto o = sn_opts(K);
  auto mm = random_vec(C, seed + 6), mv = random_vec(C, seed + 7, 2.0f, 0.3f);
  const auto mm0 = mm, mv0 = mv;
  auto y = poisoned(x.size());
  ASSERT_EQ(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), ptr_or_null(gamma), ptr_or_null(beta),
                                           mw.data(), vw.data(), mm.data(), mv.data()),
            NK_OK)
      << nk_last_error();
  const auto r = ref::sn_forward(dbl(x), l, mw, vw, dbl(gamma), dbl(beta), 1e-3);
  EXPECT_LE(nkt::rel_error(y, r.y), 5e-5);
  if (K == 3) {
    std::vector<double> rmm(C), rmv(C);
    for (int64_t c = 0; c < C; ++c) {
      rmm[c] = 0.9 * mm0[c] + 0.1 * r.mu_bn[c];
      rmv[c] = 0.9 * mv0[c] + 0.1 * r.var_bn[c];
    }
    EXPECT_LE(nkt::rel_error(mm, rmm), 5e-6);
    EXPECT_LE(nkt::rel_error(mv, rmv), 5e-6);
  } else {
    EXPECT_EQ(mm, mm0);
    EXPECT_EQ(mv, mv0);
  }
  // Inference from the moving statistics.
  auto yi = poisoned(x.size());
  ASSERT_EQ(nk_switchnorm_forward_inference(&d, &o, x.data(), yi.data(), ptr_or_null(gamma), ptr_or_null(beta),
                                            mw.data(), vw.data(), mm.data(), mv.data()),
            NK_OK)
      << nk_last_error();
  const auto ri = ref::sn_forward(dbl(x), l, mw, vw, dbl(gamma), dbl(beta), 1e-3, dbl(mm), dbl(mv));
  EXPECT_LE(nkt::rel_error(yi, ri.y), 5e-5);

  const bool grads = seed % 3 != 0;
  auto dx = poisoned(x.size()), dg = poisoned(C), db = poisoned(C), dmw = poisoned(K), dvw = poisoned(K);
  ASSERT_EQ(nk_switchnorm_backward(&d, &o, x.data(), dy.data(), ptr_or_null(gamma), mw.data(), vw.data(), dx.data(),
                                   grads ? dg.data() : nullptr, grads ? db.data() : nullptr,
                                   grads ? dmw.data() : nullptr, grads ? dvw.data() : nullptr),
            NK_OK)
      << nk_last_error();
  const auto g = ref::sn_backward(dbl(x), dbl(dy), l, mw, vw, dbl(gamma), 1e-3);
  EXPECT_LE(nkt::rel_error(dx, g.dx, std::max(1.0, nkt::rms(g.dx))), 5e-5);
  if (grads) {
    EXPECT_LE(nkt::rel_error(dg, g.dgamma, std::max(1.0, nkt::rms(g.dgamma))), 5e-5);
    EXPECT_LE(nkt::rel_error(db, g.dbeta, std::max(1.0, nkt::rms(g.dbeta))), 5e-5);
    EXPECT_LE(nkt::rel_error(dmw, g.dmw, std::max(1.0, nkt::rms(g.dmw))), 5e-5);
    EXPECT_LE(nkt::rel_error(dvw, g.dvw, std::max(1.0, nkt::rms(g.dvw))), 5e-5);
  } else {
    EXPECT_TRUE(dg[0] == nkt::kPoison && db[0] == nkt::kPoison && dmw[0] == nkt::kPoison && dvw[0] == nkt::kPoison);
  }
  (void)N;
}

class SwitchNorm : public IsaTest {};

TEST_P(SwitchNorm, MatchesReference) {
  uint32_t seed = 1;
  for (const auto& l : sn_layouts()) {
    check_sn(l, 3, true, seed++);
    check_sn(l, 2, seed % 2 == 0, seed + 1000);
    ++seed;
  }
}

TEST_P(SwitchNorm, StreamingStoresAndInPlace) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  check_sn({{2, 16, 30, 31}, {1}}, 3, true, 77);
  check_sn({{2, 30, 31, 16}, {-1}}, 3, true, 78);
  for (const ref::Layout& l : {ref::Layout{{3, 5, 7, 6}, {1}}, ref::Layout{{3, 7, 6, 5}, {-1}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    const auto x = random_vec(ref::total(l), 81), dy = random_vec(x.size(), 82);
    const auto mw = random_vec(3, 83), vw = random_vec(3, 84), gamma = random_vec(5, 85), beta = random_vec(5, 86);
    const auto d = nkt::desc_of(l);
    const auto o = sn_opts(3);
    std::vector<float> y(x.size()), dx(x.size());
    ASSERT_EQ(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), gamma.data(), beta.data(), mw.data(),
                                             vw.data(), nullptr, nullptr),
              NK_OK);
    auto in = x;
    ASSERT_EQ(nk_switchnorm_forward_training(&d, &o, in.data(), in.data(), gamma.data(), beta.data(), mw.data(),
                                             vw.data(), nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(in, y);
    std::vector<float> dg(5), db(5), dm(3), dv(3), dg2(5), db2(5), dm2(3), dv2(3);
    ASSERT_EQ(nk_switchnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), mw.data(), vw.data(), dx.data(),
                                     dg.data(), db.data(), dm.data(), dv.data()),
              NK_OK);
    auto g = dy;
    ASSERT_EQ(nk_switchnorm_backward(&d, &o, x.data(), g.data(), gamma.data(), mw.data(), vw.data(), g.data(),
                                     dg2.data(), db2.data(), dm2.data(), dv2.data()),
              NK_OK);
    EXPECT_EQ(g, dx);
    EXPECT_EQ(dg, dg2);
    EXPECT_EQ(dm, dm2);
    EXPECT_EQ(dv, dv2);
  }
}

// Mean 1e4 and spread 0.1; and spreads of 1e25 and 3e29 (mean 1e30), whose
// backward coefficients of (x - mean) are below float's range.
TEST_P(SwitchNorm, LargeOffsetSmallSpread) {
  for (const auto& [l, offset, spread] :
       {std::tuple{ref::Layout{{3, 6, 17, 19}, {1}}, 1e4f, 0.1f}, std::tuple{ref::Layout{{3, 17, 19, 6}, {-1}}, 1e4f, 0.1f},
        std::tuple{ref::Layout{{3, 6, 5, 7}, {1}}, 0.0f, 1e25f}, std::tuple{ref::Layout{{3, 5, 7, 6}, {-1}}, 1e30f, 3e29f}}) {
    SCOPED_TRACE(nkt::layout_name(l) + " spread " + std::to_string(spread));
    const auto x = random_vec(ref::total(l), 91, offset, spread), dy = random_vec(x.size(), 92);
    const auto mw = random_vec(3, 93), vw = random_vec(3, 94);
    const auto d = nkt::desc_of(l);
    const auto o = sn_opts(3);
    auto y = poisoned(x.size()), dx = poisoned(x.size());
    std::vector<float> dm(3), dv(3);
    ASSERT_EQ(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, mw.data(), vw.data(),
                                             nullptr, nullptr),
              NK_OK);
    const auto r = ref::sn_forward(dbl(x), l, mw, vw, {}, {}, 1e-3);
    EXPECT_LE(nkt::rel_error(y, r.y, 1.0), 1e-4);
    ASSERT_EQ(nk_switchnorm_backward(&d, &o, x.data(), dy.data(), nullptr, mw.data(), vw.data(), dx.data(), nullptr,
                                     nullptr, dm.data(), dv.data()),
              NK_OK);
    const auto g = ref::sn_backward(dbl(x), dbl(dy), l, mw, vw, {}, 1e-3);
    EXPECT_LE(nkt::rel_error(dx, g.dx, nkt::rms(g.dx)), 1e-4);
    EXPECT_LE(nkt::rel_error(dv, g.dvw, std::max(1.0, nkt::rms(g.dvw))), 1e-4);
  }
}

// A NaN in (sample 1, channel 2) reaches that sample (LN) and that channel
// (BN), nothing else; without BN only the sample.
TEST_P(SwitchNorm, NanStaysInItsSampleAndChannel) {
  for (int K : {3, 2})
    for (const ref::Layout& l : {ref::Layout{{3, 5, 7, 6}, {1}}, ref::Layout{{3, 7, 6, 5}, {-1}}}) {
      SCOPED_TRACE(nkt::layout_name(l) + " K=" + std::to_string(K));
      int64_t C;
      const auto ch = ref::channel_of(l, &C);
      const auto n_of = ref::sample_of(l);
      auto x = random_vec(ref::total(l), 95);
      size_t first = 0;
      while (!(n_of[first] == 1 && ch[first] == 2)) ++first;
      x[first] = NAN;
      const auto mw = random_vec(K, 96), vw = random_vec(K, 97);
      const auto d = nkt::desc_of(l);
      const auto o = sn_opts(K);
      auto y = poisoned(x.size());
      ASSERT_EQ(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, mw.data(), vw.data(),
                                               nullptr, nullptr),
                NK_OK);
      for (size_t i = 0; i < x.size(); ++i) {
        const bool hit = n_of[i] == 1 || (K == 3 && ch[i] == 2);
        if (hit) ASSERT_TRUE(std::isnan(y[i])) << "at " << i;
        else ASSERT_TRUE(std::isfinite(y[i])) << "at " << i;
      }
    }
}

std::vector<float> sn_run(const ref::Layout& l, int threads, int shift, int64_t threshold) {
  EXPECT_EQ(nk_set_num_threads(threads), NK_OK);
  EXPECT_EQ(nk_set_stream_threshold(threshold), NK_OK);
  int64_t C;
  ref::channel_of(l, &C);
  const int64_t T = ref::total(l);
  const auto x = random_vec(T, 101, 2.0f, 3.0f), dy = random_vec(T, 102);
  const auto mw = random_vec(3, 103), vw = random_vec(3, 104), gamma = random_vec(C, 105), beta = random_vec(C, 106);
  const auto d = nkt::desc_of(l);
  const auto o = sn_opts(3);
  std::vector<float> buf(T + 16), mm(C, 0.5f), mv(C, 2.0f), dg(C), db(C), dm(3), dv(3), out;
  EXPECT_EQ(nk_switchnorm_forward_training(&d, &o, x.data(), buf.data() + shift, gamma.data(), beta.data(),
                                           mw.data(), vw.data(), mm.data(), mv.data()),
            NK_OK);
  out.insert(out.end(), buf.begin() + shift, buf.begin() + shift + T);
  EXPECT_EQ(nk_switchnorm_backward(&d, &o, x.data(), dy.data(), gamma.data(), mw.data(), vw.data(),
                                   buf.data() + shift, dg.data(), db.data(), dm.data(), dv.data()),
            NK_OK);
  out.insert(out.end(), buf.begin() + shift, buf.begin() + shift + T);
  for (const auto* v : {&mm, &mv, &dg, &db, &dm, &dv}) out.insert(out.end(), v->begin(), v->end());
  return out;
}

TEST_P(SwitchNorm, BitwiseIdenticalForAnyThreadCountAndAlignment) {
  for (const ref::Layout& l : {ref::Layout{{4, 8, 65, 67}, {1}}, ref::Layout{{4, 65, 67, 8}, {-1}},
                               ref::Layout{{2, 60, 60, 300}, {-1}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    const auto base = sn_run(l, 1, 0, -1);
    EXPECT_TRUE(sn_run(l, 2, 0, -1) == base);
    EXPECT_TRUE(sn_run(l, 3, 1, -1) == base);
    EXPECT_TRUE(sn_run(l, 2, 3, 0) == base);
  }
}

NKT_INSTANTIATE_ISAS(SwitchNorm);

TEST(SnReference, GradientsMatchFiniteDifferences) {
  for (int K : {3, 2})
    for (const ref::Layout& l : {ref::Layout{{2, 3, 2, 2}, {1}}, ref::Layout{{3, 2, 3, 2}, {-1}}}) {
      SCOPED_TRACE(nkt::layout_name(l) + " K=" + std::to_string(K));
      int64_t C;
      ref::channel_of(l, &C);
      auto x = dbl(random_vec(ref::total(l), 111, 0.3f, 1.5f));
      const auto dy = dbl(random_vec(x.size(), 112));
      auto gamma = dbl(random_vec(C, 113, 1.0f, 0.3f)), beta = dbl(random_vec(C, 114));
      auto mw = random_vec(K, 115), vw = random_vec(K, 116);
      const double eps = 1e-3;
      auto loss = [&] {
        const auto r = ref::sn_forward(x, l, mw, vw, gamma, beta, eps);
        double L = 0;
        for (size_t i = 0; i < x.size(); ++i) L += dy[i] * r.y[i];
        return L;
      };
      const auto g = ref::sn_backward(x, dy, l, mw, vw, gamma, eps);
      auto central = [&](auto& v, size_t i, double h) {
        const auto keep = v[i];
        v[i] = keep + h;
        const double up = loss();
        v[i] = keep - h;
        const double down = loss();
        v[i] = keep;
        return (up - down) / (static_cast<double>(keep + h) - static_cast<double>(keep - h));
      };
      for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(central(x, i, 1e-6), g.dx[i], 1e-6) << "dx " << i;
      for (int64_t c = 0; c < C; ++c) {
        EXPECT_NEAR(central(gamma, c, 1e-6), g.dgamma[c], 1e-6) << "dgamma " << c;
        EXPECT_NEAR(central(beta, c, 1e-6), g.dbeta[c], 1e-6) << "dbeta " << c;
      }
      // The weights are float: steps of 1e-3, and a tolerance to match.
      for (int k = 0; k < K; ++k) {
        EXPECT_NEAR(central(mw, k, 1e-3f), g.dmw[k], 1e-4) << "dmean_weight " << k;
        EXPECT_NEAR(central(vw, k, 1e-3f), g.dvw[k], 1e-4) << "dvar_weight " << k;
      }
    }
}

#define EXPECT_FAILS(call, status, word)                                                \
  do {                                                                                  \
    EXPECT_EQ((call), (status)) << #call;                                               \
    EXPECT_NE(std::string(nk_last_error()).find(word), std::string::npos)               \
        << #call << ": message '" << nk_last_error() << "' lacks '" << (word) << "'";   \
    EXPECT_TRUE(y == y0 && dx == dx0 && mm == mm0 && mv == mv0 && dg == dg0 && dw == dw0) \
        << #call << " wrote an output";                                                 \
  } while (0)

TEST(SnErrors, EveryPath) {
  const auto x = random_vec(60, 1), dy = random_vec(60, 2), w = random_vec(3, 3);
  const std::vector<float> y0 = nkt::poisoned(60), dx0 = y0, mm0(3, 0.5f), mv0(3, 2.0f), dg0 = nkt::poisoned(3),
                           dw0 = nkt::poisoned(3);
  auto y = y0, dx = dx0, mm = mm0, mv = mv0, dg = dg0, dw = dw0;
  const int64_t dims[3] = {4, 3, 5};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 3, dims, 1), NK_OK);
  nk_sn_options o;
  nk_sn_options_init(&o);
  auto train = [&](const nk_tensor_desc* dd, const nk_sn_options* oo) {
    return nk_switchnorm_forward_training(dd, oo, x.data(), y.data(), nullptr, nullptr, w.data(), w.data(),
                                          mm.data(), mv.data());
  };
  auto back = [&](const nk_tensor_desc* dd, const nk_sn_options* oo) {
    return nk_switchnorm_backward(dd, oo, x.data(), dy.data(), nullptr, w.data(), w.data(), dx.data(), dg.data(),
                                  dg.data(), dw.data(), dw.data());
  };
  EXPECT_FAILS(train(nullptr, &o), NK_ERR_NULL_POINTER, "desc");
  nk_sn_options bad = o;
  bad.use_bn = 2;
  EXPECT_FAILS(train(&d, &bad), NK_ERR_BAD_ARGUMENT, "use_bn = 2");
  bad = o;
  bad.momentum = -0.5f;
  EXPECT_FAILS(train(&d, &bad), NK_ERR_BAD_ARGUMENT, "momentum");
  bad = o;
  bad.epsilon = NAN;
  EXPECT_FAILS(back(&d, &bad), NK_ERR_BAD_ARGUMENT, "epsilon");
  bad = o;
  bad.struct_size = 12;
  EXPECT_FAILS(back(&d, &bad), NK_ERR_BAD_STRUCT_SIZE, "struct_size = 12");
  // One spatial position: no unbiased instance variance.
  const int64_t one[2] = {4, 3};
  nk_tensor_desc d1;
  ASSERT_EQ(nk_tensor_desc_init(&d1, 2, one, 1), NK_OK);
  EXPECT_FAILS(train(&d1, &o), NK_ERR_BAD_SHAPE, "at least 2");
  EXPECT_FAILS(back(&d1, &o), NK_ERR_BAD_SHAPE, "at least 2");
  nk_tensor_desc a0;
  ASSERT_EQ(nk_tensor_desc_init(&a0, 3, dims, 0), NK_OK);
  EXPECT_FAILS(train(&a0, &o), NK_ERR_BAD_AXIS, "axis 0");
  EXPECT_FAILS(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, nullptr, w.data(),
                                              nullptr, nullptr),
               NK_ERR_NULL_POINTER, "mean_weight is NULL");
  EXPECT_FAILS(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, w.data(), nullptr,
                                              nullptr, nullptr),
               NK_ERR_NULL_POINTER, "var_weight is NULL");
  EXPECT_FAILS(nk_switchnorm_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, w.data(), w.data(),
                                              mm.data(), nullptr),
               NK_ERR_NULL_POINTER, "moving_mean and moving_var");
  EXPECT_FAILS(nk_switchnorm_forward_training(&d, &o, nullptr, y.data(), nullptr, nullptr, w.data(), w.data(),
                                              nullptr, nullptr),
               NK_ERR_NULL_POINTER, "x is NULL");
  EXPECT_FAILS(nk_switchnorm_forward_inference(&d, &o, x.data(), y.data(), nullptr, nullptr, w.data(), w.data(),
                                               nullptr, mv.data()),
               NK_ERR_NULL_POINTER, "moving_mean is NULL");
  EXPECT_FAILS(nk_switchnorm_forward_inference(&d, &o, x.data(), y.data(), nullptr, nullptr, w.data(), w.data(),
                                               mm.data(), nullptr),
               NK_ERR_NULL_POINTER, "moving_var is NULL");
  EXPECT_FAILS(nk_switchnorm_forward_inference(&d, &o, x.data(), nullptr, nullptr, nullptr, w.data(), w.data(),
                                               mm.data(), mv.data()),
               NK_ERR_NULL_POINTER, "y is NULL");
  EXPECT_FAILS(nk_switchnorm_backward(&d, &o, x.data(), nullptr, nullptr, w.data(), w.data(), dx.data(), nullptr,
                                      nullptr, nullptr, nullptr),
               NK_ERR_NULL_POINTER, "dy is NULL");
  EXPECT_FAILS(nk_switchnorm_backward(&d, &o, x.data(), dy.data(), nullptr, w.data(), w.data(), nullptr, dg.data(),
                                      nullptr, nullptr, nullptr),
               NK_ERR_NULL_POINTER, "dx is NULL");
  EXPECT_FAILS(nk_switchnorm_backward(&d, &o, x.data(), dy.data(), nullptr, nullptr, w.data(), dx.data(), nullptr,
                                      nullptr, nullptr, nullptr),
               NK_ERR_NULL_POINTER, "mean_weight is NULL");
  EXPECT_NE(std::string(nk_last_error()).find("nk_switchnorm_backward"), std::string::npos);
  // Without BN the moving statistics are not needed for inference.
  nk_sn_options nobn = o;
  nobn.use_bn = 0;
  EXPECT_EQ(nk_switchnorm_forward_inference(&d, &nobn, x.data(), y.data(), nullptr, nullptr, w.data(), w.data(),
                                            nullptr, nullptr),
            NK_OK)
      << nk_last_error();
}

}  // namespace
