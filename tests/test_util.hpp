// Shared by the tests: random data, poisoned buffers, comparisons, and the
// fixture that runs a test once per ISA with the dispatch forced to it.
#pragma once

#include <gtest/gtest.h>
#include <normkit.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "reference.hpp"

namespace nkt {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// A value no correct kernel writes: outputs are filled with it first.
constexpr float kPoison = -7.77e33f;
inline std::vector<float> poisoned(size_t n) { return std::vector<float>(n, kPoison); }

inline nk_tensor_desc desc_of(const ref::Layout& l) {
  nk_tensor_desc d{};
  d.dtype = NK_DTYPE_F32;
  d.ndim = static_cast<int32_t>(l.dims.size());
  for (size_t i = 0; i < l.dims.size(); ++i) d.dims[i] = l.dims[i];
  d.num_axes = static_cast<int32_t>(l.axes.size());
  for (size_t i = 0; i < l.axes.size(); ++i) d.axes[i] = l.axes[i];
  return d;
}

inline std::string layout_name(const ref::Layout& l) {
  std::string s = "[";
  for (size_t i = 0; i < l.dims.size(); ++i) s += (i ? "," : "") + std::to_string(l.dims[i]);
  s += "] axes";
  for (int a : l.axes) s += " " + std::to_string(a);
  return s;
}

// Max of |got - want| / max(|want|, floor): the error relative to the value,
// or to a floor (e.g. the reference's RMS) where the value is near zero.
template <class G, class W>
double rel_error(const G& got, const W& want, double floor = 1.0) {
  double e = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (std::isnan(d)) return INFINITY;
    e = std::max(e, d / std::max(std::fabs(static_cast<double>(want[i])), floor));
  }
  return e;
}

template <class W>
double rms(const W& v) {
  double s = 0;
  for (auto x : v) s += static_cast<double>(x) * x;
  return v.empty() ? 0.0 : std::sqrt(s / v.size());
}

inline std::vector<std::string> isas_of_platform() {
#if defined(__x86_64__)
  return {"avx512", "avx2", "sse2", "scalar"};
#elif defined(__aarch64__)
  return {"neon", "scalar"};
#else
  return {"scalar"};
#endif
}

// NK_REQUIRE_ISAS=avx512,avx2,... names ISAs that must be tested, not skipped.
inline bool isa_required(const std::string& isa) {
  const char* env = std::getenv("NK_REQUIRE_ISAS");
  if (env == nullptr) return false;
  const std::string list = std::string(",") + env + ",";
  return list.find("," + isa + ",") != std::string::npos;
}

class IsaTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string isa = GetParam();
    if (!nk_isa_available(isa.c_str())) {
      if (isa_required(isa)) FAIL() << "ISA " << isa << " is required (NK_REQUIRE_ISAS) but not available";
      GTEST_SKIP() << "CPU lacks " << isa;
    }
    ASSERT_EQ(nk_set_max_isa(isa.c_str()), NK_OK);
    ASSERT_STREQ(nk_active_isa(), isa.c_str()) << "dispatch did not go to the ISA under test";
  }
  void TearDown() override {
    nk_set_max_isa(nullptr);
    nk_set_num_threads(0);
    nk_set_stream_threshold(-1);
  }
};

inline std::string isa_param_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

#define NKT_INSTANTIATE_ISAS(Suite) \
  INSTANTIATE_TEST_SUITE_P(Isa, Suite, ::testing::ValuesIn(nkt::isas_of_platform()), nkt::isa_param_name)

}  // namespace nkt
