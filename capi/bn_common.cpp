#include "bn_common.hpp"

#include <cstddef>

namespace nk {

BnOptions read_bn_options(const nk_bn_options* opt) {
  const nk_bn_options o = read_options<nk_bn_options>(
      opt, &nk_bn_options_init, offsetof(nk_bn_options, moving_variance) + sizeof(int32_t));
  check_epsilon(o.epsilon);
  check_moving_options(o.momentum, o.momentum_convention, o.moving_variance);
  if (o.virtual_batch_size < 0)
    fail(NK_ERR_BAD_ARGUMENT, "virtual_batch_size = %d: must be >= 1, or 0 for none", o.virtual_batch_size);
  if (o.virtual_grouping != NK_GHOST_STRIDED && o.virtual_grouping != NK_GHOST_CONTIGUOUS)
    fail(NK_ERR_BAD_ARGUMENT, "virtual_grouping = %d: must be NK_GHOST_STRIDED or NK_GHOST_CONTIGUOUS",
         o.virtual_grouping);
  if (o.renorm != 0 && o.renorm != 1) fail(NK_ERR_BAD_ARGUMENT, "renorm = %d: must be 0 or 1", o.renorm);
  if (!(o.renorm_momentum >= 0.0f && o.renorm_momentum <= 1.0f))
    fail(NK_ERR_BAD_ARGUMENT, "renorm_momentum = %g: must be in [0, 1]", static_cast<double>(o.renorm_momentum));
  if (std::isnan(o.rmax) || std::isnan(o.rmin) || std::isnan(o.dmax))
    fail(NK_ERR_BAD_ARGUMENT, "renorm clipping bounds must not be NaN");
  if (o.rmin > o.rmax)
    fail(NK_ERR_BAD_ARGUMENT, "rmin = %g > rmax = %g", static_cast<double>(o.rmin), static_cast<double>(o.rmax));
  if (o.dmax < 0.0f) fail(NK_ERR_BAD_ARGUMENT, "dmax = %g: must be >= 0", static_cast<double>(o.dmax));
  return {o.epsilon, o.momentum, o.momentum_convention, o.moving_variance, o.virtual_batch_size,
          o.virtual_grouping, o.renorm != 0, o.renorm_momentum, o.rmax, o.rmin, o.dmax};
}

void check_channels(int64_t channels) {
  if (channels < 1)
    fail(NK_ERR_BAD_SHAPE, "channels = %lld: must be >= 1", static_cast<long long>(channels));
  checked_mul(channels, 64, "channels");
}

Canonical::Canonical(const Shape& s, std::initializer_list<const void*> inputs, void* output, void* output2)
    : s_(s), user_out_{static_cast<float*>(output), static_cast<float*>(output2)} {
  int k = 0;
  if (!s.general) {
    for (const void* p : inputs) in_[k++] = static_cast<const float*>(p);
    out_[0] = user_out_[0];
    out_[1] = user_out_[1];
    return;
  }
  copies_.reserve(inputs.size() + 2);
  for (const void* p : inputs) {
    if (p == nullptr) {
      in_[k++] = nullptr;
      continue;
    }
    copies_.emplace_back(static_cast<size_t>(s.total));
    gather(s, static_cast<const float*>(p), copies_.back().data());
    in_[k++] = copies_.back().data();
  }
  for (int j = 0; j < 2; ++j) {
    if (user_out_[j] == nullptr) continue;
    copies_.emplace_back(static_cast<size_t>(s.total));
    out_[j] = copies_.back().data();
  }
}

void Canonical::finish() const {
  if (!s_.general) return;
  for (int j = 0; j < 2; ++j)
    if (user_out_[j] != nullptr) scatter(s_, out_[j], user_out_[j]);
}

nk_bn_state read_bn_state(const nk_bn_state* state) {
  return read_options<nk_bn_state>(state, &nk_bn_state_init, sizeof(nk_bn_state), "state");
}

void set_coefficients(ChannelArrays& p, int64_t i, double mean, double scale, double shift) {
  const float hi = static_cast<float>(mean);
  p.a[i] = hi;
  p.b[i] = static_cast<float>(mean - static_cast<double>(hi));
  p.c[i] = static_cast<float>(scale);
  p.d[i] = static_cast<float>(shift);
}

void update_moving(const BnOptions& o, int64_t c, double count, double mean, double var,
                   const nk_bn_state& st) {
  if (st.moving_mean == nullptr) return;
  const double v = o.variance == NK_VARIANCE_UNBIASED ? var * count / (count - 1) : var;
  const double keep = o.convention == NK_MOMENTUM_TF ? o.momentum : 1.0 - o.momentum;
  auto move = [&](double old, double batch) { return keep * old + (1.0 - keep) * batch; };
  st.moving_mean[c] = static_cast<float>(move(st.moving_mean[c], mean));
  if (!o.renorm) {
    st.moving_var[c] = static_cast<float>(move(st.moving_var[c], v));
    return;
  }
  const double old_sd = st.moving_stddev ? static_cast<double>(st.moving_stddev[c])
                                         : std::sqrt(static_cast<double>(st.moving_var[c]) + o.epsilon);
  const float sd = static_cast<float>(move(old_sd, std::sqrt(v + o.epsilon)));
  if (st.moving_stddev) st.moving_stddev[c] = sd;
  // relu(stddev^2 - eps), NaN kept.
  const double mv = static_cast<double>(sd) * sd - o.epsilon;
  st.moving_var[c] = static_cast<float>(mv < 0 ? 0.0 : mv);
}

void apply_given_stats(const Shape& s, const void* x, void* y, const float* gamma, const float* beta,
                       const float* mean, const float* invstd, const void* res, kernels::Act act) {
  const DoubleVec m(mean, mean + s.channels);
  apply_given_stats(s, x, y, gamma, beta, m.data(), invstd, res, act);
}

void apply_given_stats(const Shape& s, const void* x, void* y, const float* gamma, const float* beta,
                       const double* mean, const float* invstd, const void* res, kernels::Act act) {
  const BnExec e(kernels_for_call(), s.view);
  ChannelArrays p(s.channels);
  for (int64_t c = 0; c < s.channels; ++c)
    set_coefficients(p, c, mean[c], (gamma ? gamma[c] : 1.0) * invstd[c], beta ? beta[c] : 0.0);
  const Canonical io(s, {x, res}, y);
  const bool stream = e.stream((res ? 3 : 2) * static_cast<int64_t>(sizeof(float)) * s.total);
  e.parallel_elementwise([&](int64_t c0, int64_t c1, int64_t o0, int64_t o1) {
    e.k.bn_act_apply(io.in(0), io.in(1), io.out(), e.v, {c0, c1, o0, o1}, p.a.data(), p.b.data(), p.c.data(),
                     p.d.data(), act, stream, 0);
  });
  io.finish();
}

}  // namespace nk
