// The GRU cell's element-wise passes: the one copy of the step math, forward and backward,
// that the layer driver (layer.h) and the stream (stream.h) call.
//
// One function per pass, over `n` hidden units of one batch row, every pointer already
// offset to the first unit and marked __restrict so the compiler vectorises the loop.
// Template options:
//   KEEPS   the update meaning: h' = z h + (1 - z) n (true, "keeps_state") or (1 - z) h + z n
//   Z       zoneout: NoZoneout, or Zoneout<T> giving each unit's k (the given mask, a mask drawn
//           from a seed, or the probability in evaluation); then h_t = k h_{t-1} + (1 - k) h'
//           (Krueger et al. 2016), as ZoneoutRow: the k of this row's units, in an array.
//
// The equations (Cho et al. 2014; gate order r, z, n as torch.nn.GRU):
//   r  = sigmoid(x W_r^T + b_ir + h U_r^T + b_hr)
//   z  = sigmoid(x W_z^T + b_iz + h U_z^T + b_hz)
//   n  = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))     reset after  (Cho et al. 2014 v1; cuDNN)
//   n  = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)     reset before (Cho et al. 2014 v3)
//   h' = z * h + (1 - z) * n                             keeps_state
//   h' = (1 - z) * h + z * n                             takes_candidate (Chung et al. 2014)
#pragma once

#include <algorithm>
#include <cstdint>

#include "activations.h"

namespace grukit {

// ---------------------------------------------------------------- zoneout policies

struct NoZoneout {  // the passes' zoneout code is compiled out: h_t = h'
  static constexpr bool active = false;
  // the policy for one row: itself (see Zoneout::for_row)
  NoZoneout for_row(int64_t, int64_t, void*) const { return *this; }
};

// Zoneout's k for the units of one row, read from an array: the passes' loops stay branch-free
// and vectorise (the drawing, if any, is done before the pass, by Zoneout::for_row).
template <typename T>
struct ZoneoutRow {
  static constexpr bool active = true;
  const T* k;
  T keep(int64_t j) const { return k[j]; }
};

// Zoneout's mask drawn inside the kernel: element `index` of a call keeps h_{t-1} when a hash of
// (seed, index) falls below p * 2^32 (splitmix64's mixer: the forward and the backward pass
// compute the same bits, so nothing is stored, and drawing costs about a nanosecond an element).
inline bool zoneout_keeps(uint64_t seed, uint64_t index, uint32_t threshold) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return uint32_t(z >> 32) < threshold;
}

// Zoneout in a call: a given 0/1 mask, a mask drawn from a seed, or (evaluation) k = p.
template <typename T>
struct Zoneout {
  static constexpr bool active = true;
  const T* mask = nullptr;  // a given 0/1 mask in the call's [rows, H] layout (sorted), or null
  int64_t seed = -1;        // >= 0 (and no mask): draw the mask from this seed with probability p
  double p = 0;             // otherwise: evaluation, k = p everywhere
  uint32_t threshold = 0;
  Zoneout(const T* mask_, double p_, int64_t seed_)
      : mask(mask_), seed(seed_), p(p_), threshold(uint32_t(std::min(p_, 1.0) * 4294967296.0)) {}
  // k of the n units of the row whose first element is `index0` (row * H) in the call's layout:
  // the given mask's row, or `buffer` [n] filled with the drawn mask or with p
  ZoneoutRow<T> for_row(int64_t index0, int64_t n, T* buffer) const {
    if (mask) return {mask + index0};
    if (seed >= 0)
      for (int64_t j = 0; j < n; ++j) buffer[j] = T(zoneout_keeps(uint64_t(seed), uint64_t(index0 + j), threshold));
    else
      std::fill(buffer, buffer + n, T(p));
    return {buffer};
  }
};

// h_t from the gates: h' = z h + (1 - z) n  =  n + z (h - n)  (KEEPS)  or  h' = (1 - z) h + z n  =  h + z (n - h),
// then zoneout's h_t = k h + (1 - k) h' (exactly h where k = 1).
template <typename T, bool KEEPS, typename Z>
inline T new_state(T c, T z, T hv, const Z& zoneout, int64_t j) {
  T hnew = KEEPS ? c + z * (hv - c) : hv + z * (c - hv);
  if constexpr (Z::active) {
    const T k = zoneout.keep(j);
    hnew = k * hv + (T(1) - k) * hnew;
  }
  return hnew;
}

