// Activation entry points: the element-wise family over flat ranges, PReLU
// and CReLU over the canonical view, AlphaDropout and LeCun-normal init.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../kernels/philox.hpp"
#include "bn_common.hpp"

using namespace nk;

namespace {

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluLambda = 1.0507009873554804934193349852946;

void check_count(int64_t n) {
  if (n < 0) fail(NK_ERR_BAD_SHAPE, "n = %lld: must be >= 0", static_cast<long long>(n));
  checked_mul(n, static_cast<int64_t>(sizeof(float)) * 4, "n in bytes");
}

void check_finite(float v, const char* name) {
  if (!std::isfinite(v)) fail(NK_ERR_BAD_ARGUMENT, "%s = %g: must be finite", name, static_cast<double>(v));
}

// Runs f(i0, i1) over a partition of [0, n) into pieces of whole cache lines
// (the last one excepted). Element-wise kernels give every element the same
// arithmetic wherever it sits, so the partition never changes the result.
template <class F>
void parallel_flat(int64_t n, const F& f) {
  if (n == 0) return;
  const int threads = num_threads();
  constexpr int64_t kLine = 16, kGrain = int64_t{1} << 15;
  const int64_t lines = (n + kLine - 1) / kLine;
  const int64_t units = std::clamp<int64_t>((n + kGrain - 1) / kGrain, 1, 4 * static_cast<int64_t>(threads));
  auto bound = [&](int64_t u) { return std::min(n, lines * u / units * kLine); };
  parallel_for(threads, units, Schedule::Dynamic, [&](int64_t u) { f(bound(u), bound(u + 1)); });
}

bool stream_for(int64_t bytes) { return bytes >= stream_threshold(); }

void act_forward(int32_t kind, float p, int64_t n, const float* x, float* y) {
  check_count(n);
  require(x, "x");
  require(y, "y");
  const auto& k = kernels_for_call();
  const bool stream = stream_for(2 * static_cast<int64_t>(sizeof(float)) * n);
  parallel_flat(n, [&](int64_t i0, int64_t i1) { k.act_forward(kind, p, x + i0, y + i0, i1 - i0, stream); });
}

void act_backward(int32_t kind, float p, int64_t n, const float* x, const float* dy, float* dx) {
  check_count(n);
  require(x, "x");
  require(dy, "dy");
  require(dx, "dx");
  const auto& k = kernels_for_call();
  const bool stream = stream_for(3 * static_cast<int64_t>(sizeof(float)) * n);
  parallel_flat(n, [&](int64_t i0, int64_t i1) {
    k.act_backward(kind, p, x + i0, dy + i0, dx + i0, i1 - i0, stream);
  });
}

// The slope per channel of the canonical view (a shared slope repeated).
FloatVec slopes_for(const Shape& s, const float* slope, int64_t num_slopes) {
  require(slope, "slope");
  if (num_slopes != 1 && num_slopes != s.channels)
    fail(NK_ERR_BAD_ARGUMENT, "num_slopes = %lld: must be 1 or the number of features (%lld)",
         static_cast<long long>(num_slopes), static_cast<long long>(s.channels));
  for (int64_t c = 0; c < num_slopes; ++c)
    if (!std::isfinite(slope[c]))
      fail(NK_ERR_BAD_ARGUMENT, "slope[%lld] = %g: must be finite", static_cast<long long>(c),
           static_cast<double>(slope[c]));
  FloatVec v(static_cast<size_t>(s.channels));
  for (int64_t c = 0; c < s.channels; ++c) v[c] = slope[num_slopes == 1 ? 0 : c];
  return v;
}

bool overlaps(const void* a, int64_t abytes, const void* b, int64_t bbytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + static_cast<uintptr_t>(bbytes) && pb < pa + static_cast<uintptr_t>(abytes);
}

// CReLU's shape: one feature axis, and the doubled channel count must fit.
// The view is taken around that axis even where it has size 1 (which the
// canonical view drops): the output's layout depends on where it sits.
Shape crelu_shape(const nk_tensor_desc* desc) {
  Shape s = canonicalize(desc);
  if (desc->num_axes != 1)
    fail(NK_ERR_BAD_AXIS, "num_axes = %d: CReLU concatenates along exactly one feature axis", desc->num_axes);
  checked_mul(s.total, 2 * static_cast<int64_t>(sizeof(float)) * 4, "output size in bytes");
  const int ax = desc->axes[0] < 0 ? desc->axes[0] + desc->ndim : desc->axes[0];
  int64_t outer = 1;
  for (int i = 0; i < ax; ++i) outer *= desc->dims[i];
  s.view = {outer, desc->dims[ax], s.total / outer / desc->dims[ax]};
  return s;
}

// Rows of the view split over threads (each row all channels).
template <class F>
void parallel_rows(int64_t rows, const F& f) {
  const int threads = num_threads();
  const int64_t units = std::min<int64_t>(rows, 8 * static_cast<int64_t>(threads));
  parallel_for(threads, units, Schedule::Dynamic, [&](int64_t u) { f(rows * u / units, rows * (u + 1) / units); });
}

// AlphaDropout's affine constants for keep probability q.
struct DropoutConsts {
  uint32_t keep24;
  float a, b, drop;
};
DropoutConsts dropout_consts(float rate) {
  if (!(rate >= 0.0f && rate < 1.0f))
    fail(NK_ERR_BAD_ARGUMENT, "rate = %g: must be in [0, 1)", static_cast<double>(rate));
  const double q = 1.0 - static_cast<double>(rate);
  const double ap = -kSeluLambda * kSeluAlpha;
  const double a = 1.0 / std::sqrt(q + ap * ap * q * (1.0 - q));
  const double b = -a * ap * (1.0 - q);
  const auto keep24 = static_cast<uint32_t>(std::llround(q * 16777216.0));
  return {keep24, static_cast<float>(a), static_cast<float>(b), static_cast<float>(a * ap + b)};
}

}  // namespace

