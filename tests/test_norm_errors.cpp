// Every error path of Group, Instance, Layer and RMS Normalization: the
// status, a message that names the problem, and no output written.
#include "test_util.hpp"

namespace {

using nkt::kPoison;

struct Outs {
  std::vector<float> y = nkt::poisoned(120), sm = nkt::poisoned(8), si = nkt::poisoned(8),
                     mm = std::vector<float>(6, 0.5f), mv = std::vector<float>(6, 2.0f), dx = nkt::poisoned(120),
                     dg = nkt::poisoned(6), db = nkt::poisoned(6);
  bool untouched() const {
    auto all = [](const std::vector<float>& v, float f) {
      for (float x : v)
        if (std::memcmp(&x, &f, sizeof f) != 0) return false;
      return true;
    };
    return all(y, kPoison) && all(sm, kPoison) && all(si, kPoison) && all(mm, 0.5f) && all(mv, 2.0f) &&
           all(dx, kPoison) && all(dg, kPoison) && all(db, kPoison);
  }
};

const std::vector<float> kX = nkt::random_vec(120, 1), kDy = nkt::random_vec(120, 2);
const std::vector<float> kOnes(8, 1.0f);

nk_tensor_desc desc(std::vector<int64_t> dims, int32_t axis) {
  nk_tensor_desc d{};
  nk_tensor_desc_init(&d, static_cast<int32_t>(dims.size()), dims.data(), axis);
  return d;
}

#define EXPECT_FAILS(call, status, word)                                              \
  do {                                                                                \
    EXPECT_EQ((call), (status)) << #call;                                             \
    EXPECT_NE(std::string(nk_last_error()).find(word), std::string::npos)             \
        << #call << ": message '" << nk_last_error() << "' lacks '" << (word) << "'"; \
    EXPECT_TRUE(outs.untouched()) << #call << " wrote an output";                     \
  } while (0)

// [2, 6, 10] NCL with 2 groups: N*G = 4 statistics.
nk_status gn_fwd(const nk_tensor_desc* d, const nk_gn_options* o, Outs& outs) {
  return nk_groupnorm_forward(d, o, kX.data(), outs.y.data(), kOnes.data(), kOnes.data(), outs.sm.data(),
                              outs.si.data());
}
nk_status gn_bwd(const nk_tensor_desc* d, const nk_gn_options* o, Outs& outs) {
  return nk_groupnorm_backward(d, o, kX.data(), kDy.data(), kOnes.data(), kOnes.data(), kOnes.data(), outs.dx.data(),
                               outs.dg.data(), outs.db.data());
}

TEST(NormErrors, GroupNorm) {
  Outs outs;
  const auto d = desc({2, 6, 10}, 1);
  nk_gn_options o;
  nk_gn_options_init(&o);
  o.groups = 2;
  {
    Outs fine;
    EXPECT_EQ(gn_fwd(&d, &o, fine), NK_OK) << nk_last_error();
  }
  EXPECT_FAILS(gn_fwd(nullptr, &o, outs), NK_ERR_NULL_POINTER, "desc");
  EXPECT_FAILS(gn_fwd(&d, nullptr, outs), NK_ERR_BAD_ARGUMENT, "groups 32 do not divide channels 6");
  nk_gn_options bad = o;
  bad.groups = 4;
  EXPECT_FAILS(gn_fwd(&d, &bad, outs), NK_ERR_BAD_ARGUMENT, "groups 4 do not divide channels 6");
  EXPECT_FAILS(gn_bwd(&d, &bad, outs), NK_ERR_BAD_ARGUMENT, "groups 4 do not divide channels 6");
  bad.groups = 0;
  EXPECT_FAILS(gn_fwd(&d, &bad, outs), NK_ERR_BAD_ARGUMENT, "groups = 0");
  bad.groups = -3;
  EXPECT_FAILS(gn_fwd(&d, &bad, outs), NK_ERR_BAD_ARGUMENT, "groups = -3");
  for (float eps : {0.0f, -1.0f, NAN, INFINITY}) {
    bad = o;
    bad.epsilon = eps;
    EXPECT_FAILS(gn_fwd(&d, &bad, outs), NK_ERR_BAD_ARGUMENT, "epsilon");
  }
  bad = o;
  bad.struct_size = 4;
  EXPECT_FAILS(gn_fwd(&d, &bad, outs), NK_ERR_BAD_STRUCT_SIZE, "struct_size = 4");
  struct Later {
    nk_gn_options base;
    int64_t extra;
  } later{};
  nk_gn_options_init(&later.base);
  later.base.groups = 2;
  later.base.struct_size = sizeof later;
  later.extra = 1;
  EXPECT_FAILS(gn_fwd(&d, &later.base, outs), NK_ERR_BAD_STRUCT_SIZE, "unknown");
  // Axes: 0 is the batch; one channel axis only; the usual checks.
  const auto a0 = desc({2, 6, 10}, 0);
  EXPECT_FAILS(gn_fwd(&a0, &o, outs), NK_ERR_BAD_AXIS, "axis 0 is the batch");
  const auto am3 = desc({2, 6, 10}, -3);
  EXPECT_FAILS(gn_fwd(&am3, &o, outs), NK_ERR_BAD_AXIS, "axis 0 is the batch");
  auto two = d;
  two.num_axes = 2;
  two.axes[1] = 2;
  EXPECT_FAILS(gn_fwd(&two, &o, outs), NK_ERR_BAD_AXIS, "num_axes = 2");
  const auto out_of_range = desc({2, 6, 10}, 3);
  EXPECT_FAILS(gn_fwd(&out_of_range, &o, outs), NK_ERR_BAD_AXIS, "out of range");
  const auto zero_dim = desc({2, 0, 10}, 1);
  EXPECT_FAILS(gn_fwd(&zero_dim, &o, outs), NK_ERR_BAD_SHAPE, "dims[1] = 0");
  auto bf16 = d;
  bf16.dtype = NK_DTYPE_BF16;
  EXPECT_FAILS(gn_fwd(&bf16, &o, outs), NK_ERR_UNSUPPORTED, "bf16");
  const auto huge = desc({int64_t{1} << 40, 6, int64_t{1} << 40}, 1);
  EXPECT_FAILS(gn_fwd(&huge, &o, outs), NK_ERR_OVERFLOW, "overflow");
  // Pointers.
  EXPECT_FAILS(nk_groupnorm_forward(&d, &o, nullptr, outs.y.data(), nullptr, nullptr, outs.sm.data(), nullptr),
               NK_ERR_NULL_POINTER, "x is NULL");
  EXPECT_FAILS(nk_groupnorm_forward(&d, &o, kX.data(), nullptr, nullptr, nullptr, outs.sm.data(), nullptr),
               NK_ERR_NULL_POINTER, "y is NULL");
  EXPECT_FAILS(nk_groupnorm_backward(&d, &o, nullptr, kDy.data(), nullptr, kOnes.data(), kOnes.data(),
                                     outs.dx.data(), outs.dg.data(), nullptr),
               NK_ERR_NULL_POINTER, "x is NULL");
  EXPECT_FAILS(nk_groupnorm_backward(&d, &o, kX.data(), nullptr, nullptr, kOnes.data(), kOnes.data(),
                                     outs.dx.data(), outs.dg.data(), nullptr),
               NK_ERR_NULL_POINTER, "dy is NULL");
  EXPECT_FAILS(nk_groupnorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), kOnes.data(), nullptr,
                                     outs.dg.data(), nullptr),
               NK_ERR_NULL_POINTER, "dx is NULL");
  EXPECT_FAILS(nk_groupnorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, nullptr, kOnes.data(), outs.dx.data(),
                                     outs.dg.data(), nullptr),
               NK_ERR_NULL_POINTER, "saved_mean is NULL");
  EXPECT_FAILS(nk_groupnorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), nullptr, outs.dx.data(),
                                     outs.dg.data(), nullptr),
               NK_ERR_NULL_POINTER, "saved_invstd is NULL");
  EXPECT_NE(std::string(nk_last_error()).find("nk_groupnorm_backward"), std::string::npos);
}

