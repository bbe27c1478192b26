// Float64 reference of a Batch Norm training step with TensorFlow's options
// (virtual batches, renorm, adjustment), written from DESIGN.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "reference.hpp"

namespace ref {

struct TfOptions {
  double eps = 1e-3, momentum = 0.99;
  int64_t virtual_batch = 0;  // 0: none
  bool strided = true;
  bool renorm = false;
  double renorm_momentum = 0.99;
  double rmax = std::numeric_limits<double>::infinity(), rmin = 0.0,
         dmax = std::numeric_limits<double>::infinity();
  bool unbiased = false;
};

struct TfState {
  std::vector<double> moving_mean, moving_var, moving_stddev, renorm_mean, renorm_stddev;
  std::vector<double> adj_scale, adj_bias;  // empty: none
};

struct TfStep {
  std::vector<double> y;
  std::vector<double> mean, invstd;  // [G * C]
  std::vector<double> r, d;          // [C]
  std::vector<int64_t> group;        // virtual batch of each element
  int64_t groups = 1;
};

// The virtual batch of every element (axis 0 is the batch).
inline std::vector<int64_t> group_of(const Layout& l, const TfOptions& o, int64_t* groups) {
  const int64_t N = l.dims[0], per_sample = total(l) / N;
  const int64_t V = o.virtual_batch > 0 ? o.virtual_batch : N;
  *groups = N / V;
  std::vector<int64_t> g(total(l));
  for (int64_t t = 0; t < total(l); ++t) {
    const int64_t n = t / per_sample;
    g[t] = o.strided ? n % *groups : n / V;
  }
  return g;
}

// One training step; updates st like TensorFlow.
inline TfStep tf_train_step(const Layout& l, const std::vector<float>& x, const std::vector<float>& gamma,
                            const std::vector<float>& beta, const TfOptions& o, TfState& st) {
  int64_t C;
  const auto ch = channel_of(l, &C);
  TfStep s;
  s.group = group_of(l, o, &s.groups);
  const int64_t G = s.groups;
  std::vector<double> sum(G * C, 0.0), n(G * C, 0.0), var(G * C, 0.0);
  for (size_t i = 0; i < x.size(); ++i) sum[s.group[i] * C + ch[i]] += x[i], n[s.group[i] * C + ch[i]] += 1;
  s.mean.resize(G * C);
  for (int64_t k = 0; k < G * C; ++k) s.mean[k] = sum[k] / n[k];
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t k = s.group[i] * C + ch[i];
    var[k] += (x[i] - s.mean[k]) * (x[i] - s.mean[k]);
  }
  for (int64_t k = 0; k < G * C; ++k) var[k] /= n[k];
  s.invstd.resize(G * C);
  for (int64_t k = 0; k < G * C; ++k) s.invstd[k] = 1.0 / std::sqrt(var[k] + o.eps);
  s.r.assign(C, 1.0);
  s.d.assign(C, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0, v = 0;
    for (int64_t g = 0; g < G; ++g) mean += s.mean[g * C + c] / G, v += var[g * C + c] / G;
    const double count = n[c];
    if (o.renorm) {
      const double sigma = std::sqrt(v + o.eps);
      const double sd = std::max(st.renorm_stddev[c], std::sqrt(o.eps));
      s.r[c] = std::min(std::max(sigma / sd, o.rmin), o.rmax);
      s.d[c] = std::min(std::max((mean - st.renorm_mean[c]) / sd, -o.dmax), o.dmax);
      st.renorm_mean[c] += (mean - st.renorm_mean[c]) * (1 - o.renorm_momentum);
      st.renorm_stddev[c] += (sigma - st.renorm_stddev[c]) * (1 - o.renorm_momentum);
    }
    if (!st.moving_mean.empty()) {
      const double vm = o.unbiased ? v * count / (count - 1) : v;
      st.moving_mean[c] += (mean - st.moving_mean[c]) * (1 - o.momentum);
      if (o.renorm) {
        st.moving_stddev[c] += (std::sqrt(vm + o.eps) - st.moving_stddev[c]) * (1 - o.momentum);
        st.moving_var[c] = std::max(st.moving_stddev[c] * st.moving_stddev[c] - o.eps, 0.0);
      } else {
        st.moving_var[c] += (vm - st.moving_var[c]) * (1 - o.momentum);
      }
    }
  }
  s.y.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i], k = s.group[i] * C + c;
    const double xhat = (x[i] - s.mean[k]) * s.invstd[k];
    const double a = st.adj_scale.empty() ? 1.0 : st.adj_scale[c];
    const double b = st.adj_bias.empty() ? 0.0 : st.adj_bias[c];
    const double g = gamma.empty() ? 1.0 : gamma[c], bt = beta.empty() ? 0.0 : beta[c];
    s.y[i] = g * (a * (xhat * s.r[c] + s.d[c]) + b) + bt;
  }
  return s;
}

