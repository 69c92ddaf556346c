// Naive twins of kernels/group_norm.hpp for the tests: loops over the definition, one
// group at a time, statistics and sums in double, the same layouts and beta rule.
#pragma once

#include <cmath>
#include <cstddef>

namespace diffuse::kernels::reference {

/// y = act(GN(x) * (1 + scale) + shift), stats[i][g] = (mean, 1/sqrt(var + eps)).
template <class T, std::size_t C, std::size_t G>
void group_norm_forward(const T* x /*[n][hw][C]*/, T* y /*[n][hw][C]*/, T* stats /*[n][G][2]*/,
                        const T* gamma /*[C]*/, const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/,
                        bool silu, std::size_t n, std::size_t hw, double eps) {
  constexpr std::size_t CG = C / G;
  const double count = double(hw * CG);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t g = 0; g < G; ++g) {
      double sum = 0, sq = 0;
      for (std::size_t p = 0; p < hw; ++p)
        for (std::size_t c = g * CG; c < (g + 1) * CG; ++c) sum += double(x[(i * hw + p) * C + c]);
      const double mean = sum / count;
      for (std::size_t p = 0; p < hw; ++p)
        for (std::size_t c = g * CG; c < (g + 1) * CG; ++c) {
          const double d = double(x[(i * hw + p) * C + c]) - mean;
          sq += d * d;
        }
      const double rstd = 1.0 / std::sqrt(sq / count + eps);
      stats[(i * G + g) * 2] = T(mean);
      stats[(i * G + g) * 2 + 1] = T(rstd);
      for (std::size_t p = 0; p < hw; ++p)
        for (std::size_t c = g * CG; c < (g + 1) * CG; ++c) {
          const std::size_t at = (i * hw + p) * C + c;
          const double m = ss ? 1.0 + double(ss[i * 2 * C + c]) : 1.0;
          const double shift = ss ? double(ss[i * 2 * C + C + c]) : 0.0;
          const double v = ((double(x[at]) - mean) * rstd * double(gamma[c]) + double(beta[c])) * m + shift;
          y[at] = T(silu ? v / (1.0 + std::exp(-v)) : v);
        }
    }
}

/// dx = beta_dx * dx + dL/dx, dgamma += dL/dgamma, dbeta += dL/dbeta, dss = dL/dss
/// (unless null), from x, the saved stats and dy. No scratch argument.
template <class T, std::size_t C, std::size_t G>
void group_norm_backward(const T* x /*[n][hw][C]*/, const T* stats /*[n][G][2]*/, const T* gamma /*[C]*/,
                         const T* beta /*[C]*/, const T* ss /*[n][2C] or null*/, bool silu,
                         const T* dy /*[n][hw][C]*/, T* dx /*[n][hw][C]*/, T beta_dx, T* dgamma /*[C]*/,
                         T* dbeta /*[C]*/, T* dss /*[n][2C] or null*/, std::size_t n, std::size_t hw) {
  constexpr std::size_t CG = C / G;
  const double count = double(hw * CG);
  double dg[C] = {}, db[C] = {};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t g = 0; g < G; ++g) {
      const double mean = double(stats[(i * G + g) * 2]), rstd = double(stats[(i * G + g) * 2 + 1]);
      const auto m = [&](std::size_t c) { return ss ? 1.0 + double(ss[i * 2 * C + c]) : 1.0; };
      const auto xhat = [&](std::size_t at) { return (double(x[at]) - mean) * rstd; };
      // u = GN(x) (affine), v = u * (1 + scale) + shift, y = act(v).
      const auto u = [&](std::size_t at, std::size_t c) { return xhat(at) * double(gamma[c]) + double(beta[c]); };
      // dL/dv at element `at` (of channel c).
      const auto grad_v = [&](std::size_t at, std::size_t c) {
        const double v = u(at, c) * m(c) + (ss ? double(ss[i * 2 * C + C + c]) : 0.0);
        const double s = 1.0 / (1.0 + std::exp(-v));
        return silu ? double(dy[at]) * s * (1.0 + v * (1.0 - s)) : double(dy[at]);
      };
      double sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (std::size_t c = g * CG; c < (g + 1) * CG; ++c) {
        double d_scale = 0, d_shift = 0;
        for (std::size_t p = 0; p < hw; ++p) {
          const std::size_t at = (i * hw + p) * C + c;
          const double gv = grad_v(at, c);
          const double gu = gv * m(c);  // dL/du
          d_scale += gv * u(at, c);
          d_shift += gv;
          dg[c] += gu * xhat(at);
          db[c] += gu;
          sum_dxhat += gu * double(gamma[c]);
          sum_dxhat_xhat += gu * double(gamma[c]) * xhat(at);
        }
        if (dss) {
          dss[i * 2 * C + c] = T(d_scale);
          dss[i * 2 * C + C + c] = T(d_shift);
        }
      }
      // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dL/du * gamma.
      for (std::size_t p = 0; p < hw; ++p)
        for (std::size_t c = g * CG; c < (g + 1) * CG; ++c) {
          const std::size_t at = (i * hw + p) * C + c;
          const double d = rstd * (grad_v(at, c) * m(c) * double(gamma[c]) - sum_dxhat / count -
                                   xhat(at) * sum_dxhat_xhat / count);
          dx[at] = T(beta_dx == T(0) ? d : double(beta_dx) * double(dx[at]) + d);
        }
    }
  for (std::size_t c = 0; c < C; ++c) {
    dgamma[c] = T(double(dgamma[c]) + dg[c]);
    dbeta[c] = T(double(dbeta[c]) + db[c]);
  }
}

}  // namespace diffuse::kernels::reference
