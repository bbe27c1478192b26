// The element-wise activations as small functors over one vector: fwd(z) and
// grad(z, dy) = act'(z) * dy. The activation kernels and the fused
// normalization + activation kernels use the same functors, so a fused op
// computes exactly what the two ops in sequence compute.
#pragma once

#include <cmath>

#include "kernel_table.hpp"
#include "vmath.hpp"

namespace nk::kernels {
namespace {

// SELU's constants (DESIGN.md), rounded once to float.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluLambda = 1.0507009873554804934193349852946;

// x * (1 + pos_m1) as x + x * pos_m1, rounded once where the ISA has FMA:
// x itself for ELU (pos_m1 = 0); for SELU, float(lambda - 1) is within
// 2^-29 of lambda - 1 relative to lambda, so the product is lambda * x
// correctly rounded but in rare near-ties, and finite wherever that is
// (float(lambda) * x overflowed for x within an ulp of FLT_MAX / lambda).
// x * pos_m1 is taken of x clamped to the finite floats, so that an
// infinite x gives x (not Inf * 0), and a NaN stays NaN. Both signs.
template <class Arch>
inline typename vm<Arch>::B times_pos_scale(const typename vm<Arch>::B& x, float pos_m1) {
  using V = vm<Arch>;
  using B = typename V::B;
  constexpr float kMax = 3.40282347e+38f;
  return V::fma(V::max(V::min(x, B(kMax)), B(-kMax)), B(pos_m1), x);
}

// alpha * expm1(x) for x < 0, x * (1 + pos_m1) otherwise (NaN passes through
// the x branch, so it stays NaN; -0 stays -0).
template <class Arch>
inline typename vm<Arch>::B elu_core(const typename vm<Arch>::B& x, float neg_scale, float pos_m1) {
  using V = vm<Arch>;
  using B = typename V::B;
  const auto neg = x < B(0.0f);
  const B xc = V::max(V::min(x, B(0.0f)), B(-30.0f));  // NaN lanes take the x branch
  return V::select(neg, B(neg_scale) * expm1_neg<Arch>(xc), times_pos_scale<Arch>(x, pos_m1));
}

// neg_scale = mant * 2^shift with |mant| in [0.25, 0.5): the gradient's
// exp(x) * neg_scale * dy is formed as exp(x) * (mant * dy) scaled by
// 2^shift, so no intermediate overflows for any finite dy.
struct EluGradScale {
  float mant, shift, floor;  // floor: below it, the gradient underflows to 0
  explicit EluGradScale(float neg_scale) {
    int e = 0;
    mant = std::frexp(neg_scale, &e) * 0.5f;
    shift = static_cast<float>(e + 1);
    // Below it, exp(x) * 2^shift < e^-200 and |mant * dy| < 2^127: the
    // product is under 2^-161 for every float dy.
    floor = -200.0f - shift * 0.6931472f;
  }
};

// d/dx of elu_core times dy: neg_scale * exp(x) * dy for x < 0, else (1 + pos_m1) * dy.
template <class Arch>
inline typename vm<Arch>::B elu_grad(const typename vm<Arch>::B& x, const typename vm<Arch>::B& dy,
                                     const EluGradScale& g, float pos_m1) {
  using V = vm<Arch>;
  using B = typename V::B;
  const auto neg = x < B(0.0f);
  const B xc = V::max(V::min(x, B(0.0f)), B(g.floor));
  return V::select(neg, exp_neg_times<Arch>(xc, B(g.mant) * dy, B(g.shift)), times_pos_scale<Arch>(dy, pos_m1));
}

// The derivative at 0 is ReLU's 0 (as PyTorch's), and the x > 0 side's for
// the others. kHeavy: the forward costs more arithmetic than the memory
// traffic of an apply pass hides (an exp per element), so the apply pass
// goes over memory in order (map_view's Seq).
template <class Arch>
struct ActIdentity {
  using B = typename vm<Arch>::B;
  static constexpr bool kHeavy = false;
  B fwd(const B& z) const { return z; }
  B grad(const B&, const B& dy) const { return dy; }
};

template <class Arch>
struct ActRelu {  // z > 0 ? z : 0, and NaN stays NaN
  using V = vm<Arch>;
  using B = typename V::B;
  static constexpr bool kHeavy = false;
  B fwd(const B& z) const { return V::select(z < B(0.0f), B(0.0f), z); }
  B grad(const B& z, const B& dy) const { return V::select(z > B(0.0f), dy, B(0.0f)); }
};

template <class Arch>
struct ActLeakyRelu {
  using V = vm<Arch>;
  using B = typename V::B;
  static constexpr bool kHeavy = false;
  float slope;
  B fwd(const B& z) const { return V::select(z < B(0.0f), z * B(slope), z); }
  B grad(const B& z, const B& dy) const { return V::select(z < B(0.0f), dy * B(slope), dy); }
};

// ELU (neg = alpha, pos_m1 = 0) and SELU (neg = lambda * alpha,
// pos_m1 = lambda - 1).
template <class Arch>
struct ActElu {
  using B = typename vm<Arch>::B;
  static constexpr bool kHeavy = true;
  float neg, pos_m1;
  EluGradScale g;
  ActElu(float neg_scale, float pos_minus_1) : neg(neg_scale), pos_m1(pos_minus_1), g(neg_scale) {}
  B fwd(const B& z) const { return elu_core<Arch>(z, neg, pos_m1); }
  B grad(const B& z, const B& dy) const { return elu_grad<Arch>(z, dy, g, pos_m1); }
};

// f(functor) with the functor of act; false for an unknown kind.
template <class Arch, class F>
inline bool with_act(Act act, const F& f) {
  switch (act.kind) {
    case kActIdentity: f(ActIdentity<Arch>{}); return true;
    case kActRelu: f(ActRelu<Arch>{}); return true;
    case kActLeakyRelu: f(ActLeakyRelu<Arch>{act.p}); return true;
    case kActElu: f(ActElu<Arch>(act.p, 0.0f)); return true;
    case kActSelu:
      f(ActElu<Arch>(static_cast<float>(kSeluLambda * kSeluAlpha), static_cast<float>(kSeluLambda - 1.0)));
      return true;
    default: return false;
  }
}

}  // namespace
}  // namespace nk::kernels
