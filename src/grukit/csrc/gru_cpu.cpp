// Fused CPU kernels for one GRU layer in one direction: forward and backward.
//
// Shape of the computation (as Haste, oneDNN and onnxruntime do it):
//   forward:  GI = X W_ih^T                         one GEMM over all T*B rows
//             per step: GH = h W_hh^T               one GEMM (two for reset-before)
//                       one fused element-wise pass (gates, candidate, new state)
//   backward: per step, the mirror image: one fused element-wise pass, one GEMM
//             (two for reset-before) for the gradient flowing into h_{t-1};
//             then dX, dW_ih, dW_hh as single GEMMs over all steps.
//
// The equations (see grukit/reference.py; gate order r, z, n as torch.nn.GRU):
//   r  = sigmoid(x W_r^T + b_ir + h U_r^T + b_hr)
//   z  = sigmoid(x W_z^T + b_iz + h U_z^T + b_hz)
//   n  = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))     reset_after
//   n  = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)     reset before
//   h' = z * h + (1 - z) * n                             keeps_state
//   h' = (1 - z) * h + z * n                             takes_candidate
//
// Per-sequence lengths: the batch is sorted by length (longest first) inside the
// kernel, so at step t the sequences still running are a prefix of `bs[t]` rows
// and every GEMM and element-wise pass covers only those rows: a padded batch
// with lengths costs less than a full one, never more. Outputs at steps past a
// sequence's length are zero; its state is carried unchanged.
//
// GEMMs go straight to the BLAS that libtorch_cpu exports (MKL's sgemm_/dgemm_),
// with no dispatcher overhead per step. Element-wise passes are plain loops that
// the compiler vectorises; float32 uses inline polynomial exp/tanh (about 1 ulp),
// float64 uses libm.

#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <numeric>
#include <type_traits>
#include <vector>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
}

