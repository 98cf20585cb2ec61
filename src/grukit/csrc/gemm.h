// Matrix products for the GRU kernels: C[M, N] (+)= A[M, K] @ B[K, N], row-major with leading
// dimensions, so a thread can take a block of rows or columns by offsetting pointers.
//
// float32 goes to oneDNN's brgemm JIT kernels (exported by libtorch_cpu) when they run on this
// CPU, tiled for the cache; float64, and float32 where brgemm is unusable, go to the BLAS that
// libtorch_cpu exports (MKL's sgemm_/dgemm_). `mm` is single-threaded (callers split the work);
// `mm_parallel` splits one large product over torch's threads. Which is faster on which CPU is
// measured in BENCHMARKS.md.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
// MKL's C entry point (the lowercase symbol is the Fortran one, which takes a pointer)
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));
}

namespace grukit {

inline void blas_mm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                    int64_t ldc, bool accumulate) {
  // a row-major matrix is its column-major transpose: BLAS computes C^T = B^T A^T
  int m = (int)N, n = (int)M, k = (int)K, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
  float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  sgemm_("N", "N", &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
}
inline void blas_mm(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B, int64_t ldb,
                    double* C, int64_t ldc, bool accumulate) {
  int m = (int)N, n = (int)M, k = (int)K, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
  double one = 1.0, beta = accumulate ? 1.0 : 0.0;
  dgemm_("N", "N", &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
}

// Can brgemm run here? Tried once on a small product and checked against a plain loop.
inline bool brgemm_works() {
  static const bool works = [] {
    try {
      float a[2 * 3] = {1, 2, 3, 4, 5, 6}, b[3 * 2] = {1, 0, 0, 1, 1, 1}, c[2 * 2] = {0, 0, 0, 0};
      at::native::cpublas::brgemm(2, 2, 3, 3, 2, 2, false, a, b, c, false);
      return c[0] == 4 && c[1] == 5 && c[2] == 10 && c[3] == 11;
    } catch (...) {
      return false;
    }
  }();
  return works;
}

template <typename T>
void mm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
        bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
    return;
  }
  if constexpr (std::is_same<T, float>::value) {
    if (brgemm_works()) {
      // brgemm is a micro-kernel: it does not block for the cache itself. Tiles of 256
      // columns by 256 of K keep B's tile in L2 (the effect at large K: BENCHMARKS.md).
      constexpr int64_t kTileN = 256, kTileK = 256;
      for (int64_t n0 = 0; n0 < N; n0 += kTileN)
        for (int64_t k0 = 0; k0 < K; k0 += kTileK)
          at::native::cpublas::brgemm(M, std::min(kTileN, N - n0), std::min(kTileK, K - k0), lda, ldb, ldc,
                                      accumulate || k0 > 0, A + k0, B + k0 * ldb + n0, C + n0, false);
      return;
    }
  }
  blas_mm(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

struct SequentialBlas {  // BLAS runs single-threaded in this thread while in scope
  int saved = 0;
  SequentialBlas() {
    if (MKL_Set_Num_Threads_Local) saved = MKL_Set_Num_Threads_Local(1);
  }
  ~SequentialBlas() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(saved);
  }
};

// A large product split over torch's threads: by rows if there are many, else by columns.
template <typename T>
void mm_parallel(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
                 bool accumulate) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  if (M >= 64 * threads || N < 32 * threads) {
    const int64_t rows = std::max<int64_t>(1, (M + threads - 1) / threads);
    at::parallel_for(0, M, rows, [&](int64_t m0, int64_t m1) {
      SequentialBlas one;
      mm<T>(m1 - m0, N, K, A + m0 * lda, lda, B, ldb, C + m0 * ldc, ldc, accumulate);
    });
  } else {
    const int64_t cols = ((N + threads - 1) / threads + 15) / 16 * 16;
    at::parallel_for(0, N, cols, [&](int64_t n0, int64_t n1) {
      SequentialBlas one;
      mm<T>(M, n1 - n0, K, A, lda, B + n0, ldb, C + n0, ldc, accumulate);
    });
  }
}

}  // namespace grukit
