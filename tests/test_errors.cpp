// Every error path: the status, a message that names the problem, and no
// output written.
#include <thread>

#include "test_util.hpp"

namespace {

using nkt::kPoison;

// Outputs of every call, poisoned; moving statistics hold known values.
struct Outs {
  std::vector<float> y = nkt::poisoned(120), sm = nkt::poisoned(3), si = nkt::poisoned(3),
                     mm = std::vector<float>(3, 0.5f), mv = std::vector<float>(3, 2.0f),
                     dx = nkt::poisoned(120), dg = nkt::poisoned(3), db = nkt::poisoned(3);
  std::vector<double> d1 = std::vector<double>(3, -1.0), d2 = std::vector<double>(3, -2.0);
  int64_t count = -5;
  bool untouched() const {
    auto all = [](const std::vector<float>& v, float f) {
      for (float x : v)
        if (std::memcmp(&x, &f, sizeof f) != 0) return false;
      return true;
    };
    return all(y, kPoison) && all(sm, kPoison) && all(si, kPoison) && all(mm, 0.5f) && all(mv, 2.0f) &&
           all(dx, kPoison) && all(dg, kPoison) && all(db, kPoison) && d1 == std::vector<double>(3, -1.0) &&
           d2 == std::vector<double>(3, -2.0) && count == -5;
  }
};

const std::vector<float> kX = nkt::random_vec(120, 1), kDy = nkt::random_vec(120, 2);
const std::vector<float> kGamma = {1.0f, 2.0f, 0.5f}, kPos = {1.0f, 1.0f, 1.0f};

nk_tensor_desc good_desc() {
  nk_tensor_desc d{};
  const int64_t dims[4] = {2, 3, 4, 5};
  nk_tensor_desc_init(&d, 4, dims, 1);
  return d;
}

#define EXPECT_FAILS(call, status, word)                                              \
  do {                                                                                \
    Outs& o_ = outs;                                                                  \
    EXPECT_EQ((call), (status)) << #call;                                             \
    EXPECT_NE(std::string(nk_last_error()).find(word), std::string::npos)             \
        << #call << ": message '" << nk_last_error() << "' lacks '" << (word) << "'"; \
    EXPECT_TRUE(o_.untouched()) << #call << " wrote an output";                       \
  } while (0)

nk_status train(const nk_tensor_desc* d, const nk_bn_options* opt, Outs& o, bool moving = true) {
  return nk_bn_forward_training(d, opt, kX.data(), o.y.data(), kGamma.data(), kGamma.data(), o.sm.data(),
                                o.si.data(), moving ? o.mm.data() : nullptr, moving ? o.mv.data() : nullptr);
}

TEST(Errors, ForwardTrainingPointers) {
  Outs outs;
  const auto d = good_desc();
  EXPECT_FAILS(train(nullptr, nullptr, outs), NK_ERR_NULL_POINTER, "desc");
  EXPECT_FAILS(nk_bn_forward_training(&d, nullptr, nullptr, outs.y.data(), nullptr, nullptr, outs.sm.data(),
                                      nullptr, nullptr, nullptr),
               NK_ERR_NULL_POINTER, "x is NULL");
  EXPECT_FAILS(nk_bn_forward_training(&d, nullptr, kX.data(), nullptr, nullptr, nullptr, outs.sm.data(), nullptr,
                                      nullptr, nullptr),
               NK_ERR_NULL_POINTER, "y is NULL");
  EXPECT_FAILS(nk_bn_forward_training(&d, nullptr, kX.data(), outs.y.data(), nullptr, nullptr, outs.sm.data(),
                                      nullptr, outs.mm.data(), nullptr),
               NK_ERR_NULL_POINTER, "moving_var");
  EXPECT_STRNE(nk_last_error(), "");
  EXPECT_NE(std::string(nk_last_error()).find("nk_bn_forward_training"), std::string::npos);
}

TEST(Errors, Shapes) {
  Outs outs;
  auto d = good_desc();
  d.ndim = 0;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_SHAPE, "ndim = 0");
  d.ndim = 9;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_SHAPE, "ndim = 9");
  d = good_desc();
  d.dims[2] = 0;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_SHAPE, "dims[2] = 0");
  d.dims[2] = -4;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_SHAPE, "dims[2] = -4");
  d = good_desc();
  d.dims[0] = int64_t{1} << 40;
  d.dims[2] = int64_t{1} << 40;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_OVERFLOW, "overflow");
  d = good_desc();
  d.dims[0] = int64_t{1} << 60;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_OVERFLOW, "overflow");
  d = good_desc();
  d.dtype = NK_DTYPE_BF16;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_UNSUPPORTED, "bf16");
  d.dtype = 42;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_ARGUMENT, "dtype = 42");
}