namespace grukit {
namespace {

using at::Tensor;

// ---------------------------------------------------------------- matrix products
//
// Every product is written as C[M, N] (+)= A[M, K] @ B[K, N], row-major with leading
// dimensions, so a thread can take a block of rows or columns by offsetting pointers.
// float32 goes to oneDNN's brgemm JIT kernels (exported by libtorch_cpu; measured
// 2.2-2.4x MKL's sgemm on this machine's AMD CPU, where MKL takes a generic path);
// float64, and float32 where brgemm is unusable, go to the BLAS that libtorch_cpu
// exports (MKL's dgemm_/sgemm_). All single-threaded: callers split the work.

inline void blas_mm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
  // a row-major matrix is its column-major transpose: BLAS computes C^T = B^T A^T
  int m = (int)N, n = (int)M, k = (int)K, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
  float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  sgemm_("N", "N", &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
}
inline void blas_mm(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
                    int64_t ldb, double* C, int64_t ldc, bool accumulate) {
  int m = (int)N, n = (int)M, k = (int)K, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
  double one = 1.0, beta = accumulate ? 1.0 : 0.0;
  dgemm_("N", "N", &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
}

// Can brgemm run here? Tried once on a small product and checked against a plain loop.
bool brgemm_works() {
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
      // columns by 256 of K keep B's tile in L2 (measured: 28 -> 219 GFLOP/s at K = 6400,
      // and no loss on small products).
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

// MKL's C entry point (the lowercase symbol is the Fortran one, which takes a pointer)
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

struct SequentialBlas {  // BLAS runs single-threaded in this thread while in scope
  int saved = 0;
  SequentialBlas() { if (MKL_Set_Num_Threads_Local) saved = MKL_Set_Num_Threads_Local(1); }
  ~SequentialBlas() { if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(saved); }
};

// A large product split over torch's threads: by rows if there are many, else by columns.
template <typename T>
void mm_parallel(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                 int64_t ldc, bool accumulate) {
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

// ---------------------------------------------------------------- activations

// exp for float32: range reduction to [-ln2/2, ln2/2], Cephes' degree-6 polynomial,
// scaling by 2^n through the exponent bits. Branch-free so loops vectorise; NaN stays NaN
// (the clamps are comparisons, which are false for NaN).
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick: plain adds, so the loop vectorises
  float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_act(float a) { return 1.0f / (1.0f + exp_f32(-a)); }
inline double sigmoid_act(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// tanh for float32: Cephes' odd polynomial near 0, 1 - 2 / (exp(2|x|) + 1) elsewhere.
inline float tanh_act(float x) {
  float ax = std::fabs(x);
  float z = x * x;
  float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                  1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
  float e = exp_f32(2.0f * ax);
  float large = std::copysign(1.0f - 2.0f / (e + 1.0f), x);
  return ax < 0.625f ? small : large;
}
inline double tanh_act(double x) { return std::tanh(x); }

// ---------------------------------------------------------------- element-wise passes
//
// One function per pass, over `n` hidden units of one batch row, every pointer already
// offset to the first unit and marked __restrict so the compiler vectorises the loop.
// KEEPS selects the update meaning: h' = z h + (1 - z) n (true) or (1 - z) h + z n.

// reset after. In: gi_{r,z,n} = x W^T rows, q_{r,z,n} = h U^T rows, biases, h.
// Out: h' (to h_new and out), and r, z, n, hn = h U_n^T + b_hn for the backward pass.
template <typename T, bool KEEPS>
void fwd_after(int64_t n, const T* __restrict gr, const T* __restrict gz, const T* __restrict gn,
               const T* __restrict qr, const T* __restrict qz, const T* __restrict qn,
               const T* __restrict brz_r, const T* __restrict brz_z, const T* __restrict b_in,
               const T* __restrict b_hn, const T* __restrict h, T* __restrict h_new, T* __restrict out,
               T* __restrict sr, T* __restrict sz, T* __restrict sn, T* __restrict shn) {
  for (int64_t j = 0; j < n; ++j) {
    // r = sigmoid(x W_r^T + h U_r^T + b_ir + b_hr);  z likewise
    T r = sigmoid_act(gr[j] + qr[j] + brz_r[j]);
    T z = sigmoid_act(gz[j] + qz[j] + brz_z[j]);
    // n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))
    T hn = qn[j] + b_hn[j];
    T c = tanh_act(gn[j] + b_in[j] + r * hn);
    // h' = z h + (1 - z) n  =  n + z (h - n)     or     h' = (1 - z) h + z n  =  h + z (n - h)
    T hv = h[j];
    T hnew = KEEPS ? c + z * (hv - c) : hv + z * (c - hv);
    sr[j] = r;
    sz[j] = z;
    sn[j] = c;
    shn[j] = hn;
    h_new[j] = hnew;
    out[j] = hnew;
  }
}

// reset before, first pass: r, z, and r * h (the input of the candidate's recurrent product).
template <typename T>
void fwd_before_gates(int64_t n, const T* __restrict gr, const T* __restrict gz, const T* __restrict qr,
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

// reset before, second pass. In: qn = (r * h) U_n^T. Out: h', and n for the backward pass.
template <typename T, bool KEEPS>
void fwd_before_state(int64_t n, const T* __restrict gn, const T* __restrict qn, const T* __restrict b_in,
                      const T* __restrict b_hn, const T* __restrict z_, const T* __restrict h,
                      T* __restrict h_new, T* __restrict out, T* __restrict sn) {
  for (int64_t j = 0; j < n; ++j) {
    // n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)
    T c = tanh_act(gn[j] + b_in[j] + qn[j] + b_hn[j]);
    T z = z_[j];
    T hv = h[j];
    T hnew = KEEPS ? c + z * (hv - c) : hv + z * (c - hv);
    sn[j] = c;
    h_new[j] = hnew;
    out[j] = hnew;
  }
}

// backward, reset after. In: saved r, z, n, hn; h_{t-1}; dout; dh (gradient from step t+1).
// Out: dGI = [da_r, da_z, da_n], dGH = [da_r, da_z, d(hn)], the direct part of dh_{t-1}
// (written over dh), and h_{t-1} copied to hp for the weight-gradient GEMM.
template <typename T, bool KEEPS>
void bwd_after(int64_t n, const T* __restrict sr, const T* __restrict sz, const T* __restrict sn,
               const T* __restrict shn, const T* __restrict h, const T* __restrict dout, T* __restrict dh,
               T* __restrict gi_r, T* __restrict gi_z, T* __restrict gi_n, T* __restrict gh_r,
               T* __restrict gh_z, T* __restrict gh_n, T* __restrict hp) {
  for (int64_t j = 0; j < n; ++j) {
    T r = sr[j], z = sz[j], c = sn[j], hn = shn[j], hv = h[j];
    T d = dout[j] + dh[j];  // dL/dh_t: from the output and from step t+1
    // h' = z h + (1 - z) n   or   (1 - z) h + z n
    T dz = KEEPS ? d * (hv - c) : d * (c - hv);
    T dc = KEEPS ? d * (T(1) - z) : d * z;
    T dh_direct = KEEPS ? d * z : d * (T(1) - z);
    // n = tanh(a_n), a_n = x W_n^T + b_in + r * hn
    T da_n = dc * (T(1) - c * c);
    T dr = da_n * hn;
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
template <typename T, bool KEEPS>
void bwd_before_candidate(int64_t n, const T* __restrict sz, const T* __restrict sn, const T* __restrict h,
                          const T* __restrict dout, T* __restrict dh, T* __restrict gi_z,
                          T* __restrict gi_n, T* __restrict hp) {
  for (int64_t j = 0; j < n; ++j) {
    T z = sz[j], c = sn[j], hv = h[j];
    T d = dout[j] + dh[j];
    T dz = KEEPS ? d * (hv - c) : d * (c - hv);
    T dc = KEEPS ? d * (T(1) - z) : d * z;
    gi_z[j] = dz;
    gi_n[j] = dc * (T(1) - c * c);  // da_n
    hp[j] = hv;
    dh[j] = KEEPS ? d * z : d * (T(1) - z);
  }
}

// backward, reset before, second pass. In: drh = d(r * h) = da_n U_n. Out: da_r, da_z,
// dh += drh * r, and r * h_{t-1} for the weight-gradient GEMM.
template <typename T>
void bwd_before_gates(int64_t n, const T* __restrict sr, const T* __restrict sz, const T* __restrict hp,
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

// ---------------------------------------------------------------- reused workspaces
//
// Temporaries that never leave a call (projections, packed weights, per-step gradients)
// live in per-thread buffers that grow and are reused: fresh multi-megabyte allocations
// on every call cost page faults (measured: over a third of a B32 T100 H128 backward
// pass in the kernel's page-fault handler). Tensors returned to the caller are always
// fresh. The buffers are kept until the thread ends (as large as the largest call).

enum Slot { kGI, kWihT, kWrec, kWhnT, kScratch, kHbuf, kGH, kRH,
            kDGI, kDGH, kHprev, kRHs, kDRH, kXT, kHpT, kRhT, kDWihT, kDWhhT,
            kSortedX, kSortedH0, kSortedOut, kSortedDOut, kSortedDHn, kSortedDX, kSlots };
constexpr int kMaxSlots = 64;  // kSlots here, and the regularised kernels' slots after them

Tensor workspace(int slot, at::IntArrayRef shape, const at::TensorOptions& opts) {
  thread_local std::vector<Tensor> buffers(kMaxSlots);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  Tensor& buf = buffers[slot];
  if (!buf.defined() || buf.scalar_type() != opts.dtype().toScalarType() || buf.numel() < numel) {
    // a normal tensor even when made under torch.inference_mode(), so that a later call
    // outside inference mode may still write into it
    c10::InferenceMode normal(false);
    buf = at::empty({std::max<int64_t>(numel, 1)}, opts);
  }
  return buf.narrow(0, 0, numel).view(shape);
}

// ---------------------------------------------------------------- problem description

// Two input layouts. Padded: x [T, B, I], with optional per-sequence lengths (the batch is
// then sorted inside the kernel). Packed: x [N, I] holding the steps of a PackedSequence, step
// t's bs[t] rows at offset off[t], already sorted longest first; nothing is padded or sorted.
struct Problem {
  int64_t T, B, I, H;
  int64_t N;                 // rows of x: T * B padded, sum(batch_sizes) packed
  bool packed = false;
  bool reverse, reset_after, keeps_state;
  std::vector<int64_t> bs;   // bs[t]: rows (of the sorted batch) still running at step t
  std::vector<int64_t> off;  // off[t]: the first row of step t in x, GI, the output ...
  Tensor order;              // sorted row -> original row (undefined if no sorting needed)
  Tensor inverse;            // original row -> sorted row
};

Problem describe(const Tensor& x, const Tensor& w_hh, const c10::optional<Tensor>& lengths,
                 const c10::optional<Tensor>& batch_sizes, bool reverse, bool reset_after, bool keeps_state) {
  Problem p;
  p.H = w_hh.size(1);
  p.reverse = reverse;
  p.reset_after = reset_after;
  p.keeps_state = keeps_state;
  if (batch_sizes.has_value() && batch_sizes->defined()) {
    TORCH_CHECK_VALUE(x.dim() == 2, "grukit: packed input must be [N, I], got ", x.sizes());
    Tensor sizes = batch_sizes->to(at::kCPU, at::kLong).contiguous();
    const int64_t* bsz = sizes.data_ptr<int64_t>();
    p.packed = true;
    p.T = sizes.numel();
    p.B = p.T ? bsz[0] : 0;
    p.I = x.size(1);
    p.bs.assign(bsz, bsz + p.T);
    p.off.assign(p.T + 1, 0);
    for (int64_t t = 0; t < p.T; ++t) {
      TORCH_CHECK_VALUE(bsz[t] >= 1 && bsz[t] <= p.B && (t == 0 || bsz[t] <= bsz[t - 1]),
                        "grukit: batch_sizes must be positive and non-increasing");
      p.off[t + 1] = p.off[t] + bsz[t];
    }
    p.N = p.off[p.T];
    TORCH_CHECK_VALUE(x.size(0) == p.N, "grukit: packed input has ", x.size(0), " rows, batch_sizes sum to ", p.N);
    return p;
  }
  TORCH_CHECK_VALUE(x.dim() == 3, "grukit: padded input must be [T, B, I], got ", x.sizes());
  p.T = x.size(0);
  p.B = x.size(1);
  p.I = x.size(2);
  p.N = p.T * p.B;
  p.bs.assign(p.T, p.B);
  p.off.assign(p.T + 1, 0);
  for (int64_t t = 0; t <= p.T; ++t) p.off[t] = t * p.B;
  if (lengths.has_value() && lengths->defined()) {
    Tensor len = lengths->to(at::kCPU, at::kLong).contiguous();
    const int64_t* l = len.data_ptr<int64_t>();
    std::vector<int64_t> idx(p.B);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
    for (int64_t t = 0; t < p.T; ++t) {
      int64_t n = 0;
      while (n < p.B && l[idx[n]] > t) ++n;
      p.bs[t] = n;
    }
    bool identity = true;
    for (int64_t i = 0; i < p.B; ++i) identity &= idx[i] == i;
    if (!identity) {
      p.order = at::tensor(idx, at::kLong);
      p.inverse = at::empty({p.B}, at::kLong);
      for (int64_t i = 0; i < p.B; ++i) p.inverse.data_ptr<int64_t>()[idx[i]] = i;
    }
  }
  return p;
}

// dst[..., i, :] = src[..., index[i], :] along the batch dimension (0 of [B, D], 1 of [T, B, D]).
// Row copies: ATen's index_select along dimension 1 takes a generic element-wise path that cost
// about 1 ms per [100, 32, 128] tensor here, as much as the whole GRU step loop.
void gather_batch(const Tensor& src_in, const Tensor& index, int64_t batch_dim, Tensor& dst) {
  Tensor src = src_in.contiguous();
  const int64_t outer = batch_dim == 0 ? 1 : src.size(0);
  const int64_t B = src.size(batch_dim);
  const int64_t D = src.numel() / std::max<int64_t>(1, outer * B);
  const int64_t* idx = index.data_ptr<int64_t>();
  const size_t bytes = D * src.element_size();
  const char* s = static_cast<const char*>(src.data_ptr());
  char* d = static_cast<char*>(dst.data_ptr());
  at::parallel_for(0, outer, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, B * D)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t i = 0; i < B; ++i) std::memcpy(d + (t * B + i) * bytes, s + (t * B + idx[i]) * bytes, bytes);
  });
}

// A tensor in the kernel's sorted batch order, in a reused workspace (no copy if unsorted).
Tensor to_sorted(const Problem& p, const Tensor& t, int64_t batch_dim, int slot) {
  if (!p.order.defined()) return t.contiguous();
  Tensor dst = workspace(slot, t.sizes(), t.options());
  gather_batch(t, p.order, batch_dim, dst);
  return dst;
}
// A sorted-order tensor back in the caller's batch order: a fresh tensor (t itself if unsorted).
Tensor to_original(const Problem& p, const Tensor& t, int64_t batch_dim) {
  if (!p.order.defined()) return t;
  Tensor dst = at::empty_like(t);
  gather_batch(t, p.inverse, batch_dim, dst);
  return dst;
}

// step index of the k-th step processed
inline int64_t step_at(const Problem& p, int64_t k) { return p.reverse ? p.T - 1 - k : k; }

// ---------------------------------------------------------------- threads
//
// The recurrence is sequential in t, so the threads split the hidden units: thread k
// owns units [a_k, b_k), computes the recurrent-GEMM columns of those units and their
// element-wise math, and one team barrier per step (two for reset-before) hands the new
// state to everyone. The whole sequence runs inside one OpenMP parallel region, with
// BLAS single-threaded inside it; small problems run on one thread.

constexpr int64_t kMinMacsPerThread = 1 << 17;  // per step: less than this is not worth a thread
constexpr int64_t kMinRowsPerThread = 8;        // fewer rows per thread: split hidden units instead

// Thread k takes batch rows [rows[k], rows[k+1]) and hidden units [units[k], units[k+1]).
// Batch rows are independent through the whole recurrence, so a split by rows needs no
// synchronisation at all until the sequence ends; a split by units (small batches, large H)
// needs a barrier per step, which on this VM costs as much as a small step's arithmetic.
struct Team {
  int n = 1;
  bool by_rows = true;
  int64_t B = 0, H = 0, row_chunk = 0, unit_chunk = 0;
  // thread k's batch rows [row_lo(k), row_hi(k)) and hidden units [unit_lo(k), unit_hi(k))
  int64_t row_lo(int k) const { return by_rows ? std::min(B, k * row_chunk) : 0; }
  int64_t row_hi(int k) const { return by_rows ? std::min(B, (k + 1) * row_chunk) : B; }
  int64_t unit_lo(int k) const { return by_rows ? 0 : std::min(H, k * unit_chunk); }
  int64_t unit_hi(int k) const { return by_rows ? H : std::min(H, (k + 1) * unit_chunk); }
};

Team make_team(int64_t B, int64_t H, int64_t macs_per_row_unit) {
  Team team;
  team.B = B;
  team.H = H;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t work = B * H * macs_per_row_unit;
  int64_t n = std::min<int64_t>(threads, std::max<int64_t>(1, work / kMinMacsPerThread));
  team.by_rows = B >= kMinRowsPerThread * n;
  if (!team.by_rows) n = std::min<int64_t>(n, (H + 15) / 16);
  team.n = (int)std::max<int64_t>(1, n);
  if (team.n == 1) team.by_rows = true;
  team.row_chunk = (B + team.n - 1) / team.n;
  team.unit_chunk = ((H + team.n - 1) / team.n + 15) / 16 * 16;  // multiples of 16 units
  return team;
}

template <typename F>
void run_team(const Team& team, const F& body) {
  if (team.n == 1) {
    SequentialBlas one;
    body(0);
    return;
  }
#pragma omp parallel num_threads(team.n)
  {
    SequentialBlas one;
    body(omp_get_thread_num());
  }
}

inline void team_barrier(const Team& team) {
  if (!team.by_rows) {
#pragma omp barrier
  }
}

// The recurrent weights as the B operand of thread k's product h @ W_k^T: W_k holds the
// rows of thread k's units for each of `gates` gates (r, z[, n]), stored transposed as
// [H, gates * Hc_k], the blocks one after another (block k starts at gates * unit_lo(k) * H).
Tensor pack_by_team(const Tensor& w_hh, const Team& team, int64_t gates) {
  const int64_t H = w_hh.size(1);
  std::vector<Tensor> blocks;
  const int blocks_n = team.by_rows ? 1 : team.n;  // split by rows: every thread uses all units
  for (int k = 0; k < blocks_n; ++k) {
    std::vector<Tensor> rows;
    for (int64_t g = 0; g < gates; ++g)
      rows.push_back(w_hh.narrow(0, g * H + team.unit_lo(k), team.unit_hi(k) - team.unit_lo(k)));
    blocks.push_back(at::cat(rows, 0).t().contiguous().view({-1}));
  }
  return at::cat(blocks, 0);
}

// ---------------------------------------------------------------- forward

// Biases folded once per call: brz = b_i{r,z} + b_h{r,z} [2H], b_in [H], b_hn [H].
template <typename T>
struct Biases {
  std::vector<T> rz, in, hn;
  Biases(const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh, int64_t H)
      : rz(2 * H, T(0)), in(H, T(0)), hn(H, T(0)) {
    if (b_ih.has_value() && b_ih->defined()) {
      Tensor bi = b_ih->contiguous(), bh = b_hh->contiguous();
      const T* i = bi.data_ptr<T>();
      const T* h = bh.data_ptr<T>();
      for (int64_t j = 0; j < 2 * H; ++j) rz[j] = i[j] + h[j];
      for (int64_t j = 0; j < H; ++j) {
        in[j] = i[2 * H + j];
        hn[j] = h[2 * H + j];
      }
    }
  }
};

template <typename T>
std::tuple<Tensor, Tensor, Tensor> forward_impl(const Problem& p, const Tensor& x_in, const Tensor& h0_in,
                                                const Tensor& w_ih_in, const Tensor& w_hh_in,
                                                const c10::optional<Tensor>& b_ih,
                                                const c10::optional<Tensor>& b_hh, bool training) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H;
  Tensor x = to_sorted(p, x_in, 1, kSortedX);
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  Biases<T> bias(b_ih, b_hh, H);
  auto opts = x.options();

  // GI = X [T*B, I] @ W_ih^T [I, 3H]: one product for all steps
  Tensor gi = workspace(kGI, {p.N, 3 * H}, opts);
  Tensor w_ih_t = workspace(kWihT, {I, 3 * H}, opts);
  w_ih_t.copy_(w_ih.t());
  mm_parallel<T>(p.N, 3 * H, I, x.data_ptr<T>(), I, w_ih_t.data_ptr<T>(), 3 * H, gi.data_ptr<T>(), 3 * H, false);

  const Team team = make_team(B, H, 3 * H);
  Tensor w_rec = pack_by_team(w_hh, team, p.reset_after ? 3 : 2);
  // saved for backward, per step and row: r, z, n, and (reset after) hn = h U_n^T + b_hn
  const int64_t G = p.reset_after ? 4 : 3;
  Tensor ws = training ? at::empty({p.N, G * H}, opts) : at::empty({0}, opts);
  Tensor scratch = training ? Tensor() : workspace(kScratch, {B, G * H}, opts);  // one step, inference
  // the output in sorted order: returned as is, or reordered into a fresh tensor at the end
  const std::vector<int64_t> out_shape = p.packed ? std::vector<int64_t>{p.N, H} : std::vector<int64_t>{T_, B, H};
  Tensor out = p.order.defined() ? workspace(kSortedOut, out_shape, opts) : at::empty(out_shape, opts);
  Tensor hbuf = workspace(kHbuf, {2, B, H}, opts);  // double-buffered state: read one, write the other
  hbuf[0].copy_(to_sorted(p, h0_in, 0, kSortedH0));
  Tensor gh = workspace(kGH, {B, 3 * H}, opts);   // recurrent products, thread k's columns at 3*lo[k]
  Tensor rh = p.reset_after ? Tensor() : workspace(kRH, {B, H}, opts);

  const T* wr = w_rec.data_ptr<T>();
  Tensor w_hn_t = p.reset_after ? Tensor() : w_hh.narrow(0, 2 * H, H).t().contiguous();  // [H, H]
  const T* whn_t = p.reset_after ? nullptr : w_hn_t.data_ptr<T>();
  const T* brz = bias.rz.data();
  const T* bin = bias.in.data();
  const T* bhn = bias.hn.data();
  const bool keeps = p.keeps_state, after = p.reset_after;
  T* const h_bufs[2] = {hbuf.data_ptr<T>(), hbuf.data_ptr<T>() + B * H};
  T* ghp = gh.data_ptr<T>();

  run_team(team, [&](int k) {
    const int64_t a = team.unit_lo(k), Hc = team.unit_hi(k) - team.unit_lo(k);
    const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
    if (Hc <= 0 || r0 >= r1) {  // nothing to do: still take part in any barriers
      for (int64_t s = 0; s < T_ * (after ? 1 : 2); ++s) team_barrier(team);
      return;
    }
    for (int64_t step = 0; step < T_; ++step) {
      const int64_t t = step_at(p, step);
      const int64_t bs = p.bs[t];
      const int64_t re = std::min(r1, bs);                 // this thread's running rows: r0 .. re
      const int64_t m = std::max<int64_t>(0, re - r0);
      const T* h = h_bufs[step & 1];
      T* hn_out = h_bufs[(step + 1) & 1];
      const T* git = gi.data_ptr<T>() + p.off[t] * 3 * H;
      T* outt = out.data_ptr<T>() + p.off[t] * H;
      T* wst = training ? ws.data_ptr<T>() + p.off[t] * G * H : scratch.data_ptr<T>();
      T* q0 = ghp + (after ? 3 : 2) * a;  // this thread's recurrent-product columns
      const int64_t ldq = (after ? 3 : 2) * H;
      if (after) {
        // [r | z | n] pre-activations of units a..a+Hc: h [bs, H] @ W_k^T [H, 3Hc]
        mm<T>(m, 3 * Hc, H, h + r0 * H, H, wr + 3 * a * H, 3 * Hc, q0 + r0 * ldq, ldq, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          const T* q = q0 + b * ldq;
          T* s = wst + b * 4 * H + a;
          (keeps ? fwd_after<T, true> : fwd_after<T, false>)(
              Hc, g, g + H, g + 2 * H, q, q + Hc, q + 2 * Hc, brz + a, brz + H + a, bin + a, bhn + a,
              h + b * H + a, hn_out + b * H + a, outt + b * H + a, s, s + H, s + 2 * H, s + 3 * H);
        }
      } else {
        // [r | z] pre-activations of units a..a+Hc: h [bs, H] @ W_k^T [H, 2Hc]
        mm<T>(m, 2 * Hc, H, h + r0 * H, H, wr + 2 * a * H, 2 * Hc, q0 + r0 * ldq, ldq, false);
        T* rhp = rh.data_ptr<T>();
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          const T* q = q0 + b * ldq;
          T* s = wst + b * 3 * H + a;
          fwd_before_gates<T>(Hc, g, g + H, q, q + Hc, brz + a, brz + H + a, h + b * H + a, s, s + H,
                              rhp + b * H + a);
        }
        team_barrier(team);  // every unit of r * h is needed below
        // (r * h) [bs, H] @ W_n[units]^T [H, Hc], into this thread's columns of gh
        mm<T>(m, Hc, H, rhp + r0 * H, H, whn_t + a, H, q0 + r0 * ldq, ldq, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          T* s = wst + b * 3 * H + a;
          (keeps ? fwd_before_state<T, true> : fwd_before_state<T, false>)(
              Hc, g + 2 * H, q0 + b * ldq, bin + a, bhn + a, s + H, h + b * H + a, hn_out + b * H + a,
              outt + b * H + a, s + 2 * H);
        }
      }
      // rows not running at this step: state carried; padded layout: output 0 (this thread's units)
      for (int64_t b = std::max(bs, r0); b < r1; ++b) {
        std::copy(h + b * H + a, h + b * H + a + Hc, hn_out + b * H + a);
        if (p.packed) continue;  // packed: the step has no rows for them
        std::fill(outt + b * H + a, outt + b * H + a + Hc, T(0));
        if (training)
          for (int64_t g = 0; g < G; ++g) std::fill(wst + b * G * H + g * H + a, wst + b * G * H + g * H + a + Hc, T(0));
      }
      team_barrier(team);  // the new state is complete
    }
  });
  Tensor h_n = hbuf[T_ & 1].clone();  // hbuf is a reused workspace: return a copy
  return {to_original(p, out, 1), to_original(p, h_n, 0), ws};
}

// ---------------------------------------------------------------- backward

template <typename T>
std::vector<Tensor> backward_impl(const Problem& p, const Tensor& d_out_in, const Tensor& d_hn_in,
                                  const Tensor& x_in, const Tensor& h0_in, const Tensor& w_ih_in,
                                  const Tensor& w_hh_in, const Tensor& out_in, const Tensor& ws,
                                  bool has_bias) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H;
  const int64_t G = p.reset_after ? 4 : 3;
  Tensor d_out = to_sorted(p, d_out_in, 1, kSortedDOut);
  // running gradient of the state, all rows: written in place, so never the caller's tensor
  Tensor dh = p.order.defined() ? to_sorted(p, d_hn_in, 0, kSortedDHn) : d_hn_in.clone(at::MemoryFormat::Contiguous);
  Tensor x = to_sorted(p, x_in, 1, kSortedX);
  Tensor h0 = to_sorted(p, h0_in, 0, kSortedH0);
  Tensor out = to_sorted(p, out_in, 1, kSortedOut);
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  auto opts = x.options();

  // gradients of the pre-activations, per step: input side [da_r, da_z, da_n],
  // recurrent side (reset after) [da_r, da_z, d(hn)]; HP = h_{t-1}; RH = r * h_{t-1}
  Tensor dgi = workspace(kDGI, {p.N, 3 * H}, opts);
  Tensor dgh = p.reset_after ? workspace(kDGH, {p.N, 3 * H}, opts) : Tensor();
  Tensor hprev = workspace(kHprev, {p.N, H}, opts);
  Tensor rhs = p.reset_after ? Tensor() : workspace(kRHs, {p.N, H}, opts);
  Tensor drh = p.reset_after ? Tensor() : workspace(kDRH, {B, H}, opts);

  T* dhp = dh.data_ptr<T>();
  const T* whh = w_hh.data_ptr<T>();
  const T* outp = out.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const bool keeps = p.keeps_state, after = p.reset_after;
  const Team team = make_team(B, H, 3 * H);

  run_team(team, [&](int k) {
    const int64_t a = team.unit_lo(k), Hc = team.unit_hi(k) - team.unit_lo(k);
    const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
    if (Hc <= 0 || r0 >= r1) {
      for (int64_t s = 0; s < T_ * (after ? 1 : 2); ++s) team_barrier(team);
      return;
    }
    for (int64_t step = T_ - 1; step >= 0; --step) {
      const int64_t t = step_at(p, step);
      const int64_t bs = p.bs[t];
      const int64_t re = std::min(r1, bs);                 // this thread's running rows: r0 .. re
      const int64_t m = std::max<int64_t>(0, re - r0);
      const int64_t pad_end = p.packed ? 0 : r1;           // padded rows to zero: max(bs, r0) .. pad_end
      // the step processed before this one in the forward pass, and how many of its rows ran
      const int64_t tp = p.reverse ? t + 1 : t - 1;
      const int64_t bs_prev = step == 0 ? 0 : p.bs[tp];
      const T* prev_out = step == 0 ? nullptr : outp + p.off[tp] * H;
      const T* s_all = ws.data_ptr<T>() + p.off[t] * G * H;
      const T* dot = d_out.data_ptr<T>() + p.off[t] * H;
      T* dgit = dgi.data_ptr<T>() + p.off[t] * 3 * H;
      T* hpt = hprev.data_ptr<T>() + p.off[t] * H;

      if (after) {
        T* dght = dgh.data_ptr<T>() + p.off[t] * 3 * H;
        for (int64_t b = r0; b < re; ++b) {
          const T* s = s_all + b * 4 * H + a;
          const T* hsrc = (b < bs_prev ? prev_out + b * H : h0p + b * H) + a;
          T* gi_ = dgit + b * 3 * H + a;
          T* gh_ = dght + b * 3 * H + a;
          (keeps ? bwd_after<T, true> : bwd_after<T, false>)(
              Hc, s, s + H, s + 2 * H, s + 3 * H, hsrc, dot + b * H + a, dhp + b * H + a, gi_, gi_ + H,
              gi_ + 2 * H, gh_, gh_ + H, gh_ + 2 * H, hpt + b * H + a);
        }
        for (int64_t b = std::max(bs, r0); b < pad_end; ++b)
          for (int64_t g = 0; g < 3; ++g) {
            std::fill(dgit + b * 3 * H + g * H + a, dgit + b * 3 * H + g * H + a + Hc, T(0));
            std::fill(dght + b * 3 * H + g * H + a, dght + b * 3 * H + g * H + a + Hc, T(0));
          }
        for (int64_t b = std::max(bs, r0); b < pad_end; ++b) std::fill(hpt + b * H + a, hpt + b * H + a + Hc, T(0));
        team_barrier(team);  // every unit of dGH_t is needed below
        // dh_{t-1}[:, units] += dGH_t [bs, 3H] @ W_hh[:, units] [3H, Hc]
        mm<T>(m, Hc, 3 * H, dght + r0 * 3 * H, 3 * H, whh + a, H, dhp + r0 * H + a, H, true);
      } else {
        T* rht = rhs.data_ptr<T>() + p.off[t] * H;
        T* drhp = drh.data_ptr<T>();
        for (int64_t b = r0; b < re; ++b) {
          const T* s = s_all + b * 3 * H + a;
          const T* hsrc = (b < bs_prev ? prev_out + b * H : h0p + b * H) + a;
          T* gi_ = dgit + b * 3 * H + a;
          (keeps ? bwd_before_candidate<T, true> : bwd_before_candidate<T, false>)(
              Hc, s + H, s + 2 * H, hsrc, dot + b * H + a, dhp + b * H + a, gi_ + H, gi_ + 2 * H,
              hpt + b * H + a);
        }
        for (int64_t b = std::max(bs, r0); b < pad_end; ++b)
          for (int64_t g = 0; g < 3; ++g)
            std::fill(dgit + b * 3 * H + g * H + a, dgit + b * 3 * H + g * H + a + Hc, T(0));
        for (int64_t b = std::max(bs, r0); b < pad_end; ++b) {
          std::fill(hpt + b * H + a, hpt + b * H + a + Hc, T(0));
          std::fill(rht + b * H + a, rht + b * H + a + Hc, T(0));
        }
        team_barrier(team);  // every unit of da_n is needed below
        // d(r*h)[:, units] = da_n [bs, H] @ W_hn[:, units] [H, Hc]
        mm<T>(m, Hc, H, dgit + r0 * 3 * H + 2 * H, 3 * H, whh + 2 * H * H + a, H, drhp + r0 * H + a, H, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* s = s_all + b * 3 * H + a;
          T* gi_ = dgit + b * 3 * H + a;
          bwd_before_gates<T>(Hc, s, s + H, hpt + b * H + a, drhp + b * H + a, dhp + b * H + a, gi_,
                              gi_ + H, rht + b * H + a);
        }
        team_barrier(team);  // every unit of da_r, da_z is needed below
        // dh_{t-1}[:, units] += [da_r, da_z] [bs, 2H] @ W_hh[:2H, units] [2H, Hc]
        mm<T>(m, Hc, 2 * H, dgit + r0 * 3 * H, 3 * H, whh + a, H, dhp + r0 * H + a, H, true);
      }
    }
  });

  // weight and input gradients: one product each over all T*B rows
  const int64_t N = p.N;
  const T* dgip = dgi.data_ptr<T>();
  // dX [N, I] = dGI [N, 3H] @ W_ih [3H, I]
  const std::vector<int64_t> dx_shape = p.packed ? std::vector<int64_t>{N, I} : std::vector<int64_t>{T_, B, I};
  Tensor dx = p.order.defined() ? workspace(kSortedDX, dx_shape, opts) : at::empty(dx_shape, opts);
  mm_parallel<T>(N, I, 3 * H, dgip, 3 * H, w_ih.data_ptr<T>(), I, dx.data_ptr<T>(), I, false);
  // dW_ih^T [I, 3H] = X^T [I, N] @ dGI [N, 3H]
  Tensor x_t = workspace(kXT, {I, N}, opts);
  x_t.copy_(x.view({N, I}).t());
  Tensor dw_ih_t = workspace(kDWihT, {I, 3 * H}, opts);
  mm_parallel<T>(I, 3 * H, N, x_t.data_ptr<T>(), N, dgip, 3 * H, dw_ih_t.data_ptr<T>(), 3 * H, false);
  // dW_hh^T [H, 3H] = H_prev^T [H, N] @ dGH [N, 3H]       (reset after)
  // dW_hh^T = [H_prev^T @ dGI[:, :2H],  (r * H_prev)^T @ dGI[:, 2H:]]   (reset before)
  Tensor hp_t = workspace(kHpT, {H, N}, opts);
  hp_t.copy_(hprev.view({N, H}).t());
  Tensor dw_hh_t = workspace(kDWhhT, {H, 3 * H}, opts);
  if (p.reset_after) {
    mm_parallel<T>(H, 3 * H, N, hp_t.data_ptr<T>(), N, dgh.data_ptr<T>(), 3 * H, dw_hh_t.data_ptr<T>(), 3 * H, false);
  } else {
    Tensor rh_t = workspace(kRhT, {H, N}, opts);
    rh_t.copy_(rhs.view({N, H}).t());
    mm_parallel<T>(H, 2 * H, N, hp_t.data_ptr<T>(), N, dgip, 3 * H, dw_hh_t.data_ptr<T>(), 3 * H, false);
    mm_parallel<T>(H, H, N, rh_t.data_ptr<T>(), N, dgip + 2 * H, 3 * H, dw_hh_t.data_ptr<T>() + 2 * H, 3 * H, false);
  }
  // always copies (contiguous() would return the reused workspace itself when a dimension is 1)
  Tensor dw_ih = dw_ih_t.t().clone(at::MemoryFormat::Contiguous);
  Tensor dw_hh = dw_hh_t.t().clone(at::MemoryFormat::Contiguous);
  Tensor db_ih = at::empty({0}, opts), db_hh = at::empty({0}, opts);  // empty: no bias
  if (has_bias) {
    db_ih = dgi.view({N, 3 * H}).sum(0);
    db_hh = p.reset_after ? dgh.view({N, 3 * H}).sum(0) : db_ih.clone();
  }
  return {to_original(p, dx, 1), to_original(p, dh, 0), dw_ih, dw_hh, db_ih, db_hh};
}

// ---------------------------------------------------------------- regularised layers

#include "gru_cpu_regularised.h"

// ---------------------------------------------------------------- operators

std::tuple<Tensor, Tensor, Tensor> gru_layer_fwd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                                 const Tensor& w_hh, const c10::optional<Tensor>& b_ih,
                                                 const c10::optional<Tensor>& b_hh,
                                                 const c10::optional<Tensor>& lengths,
                                                 const c10::optional<Tensor>& batch_sizes, bool reverse,
                                                 bool reset_after, bool keeps_state, bool training) {
  TORCH_CHECK(h0.dim() == 2, "grukit::gru_layer_fwd: h0 must be [B, H]");
  Problem p = describe(x, w_hh, lengths, batch_sizes, reverse, reset_after, keeps_state);
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_fwd", [&] {
    return forward_impl<scalar_t>(p, x, h0, w_ih, w_hh, b_ih, b_hh, training);
  });
}

std::vector<Tensor> gru_layer_bwd(const Tensor& d_out, const Tensor& d_hn, const Tensor& x, const Tensor& h0,
                                  const Tensor& w_ih, const Tensor& w_hh, const c10::optional<Tensor>& lengths,
                                  const c10::optional<Tensor>& batch_sizes, const Tensor& out, const Tensor& ws,
                                  bool reverse, bool reset_after, bool keeps_state, bool has_bias) {
  Problem p = describe(x, w_hh, lengths, batch_sizes, reverse, reset_after, keeps_state);
  TORCH_CHECK(ws.numel() == p.N * (reset_after ? 4 : 3) * p.H,
              "grukit::gru_layer_bwd: the forward pass saved no activations (it ran without grad)");
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_bwd", [&] {
    return backward_impl<scalar_t>(p, d_out, d_hn, x, h0, w_ih, w_hh, out, ws, has_bias);
  });
}

