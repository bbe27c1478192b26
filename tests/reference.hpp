// Plain float64 references, written from DESIGN.md element by element. They
// share nothing with the library: the channel of each element is computed
// from its multi-index and the feature axes directly.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace ref {

struct Layout {
  std::vector<int64_t> dims;
  std::vector<int> axes;  // feature axes, may be negative
};

inline int64_t total(const Layout& l) {
  int64_t t = 1;
  for (auto d : l.dims) t *= d;
  return t;
}

// Channel (row-major index over the feature axes, in axis order) of every element.
inline std::vector<int64_t> channel_of(const Layout& l, int64_t* channels) {
  const int nd = static_cast<int>(l.dims.size());
  std::vector<bool> feature(nd, false);
  for (int a : l.axes) feature[a < 0 ? a + nd : a] = true;
  int64_t C = 1;
  for (int i = 0; i < nd; ++i)
    if (feature[i]) C *= l.dims[i];
  *channels = C;
  std::vector<int64_t> ch(total(l));
  std::vector<int64_t> idx(nd, 0);
  for (int64_t t = 0; t < total(l); ++t) {
    int64_t c = 0;
    for (int i = 0; i < nd; ++i)
      if (feature[i]) c = c * l.dims[i] + idx[i];
    ch[t] = c;
    for (int i = nd - 1; i >= 0; --i) {
      if (++idx[i] < l.dims[i]) break;
      idx[i] = 0;
    }
  }
  return ch;
}

struct Stats {
  std::vector<double> mean, var, count;  // biased variance
};

inline Stats batch_stats(const std::vector<float>& x, const std::vector<int64_t>& ch, int64_t C) {
  Stats s{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (size_t i = 0; i < x.size(); ++i) {
    s.mean[ch[i]] += x[i];
    s.count[ch[i]] += 1;
  }
  for (int64_t c = 0; c < C; ++c) s.mean[c] /= s.count[c];
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - s.mean[ch[i]];
    s.var[ch[i]] += d * d;
  }
  for (int64_t c = 0; c < C; ++c) s.var[c] /= s.count[c];
  return s;
}

// y = gamma * (x - mean) / sqrt(var + eps) + beta, gamma/beta empty = 1/0.
inline std::vector<double> normalize(const std::vector<float>& x, const std::vector<int64_t>& ch,
                                     const std::vector<double>& mean, const std::vector<double>& var,
                                     double eps, const std::vector<float>& gamma,
                                     const std::vector<float>& beta) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i];
    const double g = gamma.empty() ? 1.0 : gamma[c], b = beta.empty() ? 0.0 : beta[c];
    y[i] = g * (x[i] - mean[c]) / std::sqrt(var[c] + eps) + b;
  }
  return y;
}

struct Grads {
  std::vector<double> dx, dgamma, dbeta;
};

// Gradient of training-mode BN with respect to x, gamma, beta.
inline Grads backward(const std::vector<float>& x, const std::vector<float>& dy,
                      const std::vector<int64_t>& ch, int64_t C, double eps,
                      const std::vector<float>& gamma) {
  const Stats s = batch_stats(x, ch, C);
  Grads g{std::vector<double>(x.size()), std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  std::vector<double> invstd(C);
  for (int64_t c = 0; c < C; ++c) invstd[c] = 1.0 / std::sqrt(s.var[c] + eps);
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i];
    g.dbeta[c] += dy[i];
    g.dgamma[c] += dy[i] * (x[i] - s.mean[c]) * invstd[c];
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = ch[i];
    const double m = s.count[c], gm = gamma.empty() ? 1.0 : gamma[c];
    const double xhat = (x[i] - s.mean[c]) * invstd[c];
    g.dx[i] = gm * invstd[c] * (dy[i] - g.dbeta[c] / m - xhat * g.dgamma[c] / m);
  }
  return g;
}

// Moving-statistics update; torch = PyTorch's convention, unbiased = Bessel.
inline void update_moving(std::vector<double>& mm, std::vector<double>& mv, const Stats& s,
                          double momentum, bool torch, bool unbiased) {
  for (size_t c = 0; c < mm.size(); ++c) {
    const double n = s.count[c];
    const double v = unbiased ? s.var[c] * n / (n - 1) : s.var[c];
    if (torch) {
      mm[c] = (1 - momentum) * mm[c] + momentum * s.mean[c];
      mv[c] = (1 - momentum) * mv[c] + momentum * v;
    } else {
      mm[c] = momentum * mm[c] + (1 - momentum) * s.mean[c];
      mv[c] = momentum * mv[c] + (1 - momentum) * v;
    }
  }
}

}  // namespace ref