extern "C" {

NK_API double nk_selu_alpha(void) { return kSeluAlpha; }
NK_API double nk_selu_lambda(void) { return kSeluLambda; }

NK_API nk_status nk_relu_forward(int64_t n, const float* x, float* y) {
  return guarded("nk_relu_forward", [&] { act_forward(kernels::kActRelu, 0.0f, n, x, y); });
}
NK_API nk_status nk_relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  return guarded("nk_relu_backward", [&] { act_backward(kernels::kActRelu, 0.0f, n, x, dy, dx); });
}
NK_API nk_status nk_leaky_relu_forward(int64_t n, float slope, const float* x, float* y) {
  return guarded("nk_leaky_relu_forward", [&] {
    check_finite(slope, "slope");
    act_forward(kernels::kActLeakyRelu, slope, n, x, y);
  });
}
NK_API nk_status nk_leaky_relu_backward(int64_t n, float slope, const float* x, const float* dy, float* dx) {
  return guarded("nk_leaky_relu_backward", [&] {
    check_finite(slope, "slope");
    act_backward(kernels::kActLeakyRelu, slope, n, x, dy, dx);
  });
}
NK_API nk_status nk_elu_forward(int64_t n, float alpha, const float* x, float* y) {
  return guarded("nk_elu_forward", [&] {
    check_finite(alpha, "alpha");
    act_forward(kernels::kActElu, alpha, n, x, y);
  });
}
NK_API nk_status nk_elu_backward(int64_t n, float alpha, const float* x, const float* dy, float* dx) {
  return guarded("nk_elu_backward", [&] {
    check_finite(alpha, "alpha");
    act_backward(kernels::kActElu, alpha, n, x, dy, dx);
  });
}
NK_API nk_status nk_selu_forward(int64_t n, const float* x, float* y) {
  return guarded("nk_selu_forward", [&] { act_forward(kernels::kActSelu, 0.0f, n, x, y); });
}
NK_API nk_status nk_selu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  return guarded("nk_selu_backward", [&] { act_backward(kernels::kActSelu, 0.0f, n, x, dy, dx); });
}

NK_API nk_status nk_prelu_forward(const nk_tensor_desc* desc, const void* x, void* y, const float* slope,
                                  int64_t num_slopes) {
  return guarded("nk_prelu_forward", [&] {
    const Shape s = canonicalize(desc);
    require(x, "x");
    require(y, "y");
    const FloatVec a = slopes_for(s, slope, num_slopes);
    const BnExec e(kernels_for_call(), s.view);
    const Canonical io(s, {x}, y);
    const bool stream = e.stream(2 * static_cast<int64_t>(sizeof(float)) * s.total);
    e.parallel_elementwise([&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
      e.k.prelu_forward(io.in(0), io.out(), e.v, {c0, c1, o0, o1}, a.data(), stream);
    });
    io.finish();
  });
}

NK_API nk_status nk_prelu_backward(const nk_tensor_desc* desc, const void* x, const void* dy,
                                   const float* slope, int64_t num_slopes, void* dx, float* dslope) {
  return guarded("nk_prelu_backward", [&] {
    const Shape s = canonicalize(desc);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    const FloatVec a = slopes_for(s, slope, num_slopes);
    const BnExec e(kernels_for_call(), s.view);
    const int64_t C = s.channels;
    // Partial sums per (super-block, channel), fixed by the shape alone,
    // merged in block order: the same bits for any thread count.
    DoubleVec part(static_cast<size_t>(e.blocks * C), 0.0);
    const Canonical io(s, {x, dy}, dx);
    const bool stream = e.stream(3 * static_cast<int64_t>(sizeof(float)) * s.total);
    e.parallel_blocks([&](int64_t b, int64_t c0, int64_t c1) {
      e.k.prelu_backward(io.in(0), io.in(1), io.out(), e.v, e.block_range(c0, c1, b), a.data(),
                         &part[b * C], stream);
    });
    io.finish();
    if (dslope != nullptr) {
      DoubleVec sum(static_cast<size_t>(C), 0.0);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t b = 0; b < e.blocks; ++b) sum[c] += part[b * C + c];
      if (num_slopes == 1) {
        double t = 0;
        for (int64_t c = 0; c < C; ++c) t += sum[c];
        dslope[0] = static_cast<float>(t);
      } else {
        for (int64_t c = 0; c < C; ++c) dslope[c] = static_cast<float>(sum[c]);
      }
    }
  });
}

