// The AVX2 kernels of low_precision.h, for CPUs without AVX512_VNNI / AVX512_BF16 (compiled in
// x86-64-v3 and v4 builds). They read the same packed blocks of 16 columns, each as two halves of 8
// (one 256-bit vector of 32-bit sums).
//
//   int8: vpmaddubsw multiplies unsigned by signed bytes and adds adjacent pairs into int16, with
//   saturation: (a_q + 128) w_q pairs reach 2 * 255 * 127, past 2^15. So the signed a_q is split
//   into |a_q| (unsigned) and its sign, moved onto the weight (vpsignb): |a_q| (sign(a_q) w_q) =
//   a_q w_q, and a pair stays within 2 * 127 * 127 < 2^15: the sums are exact, the numbers those
//   of vpdpbusd. Then vpmaddwd by ones adds the pairs into int32.
//       per group of 4 k and 8 columns: vpsignb, vpmaddubsw, vpmaddwd, vpaddd (32 products)
//   bfloat16: each 32-bit lane holds one column's two k values; shifting the low one up by 16 bits
//   and masking the high one gives both as float32, and two FMAs add them with A's two values.
// A tile keeps MR rows by NR blocks (2 NR vectors per row) of C in the 16 registers: up to 3 x 1,
// or 1 x 2 for a single row.
#pragma once

#include "low_precision.h"

#ifdef GRUKIT_AVX2_LOW_PRECISION

namespace grukit {
namespace avx2 {

// C[i, n0 .. n0+8] = v (the first `valid` columns)
__attribute__((target("avx2,fma"))) inline void store_columns(float* c, __m256 v, int64_t valid) {
  if (valid >= 8) {
    _mm256_storeu_ps(c, v);
  } else if (valid > 0) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(c, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(valid)), lanes), v);
  }
}

template <int MR, int NR>
struct Int8Tile {
  __attribute__((target("avx2,fma"))) static void f(const PackedWeights& B, int64_t j0, const uint8_t* A,
                                                     int64_t lda, const float* sa, float* C, int64_t ldc) {
    __m256i acc[MR][NR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t stride = B.groups * 64;  // bytes per block
    const int8_t* b = reinterpret_cast<const int8_t*>(B.data.data()) + j0 * stride;
    for (int64_t g = 0; g < B.groups; ++g) {
      __m256i bv[NR][2];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        bv[j][0] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * stride + g * 64));
        bv[j][1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * stride + g * 64 + 32));
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        int32_t four;
        std::memcpy(&four, A + i * lda + g * 4, 4);
        const __m256i a = _mm256_set1_epi32(four);  // a_q of 4 k, signed bytes
        const __m256i magnitude = _mm256_abs_epi8(a);
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
          for (int h = 0; h < 2; ++h) {
            const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(bv[j][h], a));
            acc[i][j][h] = _mm256_add_epi32(acc[i][j][h], _mm256_madd_epi16(pairs, ones));
          }
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int64_t n0 = (j0 + j) * kBlock + 8 * h;
        const __m256 sw = _mm256_loadu_ps(B.scale.data() + n0);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {  // C = s_a s_w sum a_q w_q (the epilogue of every path)
          const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][j][h]), _mm256_mul_ps(sw, _mm256_set1_ps(sa[i])));
          store_columns(C + i * ldc + n0, v, B.N - n0);
        }
      }
  }
};

template <int MR, int NR>
struct Bfloat16Tile {
  __attribute__((target("avx2,fma"))) static void f(const PackedWeights& B, int64_t j0, const uint16_t* A,
                                                         int64_t lda, const float*, float* C, int64_t ldc) {
    __m256 acc[MR][NR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32(int32_t(0xffff0000u));
    const int64_t stride = B.groups * 32;  // bfloat16 values per block
    const uint16_t* b = reinterpret_cast<const uint16_t*>(B.data.data()) + j0 * stride;
    for (int64_t g = 0; g < B.groups; ++g) {
      __m256 first[NR][2], second[NR][2];  // the columns' values at k = 2g and 2g + 1, as float32
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * stride + g * 32 + 16 * h));
          first[j][h] = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
          second[j][h] = _mm256_castsi256_ps(_mm256_and_si256(raw, high));
        }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        int32_t two;
        std::memcpy(&two, A + i * lda + g * 2, 4);
        const __m256i a = _mm256_set1_epi32(two);
        const __m256 a0 = _mm256_castsi256_ps(_mm256_slli_epi32(a, 16)), a1 = _mm256_castsi256_ps(_mm256_and_si256(a, high));
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
          for (int h = 0; h < 2; ++h)
            acc[i][j][h] = _mm256_fmadd_ps(a1, second[j][h], _mm256_fmadd_ps(a0, first[j][h], acc[i][j][h]));
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int64_t n0 = (j0 + j) * kBlock + 8 * h;
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) store_columns(C + i * ldc + n0, acc[i][j][h], B.N - n0);
      }
  }
};

// C [M, B.N] from rows prepared for Instructions::avx2
template <typename E, template <int, int> class K>
void product(const PackedWeights& B, int64_t M, const E* A, const float* sa, float* C, int64_t ldc) {
  static const TileFn<E> tiles[3][1] = {{K<1, 1>::f}, {K<2, 1>::f}, {K<3, 1>::f}};
  tiled_product<E, 3, 1>(tiles, K<1, 2>::f, 2, B, M, A, sa, C, ldc);
}

}  // namespace avx2
}  // namespace grukit

#endif  // GRUKIT_AVX2_LOW_PRECISION
