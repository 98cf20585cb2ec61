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

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
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

// ---------------------------------------------------------------- BLAS, row-major

inline void blas_gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas_gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                      const double* b, int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// Row-major C[M, N] = op(A)[M, K] op(B)[K, N] + beta * C, where op(A) = A^T if trans_a.
// (A row-major matrix is its column-major transpose, so this is BLAS computing C^T = op(B)^T op(A)^T.)
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  blas_gemm(trans_b ? 'T' : 'N', trans_a ? 'T' : 'N', (int)N, (int)M, (int)K, T(1), B, (int)ldb, A,
            (int)lda, beta, C, (int)ldc);
}

// ---------------------------------------------------------------- activations

// exp for float32: range reduction to [-ln2/2, ln2/2], Cephes' degree-6 polynomial,
// scaling by 2^n through the exponent bits. Branch-free so loops vectorise; NaN stays NaN
// (the clamps are comparisons, which are false for NaN).
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float fx = std::floor(x * 1.44269504088896341f + 0.5f);
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

// ---------------------------------------------------------------- problem description

struct Problem {
  int64_t T, B, I, H;
  bool reverse, reset_after, keeps_state;
  std::vector<int64_t> bs;  // bs[t]: rows (of the sorted batch) still running at step t
  Tensor order;             // sorted row -> original row (undefined if no sorting needed)
  Tensor inverse;           // original row -> sorted row
};

