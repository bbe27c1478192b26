// Batch Norm with TensorFlow's whole option set: virtual batches, renorm,
// adjustment, lists of axes — against the float64 reference, TensorFlow's
// own test cases replayed, and every new error.
#include <limits>

#include "layouts.hpp"
#include "reference_tf.hpp"
#include "test_util.hpp"

namespace {

using nkt::poisoned;
using nkt::random_vec;

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// A configuration of options to run through normkit and the reference.
struct Config {
  const char* name;
  int64_t virtual_batch;
  bool strided, renorm, adjustment;
};

nk_bn_options options_of(const Config& k, const ref::TfOptions& r) {
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.epsilon = static_cast<float>(r.eps);
  o.momentum = static_cast<float>(r.momentum);
  o.virtual_batch_size = static_cast<int32_t>(k.virtual_batch);
  o.virtual_grouping = k.strided ? NK_GHOST_STRIDED : NK_GHOST_CONTIGUOUS;
  o.renorm = k.renorm;
  o.renorm_momentum = static_cast<float>(r.renorm_momentum);
  o.rmax = static_cast<float>(r.rmax);
  o.rmin = static_cast<float>(r.rmin);
  o.dmax = static_cast<float>(r.dmax);
  return o;
}

// Two training steps and a backward pass, checked against the reference.
void check_config(const ref::Layout& l, const Config& k, uint32_t seed) {
  SCOPED_TRACE(nkt::layout_name(l) + " " + k.name);
  int64_t C;
  ref::channel_of(l, &C);
  ref::TfOptions ro;
  ro.momentum = 0.9;
  ro.virtual_batch = k.virtual_batch;
  ro.strided = k.strided;
  ro.renorm = k.renorm;
  ro.renorm_momentum = 0.8;
  ro.rmax = 1.05;
  ro.rmin = 0.95;
  ro.dmax = 0.05;
  const nk_bn_options o = options_of(k, ro);
  const nk_tensor_desc desc = nkt::desc_of(l);
  const auto gamma = random_vec(C, seed, 1.0f, 0.3f), beta = random_vec(C, seed + 1);

  ref::TfState rs;
  rs.moving_mean.assign(C, 0.0);
  rs.moving_var.assign(C, 1.0);
  rs.moving_stddev.assign(C, 1.0);
  rs.renorm_mean.assign(C, 0.0);
  rs.renorm_stddev.assign(C, 1.0);
  std::vector<float> adj_a, adj_b;
  if (k.adjustment) {
    adj_a = random_vec(C, seed + 2, 1.0f, 0.05f);
    adj_b = random_vec(C, seed + 3, 0.0f, 0.1f);
    rs.adj_scale = to_double(adj_a);
    rs.adj_bias = to_double(adj_b);
  }
  std::vector<float> mm(C, 0.0f), mv(C, 1.0f), msd(C, 1.0f), rmean(C, 0.0f), rsd(C, 1.0f);
  int64_t G = 1;
  ref::group_of(l, ro, &G);
  std::vector<float> sm = poisoned(G * C), si = poisoned(G * C), sr = poisoned(C), sd = poisoned(C);
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.moving_mean = mm.data();
  st.moving_var = mv.data();
  st.moving_stddev = msd.data();
  st.renorm_mean = rmean.data();
  st.renorm_stddev = rsd.data();
  st.adjustment_scale = k.adjustment ? adj_a.data() : nullptr;
  st.adjustment_bias = k.adjustment ? adj_b.data() : nullptr;
  st.saved_mean = sm.data();
  st.saved_invstd = si.data();
  st.saved_r = sr.data();
  st.saved_d = sd.data();

  for (int step = 0; step < 2; ++step) {
    const auto x = random_vec(ref::total(l), seed + 10 + step, 0.3f * step, 1.0f + step);
    auto y = poisoned(x.size());
    ASSERT_EQ(nk_bn_forward_training_ex(&desc, &o, x.data(), y.data(), gamma.data(), beta.data(), &st),
              NK_OK)
        << nk_last_error();
    const ref::TfStep rstep = ref::tf_train_step(l, x, gamma, beta, ro, rs);
    EXPECT_LE(nkt::rel_error(y, rstep.y), 5e-5) << "step " << step;
    EXPECT_LE(nkt::rel_error(sm, rstep.mean, 1.0), 5e-6);
    EXPECT_LE(nkt::rel_error(si, rstep.invstd), 5e-6);
    EXPECT_LE(nkt::rel_error(sr, rstep.r), 5e-6);
    EXPECT_LE(nkt::rel_error(sd, rstep.d, 1.0), 5e-6);
    EXPECT_LE(nkt::rel_error(mm, rs.moving_mean, 1.0), 5e-6);
    EXPECT_LE(nkt::rel_error(mv, rs.moving_var), 5e-6);
    if (k.renorm) {
      EXPECT_LE(nkt::rel_error(msd, rs.moving_stddev), 5e-6);
      EXPECT_LE(nkt::rel_error(rmean, rs.renorm_mean, 1.0), 5e-6);
      EXPECT_LE(nkt::rel_error(rsd, rs.renorm_stddev), 5e-6);
    }
    // Backward from the saved arrays.
    const auto dy = random_vec(x.size(), seed + 20 + step);
    auto dx = poisoned(x.size()), dg = poisoned(C), db = poisoned(C);
    ASSERT_EQ(nk_bn_backward_ex(&desc, &o, x.data(), dy.data(), gamma.data(), &st, dx.data(),
                                dg.data(), db.data()),
              NK_OK)
        << nk_last_error();
    const ref::Grads g = ref::tf_backward(l, x, dy, gamma, rstep, rs);
    EXPECT_LE(nkt::rel_error(dx, g.dx, std::max(0.1, nkt::rms(g.dx))), 5e-5);
    EXPECT_LE(nkt::rel_error(dg, g.dgamma, std::max(1.0, nkt::rms(g.dgamma))), 5e-5);
    EXPECT_LE(nkt::rel_error(db, g.dbeta, std::max(1.0, nkt::rms(g.dbeta))), 5e-5);
  }
}

const Config kConfigs[] = {
    {"plain", 0, true, false, false},
    {"ghost strided", 2, true, false, false},
    {"ghost contiguous", 2, false, false, false},
    {"renorm", 0, true, true, false},
    {"adjustment", 0, true, false, true},
    {"renorm + ghost", 3, true, true, false},
    {"renorm + ghost contiguous", 2, false, true, false},
    {"ghost of single samples", 1, true, false, false},
    {"renorm + adjustment", 0, true, true, true},
};

class TfOptions : public nkt::IsaTest {};

TEST_P(TfOptions, EveryOptionAloneAndCombinedMatchesReference) {
  const ref::Layout layouts[] = {
      nkt::nchw(6, 3, 5, 7), nkt::nhwc(6, 17, 3, 5), nkt::nchw(6, 1, 1, 33), nkt::nhwc(6, 3, 1, 1),
      ref::Layout{{6, 4, 3, 5}, {1, 3}},        // feature axes that do not merge
      ref::Layout{{6, 2, 3, 4, 5}, {1, 4}},
      ref::Layout{{6, 5}, {1}},
      ref::Layout{{6, 2, 9, 131}, {2, 3}},      // merged axes: rows of 1179 channels, applied in chunks
  };
  uint32_t seed = 300;
  for (const auto& l : layouts)
    for (const auto& k : kConfigs) check_config(l, k, seed += 7);
}

TEST_P(TfOptions, VirtualBatchOfTheWholeBatchIsPlainBnBitForBit) {
  for (const auto& l : {nkt::nchw(6, 17, 9, 11), nkt::nhwc(6, 17, 9, 11), nkt::nchw(4, 3, 130, 130)}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 401, 2.0f, 3.0f);
    const auto gamma = random_vec(C, 402), beta = random_vec(C, 403);
    const auto d = nkt::desc_of(l);
    std::vector<float> y1(x.size()), y2(x.size()), m1(C, 0.f), v1(C, 1.f), m2(C, 0.f), v2(C, 1.f);
    nk_bn_options o;
    nk_bn_options_init(&o);
    ASSERT_EQ(nk_bn_forward_training(&d, &o, x.data(), y1.data(), gamma.data(), beta.data(), nullptr, nullptr,
                                     m1.data(), v1.data()),
              NK_OK);
    o.virtual_batch_size = static_cast<int32_t>(l.dims[0]);
    ASSERT_EQ(nk_bn_forward_training(&d, &o, x.data(), y2.data(), gamma.data(), beta.data(), nullptr, nullptr,
                                     m2.data(), v2.data()),
              NK_OK);
    EXPECT_EQ(std::memcmp(y1.data(), y2.data(), x.size() * sizeof(float)), 0);
    EXPECT_EQ(m1, m2);
    EXPECT_EQ(v1, v2);
  }
}