std::tuple<Tensor, Tensor, Tensor> gru_layer_reg_fwd(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const c10::optional<Tensor>& b_ih,
    const c10::optional<Tensor>& b_hh, const c10::optional<Tensor>& gamma_ih, const c10::optional<Tensor>& beta_ih,
    const c10::optional<Tensor>& gamma_hh, const c10::optional<Tensor>& beta_hh,
    const c10::optional<Tensor>& zoneout_mask, double zoneout_p, int64_t zoneout_seed,
    const c10::optional<Tensor>& recurrent_mask, const c10::optional<Tensor>& lengths,
    const c10::optional<Tensor>& batch_sizes, bool reverse, bool reset_after, bool keeps_state, bool training) {
  TORCH_CHECK(h0.dim() == 2, "grukit::gru_layer_reg_fwd: h0 must be [B, H]");
  Problem p = describe(x, w_hh, lengths, batch_sizes, reverse, reset_after, keeps_state);
  const Reg g(gamma_ih, zoneout_mask, zoneout_p, zoneout_seed, recurrent_mask, p.H, reset_after);
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_reg_fwd", [&] {
    return reg_forward_impl<scalar_t>(p, g, x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, beta_ih, gamma_hh, beta_hh,
                                      zoneout_mask, recurrent_mask, training);
  });
}

