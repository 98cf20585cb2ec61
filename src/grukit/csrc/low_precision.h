// Low-precision matrix products for inference: C[M, N] (+)= A[M, K] @ B[K, N] with A and C in
// float32 and B stored in bfloat16 or int8 (Precision), the products a quantized GRU computes:
// x W_ih^T over all steps and h W_hh^T per step (B = W^T: the columns of B are the rows of W).
//
//   bfloat16: A's rows are rounded to bfloat16 (to nearest, ties to even); the products are
//             summed in float32 (`vdpbf16ps` where the CPU has AVX512_BF16).
//   int8:     B holds w_q = round(W / s_w) in [-127, 127] with one scale per row of W
//             (s_w[n] = max_k |W[n, k]| / 127: symmetric, per output unit). Each row of A is
//             quantized with its own scale, s_a[m] = max_k |A[m, k]| / 127, to a_q in [-127, 127]
//             and stored as the unsigned byte a_q + 128, because the int8 dot-product instruction
//             (`vpdpbusd`, AVX512_VNNI) multiplies unsigned by signed bytes. The products are summed
//             in int32 and the offset taken back with the column sums of B:
//                 sum_k (a_q + 128) w_q = sum_k a_q w_q + 128 sum_k w_q
//                 C[m, n] = s_a[m] s_w[n] (acc[m, n] - 128 sum_k w_q[k, n])
//             A row with NaN or Inf gets the scale NaN, so its outputs are NaN, as float32's would
//             be (never a silently finite number).
//   The per-row scale of A is the measured choice for both x and h: h of a GRU lies in (-1, 1)
//   only if h0 does, and a row whose largest |h| is 0.2 keeps five times the resolution of the
//   fixed scale 1/127; a stream step and a whole sequence quantize the same rows the same way.
//
// Two ways to compute the sums, chosen once per process (`dot_products`):
//   dot-product instructions: in an x86-64-v4 build on a CPU with AVX512_VNNI (int8) or AVX512_BF16
//     (bfloat16), functions compiled for them (target attributes, checked at run time). B is packed
//     once per call (per stream) into blocks of 16 columns (one 512-bit vector of 32-bit sums):
//     block j holds, for each group g of `group` consecutive k (4 for int8, 2 for bfloat16), the 16
//     columns' `group` values side by side, the layout the instructions read:
//         packed[j][g][c][e] = B[g * group + e][16 j + c]       (zero past K or N)
//     The kernels keep an MR x NR tile of C (NR blocks of 16 columns) in registers: per group, NR
//     vector loads of B, MR broadcasts of A's group, MR * NR dot-product instructions.
//   float32 GEMMs on the rounded values, everywhere else (AVX2 CPUs, other builds): B holds the
//     stored values as float32 (w_q, or the bfloat16 weights), A the rounded rows (a_q, or x and h
//     rounded to bfloat16), and gemm.h's routines multiply them. The numbers are the instructions':
//     int8 products and their sums are integers below 2^24 (exact in float32) while K <= 1040, and a
//     product of two bfloat16 values is exact in float32. The speed is float32's: no gain, no loss.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>
#define GRUKIT_AVX512_LOW_PRECISION 1
#endif

