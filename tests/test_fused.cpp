// Batch Norm and Group Norm fused with a residual add and an activation,
// against float64 references and against the unfused composition of the
// library's own ops, on every ISA: odd sizes, both layouts, TF's options,
// in place, determinism across thread counts, every error path.
#include <algorithm>

#include "layouts.hpp"
#include "norm_reference.hpp"
#include "test_util.hpp"

namespace {

using nkt::IsaTest;
using nkt::poisoned;
using nkt::random_vec;

struct ActCase {
  int32_t kind;
  float p;
  const char* name;
};
const ActCase kActs[] = {{NK_ACT_NONE, 0.0f, "none"},
                         {NK_ACT_RELU, 0.0f, "relu"},
                         {NK_ACT_LEAKY_RELU, 0.1f, "leaky_relu"},
                         {NK_ACT_ELU, 0.7f, "elu"},
                         {NK_ACT_SELU, 0.0f, "selu"}};

// The activations in double, from DESIGN.md; the derivative at 0 is the
// x > 0 side's.
double act_f(const ActCase& a, double z) {
  const double la = 1.0507009873554804934193349852946, al = 1.6732632423543772848170429916717;
  switch (a.kind) {
    case NK_ACT_RELU: return z < 0 ? 0.0 : z;
    case NK_ACT_LEAKY_RELU: return z < 0 ? a.p * z : z;
    case NK_ACT_ELU: return z < 0 ? a.p * std::expm1(z) : z;
    case NK_ACT_SELU: return la * (z < 0 ? al * std::expm1(z) : z);
    default: return z;
  }
}
double act_d(const ActCase& a, double z) {
  const double la = 1.0507009873554804934193349852946, al = 1.6732632423543772848170429916717;
  switch (a.kind) {
    case NK_ACT_RELU: return z > 0 ? 1.0 : 0.0;
    case NK_ACT_LEAKY_RELU: return z < 0 ? a.p : 1.0;
    case NK_ACT_ELU: return z < 0 ? a.p * std::exp(z) : 1.0;
    case NK_ACT_SELU: return la * (z < 0 ? al * std::exp(z) : 1.0);
    default: return 1.0;
  }
}

const float* opt_ptr(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }
float* opt_ptr(std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// Batch Norm as a grouping: the statistics and the parameters per channel.
ref::Grouping bn_grouping(const ref::Layout& l) {
  ref::Grouping g;
  g.grp = ref::channel_of(l, &g.groups);
  g.param = g.grp;
  g.params = g.groups;
  return g;
}

// y = act(norm(x) + res) and its gradients, all in double. Where z is
// within float rounding of 0, the float z may sit on the other side of the
// derivative's jump: there the side is the one the library's forward took,
// given as its y (y_got). A y of 0 says z <= 0 for ReLU, nothing for the
// others (their y is 0 only at z = 0). Tensors of millions of elements have
// such a z (NHWC two-axis 15x67x33x129 with ReLU on aarch64: one double z
// of +4.4e-9 whose float z was not above 0).
struct FusedRef {
  std::vector<double> y, dx, dres, dgamma, dbeta;
};
FusedRef fused_ref(const std::vector<float>& x, const std::vector<float>& res, const std::vector<float>& dy,
                   const ref::Grouping& g, double eps, const std::vector<float>& gamma,
                   const std::vector<float>& beta, const ActCase& a, const std::vector<float>* y_got = nullptr) {
  const auto s = ref::group_stats(x, g);
  auto z = ref::group_normalize(x, g, s, eps, gamma, beta);
  FusedRef r;
  r.y.resize(x.size());
  r.dres.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (!res.empty()) z[i] += res[i];
    r.y[i] = act_f(a, z[i]);
    double zd = z[i];
    if (y_got && std::fabs(zd) < 1e-5) {
      if ((*y_got)[i] != 0.0f) zd = std::copysign(zd, (*y_got)[i]);
      else if (a.kind == NK_ACT_RELU) zd = -std::fabs(zd);  // ReLU's y is 0 for every z <= 0
    }
    r.dres[i] = act_d(a, zd) * dy[i];
  }
  auto grads = ref::group_backward(x, r.dres, g, eps, gamma);
  r.dx = std::move(grads.dx);
  r.dgamma = std::move(grads.dgamma);
  r.dbeta = std::move(grads.dbeta);
  return r;
}

template <class V>
double err(const std::vector<float>& got, const V& want) {
  return nkt::rel_error(got, want, std::max(1.0, nkt::rms(want)));
}
// dx relative to its own size where a huge spread makes it tiny.
template <class V>
double dx_err(const std::vector<float>& got, const V& want, bool huge) {
  return huge ? nkt::rel_error(got, want, nkt::rms(want)) : err(got, want);
}

struct Data {
  std::vector<float> x, res, dy, gamma, beta;
};
// kOffset: x with mean 1e4 and spread 0.1, which must normalize as well as
// centred data (the saved float mean alone is up to 5e-3 spreads off).
// kHuge: mean 1e26 and spread 1e25, whose backward coefficient of
// (x - mean) is below float's range (and whose variance is above it); the
// mean's low part is in use too.
enum Scale { kCentred, kOffset, kHuge };
const char* scale_name(Scale s) { return s == kOffset ? " offset" : s == kHuge ? " huge" : ""; }
Data make_data(const ref::Layout& l, int64_t C, bool residual, bool affine, uint32_t seed, Scale scale = kCentred) {
  Data d;
  const float mean = scale == kOffset ? 1e4f : scale == kHuge ? 1e26f : 0.5f;
  const float spread = scale == kOffset ? 0.1f : scale == kHuge ? 1e25f : 2.0f;
  d.x = random_vec(ref::total(l), seed, mean, spread);
  if (residual) d.res = random_vec(d.x.size(), seed + 1, 0.2f, 1.0f);
  d.dy = random_vec(d.x.size(), seed + 2);
  if (affine) {
    d.gamma = random_vec(C, seed + 3, 1.0f, 0.5f);
    d.beta = random_vec(C, seed + 4, 0.0f, 0.5f);
  }
  return d;
}

// dresidual = act'(z) * dy carries z's float rounding times dy: over
// millions of elements dy's tail reaches 5 standard deviations.
double dres_tolerance(size_t n) { return n > (size_t{1} << 20) ? 2e-5 : 5e-6; }

// ---- Batch Norm ------------------------------------------------------------

void check_bn(const ref::Layout& l, const ActCase& a, bool residual, bool affine, uint32_t seed,
              Scale scale = kCentred) {
  SCOPED_TRACE(nkt::layout_name(l) + " " + a.name + (residual ? " +residual" : "") + (affine ? " affine" : "") +
               scale_name(scale));
  int64_t C;
  ref::channel_of(l, &C);
  const Data d = make_data(l, C, residual, affine, seed, scale);
  const auto desc = nkt::desc_of(l);
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.epsilon = 1e-3f;
  auto sm = poisoned(C), si = poisoned(C);
  std::vector<float> mm(C, 0.5f), mv(C, 2.0f);
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.saved_mean = sm.data();
  st.saved_invstd = si.data();
  st.moving_mean = mm.data();
  st.moving_var = mv.data();
  auto y = poisoned(d.x.size());
  ASSERT_EQ(nk_bn_act_forward_training(&desc, &o, a.kind, a.p, d.x.data(), opt_ptr(d.res), y.data(),
                                       opt_ptr(d.gamma), opt_ptr(d.beta), &st),
            NK_OK)
      << nk_last_error();
  const auto g = bn_grouping(l);
  const FusedRef r = fused_ref(d.x, d.res, d.dy, g, 1e-3, d.gamma, d.beta, a, &y);
  EXPECT_LE(nkt::rel_error(y, r.y), 5e-5);
  const auto s = ref::group_stats(d.x, g);
  EXPECT_LE(nkt::rel_error(sm, s.mean, 2.0), 5e-6);
  std::vector<double> rmm(C, 0.5), rmv(C, 2.0);
  ref::update_moving(rmm, rmv, {s.mean, s.var, s.count}, 0.99, false, false);
  EXPECT_LE(nkt::rel_error(mm, rmm), 5e-6);
  // A huge spread's variance is past float's range: the moving variance is Inf.
  if (scale == kHuge) EXPECT_TRUE(std::isinf(mv[0]));
  else EXPECT_LE(nkt::rel_error(mv, rmv), 5e-6);

  const bool grads = seed % 3 != 0;
  auto dx = poisoned(d.x.size()), dres = poisoned(residual ? d.x.size() : 0), dg = poisoned(C), db = poisoned(C);
  ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, d.x.data(), opt_ptr(d.res), d.dy.data(), opt_ptr(d.gamma),
                               opt_ptr(d.beta), &st, dx.data(), opt_ptr(dres), grads ? dg.data() : nullptr,
                               grads ? db.data() : nullptr),
            NK_OK)
      << nk_last_error();
  EXPECT_LE(dx_err(dx, r.dx, scale == kHuge), 5e-5);
  if (residual) {
    EXPECT_LE(err(dres, r.dres), dres_tolerance(dres.size()));
  }
  if (grads) {
    EXPECT_LE(err(dg, r.dgamma), 5e-5);
    EXPECT_LE(err(db, r.dbeta), 5e-5);
  } else {
    for (int64_t c = 0; c < C; ++c) EXPECT_TRUE(dg[c] == nkt::kPoison && db[c] == nkt::kPoison);
  }
}