std::vector<Tensor> gru_layer_reg_bwd(
    const Tensor& d_out, const Tensor& d_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const c10::optional<Tensor>& gamma_ih, const c10::optional<Tensor>& gamma_hh,
    const c10::optional<Tensor>& zoneout_mask, double zoneout_p, int64_t zoneout_seed,
    const c10::optional<Tensor>& recurrent_mask, const c10::optional<Tensor>& lengths,
    const c10::optional<Tensor>& batch_sizes, const Tensor& out,
    const Tensor& ws, bool reverse, bool reset_after, bool keeps_state, bool has_bias) {
  Problem p = describe(x, w_hh, lengths, batch_sizes, reverse, reset_after, keeps_state);
  const Reg g(gamma_ih, zoneout_mask, zoneout_p, zoneout_seed, recurrent_mask, p.H, reset_after);
  TORCH_CHECK(ws.numel() == p.N * g.width,
              "grukit::gru_layer_reg_bwd: the forward pass saved no activations (it ran without grad)");
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_reg_bwd", [&] {
    return reg_backward_impl<scalar_t>(p, g, d_out, d_hn, x, h0, w_ih, w_hh, gamma_ih, gamma_hh, zoneout_mask,
                                       recurrent_mask, out, ws, has_bias);
  });
}

