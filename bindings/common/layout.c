/* Prints the size of every struct of normkit.h and the offset of each field,
 * one per line ("nk_bn_options 48", "nk_bn_options.epsilon 8"), for the
 * bindings' layout tests. Adding a struct: one S() line and its F() lines. */
#include <normkit.h>
#include <stddef.h>
#include <stdio.h>

#define S(t) printf(#t " %zu\n", sizeof(t))
#define F(t, f) printf(#t "." #f " %zu\n", offsetof(t, f))

int main(void) {
  S(nk_tensor_desc);
  F(nk_tensor_desc, dtype); F(nk_tensor_desc, ndim); F(nk_tensor_desc, dims);
  F(nk_tensor_desc, num_axes); F(nk_tensor_desc, axes);
  S(nk_bn_options);
  F(nk_bn_options, struct_size); F(nk_bn_options, epsilon); F(nk_bn_options, momentum);
  F(nk_bn_options, momentum_convention); F(nk_bn_options, moving_variance);
  F(nk_bn_options, virtual_batch_size); F(nk_bn_options, virtual_grouping);
  F(nk_bn_options, renorm); F(nk_bn_options, renorm_momentum); F(nk_bn_options, rmax);
  F(nk_bn_options, rmin); F(nk_bn_options, dmax);
  S(nk_bn_state);
  F(nk_bn_state, struct_size); F(nk_bn_state, moving_mean); F(nk_bn_state, moving_var);
  F(nk_bn_state, moving_stddev); F(nk_bn_state, renorm_mean); F(nk_bn_state, renorm_stddev);
  F(nk_bn_state, adjustment_scale); F(nk_bn_state, adjustment_bias); F(nk_bn_state, saved_mean);
  F(nk_bn_state, saved_invstd); F(nk_bn_state, saved_r); F(nk_bn_state, saved_d);
  S(nk_gn_options);
  F(nk_gn_options, struct_size); F(nk_gn_options, epsilon); F(nk_gn_options, groups);
  S(nk_in_options);
  F(nk_in_options, struct_size); F(nk_in_options, epsilon); F(nk_in_options, momentum);
  F(nk_in_options, momentum_convention); F(nk_in_options, moving_variance);
  S(nk_ln_options);
  F(nk_ln_options, struct_size); F(nk_ln_options, epsilon);
  S(nk_sn_options);
  F(nk_sn_options, struct_size); F(nk_sn_options, epsilon); F(nk_sn_options, momentum);
  F(nk_sn_options, use_bn);
  return 0;
}