TEST(Errors, Axes) {
  Outs outs;
  auto d = good_desc();
  d.num_axes = 0;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_AXIS, "num_axes = 0");
  d.num_axes = 5;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_AXIS, "num_axes = 5");
  d = good_desc();
  d.axes[0] = 4;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_AXIS, "out of range");
  d.axes[0] = -5;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_AXIS, "out of range");
  d.num_axes = 2;
  d.axes[0] = 1;
  d.axes[1] = -3;
  EXPECT_FAILS(train(&d, nullptr, outs), NK_ERR_BAD_AXIS, "repeats axis 1");
}

TEST(Errors, Options) {
  Outs outs;
  const auto d = good_desc();
  nk_bn_options o;
  auto reset = [&] { nk_bn_options_init(&o); };
  for (float eps : {0.0f, -1e-3f, NAN, INFINITY}) {
    reset();
    o.epsilon = eps;
    EXPECT_FAILS(train(&d, &o, outs), NK_ERR_BAD_ARGUMENT, "epsilon");
  }
  for (float m : {-0.1f, 1.5f, NAN}) {
    reset();
    o.momentum = m;
    EXPECT_FAILS(train(&d, &o, outs), NK_ERR_BAD_ARGUMENT, "momentum");
  }
  reset();
  o.momentum_convention = 2;
  EXPECT_FAILS(train(&d, &o, outs), NK_ERR_BAD_ARGUMENT, "momentum_convention = 2");
  reset();
  o.moving_variance = 5;
  EXPECT_FAILS(train(&d, &o, outs), NK_ERR_BAD_ARGUMENT, "moving_variance = 5");
  reset();
  o.struct_size = 8;
  EXPECT_FAILS(train(&d, &o, outs), NK_ERR_BAD_STRUCT_SIZE, "struct_size = 8");
  o.struct_size = 0;
  EXPECT_FAILS(train(&d, &o, outs), NK_ERR_BAD_STRUCT_SIZE, "struct_size = 0");
  // A caller built against a later release: unknown fields must be zero.
  struct Later {
    nk_bn_options base;
    int64_t extra;
  } later{};
  nk_bn_options_init(&later.base);
  later.base.struct_size = sizeof later;
  later.extra = 3;
  EXPECT_FAILS(train(&d, &later.base, outs), NK_ERR_BAD_STRUCT_SIZE, "unknown");
  // One value per feature cannot give Bessel's correction.
  nk_tensor_desc one = d;
  one.dims[0] = 1;
  one.dims[2] = 1;
  one.dims[3] = 1;
  reset();
  o.moving_variance = NK_VARIANCE_UNBIASED;
  EXPECT_FAILS(train(&one, &o, outs), NK_ERR_BAD_ARGUMENT, "more than one value");
  // The same options are valid without moving statistics, and zero tails too.
  Outs fine;
  EXPECT_EQ(train(&one, &o, fine, false), NK_OK) << nk_last_error();
  later.extra = 0;
  EXPECT_EQ(train(&d, &later.base, fine), NK_OK) << nk_last_error();
  EXPECT_STREQ(nk_last_error(), "");
}