TEST_P(TfOptions, GhostIsBitwiseIdenticalForAnyThreadCount) {
  for (const auto& l : {nkt::nchw(8, 5, 33, 31), nkt::nhwc(8, 33, 17, 9), ref::Layout{{8, 3, 9, 131}, {2, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l));
    int64_t C;
    ref::channel_of(l, &C);
    const auto x = random_vec(ref::total(l), 501, 1.0f, 2.0f), dy = random_vec(x.size(), 502);
    nk_bn_options o;
    nk_bn_options_init(&o);
    o.virtual_batch_size = 2;
    o.renorm = 1;
    const nk_tensor_desc desc = nkt::desc_of(l);
    std::vector<std::vector<float>> outs;
    for (int threads : {1, 2, 3}) {
      ASSERT_EQ(nk_set_num_threads(threads), NK_OK);
      std::vector<float> y(x.size()), dx(x.size()), sm(4 * C), si(4 * C), r(C), d(C), rm(C, 0.1f), rsd(C, 0.9f);
      nk_bn_state st;
      nk_bn_state_init(&st);
      st.saved_mean = sm.data();
      st.saved_invstd = si.data();
      st.saved_r = r.data();
      st.saved_d = d.data();
      st.renorm_mean = rm.data();
      st.renorm_stddev = rsd.data();
      ASSERT_EQ(nk_bn_forward_training_ex(&desc, &o, x.data(), y.data(), nullptr, nullptr, &st), NK_OK);
      ASSERT_EQ(nk_bn_backward_ex(&desc, &o, x.data(), dy.data(), nullptr, &st, dx.data(), nullptr,
                                  nullptr),
                NK_OK);
      y.insert(y.end(), dx.begin(), dx.end());
      y.insert(y.end(), rm.begin(), rm.end());
      outs.push_back(y);
    }
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * 4), 0);
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[2].data(), outs[0].size() * 4), 0);
  }
}