// ---------------------------------------------------------------- streaming
//
// A multi-layer, one-direction GRU that carries its state across calls, for real-time
// use: one call per time step (or per chunk), inference only. The weights are packed
// once when the stream is made; each step is one pybind call into this code, with no
// dispatcher or autograd on the way, so a batch-1 step costs a few microseconds.

class Stream {
 public:
  // weights: per layer (w_ih [3H, I_l], w_hh [3H, H], b_ih [3H] or undefined, b_hh);
  // h0: [L, B, H] initial state (copied).
  Stream(const std::vector<std::vector<Tensor>>& weights, const Tensor& h0, bool reset_after, bool keeps_state)
      : reset_after_(reset_after), keeps_(keeps_state) {
    L_ = (int64_t)weights.size();
    B_ = h0.size(1);
    H_ = h0.size(2);
    I_ = weights[0][0].size(1);
    auto opts = h0.options();
    for (const auto& w : weights) {
      w_ih_t_.push_back(w[0].t().contiguous());  // [I_l, 3H]
      Tensor whh = w[1].contiguous();
      w_hh_t_.push_back(whh.t().contiguous());   // [H, 3H]: r, z, n columns
      Tensor bias = at::zeros({4, H_}, opts);     // rows: b_ir + b_hr, b_iz + b_hz, b_in, b_hn
      if (w.size() == 4 && w[2].defined()) {
        bias[0].copy_(w[2].narrow(0, 0, H_) + w[3].narrow(0, 0, H_));
        bias[1].copy_(w[2].narrow(0, H_, H_) + w[3].narrow(0, H_, H_));
        bias[2].copy_(w[2].narrow(0, 2 * H_, H_));
        bias[3].copy_(w[3].narrow(0, 2 * H_, H_));
      }
      biases_.push_back(bias);
    }
    h_ = h0.clone().contiguous();
    gi_ = at::empty({B_, 3 * H_}, opts);
    gh_ = at::empty({B_, 3 * H_}, opts);
    rh_ = at::empty({B_, H_}, opts);
    saved_ = at::empty({B_, 4 * H_}, opts);
    h_next_ = at::empty({B_, H_}, opts);
  }