// The activations through the library's own element-wise ops.
void act_forward(const ActCase& a, std::vector<float>& z) {
  const int64_t n = static_cast<int64_t>(z.size());
  switch (a.kind) {
    case NK_ACT_RELU: ASSERT_EQ(nk_relu_forward(n, z.data(), z.data()), NK_OK); break;
    case NK_ACT_LEAKY_RELU: ASSERT_EQ(nk_leaky_relu_forward(n, a.p, z.data(), z.data()), NK_OK); break;
    case NK_ACT_ELU: ASSERT_EQ(nk_elu_forward(n, a.p, z.data(), z.data()), NK_OK); break;
    case NK_ACT_SELU: ASSERT_EQ(nk_selu_forward(n, z.data(), z.data()), NK_OK); break;
    default: break;
  }
}
std::vector<float> act_backward(const ActCase& a, const std::vector<float>& z, const std::vector<float>& dy) {
  std::vector<float> dz = dy;
  const int64_t n = static_cast<int64_t>(z.size());
  switch (a.kind) {
    case NK_ACT_RELU: EXPECT_EQ(nk_relu_backward(n, z.data(), dy.data(), dz.data()), NK_OK); break;
    case NK_ACT_LEAKY_RELU: EXPECT_EQ(nk_leaky_relu_backward(n, a.p, z.data(), dy.data(), dz.data()), NK_OK); break;
    case NK_ACT_ELU: EXPECT_EQ(nk_elu_backward(n, a.p, z.data(), dy.data(), dz.data()), NK_OK); break;
    case NK_ACT_SELU: EXPECT_EQ(nk_selu_backward(n, z.data(), dy.data(), dz.data()), NK_OK); break;
    default: break;
  }
  return dz;
}

// TF's options (renorm, adjustment, virtual batches): the fused ops equal
// nk_bn_forward_training_ex, the add, the activation op, and back through
// the activation's and nk_bn_backward_ex, within float rounding; the
// statistics they save and update are the same bits.
struct Options {
  bool renorm, adjust;
  int32_t virtual_batch, grouping;
  const char* name;
};

void check_bn_composition(const ref::Layout& l, const Options& op, const ActCase& a, bool residual, uint32_t seed) {
  SCOPED_TRACE(nkt::layout_name(l) + " " + op.name + " " + a.name + (residual ? " +residual" : ""));
  int64_t C;
  ref::channel_of(l, &C);
  const Data d = make_data(l, C, residual, true, seed);
  const auto desc = nkt::desc_of(l);
  nk_bn_options o;
  nk_bn_options_init(&o);
  o.epsilon = 1e-3f;
  o.renorm = op.renorm;
  o.rmax = 1.2f;
  o.rmin = 0.8f;
  o.dmax = 0.3f;
  o.virtual_batch_size = op.virtual_batch;
  o.virtual_grouping = op.grouping;
  const int64_t G = op.virtual_batch ? l.dims[0] / op.virtual_batch : 1;
  const auto adj_s = random_vec(C, seed + 7, 1.0f, 0.3f), adj_b = random_vec(C, seed + 8, 0.0f, 0.3f);
  struct Arrays {
    std::vector<float> mm, mv, msd, rm, rsd, sm, si, sr, sd;
  };
  auto make_state = [&](Arrays& s, nk_bn_state& st) {
    s = {std::vector<float>(C, 0.2f), std::vector<float>(C, 1.5f), std::vector<float>(C, 1.1f),
         random_vec(C, seed + 9, 0.5f, 0.3f), std::vector<float>(C, 1.7f), poisoned(G * C), poisoned(G * C),
         poisoned(C), poisoned(C)};
    nk_bn_state_init(&st);
    st.moving_mean = s.mm.data();
    st.moving_var = s.mv.data();
    if (op.renorm) {
      st.moving_stddev = s.msd.data();
      st.renorm_mean = s.rm.data();
      st.renorm_stddev = s.rsd.data();
      st.saved_r = s.sr.data();
      st.saved_d = s.sd.data();
    }
    if (op.adjust) {
      st.adjustment_scale = adj_s.data();
      st.adjustment_bias = adj_b.data();
    }
    st.saved_mean = s.sm.data();
    st.saved_invstd = s.si.data();
  };
  Arrays su, sf;
  nk_bn_state stu, stf;
  make_state(su, stu);
  make_state(sf, stf);
  std::vector<float> z(d.x.size());
  ASSERT_EQ(nk_bn_forward_training_ex(&desc, &o, d.x.data(), z.data(), d.gamma.data(), d.beta.data(), &stu), NK_OK)
      << nk_last_error();
  if (residual)
    for (size_t i = 0; i < z.size(); ++i) z[i] += d.res[i];
  auto y_unfused = z;
  act_forward(a, y_unfused);
  auto y = poisoned(d.x.size());
  ASSERT_EQ(nk_bn_act_forward_training(&desc, &o, a.kind, a.p, d.x.data(), opt_ptr(d.res), y.data(),
                                       d.gamma.data(), d.beta.data(), &stf),
            NK_OK)
      << nk_last_error();
  EXPECT_LE(err(y, y_unfused), 2e-6);
  for (auto [u, f] : {std::pair{&su.mm, &sf.mm}, {&su.mv, &sf.mv}, {&su.msd, &sf.msd}, {&su.rm, &sf.rm},
                      {&su.rsd, &sf.rsd}, {&su.sm, &sf.sm}, {&su.si, &sf.si}, {&su.sr, &sf.sr}, {&su.sd, &sf.sd}})
    EXPECT_EQ(*u, *f);

  const auto dz = act_backward(a, z, d.dy);
  std::vector<float> dx_u(d.x.size()), dg_u(C), db_u(C);
  ASSERT_EQ(nk_bn_backward_ex(&desc, &o, d.x.data(), dz.data(), d.gamma.data(), &stu, dx_u.data(), dg_u.data(),
                              db_u.data()),
            NK_OK)
      << nk_last_error();
  auto dx = poisoned(d.x.size()), dres = poisoned(residual ? d.x.size() : 0), dg = poisoned(C), db = poisoned(C);
  ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, d.x.data(), opt_ptr(d.res), d.dy.data(), d.gamma.data(),
                               d.beta.data(), &stf, dx.data(), opt_ptr(dres), dg.data(), db.data()),
            NK_OK)
      << nk_last_error();
  EXPECT_LE(err(dx, dx_u), 2e-5);
  EXPECT_LE(err(dg, dg_u), 2e-5);
  EXPECT_LE(err(db, db_u), 2e-5);
  if (residual) {
    EXPECT_LE(err(dres, dz), 2e-6);
  }
}

