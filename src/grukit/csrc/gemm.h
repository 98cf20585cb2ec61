// Matrix products for the GRU kernels: C[M, N] (+)= A[M, K] @ B[K, N], row-major with leading
// dimensions, so a thread can take a block of rows or columns by offsetting pointers.
//
// Four routines can compute a float32 product: the BLAS that libtorch_cpu exports (MKL's sgemm_),
// oneDNN's brgemm JIT micro-kernel (also exported by libtorch_cpu) tiled 256 x 256 over N and K,
// the same brgemm tiled over 128-row blocks of M as well, and grukit's own one-row kernel
// (row_product.h; a candidate for one-row products only). Which is fastest depends on the CPU
// (brgemm's JIT code follows the instruction set; MKL takes a generic path on some CPUs) and on the
// shape, so a routine is chosen per kind of product (`Product`), by measurement on the machine
// (grukit/backends/gemm_choice.py times `gemm_seconds` and sets the table with
// `set_gemm_routines`). float64 always goes to BLAS (dgemm_). `mm` is single-threaded (callers
// split the work); `mm_parallel` splits one large product over torch's threads.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>
#include <cstdint>
#include <type_traits>

#include "row_product.h"

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

// The kinds of product a GRU computes, which differ in shape:
//   recurrent        per step: h [rows, H] @ W_hh^T [H, 3H] (and the backward's d gates @ W_hh)
//   projection       all steps at once: x [T*B, I] @ W_ih^T [I, 3H] (and d x)
//   weight_gradient  sums over all steps: x^T [I, T*B] @ d gates [T*B, 3H] (K = T*B is large)
//   row              any product of one row (batch 1, streaming): bound by reading B
enum class Product : int { recurrent = 0, projection = 1, weight_gradient = 2, row = 3 };
constexpr int kProducts = 4;
constexpr int64_t kRowMax = 1;
enum class Routine : int { blas = 0, brgemm = 1, brgemm_row_tiled = 2, row_kernel = 3 };
constexpr int kRoutines = 4;

// The routine of each kind of product; brgemm until gemm_choice.py measures this machine.
inline std::atomic<int>* routine_table() {
  static std::atomic<int> table[kProducts] = {1, 1, 1, 1};
  return table;
}
inline Routine routine_for(Product kind, int64_t M) {
  const int k = static_cast<int>(M <= kRowMax ? Product::row : kind);
  return static_cast<Routine>(routine_table()[k].load(std::memory_order_relaxed));
}

