// Activations on every ISA against float64 references written plainly here:
// odd sizes, in place, special values, the whole float range (every 97th bit
// pattern) for SELU and ELU, PReLU and CReLU in both layouts, and thread-count
// independence.
#include <cfloat>
#include <cstdio>
#include <array>
#include <functional>

#include "test_util.hpp"

namespace {

using nkt::kPoison;

constexpr double kAlpha = 1.6732632423543772848170429916717;
constexpr double kLambda = 1.0507009873554804934193349852946;

// Distance in units in the last place between a float result and a double
// reference (rounded to float first): 0 when they agree after rounding.
// NaN against NaN is 0; NaN against a number is huge.
int64_t ordered(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i < 0 ? -static_cast<int64_t>(i & 0x7fffffff) : i;
}
// Infinity against a finite value (an overflow) counts as no number of ulp.
int64_t ulp_dist(float got, double want) {
  const float w = static_cast<float>(want);
  if (std::isnan(w) || std::isnan(got)) return std::isnan(w) && std::isnan(got) ? 0 : int64_t{1} << 40;
  if (std::isinf(w) != std::isinf(got)) return int64_t{1} << 40;
  const int64_t d = ordered(got) - ordered(w);
  return d < 0 ? -d : d;
}

double ref_relu(double x) { return x < 0 ? 0.0 : x; }
double ref_elu(double x, double a) { return x < 0 ? a * std::expm1(x) : x; }
double ref_selu(double x) { return x < 0 ? kLambda * kAlpha * std::expm1(x) : kLambda * x; }
double ref_elu_grad(double x, double dy, double a) { return x < 0 ? a * std::exp(x) * dy : dy; }
double ref_selu_grad(double x, double dy) { return x < 0 ? kLambda * kAlpha * std::exp(x) * dy : kLambda * dy; }

std::vector<int64_t> odd_sizes() {
  std::vector<int64_t> s = {0, 17, 33, 1000, 4099};
  for (int64_t w : {4, 8, 16})
    for (int64_t n : {int64_t{1}, w - 1, w, w + 1, 2 * w, 3 * w + 1}) s.push_back(n);
  return s;
}

// Data with both signs, zeros, large and tiny magnitudes.
std::vector<float> mixed(size_t n, uint32_t seed) {
  auto v = nkt::random_vec(n, seed, 0.0f, 3.0f);
  for (size_t i = 0; i < n; i += 7) v[i] = (i % 2 ? -1.0f : 1.0f) * std::ldexp(v[i], -130);
  for (size_t i = 3; i < n; i += 11) v[i] = 0.0f;
  for (size_t i = 5; i < n; i += 13) v[i] *= 30.0f;
  return v;
}

using Fwd = std::function<nk_status(int64_t, const float*, float*)>;
using Bwd = std::function<nk_status(int64_t, const float*, const float*, float*)>;

struct Case {
  const char* name;
  Fwd fwd;
  Bwd bwd;
  std::function<double(double)> ref;
  std::function<double(double, double)> ref_grad;
  int64_t fwd_ulp, bwd_ulp;
};

std::vector<Case> cases() {
  const float slope = 0.01f, alpha = 0.7f;
  return {
      {"relu", nk_relu_forward, nk_relu_backward, ref_relu, [](double x, double dy) { return x > 0 ? dy : 0.0; }, 0,
       0},
      {"leaky_relu", [=](int64_t n, const float* x, float* y) { return nk_leaky_relu_forward(n, slope, x, y); },
       [=](int64_t n, const float* x, const float* dy, float* dx) { return nk_leaky_relu_backward(n, slope, x, dy, dx); },
       [=](double x) { return x < 0 ? static_cast<double>(slope) * x : x; },
       [=](double x, double dy) { return x < 0 ? static_cast<double>(slope) * dy : dy; }, 0, 0},
      {"elu", [=](int64_t n, const float* x, float* y) { return nk_elu_forward(n, alpha, x, y); },
       [=](int64_t n, const float* x, const float* dy, float* dx) { return nk_elu_backward(n, alpha, x, dy, dx); },
       [=](double x) { return ref_elu(x, alpha); }, [=](double x, double dy) { return ref_elu_grad(x, dy, alpha); }, 8,
       8},
      {"selu", nk_selu_forward, nk_selu_backward, ref_selu, ref_selu_grad, 8, 8},
  };
}

class Activations : public nkt::IsaTest {};

TEST_P(Activations, OddSizesForwardBackwardInPlace) {
  for (const Case& c : cases()) {
    for (int64_t n : odd_sizes()) {
      SCOPED_TRACE(std::string(c.name) + " n=" + std::to_string(n));
      // One spare element so that data() is never NULL (n = 0).
      const auto x = mixed(static_cast<size_t>(n) + 1, 11), dy = mixed(static_cast<size_t>(n) + 1, 12);
      // Out of place, with poison after the end to catch overruns.
      auto y = nkt::poisoned(n + 16), dx = nkt::poisoned(n + 16);
      ASSERT_EQ(c.fwd(n, x.data(), y.data()), NK_OK) << nk_last_error();
      ASSERT_EQ(c.bwd(n, x.data(), dy.data(), dx.data()), NK_OK) << nk_last_error();
      int64_t ef = 0, eb = 0;
      for (int64_t i = 0; i < n; ++i) {
        ef = std::max(ef, ulp_dist(y[i], c.ref(x[i])));
        eb = std::max(eb, ulp_dist(dx[i], c.ref_grad(x[i], dy[i])));
      }
      EXPECT_LE(ef, c.fwd_ulp);
      EXPECT_LE(eb, c.bwd_ulp);
      for (int64_t i = n; i < n + 16; ++i) ASSERT_EQ(y[i], kPoison) << "forward wrote past n";
      for (int64_t i = n; i < n + 16; ++i) ASSERT_EQ(dx[i], kPoison) << "backward wrote past n";
      // In place gives the same bits.
      auto yi = x;
      ASSERT_EQ(c.fwd(n, yi.data(), yi.data()), NK_OK);
      EXPECT_EQ(0, std::memcmp(yi.data(), y.data(), sizeof(float) * n));
      auto dxi = dy;
      ASSERT_EQ(c.bwd(n, x.data(), dxi.data(), dxi.data()), NK_OK);
      EXPECT_EQ(0, std::memcmp(dxi.data(), dx.data(), sizeof(float) * n));
    }
  }
}

std::vector<float> special_values() {
  std::vector<float> v = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
                          FLT_TRUE_MIN, -FLT_TRUE_MIN, 1.0f, -1.0f, -87.0f, -88.8f, -103.9f, -104.0f, -17.33f,
                          -17.4f, -30.0f, -30.1f, -1e-7f, -0.3465f, -0.3467f, 88.7f, 88.8f};
  for (int e = -149; e <= 127; ++e) {
    v.push_back(-std::ldexp(1.0f, e));
    v.push_back(std::nextafter(-std::ldexp(1.0f, e), 0.0f));
  }
  // Around FLT_MAX / lambda, where lambda * x leaves the floats: float(lambda)
  // * x overflows one float too early (at 0x1.e74b3p+127).
  const float edge = static_cast<float>(FLT_MAX / kLambda);
  float up = edge, down = edge;
  for (int i = 0; i < 8; ++i) {
    v.push_back(up = std::nextafter(up, INFINITY));
    v.push_back(down = std::nextafter(down, 0.0f));
  }
  v.push_back(edge);
  return v;
}

