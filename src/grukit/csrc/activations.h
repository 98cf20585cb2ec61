// Activations of the GRU kernels. float32 uses inline polynomial exp and tanh (about 1 ulp,
// branch-free so the element-wise loops vectorise); float64 uses libm.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace grukit {

// exp for float32: range reduction to [-ln2/2, ln2/2], Cephes' degree-6 polynomial,
// scaling by 2^n through the exponent bits. Branch-free so loops vectorise; NaN stays NaN
// (the clamps are comparisons, which are false for NaN).
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick: plain adds, so the loop vectorises
  float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_act(float a) {
  return 1.0f / (1.0f + exp_f32(-a));
}
inline double sigmoid_act(double a) {
  return 1.0 / (1.0 + std::exp(-a));
}

// tanh for float32: Cephes' odd polynomial near 0, 1 - 2 / (exp(2|x|) + 1) elsewhere.
inline float tanh_act(float x) {
  float ax = std::fabs(x);
  float z = x * x;
  float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
                 3.33332819422e-1f) *
                    z * x +
                x;
  float e = exp_f32(2.0f * ax);
  float large = std::copysign(1.0f - 2.0f / (e + 1.0f), x);
  return ax < 0.625f ? small : large;
}
inline double tanh_act(double x) {
  return std::tanh(x);
}

}  // namespace grukit
