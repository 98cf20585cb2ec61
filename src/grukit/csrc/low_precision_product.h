// The low-precision product a GRU layer calls: A's float32 rows prepared (rounded, or quantized with
// their scales) in a thread's buffer, then multiplied by the path the weights were packed for
// (low_precision.h explains the three and why they agree).
#pragma once

#include <vector>

#include "gemm.h"
#include "low_precision.h"
#include "low_precision_avx2.h"
#include "low_precision_avx512.h"

namespace grukit {

// C[M, B.N] = A @ B, A prepared by prepare_rows (scales `sa` [M], int8 only); `kind`: the float32
// GEMM routine's product kind, on the float32_gemm path.
inline void low_precision_product(const PackedWeights& B, Product kind, int64_t M, const void* A, const float* sa,
                                  float* C, int64_t ldc) {
  if (M <= 0 || B.N <= 0) return;
#ifdef GRUKIT_AVX512_LOW_PRECISION
  if (B.path == Instructions::avx512)
    return product_by_precision<avx512::product<uint8_t, avx512::Int8Tile>,
                                avx512::product<uint16_t, avx512::Bfloat16Tile>>(B, M, A, sa, C, ldc);
#endif
#ifdef GRUKIT_AVX2_LOW_PRECISION
  if (B.path == Instructions::avx2)
    return product_by_precision<avx2::product<uint8_t, avx2::Int8Tile>, avx2::product<uint16_t, avx2::Bfloat16Tile>>(
        B, M, A, sa, C, ldc);
#endif
  mm<float>(kind, M, B.N, B.K, static_cast<const float*>(A), B.K, B.values.data(), B.N, C, ldc, false);
  if (B.precision == Precision::int8)  // C = s_a s_w sum a_q w_q (the instructions' epilogue, same order)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < B.N; ++n) C[m * ldc + n] = C[m * ldc + n] * (B.scale[n] * sa[m]);
}

// A thread's buffer for A's prepared rows and their scales.
struct PreparedRows {
  std::vector<uint8_t> bytes;
  std::vector<float> scale;
  // A [M, K] (lda) prepared for `B`; returns the buffer's start
  const void* of(const PackedWeights& B, int64_t M, const float* A, int64_t lda) {
    const size_t need = B.path == Instructions::float32_gemm
                            ? size_t(M * B.K) * sizeof(float)
                            : size_t(M * padded_k(B.precision, B.K) * bytes_of(B.precision));
    if (bytes.size() < need) bytes.resize(need);
    if (scale.size() < size_t(M)) scale.resize(M);
    prepare_rows(B.precision, B.path, M, B.K, A, lda, bytes.data(), scale.data());
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
