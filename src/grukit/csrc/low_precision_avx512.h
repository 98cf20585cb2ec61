// The AVX-512 kernels of low_precision.h: int8 by vpdpbusd (AVX512_VNNI) and bfloat16 by vdpbf16ps
// (AVX512_BF16), compiled with function target attributes in an x86-64-v4 build and called only
// where the CPU has the instruction (instructions_for).
//
// A tile keeps MR rows by NR blocks of 16 columns of C in registers: per group of k, NR vector loads
// of B, MR broadcasts of A's group, MR * NR dot-product instructions. Up to 4 x 4 (16 accumulators,
// 4 loads of B and a broadcast in 32 registers); a single row takes 8 blocks, for more independent
// sums. (8 x 3, 6 x 4, 4 x 6 and 12 x 2 tiles measured no faster on an AMD EPYC, Zen 4.)
#pragma once

#include "low_precision.h"

#ifdef GRUKIT_AVX512_LOW_PRECISION

namespace grukit {
namespace avx512 {

inline __mmask16 columns_mask(const PackedWeights& B, int64_t block) {
  const int64_t valid = std::min(kBlock, B.N - block * kBlock);
  return __mmask16((1u << valid) - 1u);
}

// rows i0 .. i0+MR of C, blocks j0 .. j0+NR: vpdpbusd (u8 x s8 -> int32, four products per lane)
template <int MR, int NR>
struct Int8Tile {
  __attribute__((target("avx512f,avx512bw,avx512vnni"))) static void f(const PackedWeights& B, int64_t j0,
                                                                          const uint8_t* A, int64_t lda, const float* sa,
                                                                          float* C, int64_t ldc) {
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
        _mm512_mask_storeu_ps(c, mask, v);
      }
    }
  }
};

// the same tile in bfloat16: vdpbf16ps (two products per float32 lane)
template <int MR, int NR>
struct Bfloat16Tile {
  __attribute__((target("avx512f,avx512bw,avx512bf16"))) static void f(const PackedWeights& B, int64_t j0,
                                                                              const uint16_t* A, int64_t lda,
                                                                              const float*, float* C, int64_t ldc) {
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
        _mm512_mask_storeu_ps(c, mask, v);
      }
    }
  }
};

// C [M, B.N] from rows prepared for Instructions::avx512
template <typename E, template <int, int> class K>
void product(const PackedWeights& B, int64_t M, const E* A, const float* sa, float* C, int64_t ldc) {
  static const TileFn<E> tiles[4][4] = {{K<1, 1>::f, K<1, 2>::f, K<1, 3>::f, K<1, 4>::f},
                                        {K<2, 1>::f, K<2, 2>::f, K<2, 3>::f, K<2, 4>::f},
                                        {K<3, 1>::f, K<3, 2>::f, K<3, 3>::f, K<3, 4>::f},
                                        {K<4, 1>::f, K<4, 2>::f, K<4, 3>::f, K<4, 4>::f}};
  tiled_product<E, 4, 4>(tiles, K<1, 8>::f, 8, B, M, A, sa, C, ldc);
}

}  // namespace avx512
}  // namespace grukit

#endif  // GRUKIT_AVX512_LOW_PRECISION