class FusedBn : public IsaTest {};

TEST_P(FusedBn, MatchesReference) {
  uint32_t seed = 1;
  for (const auto& l : nkt::sweep_layouts())
    for (const auto& a : kActs) {
      check_bn(l, a, seed % 2 == 0, seed % 5 != 0, seed);
      ++seed;
    }
}

TEST_P(FusedBn, EveryActivationWithAndWithoutResidual) {
  uint32_t seed = 500;
  for (const auto& l : {nkt::nchw(3, 5, 7, 9), nkt::nhwc(3, 17, 7, 3), ref::Layout{{3, 4, 5, 6}, {1, 3}}})
    for (const auto& a : kActs)
      for (bool res : {false, true}) check_bn(l, a, res, true, seed++);
}

// Outputs streamed past the cache (threshold 0) starting on a cache line,
// where each whole vector of a row is one streamed line, and one float past
// it, where none can be: both give the bits of ordinary stores, and write
// nothing outside their outputs.
TEST_P(FusedBn, StreamedOutputsAlignedOrNot) {
  uint32_t seed = 700;
  for (const auto& l : {nkt::nhwc(4, 80, 9, 11), nkt::nchw(4, 80, 9, 11), nkt::nhwc(3, 2100, 2, 3)})
    for (const auto& a : {kActs[1], kActs[4]}) {
      SCOPED_TRACE(nkt::layout_name(l) + " " + a.name);
      int64_t C;
      ref::channel_of(l, &C);
      const Data d = make_data(l, C, true, true, seed++);
      const size_t n = d.x.size();
      const auto desc = nkt::desc_of(l);
      std::vector<float> sm(C), si(C);
      nk_bn_state st;
      nk_bn_state_init(&st);
      st.saved_mean = sm.data();
      st.saved_invstd = si.data();
      // y, dx, dres of one forward and backward, into out[0..2].
      auto run = [&](float* const* out) {
        ASSERT_EQ(nk_bn_act_forward_training(&desc, nullptr, a.kind, a.p, d.x.data(), d.res.data(), out[0],
                                             d.gamma.data(), d.beta.data(), &st),
                  NK_OK);
        ASSERT_EQ(nk_bn_act_backward(&desc, nullptr, a.kind, a.p, d.x.data(), d.res.data(), d.dy.data(),
                                     d.gamma.data(), d.beta.data(), &st, out[1], out[2], nullptr, nullptr),
                  NK_OK);
      };
      ASSERT_EQ(nk_set_stream_threshold(-1), NK_OK);
      std::vector<float> want[3] = {std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
      float* const wp[3] = {want[0].data(), want[1].data(), want[2].data()};
      run(wp);
      const FusedRef r = fused_ref(d.x, d.res, d.dy, bn_grouping(l), 1e-3, d.gamma, d.beta, a);
      EXPECT_LE(err(want[0], r.y), 5e-5);
      EXPECT_LE(err(want[1], r.dx), 5e-5);
      ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
      for (int64_t shift : {0, 1}) {
        constexpr int64_t kSlack = 32;
        std::vector<float> buf[3];
        float* out[3];
        for (int k = 0; k < 3; ++k) {
          buf[k] = poisoned(n + kSlack);
          const auto addr = reinterpret_cast<uintptr_t>(buf[k].data());
          out[k] = buf[k].data() + (64 - addr % 64) % 64 / sizeof(float) + shift;
        }
        run(out);
        for (int k = 0; k < 3; ++k) {
          EXPECT_TRUE(std::equal(out[k], out[k] + n, want[k].begin())) << "output " << k << " shift " << shift;
          const auto inside = [&](const float& f) { return &f >= out[k] && &f < out[k] + n; };
          EXPECT_TRUE(std::all_of(buf[k].begin(), buf[k].end(),
                                  [&](const float& f) { return inside(f) || f == nkt::kPoison; }));
        }
      }
      ASSERT_EQ(nk_set_stream_threshold(-1), NK_OK);
    }
}

// Mean 1e4, spread 0.1: the fused ops subtract the mean's low part after the
// saved float mean, forward and (recomputing it) backward.
TEST_P(FusedBn, LargeOffsetLikeCentredData) {
  uint32_t seed = 700;
  for (const auto& l : {nkt::nchw(3, 5, 7, 9), nkt::nhwc(3, 7, 9, 5), nkt::nchw(2, 3, 40, 41),
                        ref::Layout{{8, 3, 4, 5}, {1, 3}}})
    for (const auto& a : kActs)
      for (bool res : {false, true})
        for (Scale s : {kOffset, kHuge}) check_bn(l, a, res, true, seed++, s);
}

// Streaming stores: dresidual past the cache (NCHW: the apply pass
// recomputes dz; NHWC: reads it back), and dz kept in dx's buffer (NCHW: in
// cache between the passes; NHWC: past it).
TEST_P(FusedBn, LargeWithStreamingStores) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  uint32_t seed = 31;
  for (const auto& l : {nkt::nchw(4, 6, 40, 41), nkt::nhwc(4, 40, 41, 6)})
    for (const auto& a : {kActs[1], kActs[4]})
      for (bool res : {true, false}) check_bn(l, a, res, true, seed++);
}

