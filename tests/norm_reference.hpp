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

// dx = invstd * (gdy - mean(gdy) - xhat * mean(gdy * xhat)), gdy = dy * gamma;
// dy in float or double.
template <class T>
inline Grads group_backward(const std::vector<float>& x, const std::vector<T>& dy, const Grouping& g,
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

namespace ref {

// Switchable Normalization, the authors' conventions (DESIGN.md), for
// channels at any axis: K = 3 mixes IN, LN, BN; K = 2 IN and LN.
struct SnRef {
  int64_t N, C, L;
  int K;
  std::vector<int64_t> n_of, c_of;
  std::vector<double> mu, var, mu_ln, var_ln, mu_bn, var_bn, M, V, w, v;
  std::vector<double> y;
};

inline std::vector<double> softmax_ref(const std::vector<float>& raw) {
  std::vector<double> e(raw.size());
  double s = 0;
  for (size_t k = 0; k < raw.size(); ++k) s += (e[k] = std::exp(static_cast<double>(raw[k])));
  for (auto& x : e) x /= s;
  return e;
}

// bn_mean/bn_var non-empty: inference, the BN part from them.
inline SnRef sn_forward(const std::vector<double>& x, const Layout& l, const std::vector<float>& mw,
                        const std::vector<float>& vw, const std::vector<double>& gamma,
                        const std::vector<double>& beta, double eps, const std::vector<double>& bn_mean = {},
                        const std::vector<double>& bn_var = {}) {
  SnRef r;
  r.K = static_cast<int>(mw.size());
  r.c_of = channel_of(l, &r.C);
  r.n_of = sample_of(l);
  r.N = l.dims[0];
  r.L = total(l) / (r.N * r.C);
  const int64_t N = r.N, C = r.C;
  r.mu.assign(N * C, 0.0);
  r.var.assign(N * C, 0.0);
  for (size_t i = 0; i < x.size(); ++i) r.mu[r.n_of[i] * C + r.c_of[i]] += x[i] / r.L;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - r.mu[r.n_of[i] * C + r.c_of[i]];
    r.var[r.n_of[i] * C + r.c_of[i]] += d * d / (r.L - 1);
  }
  r.mu_ln.assign(N, 0.0);
  r.var_ln.assign(N, 0.0);
  r.mu_bn.assign(C, 0.0);
  r.var_bn.assign(C, 0.0);
  // The authors' var = E[var_in + mu_in^2] - mu^2, written as the equal
  // E[var_in + (mu_in - mu)^2], which does not cancel where the means are
  // large against the spread.
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      r.mu_ln[n] += r.mu[n * C + c] / C;
      r.mu_bn[c] += r.mu[n * C + c] / N;
    }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double v = r.var[n * C + c], dl = r.mu[n * C + c] - r.mu_ln[n], db = r.mu[n * C + c] - r.mu_bn[c];
      r.var_ln[n] += (v + dl * dl) / C;
      r.var_bn[c] += (v + db * db) / N;
    }
  if (!bn_mean.empty()) r.mu_bn = bn_mean, r.var_bn = bn_var;
  r.w = softmax_ref(mw);
  r.v = softmax_ref(vw);
  r.M.assign(N * C, 0.0);
  r.V.assign(N * C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double ms[3] = {r.mu[n * C + c], r.mu_ln[n], r.mu_bn[c]};
      const double vs[3] = {r.var[n * C + c], r.var_ln[n], r.var_bn[c]};
      for (int k = 0; k < r.K; ++k) {
        r.M[n * C + c] += r.w[k] * ms[k];
        r.V[n * C + c] += r.v[k] * vs[k];
      }
    }
  r.y.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = r.c_of[i], j = r.n_of[i] * C + c;
    r.y[i] = (gamma.empty() ? 1.0 : gamma[c]) * (x[i] - r.M[j]) / std::sqrt(r.V[j] + eps) +
             (beta.empty() ? 0.0 : beta[c]);
  }
  return r;
}