NKT_INSTANTIATE_ISAS(TfOptions);

// The reference gradient with r, d and the adjustment held constant, against
// central differences.
TEST(TfReference, GradientMatchesFiniteDifferences) {
  const ref::Layout l = nkt::nchw(4, 2, 2, 3);
  int64_t C;
  ref::channel_of(l, &C);
  ref::TfOptions o;
  o.virtual_batch = 2;
  o.renorm = true;
  o.rmax = 1.1;
  o.rmin = 0.9;
  o.dmax = 0.1;
  ref::TfState st;
  st.moving_mean.assign(C, 0.0);
  st.moving_var.assign(C, 1.0);
  st.moving_stddev.assign(C, 1.0);
  st.renorm_mean = {0.3, -0.2};
  st.renorm_stddev = {0.7, 1.4};
  st.adj_scale = {1.05, 0.97};
  st.adj_bias = {0.02, -0.03};
  const auto x = random_vec(ref::total(l), 601, 0.5f, 1.2f), dy = random_vec(x.size(), 602);
  const auto gamma = random_vec(C, 603, 1.0f, 0.3f), beta = random_vec(C, 604);
  const ref::TfState before = st;
  const ref::TfStep s = ref::tf_train_step(l, x, gamma, beta, o, st);
  const ref::Grads g = ref::tf_backward(l, x, dy, gamma, s, before);
  std::vector<double> xd = to_double(x), gd = to_double(gamma), bd = to_double(beta);
  auto loss = [&] {
    const auto y = ref::tf_forward_fixed(l, xd, gd, bd, s, before, o.eps);
    double L = 0;
    for (size_t i = 0; i < y.size(); ++i) L += dy[i] * y[i];
    return L;
  };
  auto central = [&](std::vector<double>& v, size_t i) {
    const double h = 1e-6, keep = v[i];
    v[i] = keep + h;
    const double up = loss();
    v[i] = keep - h;
    const double down = loss();
    v[i] = keep;
    return (up - down) / (2 * h);
  };
  for (size_t i = 0; i < xd.size(); ++i) EXPECT_NEAR(central(xd, i), g.dx[i], 1e-6) << "dx " << i;
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_NEAR(central(gd, c), g.dgamma[c], 1e-6);
    EXPECT_NEAR(central(bd, c), g.dbeta[c], 1e-6);
  }
}