TEST_P(FusedBn, EqualsTheComposition) {
  const Options options[] = {{false, false, 0, NK_GHOST_STRIDED, "plain"},
                             {true, false, 0, NK_GHOST_STRIDED, "renorm"},
                             {false, true, 0, NK_GHOST_STRIDED, "adjustment"},
                             {true, true, 0, NK_GHOST_STRIDED, "renorm+adjustment"},
                             {false, false, 2, NK_GHOST_STRIDED, "ghost strided"},
                             {true, false, 3, NK_GHOST_CONTIGUOUS, "ghost contiguous+renorm"}};
  uint32_t seed = 900;
  for (const auto& op : options)
    for (const auto& l : {nkt::nchw(6, 5, 7, 9), nkt::nhwc(6, 19, 3, 5)})
      for (const auto& a : kActs)
        for (bool res : {false, true}) check_bn_composition(l, op, a, res, seed++);
}

TEST_P(FusedBn, InferenceMatchesReference) {
  uint32_t seed = 1300;
  for (const auto& l : {nkt::nchw(2, 3, 5, 7), nkt::nhwc(2, 17, 3, 3), ref::Layout{{3, 4, 5, 6}, {1, 3}}})
    for (const auto& a : kActs) {
      SCOPED_TRACE(nkt::layout_name(l) + " " + a.name);
      int64_t C;
      const auto ch = ref::channel_of(l, &C);
      const Data d = make_data(l, C, true, true, seed++);
      const auto mm = random_vec(C, seed++, 0.3f, 0.5f);
      auto mv = random_vec(C, seed++);
      for (auto& v : mv) v = 0.5f + v * v;
      const auto desc = nkt::desc_of(l);
      nk_bn_options o;
      nk_bn_options_init(&o);
      auto y = poisoned(d.x.size());
      ASSERT_EQ(nk_bn_act_forward_inference(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), y.data(),
                                            d.gamma.data(), d.beta.data(), mm.data(), mv.data()),
                NK_OK)
          << nk_last_error();
      std::vector<double> m(mm.begin(), mm.end()), v(mv.begin(), mv.end());
      auto want = ref::normalize(d.x, ch, m, v, o.epsilon, d.gamma, d.beta);
      for (size_t i = 0; i < want.size(); ++i) want[i] = act_f(a, want[i] + d.res[i]);
      EXPECT_LE(nkt::rel_error(y, want), 5e-5);
    }
}

// y over x or over the residual; dx and dresidual over dy.
// Every in-place form, with ordinary and with streaming stores (the apply
// pass then recomputes dz from inputs the sums pass must not have
// overwritten: dresidual over dy).
TEST_P(FusedBn, InPlace) {
  for (int64_t threshold : {int64_t{-1}, int64_t{0}})
  for (const auto& l : {nkt::nchw(3, 6, 7, 5), nkt::nhwc(3, 6, 7, 5), ref::Layout{{3, 4, 5, 6}, {1, 3}}}) {
    SCOPED_TRACE(nkt::layout_name(l) + " stream threshold " + std::to_string(threshold));
    ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
    int64_t C;
    ref::channel_of(l, &C);
    const Data d = make_data(l, C, true, true, 77);
    const auto desc = nkt::desc_of(l);
    nk_bn_options o;
    nk_bn_options_init(&o);
    std::vector<float> sm(C), si(C);
    nk_bn_state st;
    nk_bn_state_init(&st);
    st.saved_mean = sm.data();
    st.saved_invstd = si.data();
    const ActCase& a = kActs[4];
    std::vector<float> y(d.x.size());
    ASSERT_EQ(nk_bn_act_forward_training(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), y.data(),
                                         d.gamma.data(), d.beta.data(), &st),
              NK_OK);
    auto over_x = d.x, over_res = d.res;
    ASSERT_EQ(nk_bn_act_forward_training(&desc, &o, a.kind, a.p, over_x.data(), d.res.data(), over_x.data(),
                                         d.gamma.data(), d.beta.data(), &st),
              NK_OK);
    ASSERT_EQ(nk_bn_act_forward_training(&desc, &o, a.kind, a.p, d.x.data(), over_res.data(), over_res.data(),
                                         d.gamma.data(), d.beta.data(), &st),
              NK_OK);
    EXPECT_EQ(over_x, y);
    EXPECT_EQ(over_res, y);
    std::vector<float> dx(d.x.size()), dres(d.x.size());
    ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), d.dy.data(), d.gamma.data(),
                                 d.beta.data(), &st, dx.data(), dres.data(), nullptr, nullptr),
              NK_OK);
    auto g1 = d.dy, g2 = d.dy, g3 = d.dy;
    std::vector<float> other(d.x.size());
    ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), g1.data(), d.gamma.data(),
                                 d.beta.data(), &st, g1.data(), other.data(), nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(g1, dx);
    EXPECT_EQ(other, dres);
    ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), g2.data(), d.gamma.data(),
                                 d.beta.data(), &st, other.data(), g2.data(), nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(other, dx);
    EXPECT_EQ(g2, dres);
    // Without dresidual, dz is recomputed in the apply pass: the same dx.
    ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), g3.data(), d.gamma.data(),
                                 d.beta.data(), &st, g3.data(), nullptr, nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(g3, dx);
    // dx over x: dz cannot wait in dx's buffer, the apply pass recomputes it.
    auto over_x2 = d.x;
    ASSERT_EQ(nk_bn_act_backward(&desc, &o, a.kind, a.p, over_x2.data(), d.res.data(), d.dy.data(),
                                 d.gamma.data(), d.beta.data(), &st, over_x2.data(), nullptr, nullptr, nullptr),
              NK_OK);
    EXPECT_EQ(over_x2, dx);
  }
  nk_set_stream_threshold(-1);
}

NKT_INSTANTIATE_ISAS(FusedBn);

// ---- Group Norm ------------------------------------------------------------