  // x [B, I] -> the last layer's new state [B, H] (a new tensor); every layer's state advances.
  Tensor step(const Tensor& x) {
    check_input(x, 2);
    Tensor y = at::empty({B_, H_}, h_.options());
    AT_DISPATCH_FLOATING_TYPES(h_.scalar_type(), "gru_stream_step", [&] {
      SequentialBlas one;
      step_impl<scalar_t>(x.contiguous().data_ptr<scalar_t>(), y.data_ptr<scalar_t>());
    });
    return y;
  }

  // x [T, B, I] -> the last layer's states [T, B, H]
  Tensor run(const Tensor& x) {
    check_input(x, 3);
    const int64_t T = x.size(0);
    Tensor xc = x.contiguous();
    Tensor y = at::empty({T, B_, H_}, h_.options());
    AT_DISPATCH_FLOATING_TYPES(h_.scalar_type(), "gru_stream_run", [&] {
      SequentialBlas one;
      for (int64_t t = 0; t < T; ++t)
        step_impl<scalar_t>(xc.data_ptr<scalar_t>() + t * B_ * I_, y.data_ptr<scalar_t>() + t * B_ * H_);
    });
    return y;
  }

  Tensor state() const { return h_.clone(); }
  void set_state(const Tensor& h) {
    TORCH_CHECK_VALUE(h.sizes() == h_.sizes(), "state must have shape ", h_.sizes(), ", got ", h.sizes());
    TORCH_CHECK_TYPE(h.scalar_type() == h_.scalar_type(), "state must have dtype ", h_.scalar_type(), ", got ",
                     h.scalar_type());
    h_.copy_(h);
  }

