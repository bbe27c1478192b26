// Version, dispatch and thread settings.
#include <cstdio>
#include <string>

#include "test_util.hpp"

namespace {

TEST(Api, VersionMacrosAndFunctionsAgree) {
  EXPECT_EQ(nk_version_major(), NK_VERSION_MAJOR);
  EXPECT_EQ(nk_version_minor(), NK_VERSION_MINOR);
  EXPECT_EQ(nk_version_patch(), NK_VERSION_PATCH);
  EXPECT_EQ(nk_version(), NK_VERSION);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%d.%d", NK_VERSION_MAJOR, NK_VERSION_MINOR, NK_VERSION_PATCH);
  EXPECT_STREQ(nk_version_string(), buf);
}

TEST(Api, CapPicksTheBestIsaAtOrBelowIt) {
  const auto isas = nkt::isas_of_platform();
  ASSERT_EQ(nk_set_max_isa(nullptr), NK_OK);
  std::string best;
  for (const auto& i : isas)
    if (nk_isa_available(i.c_str())) {
      best = i;
      break;
    }
  EXPECT_EQ(best, nk_active_isa());
  for (const auto& i : isas) {
    ASSERT_EQ(nk_set_max_isa(i.c_str()), NK_OK);
    if (nk_isa_available(i.c_str())) {
      EXPECT_EQ(i, nk_active_isa());
    }
  }
  EXPECT_EQ(nk_isa_available("scalar"), 1);
  EXPECT_EQ(nk_isa_available("bogus"), 0);
  EXPECT_EQ(nk_isa_available(nullptr), 0);
  ASSERT_EQ(nk_set_max_isa(nullptr), NK_OK);
}

// NK_REQUIRE_ISAS lists ISAs the test run must cover; each must exist here.
TEST(Api, RequiredIsasArePresent) {
  const char* env = std::getenv("NK_REQUIRE_ISAS");
  if (env == nullptr) GTEST_SKIP() << "NK_REQUIRE_ISAS not set";
  std::string list = env;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    const std::string isa = list.substr(start, end - start);
    if (!isa.empty()) {
      EXPECT_EQ(nk_isa_available(isa.c_str()), 1) << isa << " required but not available";
    }
    start = end + 1;
  }
}

TEST(Api, ThreadCount) {
  ASSERT_EQ(nk_set_num_threads(3), NK_OK);
  EXPECT_EQ(nk_get_num_threads(), 3);
  ASSERT_EQ(nk_set_num_threads(0), NK_OK);
  EXPECT_GE(nk_get_num_threads(), 1);
}

TEST(Api, StreamThreshold) {
  ASSERT_EQ(nk_set_stream_threshold(12345), NK_OK);
  EXPECT_EQ(nk_get_stream_threshold(), 12345);
  ASSERT_EQ(nk_set_stream_threshold(-1), NK_OK);
  EXPECT_GT(nk_get_stream_threshold(), 0);  // the last-level cache
}

TEST(Api, DescInit) {
  nk_tensor_desc d;
  const int64_t dims[4] = {2, 3, 4, 5};
  ASSERT_EQ(nk_tensor_desc_init(&d, 4, dims, -1), NK_OK);
  EXPECT_EQ(d.dtype, NK_DTYPE_F32);
  EXPECT_EQ(d.ndim, 4);
  EXPECT_EQ(d.dims[3], 5);
  EXPECT_EQ(d.num_axes, 1);
  EXPECT_EQ(d.axes[0], -1);
  nk_bn_options o;
  nk_bn_options_init(&o);
  const nk_bn_options m = NK_BN_OPTIONS_INIT;
  EXPECT_EQ(o.struct_size, m.struct_size);
  EXPECT_EQ(o.momentum_convention, m.momentum_convention);
  EXPECT_EQ(o.virtual_grouping, m.virtual_grouping);
  EXPECT_EQ(o.rmax, m.rmax);
  EXPECT_EQ(o.dmax, m.dmax);
  EXPECT_EQ(o.rmin, 0.0f);
  EXPECT_EQ(o.renorm, 0);
  EXPECT_EQ(o.virtual_batch_size, 0);
  EXPECT_FLOAT_EQ(o.renorm_momentum, 0.99f);
  EXPECT_TRUE(std::isinf(o.rmax) && o.rmax > 0);
  EXPECT_EQ(o.struct_size, sizeof(nk_bn_options));
  EXPECT_FLOAT_EQ(o.epsilon, 1e-3f);
  EXPECT_FLOAT_EQ(o.momentum, 0.99f);
}

}  // namespace
