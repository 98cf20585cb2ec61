// The end of every backward pass: the input, weight and bias gradients as single GEMMs (and
// sums) over all T*B (or N) rows, once the step loop has filled the per-row gradients.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "gemm.h"
#include "problem.h"
#include "workspace.h"

namespace grukit {

struct InputAndWeightGradients {
  Tensor dx;     // [T, B, I] or [N, I], in the kernel's (sorted) row order
  Tensor dw_ih;  // [3H, I]
  Tensor dw_hh;  // [3H, H]
};

// Args (all in the kernel's row order, one row per input row):
//   x      [N, I]   the layer's input
//   w_ih   [3H, I]  contiguous
//   d_in   [N, 3H]  gradients of the input projection x W_ih^T (after its layer norm, if any:
//                   the caller has already taken it back through the norm)
//   hp     [N, H]   what entered the recurrent products at each row's step: h_{t-1} (times the
//                   recurrent-dropout mask, if any)
//   rh     [N, H]   r * hp (reset before; undefined for reset after)
//   d_rec  [N, 3H]  gradients of the raw recurrent products: h U^T (reset after), or
//                   [h U_rz^T | (r * h) U_n^T] (reset before)
template <typename T>
InputAndWeightGradients input_and_weight_gradients(const Problem& p, const Tensor& x, const Tensor& w_ih,
                                                   const Tensor& d_in, const Tensor& hp, const Tensor& rh,
                                                   const Tensor& d_rec) {
  const int64_t N = p.N, I = p.I, H = p.H;
  auto opts = x.options();
  const T* dip = d_in.data_ptr<T>();
  // dX [N, I] = dGI [N, 3H] @ W_ih [3H, I]
  const std::vector<int64_t> dx_shape = p.packed ? std::vector<int64_t>{N, I} : std::vector<int64_t>{p.T, p.B, I};
  Tensor dx = p.order.defined() ? workspace(kSortedDX, dx_shape, opts) : at::empty(dx_shape, opts);
  mm_parallel<T>(Product::projection, N, I, 3 * H, dip, 3 * H, w_ih.data_ptr<T>(), I, dx.data_ptr<T>(), I, false);
  // dW_ih^T [I, 3H] = X^T [I, N] @ dGI [N, 3H]
  Tensor x_t = workspace(kXT, {I, N}, opts);
  x_t.copy_(x.view({N, I}).t());
  Tensor dw_ih_t = workspace(kDWihT, {I, 3 * H}, opts);
  mm_parallel<T>(Product::weight_gradient, I, 3 * H, N, x_t.data_ptr<T>(), N, dip, 3 * H, dw_ih_t.data_ptr<T>(), 3 * H,
                 false);
  // dW_hh^T [H, 3H] = HP^T [H, N] @ dRec [N, 3H]                                (reset after)
  // dW_hh^T = [HP^T @ dRec[:, :2H],  (r * HP)^T @ dRec[:, 2H:]]                  (reset before)
  Tensor hp_t = workspace(kHpT, {H, N}, opts);
  hp_t.copy_(hp.view({N, H}).t());
  Tensor dw_hh_t = workspace(kDWhhT, {H, 3 * H}, opts);
  const T* drp = d_rec.data_ptr<T>();
  mm_parallel<T>(Product::weight_gradient, H, p.reset_after ? 3 * H : 2 * H, N, hp_t.data_ptr<T>(), N, drp, 3 * H,
                 dw_hh_t.data_ptr<T>(), 3 * H, false);
  if (!p.reset_after) {
    Tensor rh_t = workspace(kRhT, {H, N}, opts);
    rh_t.copy_(rh.view({N, H}).t());
    mm_parallel<T>(Product::weight_gradient, H, H, N, rh_t.data_ptr<T>(), N, drp + 2 * H, 3 * H,
                   dw_hh_t.data_ptr<T>() + 2 * H, 3 * H, false);
  }
  // always copies (contiguous() would return the reused workspace itself when a dimension is 1)
  return {dx, dw_ih_t.t().clone(at::MemoryFormat::Contiguous), dw_hh_t.t().clone(at::MemoryFormat::Contiguous)};
}

// The bias gradients: sums over every row (rows a padded sequence never ran hold zeros).
// d_in [N, 3H] as above; d_hidden [N, 3H] the gradients where b_hh is added, or undefined
// when they equal d_in (reset before: b_hh and b_ih reach the same pre-activations).
inline std::pair<Tensor, Tensor> bias_gradients(const Tensor& d_in, const Tensor& d_hidden) {
  const int64_t cols = d_in.size(-1);
  Tensor db_ih = d_in.view({-1, cols}).sum(0);
  Tensor db_hh = d_hidden.defined() ? d_hidden.view({-1, cols}).sum(0) : db_ih.clone();
  return {db_ih, db_hh};
}

}  // namespace grukit
