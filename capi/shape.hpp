// Checks a tensor descriptor and reduces it to the canonical (outer, C, inner)
// view. Feature axes that do not merge into one block take the general path:
// the tensor is gathered into an (R, C, 1) copy and results scattered back.
#pragma once

#include <cstdint>
#include <vector>

#include "../kernels/view_types.hpp"
#include "normkit.h"

namespace nk {

struct Shape {
  kernels::View view;     // the canonical view (of the gathered copy on the general path)
  int64_t total = 0;      // elements
  int64_t channels = 0;   // product of feature dims: the length of parameter arrays
  int64_t count = 0;      // elements per channel: what statistics reduce over
  bool general = false;   // feature axes not adjacent: gather/scatter needed
  int64_t batch = 1;      // dims[0]
  bool batch_is_feature = false;
  // General path: for each dim of the tensor (size-1 dims dropped), its size
  // and its stride in the gathered (R, C) copy.
  int rank = 0;
  int64_t dims[NK_MAX_DIMS] = {};
  int64_t gstride[NK_MAX_DIMS] = {};
};

Shape canonicalize(const nk_tensor_desc* desc);

// General path: dst(R, C) <- src (tensor order), and back.
void gather(const Shape& s, const float* src, float* dst);
void scatter(const Shape& s, const float* src, float* dst);

int64_t checked_mul(int64_t a, int64_t b, const char* what);

}  // namespace nk