 private:
  void check_input(const Tensor& x, int64_t dims) const {
    TORCH_CHECK_TYPE(x.scalar_type() == h_.scalar_type(), "x must have dtype ", h_.scalar_type(),
                     " (the stream's), got ", x.scalar_type());
    TORCH_CHECK_VALUE(x.device().is_cpu(), "x must be on the CPU, got ", x.device());
    const bool ok = x.dim() == dims && x.size(dims - 2) == B_ && x.size(dims - 1) == I_;
    TORCH_CHECK_VALUE(ok, "x must have shape ", dims == 2 ? "" : "[T, ", dims == 2 ? "[" : "", B_, ", ", I_,
                      "] (batch_size, input_size), got ", x.sizes());
  }

  template <typename T>
  void step_impl(const T* x, T* y) {
    const int64_t B = B_, H = H_;
    T* gi = gi_.data_ptr<T>();
    T* gh = gh_.data_ptr<T>();
    T* s = saved_.data_ptr<T>();
    const T* in = x;
    int64_t in_size = I_;
    for (int64_t l = 0; l < L_; ++l) {
      T* h = h_.data_ptr<T>() + l * B * H;
      T* hn = l == L_ - 1 ? y : h_next_.data_ptr<T>();
      const T* bias = biases_[l].data_ptr<T>();
      // x W_ih^T [B, 3H] and h W_hh^T (r, z columns; and n for reset after)
      mm<T>(B, 3 * H, in_size, in, in_size, w_ih_t_[l].data_ptr<T>(), 3 * H, gi, 3 * H, false);
      const T* whh_t = w_hh_t_[l].data_ptr<T>();
      if (reset_after_) {
        mm<T>(B, 3 * H, H, h, H, whh_t, 3 * H, gh, 3 * H, false);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = gi + b * 3 * H;
          const T* q = gh + b * 3 * H;
          T* sb = s + b * 4 * H;
          (keeps_ ? fwd_after<T, true> : fwd_after<T, false>)(
              H, g, g + H, g + 2 * H, q, q + H, q + 2 * H, bias, bias + H, bias + 2 * H, bias + 3 * H,
              h + b * H, hn + b * H, hn + b * H, sb, sb + H, sb + 2 * H, sb + 3 * H);
        }
      } else {
        T* rh = rh_.data_ptr<T>();
        mm<T>(B, 2 * H, H, h, H, whh_t, 3 * H, gh, 3 * H, false);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = gi + b * 3 * H;
          const T* q = gh + b * 3 * H;
          T* sb = s + b * 4 * H;
          fwd_before_gates<T>(H, g, g + H, q, q + H, bias, bias + H, h + b * H, sb, sb + H, rh + b * H);
        }
        mm<T>(B, H, H, rh, H, whh_t + 2 * H, 3 * H, gh + 2 * H, 3 * H, false);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = gi + b * 3 * H;
          T* sb = s + b * 4 * H;
          (keeps_ ? fwd_before_state<T, true> : fwd_before_state<T, false>)(
              H, g + 2 * H, gh + b * 3 * H + 2 * H, bias + 2 * H, bias + 3 * H, sb + H, h + b * H, hn + b * H,
              hn + b * H, sb + 2 * H);
        }
      }
      std::copy(hn, hn + B * H, h);  // the layer's new state
      in = h;
      in_size = H;
    }
  }

  int64_t L_, B_, I_, H_;
  bool reset_after_, keeps_;
  std::vector<Tensor> w_ih_t_, w_hh_t_, biases_;
  Tensor h_, gi_, gh_, rh_, saved_, h_next_;
};

}  // namespace