// Every 97th bit pattern of the 2^32 floats plus the special values, in
// chunks; returns the largest ulp error of f against ref.
int64_t sweep(const Fwd& f, const std::function<double(double)>& ref, uint32_t stride) {
  constexpr size_t kChunk = 1 << 20;
  std::vector<float> x, y(kChunk);
  x.reserve(kChunk);
  int64_t worst = 0;
  float worst_x = 0;
  auto flush = [&] {
    if (x.empty()) return;
    const int64_t n = static_cast<int64_t>(x.size());
    EXPECT_EQ(f(n, x.data(), y.data()), NK_OK);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t d = ulp_dist(y[i], ref(x[i]));
      if (d > worst) {
        worst = d;
        worst_x = x[i];
      }
    }
    x.clear();
  };
  for (float s : special_values()) x.push_back(s);
  for (uint64_t b = 0; b <= 0xffffffffull; b += stride) {
    const auto bits = static_cast<uint32_t>(b);
    float v;
    std::memcpy(&v, &bits, sizeof v);
    x.push_back(v);
    if (x.size() == kChunk) flush();
  }
  flush();
  if (worst > 0) std::printf("    worst at x = %a (%.9g): %lld ulp\n", worst_x, worst_x, static_cast<long long>(worst));
  return worst;
}

