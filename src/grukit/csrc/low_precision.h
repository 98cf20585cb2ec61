// Low-precision matrix products for inference: C[M, N] = A[M, K] @ B[K, N] with A and C in float32
// and B stored in bfloat16 or int8 (Precision), the products a quantized GRU computes: x W_ih^T over
// all steps and h W_hh^T per step (B = W^T: the columns of B are the rows of W).
//
//   bfloat16: A's rows are rounded to bfloat16 (to nearest, ties to even); the products of two
//             bfloat16 values are summed in float32.
//   int8:     B holds w_q = round(W / s_w) in [-127, 127] with one scale per row of W
//             (s_w[n] = max_k |W[n, k]| / 127: symmetric, per output unit). Each row of A is
//             quantized with its own scale, s_a[m] = max_k |A[m, k]| / 127, to a_q in [-127, 127];
//             the products are summed in int32 and scaled back:
//                 C[m, n] = s_a[m] s_w[n] sum_k a_q[m, k] w_q[k, n]
//             A row with NaN or Inf gets the scale NaN, so its outputs are NaN, as float32's would
//             be (never a silently finite number).
//   The per-row scale of A is the measured choice for both x and h: h of a GRU lies in (-1, 1)
//   only if h0 does, and a row whose largest |h| is 0.2 keeps five times the resolution of the
//   fixed scale 1/127; a stream step and a whole sequence quantize the same rows the same way.
//
// Three ways to compute the same sums (Instructions), chosen by the build level and the CPU:
//   avx512   x86-64-v4 build on a CPU with AVX512_VNNI (int8: vpdpbusd, unsigned x signed bytes,
//            so A is stored as a_q + 128 and 128 sum_k w_q taken back) or AVX512_BF16 (vdpbf16ps):
//            low_precision_avx512.h
//   avx2     x86-64-v3 (or v4) build elsewhere: int8 by vpmaddubsw on |a_q| and w_q with a_q's
//            sign (pairs of products stay below 2^15: no saturation), bfloat16 widened to float32
//            for FMAs: low_precision_avx2.h
//   float32 GEMMs on the rounded values, any other build (x86-64 v1/v2, other CPUs): B holds the
//            stored values as float32, A the rounded rows, and gemm.h multiplies them; int8 sums
//            are integers below 2^24, exact in float32, while K <= 1040
// All three give the same int8 numbers (the same integer sums, the same epilogue), and bfloat16
// numbers that differ only in the order of float32 additions.
//
// For the instructions, B is packed once per call (per stream) into blocks of 16 columns: block j
// holds, for each group g of `group` consecutive k (4 for int8, 2 for bfloat16), the 16 columns'
// `group` values side by side, the layout the dot-product instructions read (the AVX2 kernels read
// each block as two halves of 8 columns):
//     packed[j][g][c][e] = B[g * group + e][16 j + c]       (zero past K or N)
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include <immintrin.h>
#if defined(__AVX512F__)
#define GRUKIT_AVX512_LOW_PRECISION 1
#endif
#if defined(__AVX2__) && defined(__FMA__)
#define GRUKIT_AVX2_LOW_PRECISION 1
#endif
#endif