void check_gn(const ref::Layout& l, int64_t G, const ActCase& a, bool residual, uint32_t seed,
              Scale scale = kCentred) {
  SCOPED_TRACE(nkt::layout_name(l) + " G=" + std::to_string(G) + " " + a.name + (residual ? " +residual" : "") +
               scale_name(scale));
  int64_t C;
  ref::channel_of(l, &C);
  const int64_t N = l.dims[0];
  const Data d = make_data(l, C, residual, seed % 4 != 0, seed, scale);
  const auto desc = nkt::desc_of(l);
  nk_gn_options o;
  nk_gn_options_init(&o);
  o.groups = static_cast<int32_t>(G);
  o.epsilon = 1e-3f;
  auto y = poisoned(d.x.size()), sm = poisoned(N * G), si = poisoned(N * G);
  ASSERT_EQ(nk_groupnorm_act_forward(&desc, &o, a.kind, a.p, d.x.data(), opt_ptr(d.res), y.data(),
                                     opt_ptr(d.gamma), opt_ptr(d.beta), sm.data(), si.data()),
            NK_OK)
      << nk_last_error();
  const auto g = ref::gn_grouping(l, G);
  const FusedRef r = fused_ref(d.x, d.res, d.dy, g, 1e-3, d.gamma, d.beta, a, &y);
  EXPECT_LE(nkt::rel_error(y, r.y), 5e-5);
  auto dx = poisoned(d.x.size()), dres = poisoned(residual ? d.x.size() : 0), dg = poisoned(C), db = poisoned(C);
  ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, d.x.data(), opt_ptr(d.res), d.dy.data(),
                                      opt_ptr(d.gamma), opt_ptr(d.beta), sm.data(), si.data(), dx.data(),
                                      opt_ptr(dres), dg.data(), db.data()),
            NK_OK)
      << nk_last_error();
  EXPECT_LE(dx_err(dx, r.dx, scale == kHuge), 5e-5);
  if (residual) {
    EXPECT_LE(err(dres, r.dres), dres_tolerance(dres.size()));
  }
  EXPECT_LE(err(dg, r.dgamma), 5e-5);
  EXPECT_LE(err(db, r.dbeta), 5e-5);
}

class FusedGn : public IsaTest {};

TEST_P(FusedGn, MatchesReference) {
  uint32_t seed = 2000;
  const std::pair<int64_t, int64_t> cg[] = {{1, 1}, {3, 3}, {17, 1}, {6, 2}, {32, 8}, {80, 10}};
  for (int64_t n : {1, 3})
    for (auto [c, G] : cg)
      for (const ref::Layout& l : {nkt::nchw(n, c, 3, 11), nkt::nhwc(n, c, 3, 11), ref::Layout{{n, c, 7}, {1}},
                                   ref::Layout{{n, 2, 3, 5, c}, {-1}}, ref::Layout{{n, c}, {1}}})
        for (const auto& a : kActs) {
          check_gn(l, G, a, seed % 2 == 0, seed);
          ++seed;
        }
}

TEST_P(FusedGn, LargeOffsetLikeCentredData) {
  uint32_t seed = 800;
  for (const auto& l : {nkt::nchw(2, 6, 7, 9), nkt::nhwc(3, 6, 7, 9), ref::Layout{{2, 6, 33}, {1}}})
    for (const auto& a : kActs)
      for (bool res : {false, true})
        for (Scale s : {kOffset, kHuge}) check_gn(l, 2, a, res, seed++, s);
}

TEST_P(FusedGn, LargeWithStreamingStores) {
  ASSERT_EQ(nk_set_stream_threshold(0), NK_OK);
  uint32_t seed = 41;
  for (const auto& l : {nkt::nchw(2, 64, 40, 41), nkt::nhwc(2, 64, 40, 41)})
    for (bool res : {true, false}) check_gn(l, 32, kActs[4], res, seed++);
}

// Views of 16 MiB or more. NCHW: each channel-resident unit's forward
// apply asks the next unit's x into L2 piece by piece (kernels::map_view's
// ahead), on runs of a length no piece divides. NHWC: backward computes dz
// a row at a time, asking for the inputs of rows further on (FusedDz).
// NCHW 16x1344x14x14: runs of 196 floats, summed in blocks of channels;
// ReLU's passes take them in blocks too, SELU's one run at a time. Two axes
// (W, C) of NHWC: rows of 4,257 channels, wider than a parameter chunk.
TEST_P(FusedBn, FromMemoryWithPrefetches) {
  uint32_t seed = 71;
  for (const auto& l : {nkt::nchw(2, 4, 1023, 521), nkt::nhwc(2, 129, 130, 128)})
    check_bn(l, kActs[4], true, true, seed++);
  for (const auto& a : {kActs[1], kActs[4]}) check_bn(nkt::nchw(16, 1344, 14, 14), a, true, true, seed++);
  for (const auto& a : {kActs[1], kActs[4]}) check_bn(ref::Layout{{15, 67, 33, 129}, {2, 3}}, a, true, true, seed++);
}

// 16 MiB or more: each unit's apply asks for the next unit's x, in NCHW the
// next group's, in NHWC (at 1 or 2 threads, where samples stay in cache) the
// next sample's.
TEST_P(FusedGn, FromMemoryPrefetchingTheNextUnit) {
  check_gn(nkt::nchw(2, 8, 1023, 521), 4, kActs[4], false, 73);
  check_gn(nkt::nhwc(8, 256, 65, 33), 32, kActs[4], true, 74);
}

// Channels last with samples that fit the cache together, N a multiple of
// the thread count: a thread takes whole samples, and backward keeps dz
// (ELU, SELU) in a buffer of the thread's own between its two passes.
TEST_P(FusedGn, SamplesHeldInCache) {
  uint32_t seed = 90;
  for (int threads : {1, 2, 3}) {
    ASSERT_EQ(nk_set_num_threads(threads), NK_OK);
    for (const auto& [l, G] : {std::pair{nkt::nhwc(6, 48, 7, 33), int64_t{8}}, {nkt::nhwc(12, 17, 5, 3), 17},
                               {ref::Layout{{6, 3, 2, 5, 6}, {-1}}, 3}})
      for (const auto& a : kActs) {
        check_gn(l, G, a, seed % 3 == 0, seed);
        ++seed;
      }
  }
  nk_set_num_threads(0);
}

// Group Norm + SELU equals nk_groupnorm_forward and nk_selu_forward, and
// back through nk_selu_backward and nk_groupnorm_backward.
TEST_P(FusedGn, EqualsTheComposition) {
  for (const auto& l : {nkt::nchw(3, 12, 9, 7), nkt::nhwc(3, 12, 9, 7)})
    for (const auto& a : kActs) {
      SCOPED_TRACE(nkt::layout_name(l) + " " + a.name);
      const Data d = make_data(l, 12, true, true, 61);
      const auto desc = nkt::desc_of(l);
      nk_gn_options o;
      nk_gn_options_init(&o);
      o.groups = 4;
      std::vector<float> z(d.x.size()), sm(12), si(12), smf(12), sif(12);
      ASSERT_EQ(nk_groupnorm_forward(&desc, &o, d.x.data(), z.data(), d.gamma.data(), d.beta.data(), sm.data(),
                                     si.data()),
                NK_OK);
      for (size_t i = 0; i < z.size(); ++i) z[i] += d.res[i];
      auto y_unfused = z;
      act_forward(a, y_unfused);
      auto y = poisoned(d.x.size());
      ASSERT_EQ(nk_groupnorm_act_forward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), y.data(),
                                         d.gamma.data(), d.beta.data(), smf.data(), sif.data()),
                NK_OK);
      EXPECT_LE(err(y, y_unfused), 2e-6);
      EXPECT_EQ(sm, smf);
      EXPECT_EQ(si, sif);
      const auto dz = act_backward(a, z, d.dy);
      std::vector<float> dx_u(d.x.size()), dg_u(12), db_u(12);
      ASSERT_EQ(nk_groupnorm_backward(&desc, &o, d.x.data(), dz.data(), d.gamma.data(), sm.data(), si.data(),
                                      dx_u.data(), dg_u.data(), db_u.data()),
                NK_OK);
      auto dx = poisoned(d.x.size()), dres = poisoned(d.x.size()), dg = poisoned(12), db = poisoned(12);
      ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), d.dy.data(),
                                          d.gamma.data(), d.beta.data(), sm.data(), si.data(), dx.data(),
                                          dres.data(), dg.data(), db.data()),
                NK_OK);
      EXPECT_LE(err(dx, dx_u), 2e-5);
      EXPECT_LE(err(dres, dz), 2e-6);
      EXPECT_LE(err(dg, dg_u), 2e-5);
      EXPECT_LE(err(db, db_u), 2e-5);
    }
}