uint32_t sweep_stride() {
  const char* env = std::getenv("NK_ULP_STRIDE");  // larger under emulation
  return env ? static_cast<uint32_t>(std::strtoul(env, nullptr, 10)) : 97u;
}

TEST_P(Activations, SeluWholeRangeWithin8Ulp) {
  const int64_t e = sweep(nk_selu_forward, ref_selu, sweep_stride());
  std::printf("    [%s] SELU max error %lld ulp\n", GetParam().c_str(), static_cast<long long>(e));
  EXPECT_LE(e, 8);
}

TEST_P(Activations, EluWholeRangeWithin8Ulp) {
  for (float a : {1.0f, 0.3f}) {
    const int64_t e = sweep([a](int64_t n, const float* x, float* y) { return nk_elu_forward(n, a, x, y); },
                            [a](double x) { return ref_elu(x, a); }, a == 1.0f ? sweep_stride() : 997u);
    std::printf("    [%s] ELU(%g) max error %lld ulp\n", GetParam().c_str(), a, static_cast<long long>(e));
    EXPECT_LE(e, 8);
  }
}

// Backward over every 997th bit pattern of x (natively), with dy of
// ordinary, huge and tiny magnitude (exp(x) * dy then lands in the subnormal
// range, or comes back from it).
int64_t sweep_backward(const Bwd& f, const std::function<double(double, double)>& ref, float dy) {
  std::vector<float> x;
  for (uint64_t b = 0; b <= 0xffffffffull; b += 10 * sweep_stride() + 27) {
    const auto bits = static_cast<uint32_t>(b);
    float v;
    std::memcpy(&v, &bits, sizeof v);
    x.push_back(v);
  }
  for (float s : special_values()) x.push_back(s);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> dys(x.size(), dy), dx(x.size());
  EXPECT_EQ(f(n, x.data(), dys.data(), dx.data()), NK_OK);
  int64_t worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = ulp_dist(dx[i], ref(x[i], dy));
    if (d > worst) {
      worst = d;
      if (d > 8) std::printf("    x = %a, dy = %a: %lld ulp\n", x[i], dy, static_cast<long long>(d));
    }
  }
  return worst;
}

TEST_P(Activations, BackwardWholeRangeWithin8Ulp) {
  for (float dy : {1.5f, -0.7f, 3e30f, -1e-30f, FLT_MAX}) {
    const int64_t e = sweep_backward(nk_selu_backward, ref_selu_grad, dy);
    std::printf("    [%s] dy = %g: SELU' max error %lld ulp\n", GetParam().c_str(), static_cast<double>(dy),
                static_cast<long long>(e));
    EXPECT_LE(e, 8);
    // Alphas of 2^126 and more: the gradient's scaling by 2^k goes past 2^127.
    for (float a : {0.3f, 1e-20f, 1e20f, 1e38f, 3e38f, FLT_MAX}) {
      const int64_t ea = sweep_backward(
          [a](int64_t n, const float* x, const float* d, float* dx) { return nk_elu_backward(n, a, x, d, dx); },
          [a](double x, double d) { return ref_elu_grad(x, d, a); }, dy);
      if (ea > 0) std::printf("      ELU(%g)' max error %lld ulp\n", static_cast<double>(a), static_cast<long long>(ea));
      EXPECT_LE(ea, 8) << "alpha " << a;
    }
  }
}

TEST_P(Activations, BackwardSpecialValues) {
  const auto x = special_values();
  const std::vector<float> dy(x.size(), 1.5f);
  std::vector<float> dx(x.size());
  const int64_t n = static_cast<int64_t>(x.size());
  ASSERT_EQ(nk_selu_backward(n, x.data(), dy.data(), dx.data()), NK_OK);
  for (int64_t i = 0; i < n; ++i) EXPECT_LE(ulp_dist(dx[i], ref_selu_grad(x[i], dy[i])), 8) << x[i];
  ASSERT_EQ(nk_elu_backward(n, 1.0f, x.data(), dy.data(), dx.data()), NK_OK);
  for (int64_t i = 0; i < n; ++i) EXPECT_LE(ulp_dist(dx[i], ref_elu_grad(x[i], dy[i], 1.0)), 8) << x[i];
  ASSERT_EQ(nk_relu_forward(n, x.data(), dx.data()), NK_OK);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(ulp_dist(dx[i], ref_relu(x[i])), 0) << x[i];
}