TEST(NormErrors, InstanceNorm) {
  Outs outs;
  const auto d = desc({2, 6, 10}, -1);  // NLC: C = 10, too many for the outputs, but none is written
  const auto nc = desc({2, 3, 10}, 1);
  nk_in_options o;
  nk_in_options_init(&o);
  auto train = [&](const nk_tensor_desc* dd, const nk_in_options* oo, bool moving) {
    return nk_instancenorm_forward_training(dd, oo, kX.data(), outs.y.data(), nullptr, nullptr, outs.sm.data(),
                                            outs.si.data(), moving ? outs.mm.data() : nullptr,
                                            moving ? outs.mv.data() : nullptr);
  };
  nk_in_options bad = o;
  bad.momentum = 1.5f;
  EXPECT_FAILS(train(&nc, &bad, true), NK_ERR_BAD_ARGUMENT, "momentum = 1.5");
  bad = o;
  bad.momentum_convention = 7;
  EXPECT_FAILS(train(&nc, &bad, true), NK_ERR_BAD_ARGUMENT, "momentum_convention = 7");
  bad = o;
  bad.moving_variance = 3;
  EXPECT_FAILS(train(&nc, &bad, true), NK_ERR_BAD_ARGUMENT, "moving_variance = 3");
  bad = o;
  bad.epsilon = 0;
  EXPECT_FAILS(train(&nc, &bad, true), NK_ERR_BAD_ARGUMENT, "epsilon");
  bad = o;
  bad.struct_size = 8;
  EXPECT_FAILS(train(&nc, &bad, true), NK_ERR_BAD_STRUCT_SIZE, "struct_size = 8");
  EXPECT_FAILS(nk_instancenorm_forward_training(&nc, &o, kX.data(), outs.y.data(), nullptr, nullptr, nullptr,
                                                nullptr, outs.mm.data(), nullptr),
               NK_ERR_NULL_POINTER, "moving_mean and moving_var");
  // One value per instance cannot give the unbiased moving variance.
  const auto one = desc({2, 3}, 1);
  EXPECT_FAILS(train(&one, &o, true), NK_ERR_BAD_ARGUMENT, "more than one value");
  {
    Outs fine;
    EXPECT_EQ(nk_instancenorm_forward_training(&one, &o, kX.data(), fine.y.data(), nullptr, nullptr, nullptr,
                                               nullptr, nullptr, nullptr),
              NK_OK);
  }
  const auto a0 = desc({2, 6, 10}, 0);
  EXPECT_FAILS(train(&a0, &o, false), NK_ERR_BAD_AXIS, "axis 0 is the batch");
  EXPECT_FAILS(nk_instancenorm_forward_inference(&nc, &o, kX.data(), outs.y.data(), nullptr, nullptr, nullptr,
                                                 kOnes.data()),
               NK_ERR_NULL_POINTER, "moving_mean is NULL");
  EXPECT_FAILS(nk_instancenorm_forward_inference(&nc, &o, kX.data(), outs.y.data(), nullptr, nullptr,
                                                 kOnes.data(), nullptr),
               NK_ERR_NULL_POINTER, "moving_var is NULL");
  EXPECT_FAILS(nk_instancenorm_forward_inference(&nc, &o, kX.data(), nullptr, nullptr, nullptr, kOnes.data(),
                                                 kOnes.data()),
               NK_ERR_NULL_POINTER, "y is NULL");
  EXPECT_FAILS(nk_instancenorm_forward_inference(&a0, &o, kX.data(), outs.y.data(), nullptr, nullptr, kOnes.data(),
                                                 kOnes.data()),
               NK_ERR_BAD_AXIS, "axis 0");
  EXPECT_FAILS(nk_instancenorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, nullptr, kOnes.data(),
                                        outs.dx.data(), outs.dg.data(), outs.db.data()),
               NK_ERR_NULL_POINTER, "saved_mean is NULL");
  EXPECT_FAILS(nk_instancenorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), kOnes.data(),
                                        nullptr, outs.dg.data(), outs.db.data()),
               NK_ERR_NULL_POINTER, "dx is NULL");
  EXPECT_FAILS(nk_instancenorm_backward(&d, &bad, kX.data(), kDy.data(), nullptr, kOnes.data(), kOnes.data(),
                                        outs.dx.data(), outs.dg.data(), outs.db.data()),
               NK_ERR_BAD_STRUCT_SIZE, "struct_size");
}