TEST(Errors, InferenceAndBackward) {
  Outs outs;
  const auto d = good_desc();
  EXPECT_FAILS(nk_bn_forward_inference(&d, nullptr, kX.data(), outs.y.data(), nullptr, nullptr, nullptr,
                                       kPos.data()),
               NK_ERR_NULL_POINTER, "moving_mean");
  EXPECT_FAILS(nk_bn_forward_inference(&d, nullptr, kX.data(), outs.y.data(), nullptr, nullptr, kPos.data(),
                                       nullptr),
               NK_ERR_NULL_POINTER, "moving_var");
  nk_bn_options o = NK_BN_OPTIONS_INIT;
  o.epsilon = 0;
  EXPECT_FAILS(nk_bn_forward_inference(&d, &o, kX.data(), outs.y.data(), nullptr, nullptr, kPos.data(),
                                       kPos.data()),
               NK_ERR_BAD_ARGUMENT, "epsilon");
  EXPECT_FAILS(nk_bn_backward(&d, nullptr, kX.data(), kDy.data(), nullptr, kPos.data(), kPos.data(), nullptr,
                              outs.dg.data(), outs.db.data()),
               NK_ERR_NULL_POINTER, "dx");
  EXPECT_FAILS(nk_bn_backward(&d, nullptr, kX.data(), nullptr, nullptr, kPos.data(), kPos.data(), outs.dx.data(),
                              outs.dg.data(), outs.db.data()),
               NK_ERR_NULL_POINTER, "dy");
  EXPECT_FAILS(nk_bn_backward(&d, nullptr, kX.data(), kDy.data(), nullptr, nullptr, kPos.data(), outs.dx.data(),
                              outs.dg.data(), outs.db.data()),
               NK_ERR_NULL_POINTER, "saved_mean");
  EXPECT_FAILS(nk_bn_backward(&d, nullptr, kX.data(), kDy.data(), nullptr, kPos.data(), nullptr, outs.dx.data(),
                              outs.dg.data(), outs.db.data()),
               NK_ERR_NULL_POINTER, "saved_invstd");
  auto bad = d;
  bad.axes[0] = 7;
  EXPECT_FAILS(nk_bn_backward(&bad, nullptr, kX.data(), kDy.data(), nullptr, kPos.data(), kPos.data(),
                              outs.dx.data(), outs.dg.data(), outs.db.data()),
               NK_ERR_BAD_AXIS, "axes[0] = 7");
}

