// Plain float64 references for the per-sample norms (Group, Instance, Layer,
// RMS), written from DESIGN.md element by element. Each element i belongs to
// a statistics group grp[i] and takes the parameters of param[i].
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "reference.hpp"

namespace ref {

// Sample (index along axis 0) of every element.
inline std::vector<int64_t> sample_of(const Layout& l) {
  const int64_t per = total(l) / l.dims[0];
  std::vector<int64_t> s(total(l));
  for (int64_t t = 0; t < total(l); ++t) s[t] = t / per;
  return s;
}

struct Grouping {
  std::vector<int64_t> grp, param;
  int64_t groups = 0, params = 0;
};

// Group Norm: group n*G + c/(C/G), parameters per channel.
inline Grouping gn_grouping(const Layout& l, int64_t G) {
  int64_t C;
  Grouping g;
  g.param = channel_of(l, &C);
  const auto n = sample_of(l);
  g.grp.resize(n.size());
  for (size_t i = 0; i < n.size(); ++i) g.grp[i] = n[i] * G + g.param[i] / (C / G);
  g.groups = l.dims[0] * G;
  g.params = C;
  return g;
}

// Layer Norm: R rows of D.
inline Grouping ln_grouping(int64_t R, int64_t D) {
  Grouping g;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t d = 0; d < D; ++d) g.grp.push_back(r), g.param.push_back(d);
  g.groups = R;
  g.params = D;
  return g;
}

struct GroupStats {
  std::vector<double> mean, var, count;
};

inline GroupStats group_stats(const std::vector<float>& x, const Grouping& g) {
  const Stats s = batch_stats(x, g.grp, g.groups);
  return {s.mean, s.var, s.count};
}

inline std::vector<double> group_normalize(const std::vector<float>& x, const Grouping& g, const GroupStats& s,
                                           double eps, const std::vector<float>& gamma,
                                           const std::vector<float>& beta) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t k = g.grp[i], p = g.param[i];
    const double gm = gamma.empty() ? 1.0 : gamma[p], b = beta.empty() ? 0.0 : beta[p];
    y[i] = gm * (x[i] - s.mean[k]) / std::sqrt(s.var[k] + eps) + b;
  }
  return y;
}

// dx = invstd * (gdy - mean(gdy) - xhat * mean(gdy * xhat)), gdy = dy * gamma.
inline Grads group_backward(const std::vector<float>& x, const std::vector<float>& dy, const Grouping& g,
                            double eps, const std::vector<float>& gamma) {
  const GroupStats s = group_stats(x, g);
  Grads r{std::vector<double>(x.size()), std::vector<double>(g.params, 0.0), std::vector<double>(g.params, 0.0)};
  std::vector<double> inv(g.groups), mg(g.groups, 0.0), mgx(g.groups, 0.0);
  for (int64_t k = 0; k < g.groups; ++k) inv[k] = 1.0 / std::sqrt(s.var[k] + eps);
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t k = g.grp[i], p = g.param[i];
    const double xhat = (x[i] - s.mean[k]) * inv[k];
    const double gd = dy[i] * (gamma.empty() ? 1.0 : gamma[p]);
    mg[k] += gd / s.count[k];
    mgx[k] += gd * xhat / s.count[k];
    r.dgamma[p] += dy[i] * xhat;
    r.dbeta[p] += dy[i];
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t k = g.grp[i], p = g.param[i];
    const double xhat = (x[i] - s.mean[k]) * inv[k];
    const double gd = dy[i] * (gamma.empty() ? 1.0 : gamma[p]);
    r.dx[i] = inv[k] * (gd - mg[k] - xhat * mgx[k]);
  }
  return r;
}

// RMSNorm over R rows of D: y = x * rstd * gamma, rstd = 1/sqrt(mean(x^2) + eps).
inline std::vector<double> rms_rstd(const std::vector<float>& x, int64_t R, int64_t D, double eps) {
  std::vector<double> r(R);
  for (int64_t i = 0; i < R; ++i) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += static_cast<double>(x[i * D + d]) * x[i * D + d];
    r[i] = 1.0 / std::sqrt(s / D + eps);
  }
  return r;
}

inline std::vector<double> rms_forward(const std::vector<float>& x, int64_t R, int64_t D, double eps,
                                       const std::vector<float>& gamma) {
  const auto r = rms_rstd(x, R, D, eps);
  std::vector<double> y(x.size());
  for (int64_t i = 0; i < R; ++i)
    for (int64_t d = 0; d < D; ++d) y[i * D + d] = x[i * D + d] * r[i] * (gamma.empty() ? 1.0 : gamma[d]);
  return y;
}

// dx_j = r*gamma_j*dy_j - r^3 * x_j * sum(dy*gamma*x)/D; dgamma = sum(dy*x*r).
inline Grads rms_backward(const std::vector<float>& x, const std::vector<float>& dy, int64_t R, int64_t D,
                          double eps, const std::vector<float>& gamma) {
  const auto r = rms_rstd(x, R, D, eps);
  Grads g{std::vector<double>(x.size()), std::vector<double>(D, 0.0), {}};
  for (int64_t i = 0; i < R; ++i) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += dy[i * D + d] * (gamma.empty() ? 1.0 : gamma[d]) * x[i * D + d];
    for (int64_t d = 0; d < D; ++d) {
      const int64_t j = i * D + d;
      g.dx[j] = r[i] * (gamma.empty() ? 1.0 : gamma[d]) * dy[j] - r[i] * r[i] * r[i] * x[j] * s / D;
      g.dgamma[d] += dy[j] * x[j] * r[i];
    }
  }
  return g;
}

}  // namespace ref