// numpy's random.random: uniform [0, 1).
std::vector<float> uniform(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

// TensorFlow's testRenorm, step by step.
TEST(TensorFlowCases, Renorm) {
  for (bool keep_stddev : {true, false}) {
    const int64_t dims[2] = {4, 3};
    nk_tensor_desc d;
    ASSERT_EQ(nk_tensor_desc_init(&d, 2, dims, 1), NK_OK);
    const double momentum = 0.99, renorm_momentum = 0.8, rmax = 1.1, rmin = 0.9, dmax = 0.1, gamma = 2.0,
                 beta = 3.0, eps = 0.001;
    nk_bn_options o;
    nk_bn_options_init(&o);
    o.momentum = static_cast<float>(momentum);
    o.epsilon = static_cast<float>(eps);
    o.renorm = 1;
    o.renorm_momentum = static_cast<float>(renorm_momentum);
    o.rmax = static_cast<float>(rmax);
    o.rmin = static_cast<float>(rmin);
    o.dmax = static_cast<float>(dmax);
    const std::vector<float> g(3, 2.0f), b(3, 3.0f);
    std::vector<float> mm(3, 0.0f), mv(3, 1.0f), ms(3, 1.0f), rm(3, 0.0f), rsd(3, 1.0f), sm(3), si(3), sr(3), sd(3);
    nk_bn_state st;
    nk_bn_state_init(&st);
    st.moving_mean = mm.data();
    st.moving_var = mv.data();
    st.moving_stddev = keep_stddev ? ms.data() : nullptr;
    st.renorm_mean = rm.data();
    st.renorm_stddev = rsd.data();
    st.saved_mean = sm.data();
    st.saved_invstd = si.data();
    st.saved_r = sr.data();
    st.saved_d = sd.data();
    // TF's numpy replay; its scalars become per-column vectors by broadcasting.
    // Without a moving_stddev array normkit derives it as sqrt(moving_var + eps),
    // which TF's own update keeps true from the first step on.
    const double sd0 = keep_stddev ? 1.0 : std::sqrt(1.0 + static_cast<double>(o.epsilon));
    double moving_mean[3] = {0, 0, 0}, moving_stddev[3] = {sd0, sd0, sd0};
    double renorm_mean[3] = {0, 0, 0}, renorm_stddev[3] = {1, 1, 1};
    for (int step = 0; step < 5; ++step) {
      const auto x = uniform(12, 700 + step);
      std::vector<double> y_train(12);
      for (int c = 0; c < 3; ++c) {
        double mean = 0, var = 0;
        for (int i = 0; i < 4; ++i) mean += x[i * 3 + c] / 4.0;
        for (int i = 0; i < 4; ++i) var += (x[i * 3 + c] - mean) * (x[i * 3 + c] - mean) / 4.0;
        const double stddev = std::sqrt(var + eps);
        const double r = std::clamp(stddev / renorm_stddev[c], rmin, rmax);
        const double dd = std::clamp((mean - renorm_mean[c]) / renorm_stddev[c], -dmax, dmax);
        for (int i = 0; i < 4; ++i) y_train[i * 3 + c] = ((x[i * 3 + c] - mean) / stddev * r + dd) * gamma + beta;
        renorm_mean[c] += (mean - renorm_mean[c]) * (1. - renorm_momentum);
        renorm_stddev[c] += (stddev - renorm_stddev[c]) * (1. - renorm_momentum);
        moving_mean[c] += (mean - moving_mean[c]) * (1. - momentum);
        moving_stddev[c] += (stddev - moving_stddev[c]) * (1. - momentum);
      }
      std::vector<float> y(12), yi(12);
      ASSERT_EQ(nk_bn_forward_training_ex(&d, &o, x.data(), y.data(), g.data(), b.data(), &st), NK_OK)
          << nk_last_error();
      ASSERT_EQ(nk_bn_forward_inference(&d, &o, x.data(), yi.data(), g.data(), b.data(), mm.data(), mv.data()),
                NK_OK);
      for (int i = 0; i < 12; ++i) {
        const int c = i % 3;
        EXPECT_NEAR(y[i], y_train[i], 1e-5) << "step " << step << " training";
        const double y_test = (x[i] - moving_mean[c]) / std::sqrt(moving_stddev[c] * moving_stddev[c]) * gamma + beta;
        EXPECT_NEAR(yi[i], y_test, 1e-5) << "step " << step << " inference";
      }
    }
  }
}

// TensorFlow's testGhostBN2Dims: shape [6, 2], virtual batches of 3 (TF's
// grouping: [V, N / V, ...]), moving statistics checked at each step.
TEST(TensorFlowCases, GhostBN2Dims) {
  const int64_t dims[2] = {6, 2};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 2, dims, -1), NK_OK);
  const double momentum = 0.8, eps = 1e-3, gamma = 3.0, beta = 2.0;
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.momentum = static_cast<float>(momentum);
  o.epsilon = static_cast<float>(eps);
  o.virtual_batch_size = 3;
  const std::vector<float> g(2, 3.0f), b(2, 2.0f);
  std::vector<float> mm(2, 0.0f), mv(2, 1.0f);
  double moving_means[2] = {0, 0}, moving_vars[2] = {1, 1};
  for (int step = 0; step < 5; ++step) {
    const auto x = uniform(12, 800 + step);
    // sub_batched = reshape(x, [3, 2, 2]): element (v, j, c) is sample v * 2 + j.
    std::vector<double> y_train(12), y_test(12);
    double means[2][2], vars[2][2];
    for (int j = 0; j < 2; ++j)
      for (int c = 0; c < 2; ++c) {
        double mean = 0, var = 0;
        for (int v = 0; v < 3; ++v) mean += x[(v * 2 + j) * 2 + c] / 3.0;
        for (int v = 0; v < 3; ++v) var += std::pow(x[(v * 2 + j) * 2 + c] - mean, 2) / 3.0;
        means[j][c] = mean;
        vars[j][c] = var;
      }
    for (int c = 0; c < 2; ++c) {
      moving_means[c] = moving_means[c] * momentum + (means[0][c] + means[1][c]) / 2 * (1. - momentum);
      moving_vars[c] = moving_vars[c] * momentum + (vars[0][c] + vars[1][c]) / 2 * (1. - momentum);
    }
    for (int n = 0; n < 6; ++n)
      for (int c = 0; c < 2; ++c) {
        const int j = n % 2, i = n * 2 + c;
        y_train[i] = (x[i] - means[j][c]) / std::sqrt(vars[j][c] + eps) * gamma + beta;
        y_test[i] = (x[i] - moving_means[c]) / std::sqrt(moving_vars[c] + eps) * gamma + beta;
      }
    std::vector<float> y(12), yi(12);
    ASSERT_EQ(nk_bn_forward_training(&d, &o, x.data(), y.data(), g.data(), b.data(), nullptr, nullptr, mm.data(),
                                     mv.data()),
              NK_OK)
        << nk_last_error();
    ASSERT_EQ(nk_bn_forward_inference(&d, &o, x.data(), yi.data(), g.data(), b.data(), mm.data(), mv.data()), NK_OK);
    for (int i = 0; i < 12; ++i) {
      EXPECT_NEAR(y[i], y_train[i], 1e-5) << "step " << step;
      EXPECT_NEAR(yi[i], y_test[i], 1e-5) << "step " << step;
    }
    for (int c = 0; c < 2; ++c) {
      EXPECT_NEAR(mm[c], moving_means[c], 1e-6);
      EXPECT_NEAR(mv[c], moving_vars[c], 1e-6);
    }
  }
}