TEST(Errors, SplitStatistics) {
  Outs outs;
  const auto d = good_desc();
  const int64_t counts[2] = {4, 6}, neg[2] = {4, -1};
  const std::vector<double> means(6, 0.0), m2s(6, 1.0);
  EXPECT_FAILS(nk_bn_partial_stats(&d, nullptr, &outs.count, outs.d1.data(), outs.d2.data()),
               NK_ERR_NULL_POINTER, "x");
  EXPECT_FAILS(nk_bn_partial_stats(&d, kX.data(), nullptr, outs.d1.data(), outs.d2.data()), NK_ERR_NULL_POINTER,
               "count");
  EXPECT_FAILS(nk_bn_merge_stats(0, 2, counts, means.data(), m2s.data(), &outs.count, outs.d1.data(),
                                 outs.d2.data()),
               NK_ERR_BAD_SHAPE, "channels = 0");
  EXPECT_FAILS(nk_bn_merge_stats(3, 0, counts, means.data(), m2s.data(), &outs.count, outs.d1.data(),
                                 outs.d2.data()),
               NK_ERR_BAD_ARGUMENT, "num_parts = 0");
  EXPECT_FAILS(nk_bn_merge_stats(3, 2, neg, means.data(), m2s.data(), &outs.count, outs.d1.data(),
                                 outs.d2.data()),
               NK_ERR_BAD_ARGUMENT, "counts[1] = -1");
  EXPECT_FAILS(nk_bn_merge_stats(int64_t{1} << 40, int64_t{1} << 40, counts, means.data(), m2s.data(),
                                 &outs.count, outs.d1.data(), outs.d2.data()),
               NK_ERR_OVERFLOW, "overflow");
  EXPECT_FAILS(nk_bn_merge_stats(3, 2, counts, nullptr, m2s.data(), &outs.count, outs.d1.data(), outs.d2.data()),
               NK_ERR_NULL_POINTER, "means");
  EXPECT_FAILS(nk_bn_finalize_stats(3, nullptr, 0, means.data(), m2s.data(), outs.sm.data(), outs.si.data(),
                                    nullptr, nullptr),
               NK_ERR_BAD_ARGUMENT, "count = 0");
  EXPECT_FAILS(nk_bn_finalize_stats(3, nullptr, 10, means.data(), m2s.data(), outs.sm.data(), nullptr, nullptr,
                                    nullptr),
               NK_ERR_NULL_POINTER, "invstd_out");
  EXPECT_FAILS(nk_bn_finalize_stats(3, nullptr, 10, means.data(), m2s.data(), outs.sm.data(), outs.si.data(),
                                    nullptr, outs.mv.data()),
               NK_ERR_NULL_POINTER, "moving_mean");
  EXPECT_FAILS(nk_bn_finalize_stats(-3, nullptr, 10, means.data(), m2s.data(), outs.sm.data(), outs.si.data(),
                                    nullptr, nullptr),
               NK_ERR_BAD_SHAPE, "channels = -3");
  nk_bn_options o = NK_BN_OPTIONS_INIT;
  o.moving_variance = NK_VARIANCE_UNBIASED;
  EXPECT_FAILS(nk_bn_finalize_stats(3, &o, 1, means.data(), m2s.data(), outs.sm.data(), outs.si.data(),
                                    outs.mm.data(), outs.mv.data()),
               NK_ERR_BAD_ARGUMENT, "count >= 2");
  const std::vector<double> negative_m2 = {1.0, -1e-3, 1.0};
  EXPECT_FAILS(nk_bn_finalize_stats(3, nullptr, 10, means.data(), negative_m2.data(), outs.sm.data(),
                                    outs.si.data(), nullptr, nullptr),
               NK_ERR_BAD_ARGUMENT, "squared deviations");
  const int64_t two_counts[2] = {4, 6};
  const std::vector<double> m2_rows = {1.0, 1.0, 1.0, 1.0, -2.0, 1.0};
  EXPECT_FAILS(nk_bn_merge_stats(3, 2, two_counts, means.data(), m2_rows.data(), &outs.count, outs.d1.data(),
                                 outs.d2.data()),
               NK_ERR_BAD_ARGUMENT, "squared deviations");
  EXPECT_FAILS(nk_bn_apply(&d, kX.data(), outs.y.data(), nullptr, nullptr, nullptr, kPos.data()),
               NK_ERR_NULL_POINTER, "mean");
  EXPECT_FAILS(nk_bn_backward_reduce(&d, kX.data(), kDy.data(), kPos.data(), kPos.data(), outs.d1.data(), nullptr),
               NK_ERR_NULL_POINTER, "sum_dy_xhat");
  EXPECT_FAILS(nk_bn_backward_apply(&d, 0, kX.data(), kDy.data(), nullptr, kPos.data(), kPos.data(),
                                    means.data(), m2s.data(), outs.dx.data()),
               NK_ERR_BAD_ARGUMENT, "count = 0");
  EXPECT_FAILS(nk_bn_backward_apply(&d, 40, kX.data(), kDy.data(), nullptr, kPos.data(), kPos.data(),
                                    nullptr, m2s.data(), outs.dx.data()),
               NK_ERR_NULL_POINTER, "sum_dy");
  // A total count below the part's own count per feature (40 here).
  EXPECT_FAILS(nk_bn_backward_apply(&d, 39, kX.data(), kDy.data(), nullptr, kPos.data(), kPos.data(),
                                    means.data(), m2s.data(), outs.dx.data()),
               NK_ERR_BAD_ARGUMENT, "less than this part's 40");
  EXPECT_FAILS(nk_bn_backward_apply_mean64(&d, 39, kX.data(), kDy.data(), nullptr, means.data(), kPos.data(),
                                           means.data(), m2s.data(), outs.dx.data()),
               NK_ERR_BAD_ARGUMENT, "less than this part's 40");
  // The forms with the mean in double.
  EXPECT_FAILS(nk_bn_apply_mean64(&d, kX.data(), outs.y.data(), nullptr, nullptr, nullptr, kPos.data()),
               NK_ERR_NULL_POINTER, "mean");
  EXPECT_FAILS(nk_bn_apply_mean64(&d, kX.data(), outs.y.data(), nullptr, nullptr, means.data(), nullptr),
               NK_ERR_NULL_POINTER, "invstd");
  EXPECT_FAILS(nk_bn_backward_reduce_mean64(&d, kX.data(), nullptr, means.data(), kPos.data(), outs.d1.data(),
                                            outs.d2.data()),
               NK_ERR_NULL_POINTER, "dy");
  EXPECT_FAILS(nk_bn_backward_reduce_mean64(&d, kX.data(), kDy.data(), nullptr, kPos.data(), outs.d1.data(),
                                            outs.d2.data()),
               NK_ERR_NULL_POINTER, "mean");
  EXPECT_FAILS(nk_bn_backward_apply_mean64(&d, 0, kX.data(), kDy.data(), nullptr, means.data(), kPos.data(),
                                           means.data(), m2s.data(), outs.dx.data()),
               NK_ERR_BAD_ARGUMENT, "count = 0");
  EXPECT_FAILS(nk_bn_backward_apply_mean64(&d, 40, kX.data(), kDy.data(), nullptr, means.data(), kPos.data(),
                                           means.data(), m2s.data(), nullptr),
               NK_ERR_NULL_POINTER, "dx");
}

