// The kernels of one ISA, as a table of plain function pointers. Each ISA's
// file fills one table; the capi layer picks one at run time.
#pragma once

#include <cstdint>

#include "view_types.hpp"

namespace nk::kernels {

// The element-wise activations (p: LeakyReLU's slope, ELU's alpha; unused
// otherwise). Identity serves the fused kernels' "no activation".
enum ActKind : int32_t { kActRelu = 0, kActLeakyRelu = 1, kActElu = 2, kActSelu = 3, kActIdentity = 4 };
struct Act {
  int32_t kind;
  float p;
};

// Per-channel arrays of the fused kernels' pre-activation
// z = ((x - mean) - mean_lo) * scale + shift: the forward's arithmetic,
// which backward repeats bit for bit. mean_lo NULL: 0 everywhere (the
// kernels then leave the subtraction out, the same bits).
struct ZParams {
  const float *mean, *mean_lo, *scale, *shift;
};

struct KernelTable {
  const char* isa;
  int simd_width;  // floats per vector
  void (*bn_stats)(const float* x, View v, Range r, double* mean, double* m2);
  void (*bn_backward_sums)(const float* x, const float* dy, View v, Range r, const float* mean,
                           double* const* sums);
  void (*bn_apply)(const float* x, float* y, View v, Range r, const float* mean_hi,
                   const float* mean_lo, const float* scale, const float* shift, bool stream);
  // dx = a * dy + b * ((x - mean) * xscale) + d; xscale may be NULL (1).
  void (*bn_backward_apply)(const float* x, const float* dy, float* dx, View v, Range r,
                            const float* mean, const float* a, const float* b, const float* d,
                            const float* xscale, bool stream);
  // Fused normalization + residual + activation (batchnorm.hpp); res may be
  // NULL. Forward: y = act(bn_apply(x) + res). Backward, with
  // dz = act'(z) * dy and z = ((x - mean) - mean_lo) * zscale + zshift (+ res)
  // recomputed as the forward computed it (ZParams): the sums of
  // bn_backward_sums over (x, dz) with xc = x - mean, dz also written to
  // dz_out unless NULL; and
  // dx = a * dz + b * ((x - mean) * xscale) + d.
  // Forward's ahead: see map_view (0 where no unit of the caller follows).
  void (*bn_act_apply)(const float* x, const float* res, float* y, View v, Range r, const float* mean_hi,
                       const float* mean_lo, const float* scale, const float* shift, Act act, bool stream,
                       int64_t ahead);
  void (*bn_act_backward_sums)(const float* x, const float* res, const float* dy, float* dz_out, View v,
                               Range r, ZParams z, Act act, double* const* sums);
  void (*bn_act_backward_apply)(const float* x, const float* res, const float* dy, float* dx, View v,
                                Range r, const float* a, const float* b, const float* d, const float* xscale,
                                ZParams z, Act act, bool stream);
  // Activations (activations.hpp).
  void (*act_forward)(int32_t kind, float p, const float* x, float* y, int64_t n, bool stream);
  void (*act_backward)(int32_t kind, float p, const float* x, const float* dy, float* dx, int64_t n,
                       bool stream);
  void (*prelu_forward)(const float* x, float* y, View v, Range r, const float* slope, bool stream);
  void (*prelu_backward)(const float* x, const float* dy, float* dx, View v, Range r, const float* slope,
                         double* dslope, bool stream);
  void (*crelu_forward)(const float* x, float* y, View v, Range r, bool stream);
  void (*crelu_backward)(const float* x, const float* dy, float* dx, View v, Range r, bool stream);
  void (*alpha_dropout)(const float* x, float* y, int64_t i0, int64_t i1, uint64_t seed, uint64_t offset,
                        uint32_t keep24, float a, float b, float drop, bool stream);
  // Row-wise norms (Layer Norm, RMSNorm) on a (rows, D) matrix, rows [r0, r1).
  void (*ln_apply)(const float* x, float* y, int64_t D, int64_t r0, int64_t r1, const float* mean_hi,
                   const float* mean_lo, const float* scale, const float* gamma, const float* beta,
                   bool stream, int64_t ahead);
  void (*ln_backward_sums)(const float* x, const float* dy, const float* gamma, int64_t D, int64_t r0,
                           int64_t r1, const float* mean, double* const* sums);
  void (*ln_backward_apply)(const float* x, const float* dy, float* dx, const float* gamma, int64_t D,
                            int64_t r0, int64_t r1, const float* mean, const float* a, const float* b,
                            const float* d, const float* xscale, bool stream);
  void (*ln_param_sums)(const float* x, const float* dy, int64_t D, int64_t r0, int64_t r1,
                        const float* mean_hi, const float* mean_lo, const float* scale, float* dgamma,
                        float* dbeta);
  // Mean and M2 of rows [r0, r1) of a (rows, D) matrix (mean[r - r0]),
  // bitwise as bn_stats on the (1, rows, D) view.
  void (*ln_stats)(const float* x, int64_t D, int64_t r0, int64_t r1, double* mean, double* m2);
  // ln_stats, fin and ln_apply for rows [r0, r1) of D <= kTileInner, with
  // the same bits, in one pipelined sweep.
  void (*ln_forward)(const float* x, float* y, int64_t D, int64_t r0, int64_t r1, const float* gamma,
                     const float* beta, bool stream, RowFinish fin);
  // ln_backward_sums, fin, ln_param_sums (dgamma null: none) and
  // ln_backward_apply for rows [r0, r1) of D <= kPipelinedRow, with the
  // same bits, in one pipelined sweep.
  void (*ln_backward)(const float* x, const float* dy, float* dx, const float* gamma, int64_t D, int64_t r0,
                      int64_t r1, const float* mean, const float* scale, const float* xscale, float* dgamma,
                      float* dbeta, bool stream, RowFinish fin);
};

// One per ISA file; each returns nullptr where that ISA was not built.
const KernelTable* table_avx512();
const KernelTable* table_avx2();
const KernelTable* table_sse2();
const KernelTable* table_neon();
const KernelTable* table_scalar();

}  // namespace nk::kernels