namespace grukit {

enum class Precision : int { float32 = 0, bfloat16 = 1, int8 = 2 };

constexpr int64_t kBlock = 16;                // columns per packed block
constexpr int64_t kInt8MaxK = 65536;          // 255 * 127 * K stays below 2^31 in the int32 sums
constexpr int kInt8Offset = 128;              // a_q + 128 is A's unsigned byte (avx512)

inline int64_t group_of(Precision p) { return p == Precision::int8 ? 4 : 2; }
inline int64_t bytes_of(Precision p) { return p == Precision::int8 ? 1 : 2; }
inline int64_t padded_k(Precision p, int64_t K) { return (K + group_of(p) - 1) / group_of(p) * group_of(p); }

enum class Instructions : int { float32_gemm = 0, avx2 = 1, avx512 = 2 };

// Whether this build on this CPU can compute `p`'s products with `i`.
inline bool instructions_available(Precision p, Instructions i) {
  switch (i) {
    case Instructions::avx512:
#ifdef GRUKIT_AVX512_LOW_PRECISION
    {
      static const bool vnni = __builtin_cpu_supports("avx512vnni"), bf16 = __builtin_cpu_supports("avx512bf16");
      return p == Precision::int8 ? vnni : bf16;
    }
#else
      return false;
#endif
    case Instructions::avx2:
#ifdef GRUKIT_AVX2_LOW_PRECISION
      return true;
#else
      return false;
#endif
    default:
      return true;
  }
}

// A process-wide choice of path (tests and benchmarks compare the paths on one machine): -1, the
// best available, or an Instructions value available for both precisions (ops.cpp checks).
inline std::atomic<int>& chosen_instructions() {
  static std::atomic<int> chosen{-1};
  return chosen;
}

// The instructions `p`'s products use in this build on this CPU: the chosen path, else the best.
inline Instructions instructions_for(Precision p) {
  const int chosen = chosen_instructions().load(std::memory_order_relaxed);
  if (chosen >= 0) return static_cast<Instructions>(chosen);
  for (Instructions i : {Instructions::avx512, Instructions::avx2})
    if (instructions_available(p, i)) return i;
  return Instructions::float32_gemm;
}

inline const char* low_precision_instructions(Precision p) {
  const bool int8 = p == Precision::int8;
  switch (instructions_for(p)) {
    case Instructions::avx512:
      return int8 ? "avx512_vnni (vpdpbusd)" : "avx512_bf16 (vdpbf16ps)";
    case Instructions::avx2:
      return int8 ? "avx2 (vpmaddubsw)" : "avx2 (bfloat16 widened to float32, vfmadd)";
    default:
      return int8 ? "float32 GEMM on the int8 values" : "float32 GEMM on the bfloat16 values";
  }
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
struct PackedWeights {
  Precision precision = Precision::bfloat16;
  Instructions path = Instructions::float32_gemm;
  int64_t K = 0, N = 0, groups = 0, blocks = 0;
  std::vector<uint8_t> data;         // avx512, avx2: [blocks][groups][16][group] elements (1 or 2 bytes)
  std::vector<float> values;         // float32_gemm: B [K, N] as float32 (w_q or the bfloat16 values)
  std::vector<float> scale;          // [blocks * 16] int8: s_w of each column (0 past N)
  std::vector<int32_t> offset_sums;  // [blocks * 16] int8, avx512: 128 * sum_k w_q[k, n]

  PackedWeights() = default;
  PackedWeights(Precision p, const void* W, int64_t ldw, int64_t N_, int64_t K_, const float* row_scale)
      : precision(p), path(instructions_for(p)), K(K_), N(N_) {
    const int64_t G = group_of(p), E = bytes_of(p);
    groups = (K + G - 1) / G;
    blocks = (N + kBlock - 1) / kBlock;
    scale.assign(blocks * kBlock, 0.0f);
    if (p == Precision::int8)
      for (int64_t n = 0; n < N; ++n) scale[n] = row_scale[n];
    if (path == Instructions::float32_gemm) {
      values.resize(K * N);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          values[k * N + n] = p == Precision::int8 ? float(static_cast<const int8_t*>(W)[n * ldw + k])
                                                   : from_bfloat16(static_cast<const uint16_t*>(W)[n * ldw + k]);
      return;
    }
    data.assign(blocks * groups * kBlock * G * E, 0);
    offset_sums.assign(blocks * kBlock, 0);  // used by avx512 only
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

// A's rows [M, K] (leading dimension lda) in the products' form, with `row_scale` [M] = s_a for int8:
// avx512, avx2: [M, padded_k] bytes (int8: a_q + 128 for avx512, a_q for avx2) or bfloat16 bits, the
// padding holding the value zero; float32_gemm: [M, K] float32 (a_q, or the values rounded to bfloat16).
inline void prepare_rows(Precision p, Instructions path, int64_t M, int64_t K, const float* A, int64_t lda,
                         void* out, float* row_scale) {
  const int64_t Kp = padded_k(p, K);
  const bool dot = path != Instructions::float32_gemm;
  const int zero = path == Instructions::avx512 ? kInt8Offset : 0;  // the stored byte of a_q = 0
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
        std::fill(o, o + Kp, uint8_t(zero));
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
        o[k] = uint8_t(int(q) + zero);  // avx2: the two's-complement byte of a_q
      else
        of[k] = q;
    }
    if (dot) std::fill(o + K, o + Kp, uint8_t(zero));
    row_scale[m] = s;
  }
}


// An MR x NR tile of C (NR blocks of 16 columns) from the prepared rows A (leading dimension lda,
// bytes or bfloat16 bits) and B's blocks j0 .. j0 + NR.
template <typename E>
using TileFn = void (*)(const PackedWeights& B, int64_t j0, const E* A, int64_t lda, const float* sa, float* C,
                        int64_t ldc);

// An instruction set's whole product, C [M, B.N] from prepared rows of element type E.
template <typename E>
using ProductFn = void (*)(const PackedWeights& B, int64_t M, const E* A, const float* sa, float* C, int64_t ldc);

// C [M, B.N] from rows prepared for B's precision (bytes for int8, bfloat16 bits otherwise), by an
// instruction set's int8 or bfloat16 product.
template <ProductFn<uint8_t> Int8Product, ProductFn<uint16_t> Bfloat16Product>
void product_by_precision(const PackedWeights& B, int64_t M, const void* A, const float* sa, float* C, int64_t ldc) {
  if (B.precision == Precision::int8)
    Int8Product(B, M, static_cast<const uint8_t*>(A), sa, C, ldc);
  else
    Bfloat16Product(B, M, static_cast<const uint16_t*>(A), sa, C, ldc);
}

// C [M, B.N] by tiles: the largest tile `tiles[MR-1][NR-1]` over most of C, smaller ones at its
// edges; a single row takes `row_tile` (`row_blocks` blocks at a time: more independent sums).
template <typename E, int MR, int NR>
void tiled_product(const TileFn<E> (&tiles)[MR][NR], TileFn<E> row_tile, int64_t row_blocks, const PackedWeights& B,
                   int64_t M, const E* A, const float* sa, float* C, int64_t ldc) {
  const int64_t lda = B.groups * group_of(B.precision);
  if (M == 1) {
    int64_t j = 0;
    for (; j + row_blocks <= B.blocks; j += row_blocks) row_tile(B, j, A, lda, sa, C, ldc);
    for (; j < B.blocks; j += NR) tiles[0][std::min<int64_t>(NR, B.blocks - j) - 1](B, j, A, lda, sa, C, ldc);
    return;
  }
  for (int64_t j = 0; j < B.blocks; j += NR) {
    const int64_t nr = std::min<int64_t>(NR, B.blocks - j);
    for (int64_t i = 0; i < M; i += MR) {
      const int64_t mr = std::min<int64_t>(MR, M - i);
      tiles[mr - 1][nr - 1](B, j, A + i * lda, lda, sa + i, C + i * ldc, ldc);
    }
  }
}

}  // namespace grukit
