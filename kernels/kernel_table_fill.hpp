// Included once by each ISA file, after it defines NK_ARCH (an xsimd arch or
// scalar_arch): instantiates every kernel for that arch into its table.
#pragma once

#include "activations.hpp"
#include "batchnorm.hpp"
#include "kernel_table.hpp"
#include "rownorm.hpp"

namespace nk::kernels {
namespace {
template <class Arch>
constexpr KernelTable make_table(const char* isa) {
  return KernelTable{
      isa,
      static_cast<int>(simd<Arch>::width),
      &bn_stats<Arch>,
      &bn_backward_sums<Arch>,
      &bn_apply<Arch>,
      &bn_backward_apply<Arch>,
      &bn_act_apply<Arch>,
      &bn_act_backward_sums<Arch>,
      &bn_act_backward_apply<Arch>,
      &act_forward<Arch>,
      &act_backward<Arch>,
      &prelu_forward<Arch>,
      &prelu_backward<Arch>,
      &crelu_forward<Arch>,
      &crelu_backward<Arch>,
      &alpha_dropout<Arch>,
      &ln_apply<Arch>,
      &ln_backward_sums<Arch>,
      &ln_backward_apply<Arch>,
      &ln_param_sums<Arch>,
      &ln_stats<Arch>,
      &ln_forward<Arch>,
      &ln_backward<Arch>,
  };
}
}  // namespace
}  // namespace nk::kernels

#define NK_DEFINE_TABLE(fn, Arch, isa_name)               \
  const nk::kernels::KernelTable* nk::kernels::fn() {     \
    static const KernelTable t = make_table<Arch>(isa_name); \
    return &t;                                            \
  }
