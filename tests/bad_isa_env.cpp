// Run with NK_MAX_ISA set to an unknown name: every operation must fail
// loudly until a valid cap is set. Exits 0 when that holds.
#include <normkit.h>

#include <cstdio>
#include <cstring>

#define CHECK(cond)                                  \
  do {                                               \
    if (!(cond)) {                                   \
      std::fprintf(stderr, "FAILED: %s\n", #cond);   \
      return 1;                                      \
    }                                                \
  } while (0)

int main() {
  float x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {0}, m[3] = {0}, v[3] = {1, 1, 1};
  const int64_t dims[2] = {2, 3};
  nk_tensor_desc d;
  CHECK(nk_tensor_desc_init(&d, 2, dims, 1) == NK_OK);
  CHECK(std::strcmp(nk_active_isa(), "none") == 0);
  CHECK(nk_bn_forward_training(&d, nullptr, x, y, nullptr, nullptr, nullptr, nullptr, m, v) == NK_ERR_BAD_ISA);
  CHECK(std::strstr(nk_last_error(), "NK_MAX_ISA='bogus'") != nullptr);
  CHECK(y[0] == 0 && m[0] == 0 && v[0] == 1);
  CHECK(nk_bn_forward_inference(&d, nullptr, x, y, nullptr, nullptr, m, v) == NK_ERR_BAD_ISA);
  CHECK(nk_set_max_isa("scalar") == NK_OK);
  CHECK(std::strcmp(nk_active_isa(), "scalar") == 0);
  CHECK(nk_bn_forward_training(&d, nullptr, x, y, nullptr, nullptr, nullptr, nullptr, m, v) == NK_OK);
  std::puts("bad NK_MAX_ISA is reported, then recovered from");
  return 0;
}
