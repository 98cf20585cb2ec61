// grukit's own one-row product: c[N] (+)= a[K] @ B[K, N], B row-major with leading dimension ldb.
//
// At batch 1 (and in streaming) every step multiplies one state row by the recurrent weights:
// 2 * K * N flops on K * N weights, so the product is bound by reading B (196 KB at H = 128, which
// stays in the core's L2 from step to step), not by arithmetic. The kernel keeps a block of
// kRowVectors vectors of c in registers and streams B's rows through them, one broadcast of a[k]
// and kRowVectors fused multiply-adds per row (w = kRowVectors * kRowWidth columns):
//
//     c[n0 : n0 + w] += a[k] * B[k, n0 : n0 + w]    for k = 0 .. K-1
//
// then the next block of columns. Nothing is packed or tiled: the rows of a block are read
// once each, in order, which the hardware prefetcher follows. The vector width follows the
// instruction set the file is compiled for (GCC/Clang vector extensions: 16 floats with AVX-512,
// 8 with AVX, 4 otherwise), so the x86-64-v3 and x86-64-v4 builds each get their own code.
// Any number of rows is computed row by row, but the routine is meant for one
// (csrc/gemm.h's Product::row); backends/gemm_choice.py times it against oneDNN's brgemm and BLAS.
#pragma once

#include <cstdint>
#include <cstring>

namespace grukit {

#if defined(__AVX512F__)
constexpr int kRowWidth = 16;
#elif defined(__AVX__)
constexpr int kRowWidth = 8;
#else
constexpr int kRowWidth = 4;
#endif
typedef float RowVector __attribute__((vector_size(kRowWidth * sizeof(float))));

inline RowVector load_row_vector(const float* p) {  // unaligned load
  RowVector v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store_row_vector(float* p, RowVector v) { std::memcpy(p, &v, sizeof v); }

// c[0 : V * kRowWidth] (+)= a[K] @ B[K, 0 : V * kRowWidth], V vectors of c held in registers
template <int V>
inline void row_block(int64_t K, const float* a, const float* B, int64_t ldb, float* c, bool accumulate) {
  RowVector sum[V];
  for (int j = 0; j < V; ++j) sum[j] = accumulate ? load_row_vector(c + j * kRowWidth) : RowVector{};
  for (int64_t k = 0; k < K; ++k) {
    const RowVector a_k = RowVector{} + a[k];  // broadcast
    const float* b = B + k * ldb;
    for (int j = 0; j < V; ++j) sum[j] += a_k * load_row_vector(b + j * kRowWidth);
  }
  for (int j = 0; j < V; ++j) store_row_vector(c + j * kRowWidth, sum[j]);
}

// 12 vectors of accumulators: the fastest of 4, 6, 8 and 12 on an AMD EPYC both as AVX-512
// (16 of its 32 registers) and as AVX2 (12 of 16), on the 1 x 384 x 128 and 1 x 768 x 256 products
constexpr int kRowVectors = 12;

inline void row_product(int64_t N, int64_t K, const float* a, const float* B, int64_t ldb, float* c,
                        bool accumulate) {
  int64_t n = 0;
  for (; n + kRowVectors * kRowWidth <= N; n += kRowVectors * kRowWidth)
    row_block<kRowVectors>(K, a, B + n, ldb, c + n, accumulate);
  for (; n + 4 * kRowWidth <= N; n += 4 * kRowWidth) row_block<4>(K, a, B + n, ldb, c + n, accumulate);
  for (; n + kRowWidth <= N; n += kRowWidth) row_block<1>(K, a, B + n, ldb, c + n, accumulate);
  for (; n < N; ++n) {  // the last N % kRowWidth columns
    float sum = accumulate ? c[n] : 0.0f;
    for (int64_t k = 0; k < K; ++k) sum += a[k] * B[k * ldb + n];
    c[n] = sum;
  }
}

// C[M, N] (+)= A[M, K] @ B[K, N], one row at a time
inline void rows_product(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                         float* C, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; ++i) row_product(N, K, A + i * lda, B, ldb, C + i * ldc, accumulate);
}

}  // namespace grukit