struct SnGrads {
  std::vector<double> dx, dgamma, dbeta, dmw, dvw;
};

// The chain rule written out: every mixed statistic's dependence on every
// instance statistic, the full softmax Jacobian.
inline SnGrads sn_backward(const std::vector<double>& x, const std::vector<double>& dy, const Layout& l,
                           const std::vector<float>& mw, const std::vector<float>& vw,
                           const std::vector<double>& gamma, double eps) {
  const SnRef r = sn_forward(x, l, mw, vw, gamma, {}, eps);
  const int64_t N = r.N, C = r.C;
  const double L = static_cast<double>(r.L);
  SnGrads g;
  std::vector<double> gM(N * C, 0.0), gV(N * C, 0.0);
  g.dgamma.assign(C, 0.0);
  g.dbeta.assign(C, 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = r.c_of[i], j = r.n_of[i] * C + c;
    const double gm = gamma.empty() ? 1.0 : gamma[c], s = 1.0 / std::sqrt(r.V[j] + eps);
    gM[j] += -dy[i] * gm * s;
    gV[j] += -0.5 * dy[i] * gm * (x[i] - r.M[j]) * s * s * s;
    g.dgamma[c] += dy[i] * (x[i] - r.M[j]) * s;
    g.dbeta[c] += dy[i];
  }
  // Softmax weights.
  auto weight_grad = [&](const std::vector<double>& sm, const std::vector<double>& gS, bool var) {
    std::vector<double> dsm(r.K, 0.0), out(r.K, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const double st[3] = {var ? r.var[n * C + c] : r.mu[n * C + c], var ? r.var_ln[n] : r.mu_ln[n],
                              var ? r.var_bn[c] : r.mu_bn[c]};
        for (int k = 0; k < r.K; ++k) dsm[k] += gS[n * C + c] * st[k];
      }
    for (int j = 0; j < r.K; ++j)
      for (int k = 0; k < r.K; ++k) out[j] += dsm[k] * sm[k] * ((k == j ? 1.0 : 0.0) - sm[j]);
    return out;
  };
  g.dmw = weight_grad(r.w, gM, false);
  g.dvw = weight_grad(r.v, gV, true);
  // Gradients of the instance statistics of (n, c).
  std::vector<double> Gmu(N * C, 0.0), Gvar(N * C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t n2 = 0; n2 < N; ++n2)
        for (int64_t c2 = 0; c2 < C; ++c2) {
          const double same = (n == n2 && c == c2) ? 1.0 : 0.0, sn = n == n2 ? 1.0 : 0.0, sc = c == c2 ? 1.0 : 0.0;
          const bool bn = r.K == 3;
          const double dM_dmu = r.w[0] * same + r.w[1] * sn / C + (bn ? r.w[2] * sc / N : 0.0);
          const double dV_dmu = r.v[1] * sn * 2.0 * (r.mu[n * C + c] - r.mu_ln[n]) / C +
                                (bn ? r.v[2] * sc * 2.0 * (r.mu[n * C + c] - r.mu_bn[c]) / N : 0.0);
          const double dV_dvar = r.v[0] * same + r.v[1] * sn / C + (bn ? r.v[2] * sc / N : 0.0);
          Gmu[n * C + c] += gM[n2 * C + c2] * dM_dmu + gV[n2 * C + c2] * dV_dmu;
          Gvar[n * C + c] += gV[n2 * C + c2] * dV_dvar;
        }
  g.dx.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = r.c_of[i], j = r.n_of[i] * C + c;
    const double gm = gamma.empty() ? 1.0 : gamma[c], s = 1.0 / std::sqrt(r.V[j] + eps);
    g.dx[i] = gm * s * dy[i] + Gmu[j] / L + Gvar[j] * 2.0 * (x[i] - r.mu[j]) / (L - 1);
  }
  return g;
}

}  // namespace ref
