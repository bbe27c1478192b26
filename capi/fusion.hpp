// Normalization fused with a residual add and an activation
// (nk_bn_act_*, nk_groupnorm_act_*): the request, checked, and the
// coefficients that let backward recompute the forward's pre-activation z.
#pragma once

#include <cmath>

#include "../kernels/kernel_table.hpp"
#include "checks.hpp"
#include "runtime.hpp"

namespace nk {

struct Fusion {
  kernels::Act act{kernels::kActIdentity, 0.0f};
  const float* res = nullptr;  // canonical residual, or NULL
  // Fused ops normalize with coefficients computed from the saved float
  // statistics (fused_z) and the mean's low part only where it matters
  // (fused_mean_lo), so that backward recomputes z bit for bit; plain ops
  // always keep the low part (set_coefficients).
  bool fused = false;
};

inline kernels::Act read_activation(int32_t act, float param) {
  switch (act) {
    case NK_ACT_NONE: return {kernels::kActIdentity, 0.0f};
    case NK_ACT_RELU: return {kernels::kActRelu, 0.0f};
    case NK_ACT_SELU: return {kernels::kActSelu, 0.0f};
    case NK_ACT_LEAKY_RELU:
    case NK_ACT_ELU:
      if (!std::isfinite(param))
        fail(NK_ERR_BAD_ARGUMENT, "act_param = %g: must be finite", static_cast<double>(param));
      return {act == NK_ACT_ELU ? kernels::kActElu : kernels::kActLeakyRelu, param};
    default:
      fail(NK_ERR_BAD_ARGUMENT, "act = %d: must be one of NK_ACT_NONE, NK_ACT_RELU, NK_ACT_LEAKY_RELU, "
           "NK_ACT_ELU, NK_ACT_SELU", act);
  }
}

// A fused call's request, checked: the activation and the residual.
inline Fusion read_fusion(int32_t act, float param, const void* residual) {
  Fusion f;
  f.act = read_activation(act, param);
  f.res = static_cast<const float*>(residual);
  f.fused = true;
  return f;
}

// Backward's outputs: dresidual only with a residual, and distinct from dx
// and x (it holds dz between the two passes).
inline void check_fused_backward(const void* x, const void* res, const void* dx, const void* dres) {
  if (dres == nullptr) return;
  if (res == nullptr) fail(NK_ERR_BAD_ARGUMENT, "dresidual is given but the forward had no residual");
  if (dres == dx) fail(NK_ERR_BAD_ARGUMENT, "dresidual and dx must be different buffers");
  if (dres == x) fail(NK_ERR_BAD_ARGUMENT, "dresidual must not overwrite x");
}

// An activation whose gradient costs more than a stream (ELU, SELU: an exp).
inline bool dz_costly(const Fusion& f) {
  return f.fused && (f.act.kind == kernels::kActElu || f.act.kind == kernels::kActSelu);
}

// Where backward's sums pass leaves dz for the apply pass: dresidual where
// the caller wants it; else dx's buffer where dz_costly and dx is not x's
// buffer; else nowhere, and the apply pass recomputes dz.
inline float* dz_buffer(const Fusion& f, const float* x, float* dx, float* dres) {
  if (!f.fused) return nullptr;
  if (dres) return dres;
  return dz_costly(f) && dx != x ? dx : nullptr;
}

// How backward's passes store and read dz (kept: the sums pass stores it
// for the apply pass; in_dx: in dx's buffer). dx goes past the cache where
// the bytes moved (x, dy, dx, and the residual where dz is recomputed with
// it) would not fit in the cache anyway; not where dz sits in dx's buffer
// and `resident`: the apply pass then overwrites lines the sums pass left
// in the cache, which a streaming store would first write back. dz itself
// always gets ordinary stores: streamed from the sums pass (through a
// buffer the sums then read) it made that pass stall on the stores, and
// BN+SELU NHWC backward 1.10x slower, though it saved reading dx's lines.
// In-process A/B on Zen 4, 32x256x56x56: BN+add+ReLU NCHW backward 1.15-1.18x
// faster (dresidual read back from the cache instead of dz recomputed),
// GN+SELU NHWC 1.08x, BN+SELU NHWC 1.02-1.05x, BN+add+ReLU NHWC unchanged.
// The apply pass recomputes dz only where there is no buffer.
struct BackwardStores {
  bool dx, recompute;
};
inline BackwardStores backward_stores(const Fusion& f, bool kept, bool in_dx, int64_t elems, bool resident) {
  const int64_t streams = 3 + (f.res && !kept ? 1 : 0);
  const bool big = streams * static_cast<int64_t>(sizeof(float)) * elems >= stream_threshold();
  return {big && !(in_dx && resident), !kept};
}

// The low part of the mean that a fused op subtracts after the saved float
// mean hi where the mean is large against the spread (|hi| * invstd > 4).
// Dropping it (up to half an ulp of hi) moves xhat by up to
// 2^-24 * |hi| * invstd: at most 2^-22 below the cut, a few roundings of a
// z near 1. Elsewhere 0, and backward need not recompute the exact mean.
inline bool needs_mean_lo(float hi, float invstd) { return std::fabs(hi) * invstd > 4.0f; }
inline float fused_mean_lo(double mean, float hi, float invstd) {
  return needs_mean_lo(hi, invstd) ? static_cast<float>(mean - static_cast<double>(hi)) : 0.0f;
}

// z = ((x - saved_mean) - mean_lo) * scale + shift, from the float
// statistics that backward receives: gamma' = gamma * adjustment_scale * r,
// and shift = gamma * (adjustment_scale * d + adjustment_bias) + beta (r, d:
// renorm's saved values; 1, 0 without renorm).
struct ZCoefficients {
  float scale, shift;
};
inline ZCoefficients fused_z(double gamma, double beta, double adj_scale, double adj_bias, double r, double d,
                             float invstd) {
  return {static_cast<float>(gamma * adj_scale * r * static_cast<double>(invstd)),
          static_cast<float>(gamma * (adj_scale * d + adj_bias) + beta)};
}

}  // namespace nk