// ---------------------------------------------------------------- forward

// reset after. In: gi_{r,z,n} = x W^T rows, q_{r,z,n} = h U^T rows, biases, h.
// Out: h_t (to h_new and out), and r, z, n, rec_n = h U_n^T + b_hn (the candidate's recurrent
// term) for the backward pass.
template <typename T, bool KEEPS, typename Z>
void forward_after(int64_t n, const T* __restrict gr, const T* __restrict gz, const T* __restrict gn,
                   const T* __restrict qr, const T* __restrict qz, const T* __restrict qn, const T* __restrict brz_r,
                   const T* __restrict brz_z, const T* __restrict b_in, const T* __restrict b_hn, const T* __restrict h,
                   T* __restrict h_new, T* __restrict out, T* __restrict sr, T* __restrict sz, T* __restrict sn,
                   T* __restrict s_rec_n, const Z& zoneout) {
  for (int64_t j = 0; j < n; ++j) {
    // r = sigmoid(x W_r^T + h U_r^T + b_ir + b_hr);  z likewise
    T r = sigmoid_act(gr[j] + qr[j] + brz_r[j]);
    T z = sigmoid_act(gz[j] + qz[j] + brz_z[j]);
    // n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))
    T rec_n = qn[j] + b_hn[j];
    T c = tanh_act(gn[j] + b_in[j] + r * rec_n);
    T hnew = new_state<T, KEEPS, Z>(c, z, h[j], zoneout, j);
    sr[j] = r;
    sz[j] = z;
    sn[j] = c;
    s_rec_n[j] = rec_n;
    h_new[j] = hnew;
    out[j] = hnew;
  }
}

// reset before, first pass: r, z, and r * h (the input of the candidate's recurrent product).
// `h` here is what enters the recurrent products (h * the recurrent-dropout mask, if any).
template <typename T>
void forward_before_gates(int64_t n, const T* __restrict gr, const T* __restrict gz, const T* __restrict qr,
                          const T* __restrict qz, const T* __restrict brz_r, const T* __restrict brz_z,
                          const T* __restrict h, T* __restrict sr, T* __restrict sz, T* __restrict rh) {
  for (int64_t j = 0; j < n; ++j) {
    T r = sigmoid_act(gr[j] + qr[j] + brz_r[j]);
    T z = sigmoid_act(gz[j] + qz[j] + brz_z[j]);
    sr[j] = r;
    sz[j] = z;
    rh[j] = r * h[j];
  }
}

// reset before, second pass. In: qn = (r * h) U_n^T. Out: h_t, and n for the backward pass.
template <typename T, bool KEEPS, typename Z>
void forward_before_state(int64_t n, const T* __restrict gn, const T* __restrict qn, const T* __restrict b_in,
                          const T* __restrict b_hn, const T* __restrict z_, const T* __restrict h, T* __restrict h_new,
                          T* __restrict out, T* __restrict sn, const Z& zoneout) {
  for (int64_t j = 0; j < n; ++j) {
    // n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)
    T c = tanh_act(gn[j] + b_in[j] + qn[j] + b_hn[j]);
    T hnew = new_state<T, KEEPS, Z>(c, z_[j], h[j], zoneout, j);
    sn[j] = c;
    h_new[j] = hnew;
    out[j] = hnew;
  }
}

// ---------------------------------------------------------------- backward
//
// d = dL/dh_t (from the output and from step t+1). With zoneout, h_t = k h + (1 - k) h':
// the cell sees (1 - k) d and h_{t-1} gets k d directly.