// Keras composes the adjustment's transform first and renorm's after it, so
// renorm's correction acts on xhat inside the adjustment:
// y = gamma * (a * (xhat * r + d) + b) + beta. With x = [0, 1, 2, 3],
// renorm_mean 0.5 and renorm_stddev 2: xhat * r = (x - 1.5) / 2 and d = 0.5,
// so with a = 2, b = 1: y = x + 0.5 (the other order gives about x - 1.44).
TEST(TensorFlowCases, RenormCorrectsInsideTheAdjustment) {
  const int64_t dims[2] = {4, 1};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 2, dims, 1), NK_OK);
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.renorm = 1;
  const float x[4] = {0.0f, 1.0f, 2.0f, 3.0f}, a[1] = {2.0f}, b[1] = {1.0f}, dy[4] = {1.0f, 0.0f, 0.0f, 0.0f};
  float y[4], dx[4], dg[1], db[1], mm[1] = {0.0f}, mv[1] = {1.0f}, rm[1] = {0.5f}, rsd[1] = {2.0f};
  float sm[1], si[1], sr[1], sd[1];
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.moving_mean = mm;
  st.moving_var = mv;
  st.renorm_mean = rm;
  st.renorm_stddev = rsd;
  st.adjustment_scale = a;
  st.adjustment_bias = b;
  st.saved_mean = sm;
  st.saved_invstd = si;
  st.saved_r = sr;
  st.saved_d = sd;
  ASSERT_EQ(nk_bn_forward_training_ex(&d, &o, x, y, nullptr, nullptr, &st), NK_OK) << nk_last_error();
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] + 0.5, 1e-6) << i;
  ASSERT_EQ(nk_bn_backward_ex(&d, &o, x, dy, nullptr, &st, dx, dg, db), NK_OK) << nk_last_error();
  EXPECT_NEAR(dg[0], 0.5, 1e-6);  // dy . (y - beta) / gamma
  EXPECT_NEAR(db[0], 1.0, 1e-6);
}