TEST_P(Activations, ThreadCountAndStreamingIndependent) {
  const int64_t n = 300007;
  const auto x = mixed(n, 5), dy = mixed(n, 6);
  std::vector<float> base(n), basedx(n), y(n), dx(n);
  nk_set_num_threads(1);
  ASSERT_EQ(nk_selu_forward(n, x.data(), base.data()), NK_OK);
  ASSERT_EQ(nk_elu_backward(n, 0.5f, x.data(), dy.data(), basedx.data()), NK_OK);
  for (int t : {2, 3}) {
    nk_set_num_threads(t);
    nk_set_stream_threshold(t == 3 ? 0 : -1);
    ASSERT_EQ(nk_selu_forward(n, x.data(), y.data()), NK_OK);
    ASSERT_EQ(nk_elu_backward(n, 0.5f, x.data(), dy.data(), dx.data()), NK_OK);
    EXPECT_EQ(0, std::memcmp(y.data(), base.data(), sizeof(float) * n)) << t << " threads";
    EXPECT_EQ(0, std::memcmp(dx.data(), basedx.data(), sizeof(float) * n)) << t << " threads";
  }
}

// ---- PReLU and CReLU ------------------------------------------------------

struct Layout4 {
  int64_t n, c, h, w;
  bool nhwc;
  int64_t total() const { return n * c * h * w; }
  // Index in memory of logical (n, c, h, w).
  int64_t at(int64_t i, int64_t k, int64_t y, int64_t z) const {
    return nhwc ? ((i * h + y) * w + z) * c + k : ((i * c + k) * h + y) * w + z;
  }
  nk_tensor_desc desc() const {
    nk_tensor_desc d{};
    const int64_t dn[4] = {n, c, h, w}, dh[4] = {n, h, w, c};
    nk_tensor_desc_init(&d, 4, nhwc ? dh : dn, nhwc ? -1 : 1);
    return d;
  }
  std::string name() const {
    return (nhwc ? "NHWC " : "NCHW ") + std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) +
           "x" + std::to_string(w);
  }
};

std::vector<Layout4> layouts() {
  std::vector<Layout4> v;
  for (bool nhwc : {false, true})
    for (auto s : std::vector<std::array<int64_t, 4>>{{2, 3, 5, 7}, {1, 17, 1, 33}, {3, 16, 4, 4}, {2, 5, 1, 1}, {1, 1, 1, 1}, {4, 33, 3, 3}, {2, 1, 3, 5}, {3, 1, 1, 7}, {3, 130, 3, 7}})
      v.push_back({s[0], s[1], s[2], s[3], nhwc});
  return v;
}

class PRelu : public nkt::IsaTest {};