// d = dL/dh_t through h_t = k h + (1 - k) h' and h' = z h + (1 - z) n (KEEPS) or (1 - z) h + z n:
// the gradients of z and of the candidate n, and the direct part of dL/dh_{t-1}.
template <typename T, bool KEEPS, typename Z>
inline void update_gradients(T d, T hv, T c, T z, const Z& zoneout, int64_t j, T& dz, T& dc, T& dh_direct) {
  T d_zoned = T(0);
  if constexpr (Z::active) {
    const T k = zoneout.keep(j);
    d_zoned = k * d;
    d = (T(1) - k) * d;
  }
  dz = KEEPS ? d * (hv - c) : d * (c - hv);
  dc = KEEPS ? d * (T(1) - z) : d * z;
  dh_direct = KEEPS ? d * z : d * (T(1) - z);
  if constexpr (Z::active) dh_direct = d_zoned + dh_direct;
}

// reset after. In: saved r, z, n, rec_n; h_{t-1}; dout; dh (gradient from step t+1).
// Out: dGI = [da_r, da_z, da_n], dGH = [da_r, da_z, d(rec_n)], the direct part of dh_{t-1}
// (written over dh), and h_{t-1} copied to hp for the weight-gradient GEMM.
template <typename T, bool KEEPS, typename Z>
void backward_after(int64_t n, const T* __restrict sr, const T* __restrict sz, const T* __restrict sn,
                    const T* __restrict s_rec_n, const T* __restrict h, const T* __restrict dout, T* __restrict dh,
                    T* __restrict gi_r, T* __restrict gi_z, T* __restrict gi_n, T* __restrict gh_r, T* __restrict gh_z,
                    T* __restrict gh_n, T* __restrict hp, const Z& zoneout) {
  for (int64_t j = 0; j < n; ++j) {
    T r = sr[j], z = sz[j], c = sn[j], rec_n = s_rec_n[j], hv = h[j];
    T dz, dc, dh_direct;
    update_gradients<T, KEEPS, Z>(dout[j] + dh[j], hv, c, z, zoneout, j, dz, dc, dh_direct);
    // n = tanh(a_n), a_n = x W_n^T + b_in + r * rec_n
    T da_n = dc * (T(1) - c * c);
    T dr = da_n * rec_n;
    // r = sigmoid(a_r), z = sigmoid(a_z)
    T da_r = dr * r * (T(1) - r);
    T da_z = dz * z * (T(1) - z);
    gi_r[j] = da_r;
    gi_z[j] = da_z;
    gi_n[j] = da_n;
    gh_r[j] = da_r;
    gh_z[j] = da_z;
    gh_n[j] = da_n * r;
    hp[j] = hv;
    dh[j] = dh_direct;
  }
}

// backward, reset before, first pass: da_n, dz (parked in gi_z), the direct part of dh_{t-1}.
template <typename T, bool KEEPS, typename Z>
void backward_before_candidate(int64_t n, const T* __restrict sz, const T* __restrict sn, const T* __restrict h,
                               const T* __restrict dout, T* __restrict dh, T* __restrict gi_z, T* __restrict gi_n,
                               T* __restrict hp, const Z& zoneout) {
  for (int64_t j = 0; j < n; ++j) {
    T z = sz[j], c = sn[j], hv = h[j];
    T dz, dc, dh_direct;
    update_gradients<T, KEEPS, Z>(dout[j] + dh[j], hv, c, z, zoneout, j, dz, dc, dh_direct);
    gi_z[j] = dz;
    gi_n[j] = dc * (T(1) - c * c);  // da_n
    hp[j] = hv;
    dh[j] = dh_direct;
  }
}

// backward, reset before, second pass. In: drh = d(r * h) = da_n U_n; hp = what entered the
// recurrent products. Out: da_r, da_z, dh += drh * r, and r * hp for the weight-gradient GEMM.
template <typename T>
void backward_before_gates(int64_t n, const T* __restrict sr, const T* __restrict sz, const T* __restrict hp,
                           const T* __restrict drh, T* __restrict dh, T* __restrict gi_r, T* __restrict gi_z,
                           T* __restrict rh) {
  for (int64_t j = 0; j < n; ++j) {
    T r = sr[j], z = sz[j], hv = hp[j];
    // a_n = ... + (r * h) U_n^T:  dr = d(rh) * h,  dh += d(rh) * r
    T dr = drh[j] * hv;
    dh[j] += drh[j] * r;
    gi_r[j] = dr * r * (T(1) - r);
    gi_z[j] = gi_z[j] * z * (T(1) - z);
    rh[j] = r * hv;
  }
}

}  // namespace grukit
