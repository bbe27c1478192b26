// What Batch Norm's entry points share: options, argument checks, the
// general-path copies, and the per-channel arithmetic done in double.
#pragma once

#include <cmath>
#include <cstring>
#include <vector>

#include "aligned.hpp"
#include "bn_exec.hpp"
#include "checks.hpp"

namespace nk {

struct BnOptions {
  double epsilon;
  double momentum;
  int32_t convention;
  int32_t variance;
  int64_t virtual_batch;  // 0: none
  int32_t grouping;
  bool renorm;
  double renorm_momentum, rmax, rmin, dmax;
};

BnOptions read_bn_options(const nk_bn_options* opt);

void check_channels(int64_t channels);

// Canonical pointers for one call: on the general path, gathered copies of
// the inputs and buffers for the outputs, scattered back by finish(). NULL
// inputs and outputs (optional ones) stay NULL.
class Canonical {
 public:
  Canonical(const Shape& s, std::initializer_list<const void*> inputs, void* output, void* output2 = nullptr);
  const float* in(int k) const { return in_[k]; }
  float* out() const { return out_[0]; }
  float* out2() const { return out_[1]; }
  void finish() const;

 private:
  const Shape& s_;
  std::vector<FloatVec> copies_;
  const float* in_[4] = {};
  float* out_[2] = {};
  float* user_out_[2] = {};
};

// Per-channel coefficients for the element-wise kernels.
struct ChannelArrays {
  FloatVec a, b, c, d;
  explicit ChannelArrays(int64_t n) : a(n), b(n), c(n), d(n) {}
};

// The caller's state struct, checked like an options struct; absent fields NULL.
nk_bn_state read_bn_state(const nk_bn_state* state);

// Coefficients of y = scale * (x - mean) + shift at index i (g * C + c); the
// mean is split into two floats so a mean far from zero costs no precision.
void set_coefficients(ChannelArrays& p, int64_t i, double mean, double scale, double shift);

// Moving-statistics update of channel c from the batch mean and biased
// variance (count: elements per statistic, for Bessel's correction). Under
// renorm the moving standard deviation moves, TF's way.
void update_moving(const BnOptions& o, int64_t c, double count, double mean, double var,
                   const nk_bn_state& st);

// y = gamma * (x - mean) * invstd + beta with given per-channel statistics
// (inference, and the apply step of split statistics); a double mean keeps
// its low part.
// With a residual and an activation (res may be NULL): y = act(... + res).
void apply_given_stats(const Shape& s, const void* x, void* y, const float* gamma, const float* beta,
                       const double* mean, const float* invstd, const void* res = nullptr,
                       kernels::Act act = {kernels::kActIdentity, 0.0f});
void apply_given_stats(const Shape& s, const void* x, void* y, const float* gamma, const float* beta,
                       const float* mean, const float* invstd, const void* res = nullptr,
                       kernels::Act act = {kernels::kActIdentity, 0.0f});

}  // namespace nk
