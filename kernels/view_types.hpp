// The canonical view and work range, shared by kernels and the capi layer.
#pragma once

#include <cstdint>

namespace nk::kernels {

struct View {
  int64_t outer, channels, inner;
};

struct Range {
  int64_t c0, c1;  // channels [c0, c1)
  int64_t o0, o1;  // outer rows [o0, o1)
};

}  // namespace nk::kernels