// renorm_momentum is TF's argument and keeps TF's convention (it weights the
// old value) while momentum follows PyTorch's.
TEST(TensorFlowCases, RenormMomentumKeepsTensorFlowsConvention) {
  const int64_t dims[2] = {4, 1};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 2, dims, 1), NK_OK);
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.renorm = 1;
  o.momentum_convention = NK_MOMENTUM_TORCH;
  o.momentum = 0.1f;
  o.renorm_momentum = 0.9f;
  const float x[4] = {0.0f, 1.0f, 2.0f, 3.0f};
  float y[4], mm[1] = {0.0f}, mv[1] = {1.0f}, rm[1] = {0.5f}, rsd[1] = {2.0f};
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.moving_mean = mm;
  st.moving_var = mv;
  st.renorm_mean = rm;
  st.renorm_stddev = rsd;
  ASSERT_EQ(nk_bn_forward_training_ex(&d, &o, x, y, nullptr, nullptr, &st), NK_OK) << nk_last_error();
  EXPECT_NEAR(rm[0], 0.9 * 0.5 + 0.1 * 1.5, 1e-6);
  EXPECT_NEAR(rsd[0], 0.9 * 2.0 + 0.1 * std::sqrt(1.25 + 1e-3), 1e-6);
  EXPECT_NEAR(mm[0], 0.1 * 1.5, 1e-6);
}

// TensorFlow's test_bessels_correction: x = [0, 2], momentum 0.5, moving
// variance from 0; the fused path's Bessel correction gives exactly 1.
TEST(TensorFlowCases, BesselsCorrection) {
  for (int ndim : {4, 5}) {
    const int64_t dims[5] = {2, 1, 1, 1, 1};
    nk_tensor_desc d;
    ASSERT_EQ(nk_tensor_desc_init(&d, ndim, dims, -1), NK_OK);
    nk_bn_options o;
    nk_bn_options_init(&o);
    o.momentum = 0.5f;
    o.moving_variance = NK_VARIANCE_UNBIASED;
    const float x[2] = {0.0f, 2.0f};
    float y[2], mm[1] = {0.0f}, mv[1] = {0.0f};
    ASSERT_EQ(nk_bn_forward_training(&d, &o, x, y, nullptr, nullptr, nullptr, nullptr, mm, mv), NK_OK);
    EXPECT_EQ(mv[0], 1.0f);
    EXPECT_EQ(mm[0], 0.5f);
  }
}