TEST(Errors, Settings) {
  EXPECT_EQ(nk_set_num_threads(-1), NK_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(nk_last_error()).find("threads = -1"), std::string::npos);
  const int64_t threshold = nk_get_stream_threshold();
  EXPECT_EQ(nk_set_stream_threshold(-2), NK_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(nk_last_error()).find("bytes = -2"), std::string::npos);
  EXPECT_EQ(nk_get_stream_threshold(), threshold);
  const std::string before = nk_active_isa();
  EXPECT_EQ(nk_set_max_isa("avx9000"), NK_ERR_BAD_ISA);
  EXPECT_NE(std::string(nk_last_error()).find("'avx9000' is not one of"), std::string::npos);
  EXPECT_EQ(before, nk_active_isa());
  nk_tensor_desc d;
  const int64_t dims[2] = {1, 2};
  EXPECT_EQ(nk_tensor_desc_init(nullptr, 2, dims, 1), NK_ERR_NULL_POINTER);
  EXPECT_EQ(nk_tensor_desc_init(&d, 9, dims, 1), NK_ERR_BAD_SHAPE);
  EXPECT_EQ(nk_tensor_desc_init(&d, 2, nullptr, 1), NK_ERR_NULL_POINTER);
}

TEST(Errors, StatusStringsAreNeverNull) {
  for (nk_status s = -3; s < 40; ++s) {
    ASSERT_NE(nk_status_string(s), nullptr);
    EXPECT_GT(std::strlen(nk_status_string(s)), 0u);
  }
  EXPECT_STREQ(nk_status_string(NK_OK), "ok");
  EXPECT_STREQ(nk_status_string(NK_ERR_BAD_AXIS), "bad axis");
}

TEST(Errors, MessageIsPerThread) {
  EXPECT_EQ(nk_set_num_threads(-1), NK_ERR_BAD_ARGUMENT);
  std::string other = "unset";
  std::thread t([&] { other = nk_last_error(); });
  t.join();
  EXPECT_EQ(other, "");
  EXPECT_STRNE(nk_last_error(), "");
}

}  // namespace
