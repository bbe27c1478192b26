// Argument checks every entry point shares: pointers, option structs that
// begin with their own size, and the option values common to several ops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "error.hpp"

namespace nk {

inline void require(const void* p, const char* name) {
  if (p == nullptr) fail(NK_ERR_NULL_POINTER, "%s is NULL", name);
}
inline void require_pair(const void* a, const void* b, const char* na, const char* nb) {
  if ((a == nullptr) != (b == nullptr))
    fail(NK_ERR_NULL_POINTER, "%s and %s must be given together", na, nb);
}

// A caller's struct (options or state) copied over the defaults init() gives:
// struct_size must cover at least min_size bytes (the first release's
// fields), and any tail unknown to this version must be zero. NULL: defaults.
template <class T>
T read_options(const T* opt, void (*init)(T*), uint64_t min_size, const char* what = "options") {
  T o;
  init(&o);
  if (opt == nullptr) return o;
  if (opt->struct_size < min_size)
    fail(NK_ERR_BAD_STRUCT_SIZE, "%s struct_size = %llu: at least %llu expected", what,
         static_cast<unsigned long long>(opt->struct_size), static_cast<unsigned long long>(min_size));
  const auto* bytes = reinterpret_cast<const unsigned char*>(opt);
  for (uint64_t i = sizeof(T); i < opt->struct_size; ++i)
    if (bytes[i] != 0)
      fail(NK_ERR_BAD_STRUCT_SIZE, "%s struct_size = %llu: fields unknown to this version are set", what,
           static_cast<unsigned long long>(opt->struct_size));
  std::memcpy(&o, opt, std::min<uint64_t>(opt->struct_size, sizeof o));
  o.struct_size = sizeof o;
  return o;
}

inline void check_epsilon(float eps) {
  if (!(eps > 0.0f) || std::isinf(eps))
    fail(NK_ERR_BAD_ARGUMENT, "epsilon = %g: must be > 0 and finite", static_cast<double>(eps));
}

// Moving statistics: momentum, its convention, and the variance they take.
inline void check_moving_options(float momentum, int32_t convention, int32_t variance) {
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    fail(NK_ERR_BAD_ARGUMENT, "momentum = %g: must be in [0, 1]", static_cast<double>(momentum));
  if (convention != NK_MOMENTUM_TF && convention != NK_MOMENTUM_TORCH)
    fail(NK_ERR_BAD_ARGUMENT, "momentum_convention = %d: must be NK_MOMENTUM_TF or NK_MOMENTUM_TORCH",
         convention);
  if (variance != NK_VARIANCE_BIASED && variance != NK_VARIANCE_UNBIASED)
    fail(NK_ERR_BAD_ARGUMENT, "moving_variance = %d: must be NK_VARIANCE_BIASED or NK_VARIANCE_UNBIASED",
         variance);
}

}  // namespace nk