// dresidual over dy, and dx over dy, give the out-of-place results, with
// ordinary and with streaming stores, for the activations whose gradient is
// not 0 or 1 (where dz read back twice would show).
TEST_P(FusedGn, InPlace) {
  for (int64_t threshold : {int64_t{-1}, int64_t{0}})
    for (const auto& l : {nkt::nchw(2, 8, 9, 7), nkt::nhwc(2, 8, 9, 7)})
      for (const ActCase& a : {kActs[2], kActs[4]}) {
        SCOPED_TRACE(nkt::layout_name(l) + " " + a.name + " stream threshold " + std::to_string(threshold));
        ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
        const Data d = make_data(l, 8, true, true, 63);
        const auto desc = nkt::desc_of(l);
        nk_gn_options o;
        nk_gn_options_init(&o);
        o.groups = 4;
        std::vector<float> y(d.x.size()), sm(8), si(8);
        ASSERT_EQ(nk_groupnorm_act_forward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), y.data(),
                                           d.gamma.data(), d.beta.data(), sm.data(), si.data()),
                  NK_OK);
        std::vector<float> dx(d.x.size()), dres(d.x.size()), other(d.x.size());
        ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), d.dy.data(),
                                            d.gamma.data(), d.beta.data(), sm.data(), si.data(), dx.data(),
                                            dres.data(), nullptr, nullptr),
                  NK_OK);
        auto g1 = d.dy, g2 = d.dy;
        ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), g1.data(),
                                            d.gamma.data(), d.beta.data(), sm.data(), si.data(), other.data(),
                                            g1.data(), nullptr, nullptr),
                  NK_OK);
        EXPECT_EQ(other, dx);
        EXPECT_EQ(g1, dres);
        ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), g2.data(),
                                            d.gamma.data(), d.beta.data(), sm.data(), si.data(), g2.data(),
                                            other.data(), nullptr, nullptr),
                  NK_OK);
        EXPECT_EQ(g2, dx);
        EXPECT_EQ(other, dres);
        // Without dresidual, dz waits in dx's buffer, or (samples held in
        // cache, ELU and SELU) in a buffer of each thread's own, which also
        // serves dx over x: the same dx.
        auto g3 = d.dy, over_x = d.x;
        ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, d.x.data(), d.res.data(), g3.data(),
                                            d.gamma.data(), d.beta.data(), sm.data(), si.data(), g3.data(),
                                            nullptr, nullptr, nullptr),
                  NK_OK);
        EXPECT_EQ(g3, dx);
        ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, a.kind, a.p, over_x.data(), d.res.data(), d.dy.data(),
                                            d.gamma.data(), d.beta.data(), sm.data(), si.data(), over_x.data(),
                                            nullptr, nullptr, nullptr),
                  NK_OK);
        EXPECT_EQ(over_x, dx);
      }
  nk_set_stream_threshold(-1);
}

NKT_INSTANTIATE_ISAS(FusedGn);

// Called from threads of the application's own OpenMP team (normkit's
// region inside runs on one thread): per-thread buffers are found by the
// thread's place in normkit's region, not in the caller's. Group Norm +
// SELU in NHWC keeps dz in such buffers; each caller gets the bits of a
// call made alone.
TEST(FusedGnFromOpenMp, SameAsAlone) {
  const ref::Layout l = nkt::nhwc(4, 16, 9, 5);
  const auto desc = nkt::desc_of(l);
  nk_gn_options o;
  nk_gn_options_init(&o);
  o.groups = 4;
  constexpr int kCallers = 3;
  std::vector<Data> data;
  std::vector<std::vector<float>> alone(kCallers), sm(kCallers, std::vector<float>(16)),
      si(kCallers, std::vector<float>(16));
  for (int t = 0; t < kCallers; ++t) {
    data.push_back(make_data(l, 16, false, true, 300 + t));
    std::vector<float> y(data[t].x.size());
    alone[t].resize(y.size());
    ASSERT_EQ(nk_groupnorm_act_forward(&desc, &o, NK_ACT_SELU, 0.0f, data[t].x.data(), nullptr, y.data(),
                                       data[t].gamma.data(), data[t].beta.data(), sm[t].data(), si[t].data()),
              NK_OK);
    ASSERT_EQ(nk_groupnorm_act_backward(&desc, &o, NK_ACT_SELU, 0.0f, data[t].x.data(), nullptr, data[t].dy.data(),
                                        data[t].gamma.data(), data[t].beta.data(), sm[t].data(), si[t].data(),
                                        alone[t].data(), nullptr, nullptr, nullptr),
              NK_OK);
  }
  for (int threads : {1, 2}) {
    ASSERT_EQ(nk_set_num_threads(threads), NK_OK);
    std::vector<std::vector<float>> dx(kCallers, std::vector<float>(alone[0].size(), -7.0f));
    std::vector<nk_status> rc(kCallers, NK_ERR_INTERNAL);
#pragma omp parallel for num_threads(kCallers)
    for (int t = 0; t < kCallers; ++t)
      rc[t] = nk_groupnorm_act_backward(&desc, &o, NK_ACT_SELU, 0.0f, data[t].x.data(), nullptr, data[t].dy.data(),
                                        data[t].gamma.data(), data[t].beta.data(), sm[t].data(), si[t].data(),
                                        dx[t].data(), nullptr, nullptr, nullptr);
    for (int t = 0; t < kCallers; ++t) {
      EXPECT_EQ(rc[t], NK_OK) << "caller " << t << ", normkit threads " << threads;
      EXPECT_EQ(dx[t], alone[t]) << "caller " << t << ", normkit threads " << threads;
    }
  }
  nk_set_num_threads(0);
}

// ---- Determinism -----------------------------------------------------------

