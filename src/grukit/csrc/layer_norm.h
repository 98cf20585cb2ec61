// Layer normalisation of one row (Ba et al. 2016), forward and backward, for the normalised
// layer driver: LN(v) = gamma * (v - mean(v)) / sqrt(var(v) + eps) + beta over the row.
#pragma once

#include <cmath>
#include <cstdint>

namespace grukit {

constexpr double kLayerNormEps = 1e-5;  // as torch.nn.LayerNorm and grukit.reference.LN_EPS (a test compares them)

// y = gamma * v_hat + beta over n values, v_hat = (v - mean) * rstd; v_hat written to `hat`
// (may alias nothing else), the result to `y` (may alias v). Returns rstd.
template <typename T>
T layer_norm_row(int64_t n, const T* v, const T* gamma, const T* beta, T* hat, T* y) {
  T sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += v[j];
  const T m = sum / T(n);
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) sq += (v[j] - m) * (v[j] - m);
  const T rstd = T(1) / std::sqrt(sq / T(n) + T(kLayerNormEps));
  for (int64_t j = 0; j < n; ++j) {
    const T h = (v[j] - m) * rstd;
    hat[j] = h;
    y[j] = gamma[j] * h + beta[j];
  }
  return rstd;
}

// d v = rstd * (d_hat - mean(d_hat) - v_hat * mean(d_hat * v_hat)),  d_hat = dy * gamma. dv may alias dy.
template <typename T>
void layer_norm_row_backward(int64_t n, const T* dy, const T* gamma, const T* hat, T rstd, T* dv) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t j = 0; j < n; ++j) {
    const T d = dy[j] * gamma[j];
    s1 += d;
    s2 += d * hat[j];
  }
  const T m1 = s1 / T(n), m2 = s2 / T(n);
  for (int64_t j = 0; j < n; ++j) dv[j] = rstd * (dy[j] * gamma[j] - m1 - hat[j] * m2);
}

// dst[j] += a[j] * b[j] over one row's n values (into a per-thread accumulator).
template <typename T>
inline void accumulate_product(int64_t n, const T* __restrict a, const T* __restrict b, T* __restrict dst) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] += a[j] * b[j];
}

}  // namespace grukit