namespace grukit {

enum class Precision : int { float32 = 0, bfloat16 = 1, int8 = 2 };

constexpr int64_t kBlock = 16;                // columns per packed block
constexpr int64_t kInt8MaxK = 65536;          // 255 * 127 * K stays below 2^31 in the int32 sums
constexpr int kInt8Offset = 128;              // a_q + 128 is A's unsigned byte

inline int64_t group_of(Precision p) { return p == Precision::int8 ? 4 : 2; }
inline int64_t bytes_of(Precision p) { return p == Precision::int8 ? 1 : 2; }
inline int64_t padded_k(Precision p, int64_t K) { return (K + group_of(p) - 1) / group_of(p) * group_of(p); }

// Which instruction each precision's products use in this build on this CPU.
inline bool int8_uses_vnni() {
#ifdef GRUKIT_AVX512_LOW_PRECISION
  static const bool yes = __builtin_cpu_supports("avx512vnni");
  return yes;
#else
  return false;
#endif
}
inline bool bfloat16_uses_avx512_bf16() {
#ifdef GRUKIT_AVX512_LOW_PRECISION
  static const bool yes = __builtin_cpu_supports("avx512bf16");
  return yes;
#else
  return false;
#endif
}
inline const char* low_precision_instructions(Precision p) {
  if (p == Precision::int8) return int8_uses_vnni() ? "avx512_vnni (vpdpbusd)" : "float32 GEMM on the int8 values";
  return bfloat16_uses_avx512_bf16() ? "avx512_bf16 (vdpbf16ps)" : "float32 GEMM on the bfloat16 values";
}

// bfloat16 <-> float32 bits: rounding to nearest, ties to even (as torch and `vcvtneps2bf16`)
inline uint16_t to_bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float from_bfloat16(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// B = W^T packed for the kernels. W is [N, K] row-major (the rows of a weight matrix), in the
// precision's storage type (int8_t or bfloat16 bits); `row_scale` [N] for int8.
// Whether `p`'s products use the dot-product instructions here (else float32 GEMMs).
inline bool dot_products(Precision p) {
  return p == Precision::int8 ? int8_uses_vnni() : bfloat16_uses_avx512_bf16();
}

struct PackedWeights {
  Precision precision = Precision::bfloat16;
  bool dot = false;  // packed for the dot-product instructions, or float32 values for the GEMMs
  int64_t K = 0, N = 0, groups = 0, blocks = 0;
  std::vector<uint8_t> data;         // dot: [blocks][groups][16][group] elements (1 or 2 bytes)
  std::vector<float> values;         // GEMMs: B [K, N] as float32 (w_q or the bfloat16 values)
  std::vector<float> scale;          // [blocks * 16] int8: s_w of each column (0 past N)
  std::vector<int32_t> offset_sums;  // [blocks * 16] int8, dot: 128 * sum_k w_q[k, n]

  PackedWeights() = default;
  PackedWeights(Precision p, const void* W, int64_t ldw, int64_t N_, int64_t K_, const float* row_scale)
      : precision(p), dot(dot_products(p)), K(K_), N(N_) {
    const int64_t G = group_of(p), E = bytes_of(p);
    groups = (K + G - 1) / G;
    blocks = (N + kBlock - 1) / kBlock;
    scale.assign(blocks * kBlock, 0.0f);
    if (p == Precision::int8)
      for (int64_t n = 0; n < N; ++n) scale[n] = row_scale[n];
    if (!dot) {
      values.resize(K * N);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          values[k * N + n] = p == Precision::int8 ? float(static_cast<const int8_t*>(W)[n * ldw + k])
                                                   : from_bfloat16(static_cast<const uint16_t*>(W)[n * ldw + k]);
      return;
    }
    data.assign(blocks * groups * kBlock * G * E, 0);
    offset_sums.assign(blocks * kBlock, 0);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t j = n / kBlock, c = n % kBlock;
      if (p == Precision::int8) {
        const int8_t* w = static_cast<const int8_t*>(W) + n * ldw;
        int8_t* out = reinterpret_cast<int8_t*>(data.data());
        int32_t sum = 0;
        for (int64_t k = 0; k < K; ++k) {
          out[((j * groups + k / G) * kBlock + c) * G + k % G] = w[k];
          sum += w[k];
        }
        offset_sums[n] = kInt8Offset * sum;
      } else {
        const uint16_t* w = static_cast<const uint16_t*>(W) + n * ldw;
        uint16_t* out = reinterpret_cast<uint16_t*>(data.data());
        for (int64_t k = 0; k < K; ++k) out[((j * groups + k / G) * kBlock + c) * G + k % G] = w[k];
      }
    }
  }
};

// A's rows [M, K] (leading dimension lda) in the products' form, with `row_scale` [M] = s_a for int8.
// dot: [M, padded_k] bytes (int8: a_q + 128) or bfloat16 bits, the padding holding the value zero;
// else [M, K] float32 (a_q, or the values rounded to bfloat16).
inline void prepare_rows(Precision p, bool dot, int64_t M, int64_t K, const float* A, int64_t lda, void* out,
                         float* row_scale) {
  const int64_t Kp = padded_k(p, K);
  for (int64_t m = 0; m < M; ++m) {
    const float* a = A + m * lda;
    if (p == Precision::bfloat16) {
      if (!dot) {
        float* o = static_cast<float*>(out) + m * K;
        for (int64_t k = 0; k < K; ++k) o[k] = from_bfloat16(to_bfloat16(a[k]));
        continue;
      }
      uint16_t* o = static_cast<uint16_t*>(out) + m * Kp;
      for (int64_t k = 0; k < K; ++k) o[k] = to_bfloat16(a[k]);
      std::fill(o + K, o + Kp, uint16_t(0));
      continue;
    }
    uint8_t* o = static_cast<uint8_t*>(out) + m * Kp;
    float* of = static_cast<float*>(out) + m * K;
    float largest = 0.0f;
    bool finite = true;
    for (int64_t k = 0; k < K; ++k) {
      const float v = std::fabs(a[k]);
      finite &= v <= std::numeric_limits<float>::max();
      largest = std::max(largest, v);
    }
    if (!finite) {  // NaN or Inf: the row's outputs are NaN
      if (dot)
        std::fill(o, o + Kp, uint8_t(kInt8Offset));
      else
        std::fill(of, of + K, 0.0f);
      row_scale[m] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float s = largest > 0.0f ? largest / 127.0f : 1.0f;
    const float inverse = 1.0f / s;
    for (int64_t k = 0; k < K; ++k) {
      const float q = std::nearbyint(std::min(127.0f, std::max(-127.0f, a[k] * inverse)));
      if (dot)
        o[k] = uint8_t(int(q) + kInt8Offset);
      else
        of[k] = q;
    }
    if (dot) std::fill(o + K, o + Kp, uint8_t(kInt8Offset));
    row_scale[m] = s;
  }
}

namespace low_precision_detail {

// C's tile: int8 sums -> s_a s_w (acc - offset sums); bfloat16 sums as they are
inline float finish_int8(int32_t acc, int64_t n, const PackedWeights& B, float sa) {
  return float(acc - B.offset_sums[n]) * (sa * B.scale[n]);
}

#ifdef GRUKIT_AVX512_LOW_PRECISION

inline __mmask16 columns_mask(const PackedWeights& B, int64_t block) {
  const int64_t valid = std::min(kBlock, B.N - block * kBlock);
  return __mmask16((1u << valid) - 1u);
}

// rows i0 .. i0+MR of C, blocks j0 .. j0+NR: vpdpbusd (u8 x s8 -> int32, four products per lane)
template <int MR, int NR>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_tile(const PackedWeights& B, int64_t j0,
                                                                        const uint8_t* A, int64_t lda, const float* sa,
                                                                        float* C, int64_t ldc, bool accumulate) {
  __m512i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const int64_t stride = B.groups * 64;  // bytes per block
  const int8_t* b = reinterpret_cast<const int8_t*>(B.data.data()) + j0 * stride;
  for (int64_t g = 0; g < B.groups; ++g) {
    __m512i bv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_loadu_si512(b + j * stride + g * 64);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t four;
      std::memcpy(&four, A + i * lda + g * 4, 4);
      const __m512i av = _mm512_set1_epi32(four);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, bv[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    const int64_t n0 = (j0 + j) * kBlock;
    const __mmask16 mask = columns_mask(B, j0 + j);
    const __m512 sw = _mm512_loadu_ps(B.scale.data() + n0);
    const __m512i offsets = _mm512_loadu_si512(B.offset_sums.data() + n0);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], offsets));
      v = _mm512_mul_ps(v, _mm512_mul_ps(sw, _mm512_set1_ps(sa[i])));
      float* c = C + i * ldc + n0;
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, c));
      _mm512_mask_storeu_ps(c, mask, v);
    }
  }
}