Problem describe(const Tensor& x, const Tensor& w_hh, const c10::optional<Tensor>& lengths,
                 bool reverse, bool reset_after, bool keeps_state) {
  Problem p;
  p.T = x.size(0);
  p.B = x.size(1);
  p.I = x.size(2);
  p.H = w_hh.size(1);
  p.reverse = reverse;
  p.reset_after = reset_after;
  p.keeps_state = keeps_state;
  p.bs.assign(p.T, p.B);
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

Tensor to_sorted(const Problem& p, const Tensor& t, int64_t batch_dim) {
  return p.order.defined() ? t.index_select(batch_dim, p.order) : t.contiguous();
}
Tensor to_original(const Problem& p, const Tensor& t, int64_t batch_dim) {
  return p.order.defined() ? t.index_select(batch_dim, p.inverse) : t;
}

// step index of the k-th step processed
inline int64_t step_at(const Problem& p, int64_t k) { return p.reverse ? p.T - 1 - k : k; }

// Split [0, rows) across threads only when the pass is big enough to pay for it.
template <typename F>
void for_rows(int64_t rows, int64_t H, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(H, 1));
  at::parallel_for(0, rows, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
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
  Tensor x = to_sorted(p, x_in, 1);
  Tensor hbuf = to_sorted(p, h0_in, 0).clone();  // running state, all rows
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  Biases<T> bias(b_ih, b_hh, H);
  auto opts = x.options();

  Tensor gi = at::empty({T_, B, 3 * H}, opts);
  gemm<T>(false, true, T_ * B, 3 * H, I, x.data_ptr<T>(), I, w_ih.data_ptr<T>(), I, T(0), gi.data_ptr<T>(), 3 * H);

  // saved for backward, per step and row: r, z, n, and (reset after) hn = h U_n^T + b_hn
  const int64_t G = p.reset_after ? 4 : 3;
  Tensor ws = training ? at::empty({T_, B, G * H}, opts) : at::empty({0}, opts);
  // scratch for inference: one step's worth
  Tensor scratch = at::empty({B, G * H}, opts);
  Tensor out = at::empty({T_, B, H}, opts);
  Tensor gh = at::empty({B, (p.reset_after ? 3 : 2) * H}, opts);
  Tensor rh = p.reset_after ? Tensor() : at::empty({B, H}, opts);
  Tensor ghn = p.reset_after ? Tensor() : at::empty({B, H}, opts);

  T* hp = hbuf.data_ptr<T>();
  const T* whh = w_hh.data_ptr<T>();
  const T* brz = bias.rz.data();
  const T* bin = bias.in.data();
  const T* bhn = bias.hn.data();
  const bool keeps = p.keeps_state;

  for (int64_t k = 0; k < T_; ++k) {
    const int64_t t = step_at(p, k);
    const int64_t bs = p.bs[t];
    const T* git = gi.data_ptr<T>() + t * B * 3 * H;
    T* outt = out.data_ptr<T>() + t * B * H;
    T* wst = training ? ws.data_ptr<T>() + t * B * G * H : scratch.data_ptr<T>();
    T* ghp = gh.data_ptr<T>();
    if (p.reset_after) {
      // GH = h [bs, H] @ W_hh^T [H, 3H]
      gemm<T>(false, true, bs, 3 * H, H, hp, H, whh, H, T(0), ghp, 3 * H);
      for_rows(bs, H, [&](int64_t b) {
        const T* g = git + b * 3 * H;
        const T* q = ghp + b * 3 * H;
        T* h = hp + b * H;
        T* o = outt + b * H;
        T* s = wst + b * 4 * H;
        for (int64_t j = 0; j < H; ++j) {
          // r = sigmoid(x W_r^T + h U_r^T + b_ir + b_hr);  z likewise
          T r = sigmoid_act(g[j] + q[j] + brz[j]);
          T z = sigmoid_act(g[H + j] + q[H + j] + brz[H + j]);
          // n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))
          T hn = q[2 * H + j] + bhn[j];
          T n = tanh_act(g[2 * H + j] + bin[j] + r * hn);
          // h' = z h + (1 - z) n   or   (1 - z) h + z n
          T hv = h[j];
          T hnew = keeps ? n + z * (hv - n) : hv + z * (n - hv);
          s[j] = r;
          s[H + j] = z;
          s[2 * H + j] = n;
          s[3 * H + j] = hn;
          h[j] = hnew;
          o[j] = hnew;
        }
      });
    } else {
      // GH_rz = h [bs, H] @ W_hh[:2H]^T
      gemm<T>(false, true, bs, 2 * H, H, hp, H, whh, H, T(0), ghp, 2 * H);
      T* rhp = rh.data_ptr<T>();
      for_rows(bs, H, [&](int64_t b) {
        const T* g = git + b * 3 * H;
        const T* q = ghp + b * 2 * H;
        const T* h = hp + b * H;
        T* s = wst + b * 3 * H;
        T* rr = rhp + b * H;
        for (int64_t j = 0; j < H; ++j) {
          T r = sigmoid_act(g[j] + q[j] + brz[j]);
          T z = sigmoid_act(g[H + j] + q[H + j] + brz[H + j]);
          s[j] = r;
          s[H + j] = z;
          rr[j] = r * h[j];  // r * h, the input of the candidate's recurrent product
        }
      });
      // GH_n = (r * h) [bs, H] @ W_hn^T [H, H]
      gemm<T>(false, true, bs, H, H, rhp, H, whh + 2 * H * H, H, T(0), ghn.data_ptr<T>(), H);
      const T* ghnp = ghn.data_ptr<T>();
      for_rows(bs, H, [&](int64_t b) {
        const T* g = git + b * 3 * H;
        const T* q = ghnp + b * H;
        T* h = hp + b * H;
        T* o = outt + b * H;
        T* s = wst + b * 3 * H;
        for (int64_t j = 0; j < H; ++j) {
          // n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)
          T n = tanh_act(g[2 * H + j] + bin[j] + q[j] + bhn[j]);
          T z = s[H + j];
          T hv = h[j];
          T hnew = keeps ? n + z * (hv - n) : hv + z * (n - hv);
          s[2 * H + j] = n;
          h[j] = hnew;
          o[j] = hnew;
        }
      });
    }
    if (bs < B) {  // finished (or, reversed, not yet started) rows: output 0
      std::fill(outt + bs * H, outt + B * H, T(0));
      if (training) std::fill(wst + bs * G * H, wst + B * G * H, T(0));
    }
  }
  return {to_original(p, out, 1), to_original(p, hbuf, 0), ws};
}

// ---------------------------------------------------------------- backward

template <typename T>
std::vector<Tensor> backward_impl(const Problem& p, const Tensor& d_out_in, const Tensor& d_hn_in,
                                  const Tensor& x_in, const Tensor& h0_in, const Tensor& w_ih_in,
                                  const Tensor& w_hh_in, const Tensor& out_in, const Tensor& ws,
                                  bool has_bias) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H;
  const int64_t G = p.reset_after ? 4 : 3;
  Tensor d_out = to_sorted(p, d_out_in, 1);
  Tensor dh = to_sorted(p, d_hn_in, 0).clone();  // running gradient of the state, all rows
  Tensor x = to_sorted(p, x_in, 1);
  Tensor h0 = to_sorted(p, h0_in, 0);
  Tensor out = to_sorted(p, out_in, 1);
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  auto opts = x.options();

  // gradients of the pre-activations, per step: input side [da_r, da_z, da_n],
  // recurrent side (reset after) [da_r, da_z, d(hn)]; HP = h_{t-1}; RH = r * h_{t-1}
  Tensor dgi = at::empty({T_, B, 3 * H}, opts);
  Tensor dgh = p.reset_after ? at::empty({T_, B, 3 * H}, opts) : Tensor();
  Tensor hprev = at::empty({T_, B, H}, opts);
  Tensor rhs = p.reset_after ? Tensor() : at::empty({T_, B, H}, opts);
  Tensor drh = p.reset_after ? Tensor() : at::empty({B, H}, opts);

  T* dhp = dh.data_ptr<T>();
  const T* whh = w_hh.data_ptr<T>();
  const T* outp = out.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const bool keeps = p.keeps_state;

  for (int64_t k = T_ - 1; k >= 0; --k) {
    const int64_t t = step_at(p, k);
    const int64_t bs = p.bs[t];
    // the step processed before this one, and how many of its rows ran
    const int64_t tp = p.reverse ? t + 1 : t - 1;
    const int64_t bs_prev = k == 0 ? 0 : p.bs[tp];
    const T* prev_out = k == 0 ? nullptr : outp + tp * B * H;
    const T* s_all = ws.data_ptr<T>() + t * B * G * H;
    const T* dot = d_out.data_ptr<T>() + t * B * H;
    T* dgit = dgi.data_ptr<T>() + t * B * 3 * H;
    T* hpt = hprev.data_ptr<T>() + t * B * H;

    if (p.reset_after) {
      T* dght = dgh.data_ptr<T>() + t * B * 3 * H;
      for_rows(bs, H, [&](int64_t b) {
        const T* s = s_all + b * 4 * H;
        const T* hsrc = b < bs_prev ? prev_out + b * H : h0p + b * H;
        T* d = dhp + b * H;
        const T* dout = dot + b * H;
        T* gi_ = dgit + b * 3 * H;
        T* gh_ = dght + b * 3 * H;
        T* hp_ = hpt + b * H;
        for (int64_t j = 0; j < H; ++j) {
          T r = s[j], z = s[H + j], n = s[2 * H + j], hn = s[3 * H + j];
          T hv = hsrc[j];
          T dhn = dout[j] + d[j];  // dL/dh_t: from the output and from step t+1
          // h' = z h + (1 - z) n   or   (1 - z) h + z n
          T dz = keeps ? dhn * (hv - n) : dhn * (n - hv);
          T dn = keeps ? dhn * (T(1) - z) : dhn * z;
          T dh_direct = keeps ? dhn * z : dhn * (T(1) - z);
          // n = tanh(a_n), a_n = x W_n^T + b_in + r * hn
          T da_n = dn * (T(1) - n * n);
          T dr = da_n * hn;
          T d_hn = da_n * r;
          T da_r = dr * r * (T(1) - r);
          T da_z = dz * z * (T(1) - z);
          gi_[j] = da_r;
          gi_[H + j] = da_z;
          gi_[2 * H + j] = da_n;
          gh_[j] = da_r;
          gh_[H + j] = da_z;
          gh_[2 * H + j] = d_hn;
          hp_[j] = hv;
          d[j] = dh_direct;
        }
      });
      if (bs < B) {
        std::fill(dgit + bs * 3 * H, dgit + B * 3 * H, T(0));
        std::fill(dght + bs * 3 * H, dght + B * 3 * H, T(0));
        std::fill(hpt + bs * H, hpt + B * H, T(0));
      }
      // dh_{t-1} += dGH [bs, 3H] @ W_hh [3H, H]
      gemm<T>(false, false, bs, H, 3 * H, dght, 3 * H, whh, H, T(1), dhp, H);
    } else {
      T* rht = rhs.data_ptr<T>() + t * B * H;
      T* drhp = drh.data_ptr<T>();
      for_rows(bs, H, [&](int64_t b) {
        const T* s = s_all + b * 3 * H;
        T* d = dhp + b * H;
        const T* dout = dot + b * H;
        T* gi_ = dgit + b * 3 * H;
        const T* hsrc = b < bs_prev ? prev_out + b * H : h0p + b * H;
        T* hp_ = hpt + b * H;
        for (int64_t j = 0; j < H; ++j) {
          T z = s[H + j], n = s[2 * H + j];
          T hv = hsrc[j];
          T dhn = dout[j] + d[j];
          T dz = keeps ? dhn * (hv - n) : dhn * (n - hv);
          T dn = keeps ? dhn * (T(1) - z) : dhn * z;
          gi_[H + j] = dz;  // kept here until the second pass turns it into da_z
          gi_[2 * H + j] = dn * (T(1) - n * n);  // da_n
          hp_[j] = hv;
          d[j] = keeps ? dhn * z : dhn * (T(1) - z);
        }
      });
      // d(r*h) [bs, H] = da_n [bs, H] @ W_hn [H, H]
      gemm<T>(false, false, bs, H, H, dgit + 2 * H, 3 * H, whh + 2 * H * H, H, T(0), drhp, H);
      for_rows(bs, H, [&](int64_t b) {
        const T* s = s_all + b * 3 * H;
        T* d = dhp + b * H;
        T* gi_ = dgit + b * 3 * H;
        const T* hp_ = hpt + b * H;
        const T* q = drhp + b * H;
        T* rr = rht + b * H;
        for (int64_t j = 0; j < H; ++j) {
          T r = s[j], z = s[H + j];
          T hv = hp_[j];
          // a_n = ... + (r * h) U_n^T:  dr = d(rh) * h,  dh += d(rh) * r
          T dr = q[j] * hv;
          d[j] += q[j] * r;
          gi_[j] = dr * r * (T(1) - r);
          gi_[H + j] = gi_[H + j] * z * (T(1) - z);
          rr[j] = r * hv;
        }
      });
      if (bs < B) {
        std::fill(dgit + bs * 3 * H, dgit + B * 3 * H, T(0));
        std::fill(hpt + bs * H, hpt + B * H, T(0));
        std::fill(rht + bs * H, rht + B * H, T(0));
      }
      // dh_{t-1} += [da_r, da_z] [bs, 2H] @ W_hh[:2H] [2H, H]
      gemm<T>(false, false, bs, H, 2 * H, dgit, 3 * H, whh, H, T(1), dhp, H);
    }
  }

  // weight and input gradients: one GEMM each over all T*B rows
  const int64_t N = T_ * B;
  Tensor dx = at::empty({T_, B, I}, opts);
  Tensor dw_ih = at::empty({3 * H, I}, opts);
  Tensor dw_hh = at::empty({3 * H, H}, opts);
  const T* dgip = dgi.data_ptr<T>();
  // dX [N, I] = dGI [N, 3H] @ W_ih [3H, I]
  gemm<T>(false, false, N, I, 3 * H, dgip, 3 * H, w_ih.data_ptr<T>(), I, T(0), dx.data_ptr<T>(), I);
  // dW_ih [3H, I] = dGI^T [3H, N] @ X [N, I]
  gemm<T>(true, false, 3 * H, I, N, dgip, 3 * H, x.data_ptr<T>(), I, T(0), dw_ih.data_ptr<T>(), I);
  const T* hpp = hprev.data_ptr<T>();
  if (p.reset_after) {
    // dW_hh [3H, H] = dGH^T [3H, N] @ H_prev [N, H]
    gemm<T>(true, false, 3 * H, H, N, dgh.data_ptr<T>(), 3 * H, hpp, H, T(0), dw_hh.data_ptr<T>(), H);
  } else {
    // dW_hh[:2H] = [da_r, da_z]^T @ H_prev;   dW_hh[2H:] = da_n^T @ (r * H_prev)
    gemm<T>(true, false, 2 * H, H, N, dgip, 3 * H, hpp, H, T(0), dw_hh.data_ptr<T>(), H);
    gemm<T>(true, false, H, H, N, dgip + 2 * H, 3 * H, rhs.data_ptr<T>(), H, T(0),
            dw_hh.data_ptr<T>() + 2 * H * H, H);
  }
  Tensor db_ih = at::empty({0}, opts), db_hh = at::empty({0}, opts);  // empty: no bias
  if (has_bias) {
    db_ih = dgi.view({N, 3 * H}).sum(0);
    db_hh = p.reset_after ? dgh.view({N, 3 * H}).sum(0) : db_ih.clone();
  }
  return {to_original(p, dx, 1), to_original(p, dh, 0), dw_ih, dw_hh, db_ih, db_hh};
}

