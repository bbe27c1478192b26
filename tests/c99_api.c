/* The header as pure C99: every declared function's address taken, and a
 * small Batch Norm run through the C API. */
#include <normkit.h>
#include <stdio.h>
#include <string.h>

typedef void (*any_fn)(void);
#define FN(f) ((any_fn)(f))

int main(void) {
  const any_fn all[] = {
      FN(nk_status_string),      FN(nk_last_error),        FN(nk_version),
      FN(nk_version_major),      FN(nk_version_minor),     FN(nk_version_patch),
      FN(nk_version_string),     FN(nk_set_max_isa),       FN(nk_active_isa),
      FN(nk_isa_available),      FN(nk_set_num_threads),   FN(nk_get_num_threads),
      FN(nk_set_stream_threshold), FN(nk_get_stream_threshold),
      FN(nk_tensor_desc_init),   FN(nk_bn_options_init),   FN(nk_bn_forward_training),
      FN(nk_bn_forward_inference), FN(nk_bn_backward),
      FN(nk_bn_state_init),      FN(nk_bn_forward_training_ex), FN(nk_bn_backward_ex),     FN(nk_bn_partial_stats),
      FN(nk_bn_merge_stats),     FN(nk_bn_finalize_stats), FN(nk_bn_apply),
      FN(nk_bn_backward_reduce), FN(nk_bn_backward_apply),
      FN(nk_relu_forward),       FN(nk_relu_backward),     FN(nk_leaky_relu_forward),
      FN(nk_leaky_relu_backward), FN(nk_elu_forward),      FN(nk_elu_backward),
      FN(nk_selu_forward),       FN(nk_selu_backward),     FN(nk_selu_alpha),
      FN(nk_selu_lambda),        FN(nk_prelu_forward),     FN(nk_prelu_backward),
      FN(nk_crelu_forward),      FN(nk_crelu_backward),    FN(nk_alpha_dropout_forward),
      FN(nk_alpha_dropout_backward), FN(nk_lecun_normal_init),
      FN(nk_gn_options_init),    FN(nk_groupnorm_forward), FN(nk_groupnorm_backward),
      FN(nk_in_options_init),    FN(nk_instancenorm_forward_training),
      FN(nk_instancenorm_forward_inference), FN(nk_instancenorm_backward),
      FN(nk_ln_options_init),    FN(nk_layernorm_forward), FN(nk_layernorm_backward),
      FN(nk_rmsnorm_forward),    FN(nk_rmsnorm_backward),
      FN(nk_sn_options_init),    FN(nk_switchnorm_forward_training),
      FN(nk_switchnorm_forward_inference), FN(nk_switchnorm_backward),
      FN(nk_bn_act_forward_training), FN(nk_bn_act_forward_inference), FN(nk_bn_act_backward),
      FN(nk_groupnorm_act_forward), FN(nk_groupnorm_act_backward),
  };
  size_t i;
  for (i = 0; i < sizeof all / sizeof all[0]; ++i)
    if (all[i] == NULL) return 1;

  {
    const int64_t dims[2] = {4, 2};
    float x[8] = {1, 10, 2, 20, 3, 30, 4, 40}, y[8];
    nk_tensor_desc d;
    nk_bn_options o = NK_BN_OPTIONS_INIT;
    nk_status s;
    if (nk_tensor_desc_init(&d, 2, dims, 1) != NK_OK) return 2;
    s = nk_bn_forward_training(&d, &o, x, y, NULL, NULL, NULL, NULL, NULL, NULL);
    if (s != NK_OK) {
      printf("%s: %s\n", nk_status_string(s), nk_last_error());
      return 3;
    }
    /* Channel 0 is 1..4: mean 2.5, var 1.25. */
    if (y[0] > -1.3f || y[0] < -1.4f) return 4;
    if (strcmp(nk_version_string(), "") == 0) return 5;
    printf("normkit %s on %s: y[0] = %f\n", nk_version_string(), nk_active_isa(), y[0]);
  }
  {
    float x[3] = {-1.0f, 0.0f, 2.0f}, y[3];
    if (nk_selu_forward(3, x, y) != NK_OK) return 6;
    if (y[2] < 2.10f || y[2] > 2.11f || y[0] > -1.11f || y[0] < -1.12f) return 7;
    if (nk_lecun_normal_init(3, 4, NK_LECUN_TRUNCATED, 1, 0, y) != NK_OK) return 8;
    if (nk_alpha_dropout_forward(3, 0.5f, 1, 0, x, y) != NK_OK) return 9;
  }
  {
    /* BN + residual + ReLU on [4, 1]: xhat = -1.34, -0.45, 0.45, 1.34. */
    const int64_t dims[2] = {4, 1};
    float x[4] = {1, 2, 3, 4}, r[4] = {1, 1, 1, 1}, y[4];
    nk_tensor_desc d;
    nk_bn_state st;
    nk_bn_state_init(&st);
    if (nk_tensor_desc_init(&d, 2, dims, 1) != NK_OK) return 10;
    if (nk_bn_act_forward_training(&d, NULL, NK_ACT_RELU, 0.0f, x, r, y, NULL, NULL, &st) != NK_OK) return 11;
    if (y[0] != 0.0f || y[1] < 0.55f || y[1] > 0.56f) return 12;
  }
  return 0;
}