// Shapes of several reduction blocks and apply pieces, and short runs in
// blocks of channels: the same bits for 1, 2 and 3 threads, with and without
// streaming stores.
TEST(FusedDeterminism, AnyThreadCount) {
  for (const ref::Layout& l : {nkt::nchw(8, 24, 100, 100), nkt::nhwc(8, 24, 100, 100), nkt::nchw(400, 24, 1, 18)})
    for (int64_t threshold : {int64_t{-1}, int64_t{0}}) {
      // Offset data (backward recomputes the exact mean) in the streaming-store run.
      const Scale scale = threshold == 0 ? kOffset : kCentred;
      SCOPED_TRACE(nkt::layout_name(l) + " threshold " + std::to_string(threshold));
      ASSERT_EQ(nk_set_stream_threshold(threshold), NK_OK);
      const Data d = make_data(l, 24, true, true, 5, scale);
      const auto desc = nkt::desc_of(l);
      nk_bn_options o;
      nk_bn_options_init(&o);
      nk_gn_options go;
      nk_gn_options_init(&go);
      go.groups = 6;
      std::vector<std::vector<float>> first;
      for (int threads : {1, 2, 3}) {
        ASSERT_EQ(nk_set_num_threads(threads), NK_OK);
        std::vector<std::vector<float>> out(11);
        for (int k : {0, 1, 2, 6, 7, 10}) out[k].resize(d.x.size());
        for (int k : {3, 4, 5, 8, 9}) out[k].resize(24);
        std::vector<float> sm(24), si(24), gsm(l.dims[0] * 6), gsi(l.dims[0] * 6);
        nk_bn_state st;
        nk_bn_state_init(&st);
        st.saved_mean = sm.data();
        st.saved_invstd = si.data();
        ASSERT_EQ(nk_bn_act_forward_training(&desc, &o, NK_ACT_RELU, 0.0f, d.x.data(), d.res.data(), out[0].data(),
                                             d.gamma.data(), d.beta.data(), &st),
                  NK_OK);
        ASSERT_EQ(nk_bn_act_backward(&desc, &o, NK_ACT_RELU, 0.0f, d.x.data(), d.res.data(), d.dy.data(),
                                     d.gamma.data(), d.beta.data(), &st, out[1].data(), out[2].data(),
                                     out[3].data(), out[4].data()),
                  NK_OK);
        ASSERT_EQ(nk_bn_act_backward(&desc, &o, NK_ACT_SELU, 0.0f, d.x.data(), nullptr, d.dy.data(), d.gamma.data(),
                                     d.beta.data(), &st, out[6].data(), nullptr, out[5].data(), nullptr),
                  NK_OK);
        ASSERT_EQ(nk_groupnorm_act_forward(&desc, &go, NK_ACT_SELU, 0.0f, d.x.data(), nullptr, out[7].data(),
                                           d.gamma.data(), d.beta.data(), gsm.data(), gsi.data()),
                  NK_OK);
        ASSERT_EQ(nk_groupnorm_act_backward(&desc, &go, NK_ACT_SELU, 0.0f, d.x.data(), nullptr, d.dy.data(),
                                            d.gamma.data(), d.beta.data(), gsm.data(), gsi.data(), out[10].data(),
                                            nullptr, out[8].data(), out[9].data()),
                  NK_OK);
        if (first.empty()) first = out;
        else
          for (size_t k = 0; k < out.size(); ++k) EXPECT_EQ(out[k], first[k]) << "output " << k << ", threads " << threads;
      }
    }
  nk_set_num_threads(0);
  nk_set_stream_threshold(-1);
}

// ---- The reference's gradient, by finite differences ----------------------

// F = sum(w * act(norm(x) + res)) in double, ELU with alpha 1 (smooth enough
// for central differences) and SELU away from its kink.
TEST(FusedReference, GradientMatchesFiniteDifferences) {
  const ref::Layout l = nkt::nchw(2, 3, 2, 3);
  for (const ActCase& a : {ActCase{NK_ACT_ELU, 1.0f, "elu"}, kActs[4], kActs[2]}) {
    SCOPED_TRACE(a.name);
    for (bool gn : {false, true}) {
      const Data d = make_data(l, 3, true, true, 71);
      const auto g = gn ? ref::gn_grouping(l, 3) : bn_grouping(l);
      const auto r = fused_ref(d.x, d.res, d.dy, g, 1e-3, d.gamma, d.beta, a);
      auto F = [&](const std::vector<float>& x, const std::vector<float>& res, const std::vector<float>& gamma,
                   const std::vector<float>& beta) {
        const auto y = fused_ref(x, res, d.dy, g, 1e-3, gamma, beta, a).y;
        double s = 0;
        for (size_t i = 0; i < y.size(); ++i) s += d.dy[i] * y[i];
        return s;
      };
      // Central difference in one float: the step actually taken is exact.
      auto fd = [&](std::vector<float> v, size_t i, auto eval) {
        const float h = 1e-2f * std::max(1.0f, std::fabs(v[i]));
        const float v0 = v[i];
        v[i] = v0 + h;
        const double fp = eval(v);
        const double xp = v[i];
        v[i] = v0 - h;
        const double fm = eval(v);
        return (fp - fm) / (xp - static_cast<double>(v[i]));
      };
      for (size_t i = 0; i < d.x.size(); ++i) {
        // SELU's and LeakyReLU's derivatives jump at z = 0 (y has z's sign):
        // skip the elements near it.
        if (a.kind != NK_ACT_ELU && std::fabs(r.y[i]) < 0.2) continue;
        EXPECT_NEAR(fd(d.x, i, [&](const std::vector<float>& v) { return F(v, d.res, d.gamma, d.beta); }), r.dx[i],
                    2e-3 * std::max(1.0, nkt::rms(r.dx)))
            << "dx " << i;
        EXPECT_NEAR(fd(d.res, i, [&](const std::vector<float>& v) { return F(d.x, v, d.gamma, d.beta); }),
                    r.dres[i], 2e-3 * std::max(1.0, nkt::rms(r.dres)))
            << "dres " << i;
      }
      if (a.kind != NK_ACT_ELU) continue;
      for (size_t c = 0; c < 3; ++c) {
        EXPECT_NEAR(fd(d.gamma, c, [&](const std::vector<float>& v) { return F(d.x, d.res, v, d.beta); }),
                    r.dgamma[c], 2e-3 * std::max(1.0, nkt::rms(r.dgamma)));
        EXPECT_NEAR(fd(d.beta, c, [&](const std::vector<float>& v) { return F(d.x, d.res, d.gamma, v); }),
                    r.dbeta[c], 2e-3 * std::max(1.0, nkt::rms(r.dbeta)));
      }
    }
  }
}

// ---- Errors ----------------------------------------------------------------

