// What one call of a layer kernel computes: sizes, layout (padded or packed), direction, the
// GRU variant, and the order of the batch rows inside the kernel.
//
// Per-sequence lengths: the batch is sorted by length (longest first) inside the kernel, so
// at step t the sequences still running are a prefix of `bs[t]` rows, and every GEMM and
// element-wise pass covers only those rows: a padded batch with lengths costs less than a
// full one, never more. Outputs at steps past a sequence's length are zero; its state is
// carried unchanged.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "workspace.h"

namespace grukit {

using at::Tensor;

// Two input layouts. Padded: x [T, B, I], with optional per-sequence lengths (the batch is
// then sorted inside the kernel). Packed: x [N, I] holding the steps of a PackedSequence, step
// t's bs[t] rows at offset off[t], already sorted longest first; nothing is padded or sorted.
struct Problem {
  int64_t T, B, I, H;
  int64_t N;  // rows of x: T * B padded, sum(batch_sizes) packed
  bool packed = false;
  bool reverse, reset_after, keeps_state;
  std::vector<int64_t> bs;   // bs[t]: rows (of the sorted batch) still running at step t
  std::vector<int64_t> off;  // off[t]: the first row of step t in x, GI, the output ...
  Tensor order;              // sorted row -> original row (undefined if no sorting needed)
  Tensor inverse;            // original row -> sorted row
};

inline Problem describe(const Tensor& x, const Tensor& w_hh, const c10::optional<Tensor>& lengths,
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
inline void gather_batch(const Tensor& src_in, const Tensor& index, int64_t batch_dim, Tensor& dst) {
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
inline Tensor to_sorted(const Problem& p, const Tensor& t, int64_t batch_dim, int slot) {
  if (!p.order.defined()) return t.contiguous();
  Tensor dst = workspace(slot, t.sizes(), t.options());
  gather_batch(t, p.order, batch_dim, dst);
  return dst;
}
// A sorted-order tensor back in the caller's batch order: a fresh tensor (t itself if unsorted).
inline Tensor to_original(const Problem& p, const Tensor& t, int64_t batch_dim) {
  if (!p.order.defined()) return t;
  Tensor dst = at::empty_like(t);
  gather_batch(t, p.inverse, batch_dim, dst);
  return dst;
}

// step index of the k-th step processed
inline int64_t step_at(const Problem& p, int64_t k) {
  return p.reverse ? p.T - 1 - k : k;
}

// Padded input with lengths: some rows of some steps are never computed (their outputs are 0).
inline bool skips_rows(const Problem& p) {
  return !p.packed && std::any_of(p.bs.begin(), p.bs.end(), [&](int64_t b) { return b < p.B; });
}

}  // namespace grukit