// Virtual batches with the Bessel-corrected moving variance: each virtual
// batch's variance is corrected with its own count, then averaged.
TEST(TensorFlowCases, GhostBesselsCorrection) {
  const int64_t dims[2] = {4, 1};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 2, dims, 1), NK_OK);
  const float x[4] = {0.0f, 2.0f, 1.0f, 5.0f};
  // Contiguous: {0, 2} and {1, 5}, variances 2 and 8; strided: {0, 1} and {2, 5}, 0.5 and 4.5.
  for (auto [grouping, want] : {std::pair{NK_GHOST_CONTIGUOUS, 5.0f}, std::pair{NK_GHOST_STRIDED, 2.5f}}) {
    nk_bn_options o;
    nk_bn_options_init(&o);
    o.momentum = 0.0f;
    o.moving_variance = NK_VARIANCE_UNBIASED;
    o.virtual_batch_size = 2;
    o.virtual_grouping = grouping;
    float y[4], mm[1] = {7.0f}, mv[1] = {7.0f};
    ASSERT_EQ(nk_bn_forward_training(&d, &o, x, y, nullptr, nullptr, nullptr, nullptr, mm, mv), NK_OK)
        << nk_last_error();
    EXPECT_EQ(mv[0], want) << grouping;
    EXPECT_EQ(mm[0], 2.0f) << grouping;
  }
}

// A NULL state: the training forward keeps nothing and equals the plain
// call; the backward fails for want of the saved statistics.
TEST(TensorFlowCases, NullState) {
  const int64_t dims[3] = {5, 3, 7};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 3, dims, 1), NK_OK);
  const auto x = random_vec(5 * 3 * 7, 910), dy = random_vec(x.size(), 911);
  nk_bn_options o;
  nk_bn_options_init(&o);
  std::vector<float> y = poisoned(x.size()), y0 = poisoned(x.size());
  ASSERT_EQ(nk_bn_forward_training_ex(&d, &o, x.data(), y.data(), nullptr, nullptr, nullptr), NK_OK)
      << nk_last_error();
  ASSERT_EQ(nk_bn_forward_training(&d, &o, x.data(), y0.data(), nullptr, nullptr, nullptr, nullptr, nullptr,
                                   nullptr),
            NK_OK);
  EXPECT_EQ(std::memcmp(y.data(), y0.data(), y.size() * 4), 0);
  std::vector<float> dx = poisoned(x.size());
  EXPECT_EQ(nk_bn_backward_ex(&d, &o, x.data(), dy.data(), nullptr, nullptr, dx.data(), nullptr, nullptr),
            NK_ERR_NULL_POINTER);
  EXPECT_NE(std::string(nk_last_error()).find("saved_mean"), std::string::npos) << nk_last_error();
  EXPECT_EQ(dx, poisoned(x.size()));
}