// y of the step with r, d, a, b held constant (what the gradient sees).
inline std::vector<double> tf_forward_fixed(const Layout& l, const std::vector<double>& x,
                                            const std::vector<double>& gamma, const std::vector<double>& beta,
                                            const TfStep& s, const TfState& st, double eps) {
  int64_t C;
  const auto ch = channel_of(l, &C);
  const int64_t G = s.groups;
  std::vector<double> sum(G * C, 0.0), n(G * C, 0.0), var(G * C, 0.0), mean(G * C);
  for (size_t i = 0; i < x.size(); ++i) sum[s.group[i] * C + ch[i]] += x[i], n[s.group[i] * C + ch[i]] += 1;
  for (int64_t k = 0; k < G * C; ++k) mean[k] = sum[k] / n[k];
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t k = s.group[i] * C + ch[i];
    var[k] += (x[i] - mean[k]) * (x[i] - mean[k]);
  }
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i], k = s.group[i] * C + c;
    const double xhat = (x[i] - mean[k]) / std::sqrt(var[k] / n[k] + eps);
    const double a = st.adj_scale.empty() ? 1.0 : st.adj_scale[c];
    const double b = st.adj_bias.empty() ? 0.0 : st.adj_bias[c];
    y[i] = gamma[c] * (a * (xhat * s.r[c] + s.d[c]) + b) + beta[c];
  }
  return y;
}

// Analytic gradients of that y under the loss sum(dy * y).
inline Grads tf_backward(const Layout& l, const std::vector<float>& x, const std::vector<float>& dy,
                         const std::vector<float>& gamma, const TfStep& s, const TfState& st) {
  int64_t C;
  const auto ch = channel_of(l, &C);
  const int64_t G = s.groups;
  std::vector<double> n(G * C, 0.0), sdy(G * C, 0.0), sdyx(G * C, 0.0);
  Grads g{std::vector<double>(x.size()), std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i], k = s.group[i] * C + c;
    const double xhat = (x[i] - s.mean[k]) * s.invstd[k];
    const double a = st.adj_scale.empty() ? 1.0 : st.adj_scale[c];
    const double b = st.adj_bias.empty() ? 0.0 : st.adj_bias[c];
    n[k] += 1;
    sdy[k] += dy[i];
    sdyx[k] += dy[i] * xhat;
    g.dbeta[c] += dy[i];
    g.dgamma[c] += dy[i] * (a * (xhat * s.r[c] + s.d[c]) + b);
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i], k = s.group[i] * C + c;
    const double xhat = (x[i] - s.mean[k]) * s.invstd[k];
    const double a = st.adj_scale.empty() ? 1.0 : st.adj_scale[c];
    const double ge = (gamma.empty() ? 1.0 : gamma[c]) * a * s.r[c];
    g.dx[i] = ge * s.invstd[k] * (dy[i] - sdy[k] / n[k] - xhat * sdyx[k] / n[k]);
  }
  return g;
}

}  // namespace ref
