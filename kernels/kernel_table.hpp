// The kernels of one ISA, as a table of plain function pointers. Each ISA's
// file fills one table; the capi layer picks one at run time.
#pragma once

#include <cstdint>

#include "view_types.hpp"

namespace nk::kernels {

struct KernelTable {
  const char* isa;
  int simd_width;  // floats per vector
  void (*bn_stats)(const float* x, View v, Range r, double* mean, double* m2);
  void (*bn_backward_sums)(const float* x, const float* dy, View v, Range r, const float* mean,
                           double* const* sums);
  void (*bn_apply)(const float* x, float* y, View v, Range r, const float* mean_hi,
                   const float* mean_lo, const float* scale, const float* shift, bool stream);
  void (*bn_backward_apply)(const float* x, const float* dy, float* dx, View v, Range r,
                            const float* mean, const float* a, const float* b, const float* d,
                            bool stream);
  // Row-wise norms (Layer Norm, RMSNorm) on a (rows, D) matrix, rows [r0, r1).
  void (*ln_apply)(const float* x, float* y, int64_t D, int64_t r0, int64_t r1, const float* mean_hi,
                   const float* mean_lo, const float* scale, const float* gamma, const float* beta,
                   bool stream);
  void (*ln_backward_sums)(const float* x, const float* dy, const float* gamma, int64_t D, int64_t r0,
                           int64_t r1, const float* mean, double* const* sums);
  void (*ln_backward_apply)(const float* x, const float* dy, float* dx, const float* gamma, int64_t D,
                            int64_t r0, int64_t r1, const float* mean, const float* a, const float* b,
                            const float* d, bool stream);
  void (*ln_param_sums)(const float* x, const float* dy, int64_t D, int64_t r0, int64_t r1,
                        const float* mean_hi, const float* mean_lo, const float* scale, float* dgamma,
                        float* dbeta);
};

// One per ISA file; each returns nullptr where that ISA was not built.
const KernelTable* table_avx512();
const KernelTable* table_avx2();
const KernelTable* table_sse2();
const KernelTable* table_neon();
const KernelTable* table_scalar();

}  // namespace nk::kernels