// the same tile in bfloat16: vdpbf16ps (two products per float32 lane)
template <int MR, int NR>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bfloat16_tile(const PackedWeights& B, int64_t j0,
                                                                            const uint16_t* A, int64_t lda,
                                                                            const float*, float* C, int64_t ldc,
                                                                            bool accumulate) {
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t stride = B.groups * 32;  // bfloat16 elements per block
  const uint16_t* b = reinterpret_cast<const uint16_t*>(B.data.data()) + j0 * stride;
  for (int64_t g = 0; g < B.groups; ++g) {
    __m512bh bv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(b + j * stride + g * 32);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t two;
      std::memcpy(&two, A + i * lda + g * 2, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(two);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    const __mmask16 mask = columns_mask(B, j0 + j);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      float* c = C + i * ldc + (j0 + j) * kBlock;
      __m512 v = acc[i][j];
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, c));
      _mm512_mask_storeu_ps(c, mask, v);
    }
  }
}

// Tiles of up to 4 rows by 4 blocks (16 accumulators, 4 loads of B and one broadcast of A in
// registers); a single row takes 8 blocks at a time, for enough independent sums.
template <typename E>
using TileFn = void (*)(const PackedWeights&, int64_t, const E*, int64_t, const float*, float*, int64_t, bool);