TEST_P(PRelu, PerChannelAndSharedForwardBackward) {
  for (const Layout4& l : layouts()) {
    for (bool shared : {false, true}) {
      SCOPED_TRACE(l.name() + (shared ? " shared" : " per channel"));
      const int64_t T = l.total(), C = l.c, ns = shared ? 1 : C;
      const auto x = mixed(T, 21), dy = nkt::random_vec(T, 22);
      auto slope = nkt::random_vec(ns, 23, 0.2f, 0.1f);
      const auto d = l.desc();
      auto y = nkt::poisoned(T), dx = nkt::poisoned(T), ds = nkt::poisoned(ns);
      ASSERT_EQ(nk_prelu_forward(&d, x.data(), y.data(), slope.data(), ns), NK_OK) << nk_last_error();
      ASSERT_EQ(nk_prelu_backward(&d, x.data(), dy.data(), slope.data(), ns, dx.data(), ds.data()), NK_OK)
          << nk_last_error();
      std::vector<double> rds(ns, 0.0), mag(ns, 0.0);
      for (int64_t i = 0; i < l.n; ++i)
        for (int64_t k = 0; k < C; ++k)
          for (int64_t a = 0; a < l.h; ++a)
            for (int64_t b = 0; b < l.w; ++b) {
              const int64_t j = l.at(i, k, a, b);
              const double s = slope[shared ? 0 : k], xv = x[j];
              ASSERT_EQ(ulp_dist(y[j], xv < 0 ? s * xv : xv), 0) << j;
              ASSERT_EQ(ulp_dist(dx[j], xv < 0 ? s * dy[j] : dy[j]), 0) << j;
              if (xv < 0) {
                rds[shared ? 0 : k] += xv * dy[j];
                mag[shared ? 0 : k] += std::fabs(xv * dy[j]);
              }
            }
      for (int64_t k = 0; k < ns; ++k) EXPECT_NEAR(ds[k], rds[k], 1e-6 * mag[k] + 1e-30) << k;
      // In place; dslope optional.
      auto yi = x;
      ASSERT_EQ(nk_prelu_forward(&d, yi.data(), yi.data(), slope.data(), ns), NK_OK);
      EXPECT_EQ(0, std::memcmp(yi.data(), y.data(), sizeof(float) * T));
      auto dxi = dy;
      ASSERT_EQ(nk_prelu_backward(&d, x.data(), dxi.data(), slope.data(), ns, dxi.data(), nullptr), NK_OK);
      EXPECT_EQ(0, std::memcmp(dxi.data(), dx.data(), sizeof(float) * T));
    }
  }
}

TEST_P(PRelu, NonNeighbouringAxesAndThreadIndependence) {
  // Axes [1, 3] of a 4-D tensor: the general path.
  const int64_t dims[4] = {3, 4, 5, 6};
  nk_tensor_desc d{};
  nk_tensor_desc_init(&d, 4, dims, 1);
  d.num_axes = 2;
  d.axes[1] = 3;
  const int64_t T = 360, C = 24;
  const auto x = mixed(T, 31), dy = nkt::random_vec(T, 32);
  const auto slope = nkt::random_vec(C, 33);
  std::vector<float> y(T), dx(T), ds(C);
  ASSERT_EQ(nk_prelu_forward(&d, x.data(), y.data(), slope.data(), C), NK_OK) << nk_last_error();
  ASSERT_EQ(nk_prelu_backward(&d, x.data(), dy.data(), slope.data(), C, dx.data(), ds.data()), NK_OK);
  std::vector<double> rds(C, 0.0), mag(C, 0.0);
  for (int64_t i = 0; i < T; ++i) {
    const int64_t c = ((i / 30) % 4) * 6 + i % 6;  // row-major over axes 1 and 3
    ASSERT_EQ(ulp_dist(y[i], x[i] < 0 ? static_cast<double>(slope[c]) * x[i] : x[i]), 0) << i;
    ASSERT_EQ(ulp_dist(dx[i], x[i] < 0 ? static_cast<double>(slope[c]) * dy[i] : dy[i]), 0) << i;
    if (x[i] < 0) {
      rds[c] += static_cast<double>(x[i]) * dy[i];
      mag[c] += std::fabs(static_cast<double>(x[i]) * dy[i]);
    }
  }
  for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(ds[c], rds[c], 1e-6 * mag[c] + 1e-30) << c;
  // Large tensor: dslope bitwise the same for 1, 2 and 3 threads, both layouts.
  for (bool nhwc : {false, true}) {
    const Layout4 l{8, 12, 40, 41, nhwc};
    const auto xl = mixed(l.total(), 41), dyl = nkt::random_vec(l.total(), 42), sl = nkt::random_vec(12, 43);
    const auto dl = l.desc();
    std::vector<float> base(12), got(12), dxl(l.total());
    for (int t : {1, 2, 3}) {
      nk_set_num_threads(t);
      ASSERT_EQ(nk_prelu_backward(&dl, xl.data(), dyl.data(), sl.data(), 12, dxl.data(), (t == 1 ? base : got).data()),
                NK_OK);
      if (t > 1) {
        EXPECT_EQ(0, std::memcmp(base.data(), got.data(), sizeof(float) * 12)) << t << " threads";
      }
    }
  }
}

class CRelu : public nkt::IsaTest {};

