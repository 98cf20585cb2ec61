// The minGRU's scan (Feng et al. 2024), forward and backward, fused with its gate activations.
//
// The minGRU's gates depend on the input alone, so a layer is one matrix product for all steps,
// k = x W^T + b [T, B, 2H] (z columns, then candidate columns; done by the caller), and this scan:
//
//   z_t  = sigmoid(k_z)      h~_t = g(k_h),  g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0)
//   h_t  = (1 - z_t) h_{t-1} + z_t h~_t
//
// Backward, a reverse scan with delta_t = dL/dh_t:
//
//   delta_t  = d_h_t + (1 - z_{t+1}) delta_{t+1}
//   d_k_z    = delta_t (h~_t - h_{t-1}) z_t (1 - z_t)
//   d_k_h    = delta_t z_t g'(k_h),   g'(v) = 1 (v >= 0), sigmoid(v)(1 - sigmoid(v)) (v < 0)
//   d_h0     = (1 - z_1) delta_1
//
// Every one of the B*H units is its own recurrence, independent of all others, so each thread
// takes a fixed set of units for the whole sequence: no barrier at any step. A thread walks t in
// order and, within a step, a contiguous run of units, so the loops vectorise (the activations are
// branch-free, activations.h) and every array is read or written once, in order: the scan is
// bound by memory bandwidth, not arithmetic. The previous state is the output row just written
// (still in cache), so no state buffer is kept.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>

#include "activations.h"

namespace grukit {

constexpr int64_t kMinScanElementsPerThread = 1 << 16;  // T*units per thread below which one thread does it all

// A thread's share: units [lo, hi) of the B*H flattened (row b, unit j) units, cut into runs
// that stay within one batch row, so each run is contiguous in k ([.., 2H] rows) and in h.
template <typename Body>
void for_unit_runs(int64_t lo, int64_t hi, int64_t H, Body body) {
  for (int64_t u = lo; u < hi;) {
    const int64_t b = u / H, j = u % H, end = std::min(hi, (b + 1) * H);
    body(b, j, j + (end - u));
    u = end;
  }
}

// Run `work(lo, hi)` on threads that each own a share of the `units` units (multiples of 16).
template <typename Work>
void on_unit_shares(int64_t units, int64_t T, Work work) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t n = std::max<int64_t>(1, std::min(threads, units * T / kMinScanElementsPerThread));
  const int64_t share = ((units + n - 1) / n + 15) / 16 * 16;
  if (n == 1) {
    work(int64_t{0}, units);
    return;
  }
#pragma omp parallel num_threads(static_cast<int>(n))
  {
    const int64_t k = omp_get_thread_num();
    const int64_t lo = std::min(units, k * share), hi = std::min(units, (k + 1) * share);
    if (lo < hi) work(lo, hi);
  }
}

template <typename scalar_t>
inline scalar_t min_gru_candidate(scalar_t v) {
  const scalar_t s = sigmoid_act(v);  // both sides computed: a select, so the loop vectorises
  return v >= scalar_t(0) ? v + scalar_t(0.5) : s;
}

// h [T, B, H] from k [T, B, 2H] and h0 [B, H], all contiguous.
template <typename scalar_t>
void min_gru_scan_forward(const scalar_t* k, const scalar_t* h0, scalar_t* h, int64_t T, int64_t B, int64_t H) {
  on_unit_shares(B * H, T, [&](int64_t lo, int64_t hi) {
    for (int64_t t = 0; t < T; ++t) {
      for_unit_runs(lo, hi, H, [&](int64_t b, int64_t j0, int64_t j1) {
        const scalar_t* kz = k + (t * B + b) * 2 * H;
        const scalar_t* kh = kz + H;
        const scalar_t* previous = t ? h + ((t - 1) * B + b) * H : h0 + b * H;
        scalar_t* out = h + (t * B + b) * H;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const scalar_t z = sigmoid_act(kz[j]);
          out[j] = previous[j] + z * (min_gru_candidate(kh[j]) - previous[j]);
        }
      });
    }
  });
}

// d_k [T, B, 2H] and d_h0 [B, H] from d_h [T, B, H] (dL/dh from outside the scan), h, k and h0.
template <typename scalar_t>
void min_gru_scan_backward(const scalar_t* d_h, const scalar_t* h, const scalar_t* k, const scalar_t* h0,
                           scalar_t* d_k, scalar_t* d_h0, int64_t T, int64_t B, int64_t H) {
  // d_h0 holds the carry (1 - z_{t+1}) delta_{t+1} while the scan runs; after step 0 it is dL/dh0
  std::fill(d_h0, d_h0 + B * H, scalar_t(0));
  on_unit_shares(B * H, T, [&](int64_t lo, int64_t hi) {
    for (int64_t t = T - 1; t >= 0; --t) {
      for_unit_runs(lo, hi, H, [&](int64_t b, int64_t j0, int64_t j1) {
        const scalar_t* kz = k + (t * B + b) * 2 * H;
        const scalar_t* kh = kz + H;
        const scalar_t* previous = t ? h + ((t - 1) * B + b) * H : h0 + b * H;
        const scalar_t* d_out = d_h + (t * B + b) * H;
        scalar_t* d_kz = d_k + (t * B + b) * 2 * H;
        scalar_t* d_kh = d_kz + H;
        scalar_t* carry = d_h0 + b * H;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const scalar_t z = sigmoid_act(kz[j]);
          const scalar_t s = sigmoid_act(kh[j]);
          const bool linear = kh[j] >= scalar_t(0);
          const scalar_t candidate = linear ? kh[j] + scalar_t(0.5) : s;
          const scalar_t slope = linear ? scalar_t(1) : s * (scalar_t(1) - s);
          const scalar_t delta = d_out[j] + carry[j];
          d_kz[j] = delta * (candidate - previous[j]) * z * (scalar_t(1) - z);
          d_kh[j] = delta * z * slope;
          carry[j] = (scalar_t(1) - z) * delta;
        }
      });
    }
  });
}

}  // namespace grukit