template <typename E, template <int, int> class Kernel>
void tiled_product(const PackedWeights& B, int64_t M, const E* A, const float* sa, float* C, int64_t ldc,
                   bool accumulate) {
  const int64_t lda = B.groups * group_of(B.precision);
  static const TileFn<E> tiles[4][4] = {
      {Kernel<1, 1>::f, Kernel<1, 2>::f, Kernel<1, 3>::f, Kernel<1, 4>::f},
      {Kernel<2, 1>::f, Kernel<2, 2>::f, Kernel<2, 3>::f, Kernel<2, 4>::f},
      {Kernel<3, 1>::f, Kernel<3, 2>::f, Kernel<3, 3>::f, Kernel<3, 4>::f},
      {Kernel<4, 1>::f, Kernel<4, 2>::f, Kernel<4, 3>::f, Kernel<4, 4>::f}};
  if (M == 1) {
    int64_t j = 0;
    for (; j + 8 <= B.blocks; j += 8) Kernel<1, 8>::f(B, j, A, lda, sa, C, ldc, accumulate);
    for (; j < B.blocks; j += 4) tiles[0][std::min<int64_t>(4, B.blocks - j) - 1](B, j, A, lda, sa, C, ldc, accumulate);
    return;
  }
  for (int64_t j = 0; j < B.blocks; j += 4) {
    const int64_t nr = std::min<int64_t>(4, B.blocks - j);
    for (int64_t i = 0; i < M; i += 4) {
      const int64_t mr = std::min<int64_t>(4, M - i);
      tiles[mr - 1][nr - 1](B, j, A + i * lda, lda, sa + i, C + i * ldc, ldc, accumulate);
    }
  }
}

template <int MR, int NR>
struct Int8Kernel {
  static void f(const PackedWeights& B, int64_t j0, const uint8_t* A, int64_t lda, const float* sa, float* C,
                int64_t ldc, bool accumulate) {
    int8_tile<MR, NR>(B, j0, A, lda, sa, C, ldc, accumulate);
  }
};
template <int MR, int NR>
struct Bfloat16Kernel {
  static void f(const PackedWeights& B, int64_t j0, const uint16_t* A, int64_t lda, const float* sa, float* C,
                int64_t ldc, bool accumulate) {
    bfloat16_tile<MR, NR>(B, j0, A, lda, sa, C, ldc, accumulate);
  }
};

#endif  // GRUKIT_AVX512_LOW_PRECISION

}  // namespace low_precision_detail

// C[M, B.N] = A @ B, A prepared by prepare_rows (scales `sa` [M], int8 only); `kind`: the float32
// GEMM routine's product kind where the dot-product instructions are not used.
inline void low_precision_product(const PackedWeights& B, Product kind, int64_t M, const void* A, const float* sa,
                                  float* C, int64_t ldc) {
  if (M <= 0 || B.N <= 0) return;
#ifdef GRUKIT_AVX512_LOW_PRECISION
  using namespace low_precision_detail;
  if (B.dot && B.precision == Precision::int8) {
    tiled_product<uint8_t, Int8Kernel>(B, M, static_cast<const uint8_t*>(A), sa, C, ldc, false);
    return;
  }
  if (B.dot) {
    tiled_product<uint16_t, Bfloat16Kernel>(B, M, static_cast<const uint16_t*>(A), sa, C, ldc, false);
    return;
  }
#endif
  mm<float>(kind, M, B.N, B.K, static_cast<const float*>(A), B.K, B.values.data(), B.N, C, ldc, false);
  if (B.precision == Precision::int8)  // C = s_a s_w sum a_q w_q (the instructions' epilogue, same order)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < B.N; ++n) C[m * ldc + n] = C[m * ldc + n] * (sa[m] * B.scale[n]);
}

// A thread's buffer for A's prepared rows and their scales.
struct PreparedRows {
  std::vector<uint8_t> bytes;
  std::vector<float> scale;
  // A [M, K] (lda) prepared for `B`; returns the buffer's start
  const void* of(const PackedWeights& B, int64_t M, const float* A, int64_t lda) {
    const size_t need = B.dot ? size_t(M * padded_k(B.precision, B.K) * bytes_of(B.precision))
                              : size_t(M * B.K) * sizeof(float);
    if (bytes.size() < need) bytes.resize(need);
    if (scale.size() < size_t(M)) scale.resize(M);
    prepare_rows(B.precision, B.dot, M, B.K, A, lda, bytes.data(), scale.data());
    return bytes.data();
  }
};

// C[M, B.N] = A[M, K] @ B for float32 A: prepare A's rows in `rows`, then multiply.
inline void low_precision_mm(const PackedWeights& B, Product kind, int64_t M, const float* A, int64_t lda, float* C,
                             int64_t ldc, PreparedRows& rows) {
  if (M <= 0) return;
  const void* prepared = rows.of(B, M, A, lda);
  low_precision_product(B, kind, M, prepared, rows.scale.data(), C, ldc);
}

}  // namespace grukit