NK_API nk_status nk_crelu_forward(const nk_tensor_desc* desc, const void* x, void* y) {
  return guarded("nk_crelu_forward", [&] {
    const Shape s = crelu_shape(desc);
    require(x, "x");
    require(y, "y");
    const int64_t bytes = s.total * static_cast<int64_t>(sizeof(float));
    if (overlaps(x, bytes, y, 2 * bytes)) fail(NK_ERR_BAD_ARGUMENT, "y overlaps x (CReLU cannot run in place)");
    const auto& k = kernels_for_call();
    const bool stream = stream_for(3 * bytes);
    parallel_rows(s.view.outer, [&](int64_t o0, int64_t o1) {
      k.crelu_forward(static_cast<const float*>(x), static_cast<float*>(y), s.view, {0, s.view.channels, o0, o1},
                      stream);
    });
  });
}

NK_API nk_status nk_crelu_backward(const nk_tensor_desc* desc, const void* x, const void* dy, void* dx) {
  return guarded("nk_crelu_backward", [&] {
    const Shape s = crelu_shape(desc);
    require(x, "x");
    require(dy, "dy");
    require(dx, "dx");
    const int64_t bytes = s.total * static_cast<int64_t>(sizeof(float));
    if (overlaps(dx, bytes, dy, 2 * bytes)) fail(NK_ERR_BAD_ARGUMENT, "dx overlaps dy (not in place)");
    const auto& k = kernels_for_call();
    const bool stream = stream_for(4 * bytes);
    parallel_rows(s.view.outer, [&](int64_t o0, int64_t o1) {
      k.crelu_backward(static_cast<const float*>(x), static_cast<const float*>(dy), static_cast<float*>(dx),
                       s.view, {0, s.view.channels, o0, o1}, stream);
    });
  });
}

NK_API nk_status nk_alpha_dropout_forward(int64_t n, float rate, uint64_t seed, uint64_t offset, const float* x,
                                          float* y) {
  return guarded("nk_alpha_dropout_forward", [&] {
    check_count(n);
    const DropoutConsts d = dropout_consts(rate);
    require(x, "x");
    require(y, "y");
    const auto& k = kernels_for_call();
    const bool stream = stream_for(2 * static_cast<int64_t>(sizeof(float)) * n);
    parallel_flat(n, [&](int64_t i0, int64_t i1) {
      k.alpha_dropout(x, y, i0, i1, seed, offset, d.keep24, d.a, d.b, d.drop, stream);
    });
  });
}

NK_API nk_status nk_alpha_dropout_backward(int64_t n, float rate, uint64_t seed, uint64_t offset,
                                           const float* dy, float* dx) {
  return guarded("nk_alpha_dropout_backward", [&] {
    check_count(n);
    const DropoutConsts d = dropout_consts(rate);
    require(dy, "dy");
    require(dx, "dx");
    const auto& k = kernels_for_call();
    const bool stream = stream_for(2 * static_cast<int64_t>(sizeof(float)) * n);
    parallel_flat(n, [&](int64_t i0, int64_t i1) {
      k.alpha_dropout(dy, dx, i0, i1, seed, offset, d.keep24, d.a, -0.0f, -0.0f, stream);
    });
  });
}

NK_API nk_status nk_lecun_normal_init(int64_t n, int64_t fan_in, int32_t truncated, uint64_t seed,
                                      uint64_t offset, float* w) {
  return guarded("nk_lecun_normal_init", [&] {
    check_count(n);
    if (fan_in < 1) fail(NK_ERR_BAD_ARGUMENT, "fan_in = %lld: must be >= 1", static_cast<long long>(fan_in));
    if (truncated != NK_LECUN_NORMAL && truncated != NK_LECUN_TRUNCATED)
      fail(NK_ERR_BAD_ARGUMENT, "truncated = %d: must be NK_LECUN_NORMAL or NK_LECUN_TRUNCATED", truncated);
    require(w, "w");
    double sd = std::sqrt(1.0 / static_cast<double>(fan_in));
    if (truncated) sd /= 0.87962566103423978;  // Keras: the stddev of N(0,1) truncated at 2
    const bool trunc = truncated != 0;
    parallel_flat(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        w[i] = static_cast<float>(sd * kernels::philox_normal(seed, offset, static_cast<uint64_t>(i), trunc));
    });
  });
}

}  // extern "C"