TEST(Errors, TensorFlowOptions) {
  const auto x = random_vec(6 * 3 * 4, 900);
  std::vector<float> y = poisoned(x.size()), r(3, 1.0f), dvec(3, 0.0f), rm(3, 0.0f), rs(3, 1.0f),
                     sm = poisoned(6), si = poisoned(6);
  const int64_t dims[3] = {6, 3, 4};
  nk_tensor_desc d;
  ASSERT_EQ(nk_tensor_desc_init(&d, 3, dims, 1), NK_OK);
  auto expect_fail = [&](const nk_bn_options& o, nk_bn_state st, nk_status status, const char* word) {
    const auto before = y;
    EXPECT_EQ(nk_bn_forward_training_ex(&d, &o, x.data(), y.data(), nullptr, nullptr, &st), status) << word;
    EXPECT_NE(std::string(nk_last_error()).find(word), std::string::npos)
        << "'" << nk_last_error() << "' lacks '" << word << "'";
    EXPECT_EQ(std::memcmp(before.data(), y.data(), y.size() * 4), 0);
    EXPECT_EQ(rm, std::vector<float>(3, 0.0f));
  };
  nk_bn_state st;
  nk_bn_state_init(&st);
  nk_bn_options o;
  auto reset = [&] { nk_bn_options_init(&o); };
  reset();
  o.virtual_batch_size = 4;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "virtual_batch_size 4 does not divide the batch size 6");
  o.virtual_batch_size = -2;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "virtual_batch_size = -2");
  reset();
  o.virtual_grouping = 7;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "virtual_grouping = 7");
  reset();
  o.rmin = 2.0f;
  o.rmax = 1.0f;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "rmin = 2 > rmax = 1");
  reset();
  o.dmax = -0.5f;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "dmax = -0.5");
  reset();
  o.rmax = NAN;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "NaN");
  reset();
  o.renorm = 2;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "renorm = 2");
  reset();
  o.renorm_momentum = 1.5f;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "renorm_momentum");
  reset();
  o.renorm = 1;
  expect_fail(o, st, NK_ERR_NULL_POINTER, "renorm_mean is NULL");
  st.renorm_mean = rm.data();
  expect_fail(o, st, NK_ERR_NULL_POINTER, "renorm_stddev is NULL");
  {
    // The plain entry points have no renorm state: the message says where it goes.
    const auto before = y;
    EXPECT_EQ(nk_bn_forward_training(&d, &o, x.data(), y.data(), nullptr, nullptr, nullptr, nullptr, rm.data(),
                                     rm.data()),
              NK_ERR_NULL_POINTER);
    EXPECT_NE(std::string(nk_last_error()).find("nk_bn_forward_training cannot renorm"), std::string::npos)
        << nk_last_error();
    std::vector<float> dx(y.size(), -7.0f), smean(3, 0.5f), sinv(3, 2.0f);
    EXPECT_EQ(nk_bn_backward(&d, &o, x.data(), x.data(), nullptr, smean.data(), sinv.data(), dx.data(), nullptr,
                             nullptr),
              NK_ERR_NULL_POINTER);
    EXPECT_NE(std::string(nk_last_error()).find("nk_bn_backward cannot renorm"), std::string::npos)
        << nk_last_error();
    EXPECT_EQ(std::memcmp(before.data(), y.data(), y.size() * 4), 0);
    EXPECT_EQ(dx, std::vector<float>(y.size(), -7.0f));
    EXPECT_EQ(rm, std::vector<float>(3, 0.0f));
  }
  nk_bn_state_init(&st);
  reset();
  st.adjustment_scale = r.data();
  expect_fail(o, st, NK_ERR_NULL_POINTER, "adjustment_bias");
  st.adjustment_bias = dvec.data();
  o.virtual_batch_size = 3;
  expect_fail(o, st, NK_ERR_BAD_ARGUMENT, "adjustment cannot be combined with virtual_batch_size");
  nk_bn_state_init(&st);
  st.struct_size = 16;
  reset();
  expect_fail(o, st, NK_ERR_BAD_STRUCT_SIZE, "state struct_size = 16");
  nk_bn_state_init(&st);
  // The batch axis as a feature axis leaves nothing to split.
  nk_tensor_desc d0 = d;
  d0.axes[0] = 0;
  o.virtual_batch_size = 3;
  const auto before = y;
  EXPECT_EQ(nk_bn_forward_training_ex(&d0, &o, x.data(), y.data(), nullptr, nullptr, &st), NK_ERR_BAD_AXIS);
  EXPECT_EQ(before, y);
  // Backward under renorm needs the saved r and d; the plain entry point has none.
  reset();
  o.renorm = 1;
  const auto dy = random_vec(x.size(), 901);
  std::vector<float> dx = poisoned(x.size());
  EXPECT_EQ(nk_bn_backward(&d, &o, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(), nullptr, nullptr),
            NK_ERR_NULL_POINTER);
  EXPECT_NE(std::string(nk_last_error()).find("saved_r"), std::string::npos);
  EXPECT_EQ(dx, poisoned(x.size()));
  // Split statistics do not do renorm.
  std::vector<double> mean(3, 0.0), m2(3, 1.0);
  std::vector<float> mo = poisoned(3), io = poisoned(3);
  EXPECT_EQ(nk_bn_finalize_stats(3, &o, 24, mean.data(), m2.data(), mo.data(), io.data(), nullptr, nullptr),
            NK_ERR_UNSUPPORTED);
  EXPECT_EQ(mo, poisoned(3));
}

}  // namespace