TEST_P(CRelu, ForwardBackwardBothLayouts) {
  for (const Layout4& l : layouts()) {
    SCOPED_TRACE(l.name());
    const int64_t T = l.total(), C = l.c;
    auto x = mixed(T, 51);
    for (int64_t i = 1; i < T; i += 9) x[i] = -0.0f;  // both zeros: relu(-x) keeps -x's sign
    const auto dy = nkt::random_vec(2 * T, 52);
    const auto d = l.desc();
    auto y = nkt::poisoned(2 * T), dx = nkt::poisoned(T);
    ASSERT_EQ(nk_crelu_forward(&d, x.data(), y.data()), NK_OK) << nk_last_error();
    ASSERT_EQ(nk_crelu_backward(&d, x.data(), dy.data(), dx.data()), NK_OK) << nk_last_error();
    Layout4 ly = l;
    ly.c = 2 * C;
    for (int64_t i = 0; i < l.n; ++i)
      for (int64_t k = 0; k < C; ++k)
        for (int64_t a = 0; a < l.h; ++a)
          for (int64_t b = 0; b < l.w; ++b) {
            const double xv = x[l.at(i, k, a, b)];
            ASSERT_EQ(ulp_dist(y[ly.at(i, k, a, b)], ref_relu(xv)), 0);
            ASSERT_EQ(ulp_dist(y[ly.at(i, C + k, a, b)], ref_relu(-xv)), 0);
            ASSERT_EQ(std::signbit(y[ly.at(i, k, a, b)]), std::signbit(ref_relu(xv))) << xv;
            ASSERT_EQ(std::signbit(y[ly.at(i, C + k, a, b)]), std::signbit(ref_relu(-xv))) << xv;
            const double g = (xv > 0 ? dy[ly.at(i, k, a, b)] : 0.0) - (xv < 0 ? dy[ly.at(i, C + k, a, b)] : 0.0);
            ASSERT_EQ(ulp_dist(dx[l.at(i, k, a, b)], g), 0);
          }
  }
}

NKT_INSTANTIATE_ISAS(Activations);
NKT_INSTANTIATE_ISAS(PRelu);
NKT_INSTANTIATE_ISAS(CRelu);

}  // namespace

// ---- Every error path: status, a message naming the problem, nothing written.