TORCH_LIBRARY(grukit, m) {
  m.def(
      "gru_layer_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? lengths, Tensor? batch_sizes, bool reverse, bool reset_after, bool keeps_state, bool training) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "gru_layer_bwd(Tensor d_out, Tensor d_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? lengths, Tensor? batch_sizes, Tensor out, Tensor workspace, bool reverse, bool reset_after, "
      "bool keeps_state, "
      "bool has_bias) -> Tensor[]");
  m.def(
      "gru_layer_reg_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? gamma_ih, Tensor? beta_ih, Tensor? gamma_hh, Tensor? beta_hh, Tensor? zoneout_mask, "
      "float zoneout_p, int zoneout_seed, Tensor? recurrent_mask, Tensor? lengths, Tensor? batch_sizes, bool reverse, "
      "bool reset_after, bool keeps_state, bool training) -> (Tensor, Tensor, Tensor)");
  m.def(
      "gru_layer_reg_bwd(Tensor d_out, Tensor d_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? gamma_ih, Tensor? gamma_hh, Tensor? zoneout_mask, float zoneout_p, int zoneout_seed, "
      "Tensor? recurrent_mask, "
      "Tensor? lengths, Tensor? batch_sizes, Tensor out, Tensor workspace, bool reverse, bool reset_after, "
      "bool keeps_state, bool has_bias) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("gru_layer_fwd", &gru_layer_fwd);
  m.impl("gru_layer_bwd", &gru_layer_bwd);
  m.impl("gru_layer_reg_fwd", &gru_layer_reg_fwd);
  m.impl("gru_layer_reg_bwd", &gru_layer_reg_bwd);
}

}  // namespace grukit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<grukit::Stream>(m, "Stream")
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, const at::Tensor&, bool, bool>())
      .def("step", &grukit::Stream::step)
      .def("run", &grukit::Stream::run)
      .def("state", &grukit::Stream::state)
      .def("set_state", &grukit::Stream::set_state);
}