// ---------------------------------------------------------------- operators

std::tuple<Tensor, Tensor, Tensor> gru_layer_fwd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                                 const Tensor& w_hh, const c10::optional<Tensor>& b_ih,
                                                 const c10::optional<Tensor>& b_hh,
                                                 const c10::optional<Tensor>& lengths, bool reverse,
                                                 bool reset_after, bool keeps_state, bool training) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2, "grukit::gru_layer_fwd: x must be [T, B, I], h0 [B, H]");
  Problem p = describe(x, w_hh, lengths, reverse, reset_after, keeps_state);
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_fwd", [&] {
    return forward_impl<scalar_t>(p, x, h0, w_ih, w_hh, b_ih, b_hh, training);
  });
}

std::vector<Tensor> gru_layer_bwd(const Tensor& d_out, const Tensor& d_hn, const Tensor& x, const Tensor& h0,
                                  const Tensor& w_ih, const Tensor& w_hh, const c10::optional<Tensor>& lengths,
                                  const Tensor& out, const Tensor& ws, bool reverse, bool reset_after,
                                  bool keeps_state, bool has_bias) {
  Problem p = describe(x, w_hh, lengths, reverse, reset_after, keeps_state);
  TORCH_CHECK(ws.numel() == p.T * p.B * (reset_after ? 4 : 3) * p.H,
              "grukit::gru_layer_bwd: the forward pass saved no activations (it ran without grad)");
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_bwd", [&] {
    return backward_impl<scalar_t>(p, d_out, d_hn, x, h0, w_ih, w_hh, out, ws, has_bias);
  });
}

}  // namespace

TORCH_LIBRARY(grukit, m) {
  m.def(
      "gru_layer_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? lengths, bool reverse, bool reset_after, bool keeps_state, bool training) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "gru_layer_bwd(Tensor d_out, Tensor d_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? lengths, Tensor out, Tensor workspace, bool reverse, bool reset_after, bool keeps_state, "
      "bool has_bias) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("gru_layer_fwd", &gru_layer_fwd);
  m.impl("gru_layer_bwd", &gru_layer_bwd);
}

}  // namespace grukit