namespace {

bool all_poison(const std::vector<float>& v) {
  for (float f : v)
    if (std::memcmp(&f, &kPoison, sizeof f) != 0) return false;
  return true;
}

#define EXPECT_ACT_FAILS(call, status, word, out)                                       \
  do {                                                                                  \
    EXPECT_EQ((call), (status)) << #call;                                               \
    EXPECT_NE(std::string(nk_last_error()).find(word), std::string::npos)               \
        << #call << ": message '" << nk_last_error() << "' lacks '" << (word) << "'";   \
    EXPECT_TRUE(all_poison(out)) << #call << " wrote an output";                        \
  } while (0)

TEST(ActivationErrors, ElementWise) {
  const auto x = nkt::random_vec(64, 1);
  auto y = nkt::poisoned(64);
  const float* X = x.data();
  float* Y = y.data();
  EXPECT_ACT_FAILS(nk_relu_forward(-1, X, Y), NK_ERR_BAD_SHAPE, "n = -1", y);
  EXPECT_ACT_FAILS(nk_relu_forward(INT64_MAX / 2, X, Y), NK_ERR_OVERFLOW, "overflows", y);
  EXPECT_ACT_FAILS(nk_relu_forward(8, nullptr, Y), NK_ERR_NULL_POINTER, "x is NULL", y);
  EXPECT_ACT_FAILS(nk_relu_forward(8, X, nullptr), NK_ERR_NULL_POINTER, "y is NULL", y);
  EXPECT_ACT_FAILS(nk_relu_backward(8, nullptr, X, Y), NK_ERR_NULL_POINTER, "x is NULL", y);
  EXPECT_ACT_FAILS(nk_relu_backward(8, X, nullptr, Y), NK_ERR_NULL_POINTER, "dy is NULL", y);
  EXPECT_ACT_FAILS(nk_relu_backward(8, X, X, nullptr), NK_ERR_NULL_POINTER, "dx is NULL", y);
  EXPECT_ACT_FAILS(nk_leaky_relu_forward(8, NAN, X, Y), NK_ERR_BAD_ARGUMENT, "slope = nan", y);
  EXPECT_ACT_FAILS(nk_leaky_relu_backward(8, INFINITY, X, X, Y), NK_ERR_BAD_ARGUMENT, "slope = inf", y);
  EXPECT_ACT_FAILS(nk_leaky_relu_forward(-3, 0.1f, X, Y), NK_ERR_BAD_SHAPE, "n = -3", y);
  EXPECT_ACT_FAILS(nk_elu_forward(8, -INFINITY, X, Y), NK_ERR_BAD_ARGUMENT, "alpha = -inf", y);
  EXPECT_ACT_FAILS(nk_elu_backward(8, NAN, X, X, Y), NK_ERR_BAD_ARGUMENT, "alpha = nan", y);
  EXPECT_ACT_FAILS(nk_elu_backward(8, 1.0f, X, X, nullptr), NK_ERR_NULL_POINTER, "dx is NULL", y);
  EXPECT_ACT_FAILS(nk_selu_forward(8, nullptr, Y), NK_ERR_NULL_POINTER, "x is NULL", y);
  EXPECT_ACT_FAILS(nk_selu_backward(-2, X, X, Y), NK_ERR_BAD_SHAPE, "n = -2", y);
  EXPECT_NE(std::string(nk_last_error()).find("nk_selu_backward"), std::string::npos);
  EXPECT_EQ(nk_selu_alpha(), 1.6732632423543772848170429916717);
  EXPECT_EQ(nk_selu_lambda(), 1.0507009873554804934193349852946);
  // NK_MAX_ISA-style failure: an unknown cap is refused, the old one kept.
  EXPECT_EQ(nk_set_max_isa("bogus"), NK_ERR_BAD_ISA);
  EXPECT_EQ(nk_relu_forward(0, X, Y), NK_OK);
}

TEST(ActivationErrors, PreluCrelu) {
  const auto x = nkt::random_vec(120, 1);
  auto y = nkt::poisoned(240);
  auto ds = nkt::poisoned(3);
  const std::vector<float> slope = {0.1f, 0.2f, 0.3f}, bad = {0.1f, NAN, 0.3f};
  nk_tensor_desc d{};
  const int64_t dims[4] = {2, 3, 4, 5};
  nk_tensor_desc_init(&d, 4, dims, 1);
  const float* X = x.data();
  float* Y = y.data();
  EXPECT_ACT_FAILS(nk_prelu_forward(nullptr, X, Y, slope.data(), 3), NK_ERR_NULL_POINTER, "desc", y);
  EXPECT_ACT_FAILS(nk_prelu_forward(&d, nullptr, Y, slope.data(), 3), NK_ERR_NULL_POINTER, "x is NULL", y);
  EXPECT_ACT_FAILS(nk_prelu_forward(&d, X, nullptr, slope.data(), 3), NK_ERR_NULL_POINTER, "y is NULL", y);
  EXPECT_ACT_FAILS(nk_prelu_forward(&d, X, Y, nullptr, 3), NK_ERR_NULL_POINTER, "slope is NULL", y);
  EXPECT_ACT_FAILS(nk_prelu_forward(&d, X, Y, slope.data(), 2), NK_ERR_BAD_ARGUMENT, "num_slopes = 2", y);
  EXPECT_ACT_FAILS(nk_prelu_forward(&d, X, Y, bad.data(), 3), NK_ERR_BAD_ARGUMENT, "slope[1] = nan", y);
  EXPECT_ACT_FAILS(nk_prelu_backward(&d, X, X, slope.data(), 3, nullptr, ds.data()), NK_ERR_NULL_POINTER,
                   "dx is NULL", ds);
  EXPECT_ACT_FAILS(nk_prelu_backward(&d, X, nullptr, slope.data(), 3, Y, ds.data()), NK_ERR_NULL_POINTER,
                   "dy is NULL", ds);
  EXPECT_ACT_FAILS(nk_prelu_backward(&d, X, X, slope.data(), 0, Y, ds.data()), NK_ERR_BAD_ARGUMENT,
                   "num_slopes = 0", ds);
  EXPECT_TRUE(all_poison(y));
  nk_tensor_desc bad_d = d;
  bad_d.dims[2] = 0;
  EXPECT_ACT_FAILS(nk_prelu_forward(&bad_d, X, Y, slope.data(), 3), NK_ERR_BAD_SHAPE, "dims[2] = 0", y);
  bad_d = d;
  bad_d.axes[0] = 4;
  EXPECT_ACT_FAILS(nk_crelu_forward(&bad_d, X, Y), NK_ERR_BAD_AXIS, "out of range", y);
  bad_d = d;
  bad_d.num_axes = 2;
  bad_d.axes[1] = 3;
  EXPECT_ACT_FAILS(nk_crelu_forward(&bad_d, X, Y), NK_ERR_BAD_AXIS, "exactly one feature axis", y);
  bad_d = d;
  bad_d.ndim = 2;
  bad_d.dims[0] = bad_d.dims[1] = int64_t{1} << 29;  // x fits in int64 bytes, the doubled y does not
  EXPECT_ACT_FAILS(nk_crelu_forward(&bad_d, X, Y), NK_ERR_OVERFLOW, "output size in bytes", y);
  bad_d = d;
  bad_d.dtype = NK_DTYPE_BF16;
  EXPECT_ACT_FAILS(nk_crelu_backward(&bad_d, X, X, Y), NK_ERR_UNSUPPORTED, "bf16", y);
  EXPECT_ACT_FAILS(nk_crelu_forward(&d, nullptr, Y), NK_ERR_NULL_POINTER, "x is NULL", y);
  EXPECT_ACT_FAILS(nk_crelu_forward(&d, X, nullptr), NK_ERR_NULL_POINTER, "y is NULL", y);
  EXPECT_ACT_FAILS(nk_crelu_backward(&d, X, nullptr, Y), NK_ERR_NULL_POINTER, "dy is NULL", y);
  EXPECT_ACT_FAILS(nk_crelu_backward(&d, X, X, nullptr), NK_ERR_NULL_POINTER, "dx is NULL", y);
  auto inplace = nkt::poisoned(240);
  EXPECT_ACT_FAILS(nk_crelu_forward(&d, inplace.data() + 60, inplace.data()), NK_ERR_BAD_ARGUMENT, "overlaps",
                   inplace);
  EXPECT_ACT_FAILS(nk_crelu_backward(&d, X, inplace.data(), inplace.data() + 100), NK_ERR_BAD_ARGUMENT,
                   "overlaps", inplace);
}

TEST(ActivationErrors, DropoutAndInit) {
  const auto x = nkt::random_vec(64, 1);
  auto y = nkt::poisoned(64);
  const float* X = x.data();
  float* Y = y.data();
  EXPECT_ACT_FAILS(nk_alpha_dropout_forward(8, 1.0f, 1, 2, X, Y), NK_ERR_BAD_ARGUMENT, "rate = 1", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_forward(8, -0.1f, 1, 2, X, Y), NK_ERR_BAD_ARGUMENT, "rate = -0.1", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_backward(8, NAN, 1, 2, X, Y), NK_ERR_BAD_ARGUMENT, "rate = nan", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_forward(-1, 0.1f, 1, 2, X, Y), NK_ERR_BAD_SHAPE, "n = -1", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_forward(8, 0.1f, 1, 2, nullptr, Y), NK_ERR_NULL_POINTER, "x is NULL", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_forward(8, 0.1f, 1, 2, X, nullptr), NK_ERR_NULL_POINTER, "y is NULL", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_backward(8, 0.1f, 1, 2, nullptr, Y), NK_ERR_NULL_POINTER, "dy is NULL", y);
  EXPECT_ACT_FAILS(nk_alpha_dropout_backward(8, 0.1f, 1, 2, X, nullptr), NK_ERR_NULL_POINTER, "dx is NULL", y);
  EXPECT_ACT_FAILS(nk_lecun_normal_init(8, 0, 0, 1, 2, Y), NK_ERR_BAD_ARGUMENT, "fan_in = 0", y);
  EXPECT_ACT_FAILS(nk_lecun_normal_init(8, 4, 2, 1, 2, Y), NK_ERR_BAD_ARGUMENT, "truncated = 2", y);
  EXPECT_ACT_FAILS(nk_lecun_normal_init(-8, 4, 0, 1, 2, Y), NK_ERR_BAD_SHAPE, "n = -8", y);
  EXPECT_ACT_FAILS(nk_lecun_normal_init(8, 4, 0, 1, 2, nullptr), NK_ERR_NULL_POINTER, "w is NULL", y);
}

}  // namespace