// One product by the named routine (float64, and float32 without brgemm, always use BLAS).
template <typename T>
void mm_by(Routine routine, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
           int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
    return;
  }
  if constexpr (std::is_same<T, float>::value) {
    if (routine == Routine::row_kernel) {
      rows_product(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
      return;
    }
    if (routine != Routine::blas && brgemm_works()) {
      // brgemm is a micro-kernel: it does not block for the cache itself. Tiles of 256
      // columns by 256 of K keep B's tile in L2; row tiles keep C's tile there too.
      constexpr int64_t kTileN = 256, kTileK = 256;
      const int64_t tile_m = routine == Routine::brgemm_row_tiled ? 128 : M;
      for (int64_t m0 = 0; m0 < M; m0 += tile_m)
        for (int64_t n0 = 0; n0 < N; n0 += kTileN)
          for (int64_t k0 = 0; k0 < K; k0 += kTileK)
            at::native::cpublas::brgemm(std::min(tile_m, M - m0), std::min(kTileN, N - n0), std::min(kTileK, K - k0),
                                        lda, ldb, ldc, accumulate || k0 > 0, A + m0 * lda + k0, B + k0 * ldb + n0,
                                        C + m0 * ldc + n0, false);
      return;
    }
  }
  blas_mm(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// One product of the given kind, by the routine chosen for it.
template <typename T>
void mm(Product kind, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
        int64_t ldc, bool accumulate) {
  mm_by<T>(routine_for(kind, M), M, N, K, A, lda, B, ldb, C, ldc, accumulate);
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

// Products split over threads run in blocks, 4 per thread, claimed one at a time (OpenMP's dynamic
// schedule), not dealt out in equal shares up front: when another process keeps one core busy, the
// thread that shares it starts late or runs at half speed, and the other threads take over the
// blocks it has not started instead of waiting for its share (bench/contention.py).
constexpr int64_t kBlocksPerThread = 4;

// The threads a product may split over: torch's, or 1 inside a parallel region.
inline int64_t product_threads() {
  return at::in_parallel_region() ? 1 : std::max<int64_t>(1, at::get_num_threads());
}

// Rows per block when M rows are split over `threads`: at least 16.
inline int64_t rows_per_block(int64_t M, int64_t threads) {
  return std::max<int64_t>(16, (M + kBlocksPerThread * threads - 1) / (kBlocksPerThread * threads));
}

// A thread of a team that has nothing left to claim waits for the others' blocks by yielding its
// core, not by spinning in OpenMP's barrier. When another process keeps one core busy, two of the
// team's threads can end up taking turns on the other core, and a waiter spinning there takes half
// of that core from the very thread it waits for: B128 T50 H512 bfloat16 inference on 2 threads
// beside a process pinned to one core took 126 ms a call with OpenMP's spinning waits and 102 ms
// with passive ones, where its own one-thread run took 106 ms (bench/inference_contention.py).
constexpr int kSpinsBeforeYield = 64;

inline void wait_until_done(const std::atomic<int64_t>& done, int64_t total) {
  for (int spins = 0; done.load(std::memory_order_acquire) < total; ++spins)
    if (spins >= kSpinsBeforeYield) sched_yield();
}

// body(i) for every block i of `blocks`, claimed one at a time by up to `threads` threads, BLAS
// single-threaded in each. The threads leave together once every block is done (wait_until_done),
// so OpenMP's closing barrier does not spin.
template <typename F>
void run_blocks(int64_t threads, int64_t blocks, const F& body) {
  if (threads == 1 || blocks == 1) {
    SequentialBlas one;
    for (int64_t i = 0; i < blocks; ++i) body(i);
    return;
  }
  std::atomic<int64_t> next{0}, done{0};
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(threads, blocks)))
  {
    SequentialBlas one;
    for (int64_t i = next.fetch_add(1); i < blocks; i = next.fetch_add(1)) {
      body(i);
      done.fetch_add(1, std::memory_order_release);
    }
    wait_until_done(done, blocks);
  }
}

// A large product split over torch's threads: by rows if there are many, else by columns.
template <typename T>
void mm_parallel(Product kind, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                 int64_t ldc, bool accumulate) {
  const int64_t threads = product_threads();
  if (threads == 1) {
    mm<T>(kind, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    return;
  }
  const bool by_rows = M >= 64 * threads || N < 32 * threads;
  // rows: at least 16 per block; columns: multiples of 16
  const int64_t block = by_rows ? rows_per_block(M, threads)
                                : ((N + kBlocksPerThread * threads - 1) / (kBlocksPerThread * threads) + 15) / 16 * 16;
  const int64_t blocks = ((by_rows ? M : N) + block - 1) / block;
  run_blocks(threads, blocks, [&](int64_t i) {
    if (by_rows) {
      const int64_t m0 = i * block, m = std::min(block, M - m0);
      mm<T>(kind, m, N, K, A + m0 * lda, lda, B, ldb, C + m0 * ldc, ldc, accumulate);
    } else {
      const int64_t n0 = i * block, n = std::min(block, N - n0);
      mm<T>(kind, M, n, K, A, lda, B + n0, ldb, C + n0, ldc, accumulate);
    }
  });
}

// Seconds per call of one float32 product of this shape by this routine, in this thread, with
// BLAS single-threaded: the best of `repeats` timings of `calls` calls each. The calls alternate
// between two sets of operands, as a GRU step alternates between weight matrices (timing one
// product repeated on the same operands favours a routine with a larger per-call overhead).
inline double gemm_seconds(Routine routine, int64_t M, int64_t N, int64_t K, int64_t calls, int64_t repeats) {
  constexpr int kSets = 2;
  std::vector<float> A[kSets], B[kSets], C[kSets];
  for (int s = 0; s < kSets; ++s) {
    A[s].resize(M * K);
    B[s].resize(K * N);
    C[s].resize(M * N);
    for (size_t i = 0; i < A[s].size(); ++i) A[s][i] = float((i + s) % 7) * 0.125f - 0.375f;
    for (size_t i = 0; i < B[s].size(); ++i) B[s][i] = float((i + s) % 5) * 0.25f - 0.5f;
  }
  SequentialBlas one;
  auto call = [&](int64_t c) {
    const int s = int(c % kSets);
    mm_by<float>(routine, M, N, K, A[s].data(), K, B[s].data(), N, C[s].data(), N, false);
  };
  call(0);  // warm-up (JIT, caches)
  call(1);
  double best = 1e30;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t c = 0; c < calls; ++c) call(c);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count() / double(calls));
  }
  return best;
}

}  // namespace grukit