// Each call fails with its status and a message, and writes nothing.
TEST(FusedErrors, ReportAndWriteNothing) {
  const ref::Layout l = nkt::nchw(2, 4, 3, 3);
  const auto desc = nkt::desc_of(l);
  const Data d = make_data(l, 4, true, true, 3);
  const size_t n = d.x.size();
  nk_bn_options o;
  nk_bn_options_init(&o);
  std::vector<float> sm(4, 0.1f), si(4, 1.0f), mm(4, 0.0f), mv(4, 1.0f);
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.saved_mean = sm.data();
  st.saved_invstd = si.data();
  nk_gn_options go;
  nk_gn_options_init(&go);
  go.groups = 2;
  std::vector<float> gsm(4, 0.1f), gsi(4, 1.0f);
  auto y = poisoned(n), dx = poisoned(n), dres = poisoned(n), dg = poisoned(4), db = poisoned(4);
  const auto st0 = sm;
  auto untouched = [&] {
    for (const auto* v : {&y, &dx, &dres})
      for (float e : *v) ASSERT_EQ(e, nkt::kPoison);
    for (const auto* v : {&dg, &db})
      for (float e : *v) ASSERT_EQ(e, nkt::kPoison);
    EXPECT_EQ(sm, st0);
  };
  auto expect = [&](nk_status got, nk_status want, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(got, want);
    EXPECT_STRNE(nk_last_error(), "");
    untouched();
  };
  const float* x = d.x.data();
  const float* res = d.res.data();
  const float* dy = d.dy.data();
  const float* gm = d.gamma.data();
  const float* bt = d.beta.data();
  auto fwd = [&](int32_t act, float p, const float* xx, const float* rr, float* yy) {
    return nk_bn_act_forward_training(&desc, &o, act, p, xx, rr, yy, gm, bt, &st);
  };
  auto bwd = [&](int32_t act, float p, const float* rr, float* dxx, float* drr) {
    return nk_bn_act_backward(&desc, &o, act, p, x, rr, dy, gm, bt, &st, dxx, drr, dg.data(), db.data());
  };
  expect(fwd(5, 0, x, res, y.data()), NK_ERR_BAD_ARGUMENT, "unknown act");
  expect(fwd(-1, 0, x, res, y.data()), NK_ERR_BAD_ARGUMENT, "negative act");
  expect(fwd(NK_ACT_ELU, NAN, x, res, y.data()), NK_ERR_BAD_ARGUMENT, "alpha NaN");
  expect(fwd(NK_ACT_LEAKY_RELU, INFINITY, x, res, y.data()), NK_ERR_BAD_ARGUMENT, "slope inf");
  expect(fwd(NK_ACT_RELU, 0, nullptr, res, y.data()), NK_ERR_NULL_POINTER, "x NULL");
  expect(fwd(NK_ACT_RELU, 0, x, res, nullptr), NK_ERR_NULL_POINTER, "y NULL");
  expect(bwd(7, 0, res, dx.data(), dres.data()), NK_ERR_BAD_ARGUMENT, "backward unknown act");
  expect(bwd(NK_ACT_RELU, 0, nullptr, dx.data(), dres.data()), NK_ERR_BAD_ARGUMENT, "dresidual without residual");
  expect(bwd(NK_ACT_RELU, 0, res, dres.data(), dres.data()), NK_ERR_BAD_ARGUMENT, "dresidual == dx");
  expect(nk_bn_act_backward(&desc, &o, NK_ACT_RELU, 0, dres.data(), res, dy, gm, bt, &st, dx.data(), dres.data(),
                            dg.data(), db.data()),
         NK_ERR_BAD_ARGUMENT, "dresidual == x");
  expect(bwd(NK_ACT_RELU, 0, res, nullptr, dres.data()), NK_ERR_NULL_POINTER, "dx NULL");
  expect(nk_bn_act_backward(&desc, &o, NK_ACT_RELU, 0, x, res, nullptr, gm, bt, &st, dx.data(), dres.data(),
                            dg.data(), db.data()),
         NK_ERR_NULL_POINTER, "dy NULL");
  nk_bn_state no_saved;
  nk_bn_state_init(&no_saved);
  expect(nk_bn_act_backward(&desc, &o, NK_ACT_RELU, 0, x, res, dy, gm, bt, &no_saved, dx.data(), dres.data(),
                            dg.data(), db.data()),
         NK_ERR_NULL_POINTER, "saved statistics NULL");
  nk_bn_options ghost = o;
  ghost.virtual_batch_size = 3;
  expect(nk_bn_act_forward_training(&desc, &ghost, NK_ACT_RELU, 0, x, res, y.data(), gm, bt, &st),
         NK_ERR_BAD_ARGUMENT, "virtual batch not dividing N");
  nk_tensor_desc bad = desc;
  bad.dims[2] = -3;
  expect(nk_bn_act_forward_training(&bad, &o, NK_ACT_RELU, 0, x, res, y.data(), gm, bt, &st), NK_ERR_BAD_SHAPE,
         "negative dim");
  expect(nk_bn_act_forward_inference(&desc, &o, 9, 0, x, res, y.data(), gm, bt, mm.data(), mv.data()),
         NK_ERR_BAD_ARGUMENT, "inference unknown act");
  expect(nk_bn_act_forward_inference(&desc, &o, NK_ACT_RELU, 0, x, res, y.data(), gm, bt, nullptr, mv.data()),
         NK_ERR_NULL_POINTER, "inference moving_mean NULL");
  // Group Norm.
  expect(nk_groupnorm_act_forward(&desc, &go, 11, 0, x, res, y.data(), gm, bt, gsm.data(), gsi.data()),
         NK_ERR_BAD_ARGUMENT, "GN unknown act");
  nk_gn_options g3 = go;
  g3.groups = 3;
  expect(nk_groupnorm_act_forward(&desc, &g3, NK_ACT_SELU, 0, x, res, y.data(), gm, bt, gsm.data(), gsi.data()),
         NK_ERR_BAD_ARGUMENT, "GN groups not dividing C");
  expect(nk_groupnorm_act_forward(&desc, &go, NK_ACT_SELU, 0, x, res, nullptr, gm, bt, gsm.data(), gsi.data()),
         NK_ERR_NULL_POINTER, "GN y NULL");
  expect(nk_groupnorm_act_backward(&desc, &go, NK_ACT_SELU, 0, x, nullptr, dy, gm, bt, gsm.data(), gsi.data(),
                                   dx.data(), dres.data(), dg.data(), db.data()),
         NK_ERR_BAD_ARGUMENT, "GN dresidual without residual");
  expect(nk_groupnorm_act_backward(&desc, &go, NK_ACT_SELU, 0, x, res, dy, gm, bt, gsm.data(), gsi.data(),
                                   dx.data(), dx.data(), dg.data(), db.data()),
         NK_ERR_BAD_ARGUMENT, "GN dresidual == dx");
  expect(nk_groupnorm_act_backward(&desc, &go, NK_ACT_SELU, 0, x, res, dy, gm, bt, nullptr, gsi.data(), dx.data(),
                                   dres.data(), dg.data(), db.data()),
         NK_ERR_NULL_POINTER, "GN saved_mean NULL");
  expect(nk_groupnorm_act_backward(&desc, &go, NK_ACT_ELU, NAN, x, res, dy, gm, bt, gsm.data(), gsi.data(),
                                   dx.data(), dres.data(), dg.data(), db.data()),
         NK_ERR_BAD_ARGUMENT, "GN alpha NaN");
}

}  // namespace