TEST(NormErrors, LayerAndRmsNorm) {
  Outs outs;
  const auto d = desc({15, 8}, -1);
  nk_ln_options o;
  nk_ln_options_init(&o);
  // The normalized axes must be trailing.
  const auto lead = desc({15, 8}, 0);
  EXPECT_FAILS(nk_layernorm_forward(&lead, &o, kX.data(), outs.y.data(), nullptr, nullptr, outs.sm.data(), nullptr),
               NK_ERR_BAD_AXIS, "trailing");
  EXPECT_FAILS(nk_rmsnorm_forward(&lead, &o, kX.data(), outs.y.data(), nullptr, outs.sm.data()), NK_ERR_BAD_AXIS,
               "trailing");
  auto gap = desc({3, 5, 8}, -1);
  gap.num_axes = 2;
  gap.axes[1] = 0;
  EXPECT_FAILS(nk_layernorm_backward(&gap, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), kOnes.data(),
                                     outs.dx.data(), outs.dg.data(), outs.db.data()),
               NK_ERR_BAD_AXIS, "trailing");
  EXPECT_FAILS(nk_rmsnorm_backward(&gap, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), outs.dx.data(),
                                   outs.dg.data()),
               NK_ERR_BAD_AXIS, "trailing");
  nk_ln_options bad = o;
  bad.epsilon = -1e-5f;
  EXPECT_FAILS(nk_layernorm_forward(&d, &bad, kX.data(), outs.y.data(), nullptr, nullptr, nullptr, nullptr),
               NK_ERR_BAD_ARGUMENT, "epsilon");
  EXPECT_FAILS(nk_rmsnorm_forward(&d, &bad, kX.data(), outs.y.data(), nullptr, nullptr), NK_ERR_BAD_ARGUMENT,
               "epsilon");
  bad = o;
  bad.struct_size = 3;
  EXPECT_FAILS(nk_layernorm_backward(&d, &bad, kX.data(), kDy.data(), nullptr, kOnes.data(), kOnes.data(),
                                     outs.dx.data(), nullptr, nullptr),
               NK_ERR_BAD_STRUCT_SIZE, "struct_size = 3");
  EXPECT_FAILS(nk_rmsnorm_backward(&d, &bad, kX.data(), kDy.data(), nullptr, kOnes.data(), outs.dx.data(), nullptr),
               NK_ERR_BAD_STRUCT_SIZE, "struct_size = 3");
  EXPECT_FAILS(nk_layernorm_forward(&d, &o, nullptr, outs.y.data(), nullptr, nullptr, nullptr, nullptr),
               NK_ERR_NULL_POINTER, "x is NULL");
  EXPECT_FAILS(nk_layernorm_forward(&d, &o, kX.data(), nullptr, nullptr, nullptr, outs.sm.data(), nullptr),
               NK_ERR_NULL_POINTER, "y is NULL");
  EXPECT_FAILS(nk_rmsnorm_forward(&d, &o, kX.data(), nullptr, nullptr, outs.sm.data()), NK_ERR_NULL_POINTER,
               "y is NULL");
  EXPECT_FAILS(nk_layernorm_backward(&d, &o, kX.data(), nullptr, nullptr, kOnes.data(), kOnes.data(),
                                     outs.dx.data(), nullptr, nullptr),
               NK_ERR_NULL_POINTER, "dy is NULL");
  EXPECT_FAILS(nk_layernorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, nullptr, kOnes.data(),
                                     outs.dx.data(), nullptr, nullptr),
               NK_ERR_NULL_POINTER, "saved_mean is NULL");
  EXPECT_FAILS(nk_layernorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), nullptr,
                                     outs.dx.data(), nullptr, nullptr),
               NK_ERR_NULL_POINTER, "saved_invstd is NULL");
  EXPECT_FAILS(nk_rmsnorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, nullptr, outs.dx.data(), nullptr),
               NK_ERR_NULL_POINTER, "saved_rstd is NULL");
  EXPECT_FAILS(nk_rmsnorm_backward(&d, &o, kX.data(), kDy.data(), nullptr, kOnes.data(), nullptr, outs.dg.data()),
               NK_ERR_NULL_POINTER, "dx is NULL");
  EXPECT_NE(std::string(nk_last_error()).find("nk_rmsnorm_backward"), std::string::npos);
  // Options init fills the defaults and zeroes the rest.
  nk_ln_options li;
  std::memset(&li, 0xff, sizeof li);
  nk_ln_options_init(&li);
  const nk_ln_options ld = NK_LN_OPTIONS_INIT;
  EXPECT_EQ(li.struct_size, sizeof li);
  EXPECT_EQ(li.epsilon, ld.epsilon);
  nk_gn_options gi;
  nk_gn_options_init(&gi);
  EXPECT_EQ(gi.groups, 32);
  nk_in_options ii;
  nk_in_options_init(&ii);
  EXPECT_EQ(ii.momentum_convention, NK_MOMENTUM_TORCH);
  nk_ln_options_init(nullptr);
  nk_gn_options_init(nullptr);
  nk_in_options_init(nullptr);
}

}  // namespace
