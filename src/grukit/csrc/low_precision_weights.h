// The weights of a bfloat16 or int8 GRU layer, packed once for low_precision.h's products: W_ih
// whole (the input projection of all steps), and, for each thread of the team, the recurrent rows
// its units need, in pack_by_team's order: [r | z | n] of its units (reset after), or [r | z],
// then n apart (reset before: the candidate's product waits for r). One block serves every
// thread when the team splits batch rows. The layer driver (layer.h) packs per call; a stream
// (stream.h) packs once, with a one-thread team.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "low_precision_product.h"
#include "team.h"

namespace grukit {

struct LowPrecisionWeights {
  bool by_rows = true;
  PackedWeights w_ih;
  std::vector<PackedWeights> first, candidate;

  // w_ih [3H, I], w_hh [3H, H] in bfloat16 or int8; int8: s_ih, s_hh [3H] float32 (else undefined)
  LowPrecisionWeights(const Tensor& w_ih_in, const Tensor& w_hh_in, const Tensor& s_ih_in, const Tensor& s_hh_in,
                      const Team& team, bool reset_after)
      : by_rows(team.by_rows) {
    const Precision precision = w_hh_in.scalar_type() == at::kChar ? Precision::int8 : Precision::bfloat16;
    const bool int8 = precision == Precision::int8;
    const Tensor recurrent = w_hh_in.contiguous(), input = w_ih_in.contiguous();
    const int64_t H = recurrent.size(1), I = input.size(1);
    const Tensor s_ih = int8 ? s_ih_in.contiguous() : Tensor();
    const Tensor s_hh = int8 ? s_hh_in.contiguous() : at::zeros({3 * H}, at::kFloat);
    w_ih = PackedWeights(precision, input.data_ptr(), I, 3 * H, I, int8 ? s_ih.data_ptr<float>() : nullptr);
    auto pack = [&](const std::vector<int64_t>& gates, int64_t lo, int64_t n) {
      std::vector<Tensor> rows, scales;
      for (int64_t g : gates) {
        rows.push_back(recurrent.narrow(0, g * H + lo, n));
        scales.push_back(s_hh.narrow(0, g * H + lo, n));
      }
      const Tensor w = at::cat(rows, 0).contiguous(), s = at::cat(scales, 0).contiguous();
      return PackedWeights(precision, w.data_ptr(), H, w.size(0), H, s.data_ptr<float>());
    };
    const int blocks = team.by_rows ? 1 : team.n;
    for (int k = 0; k < blocks; ++k) {
      const int64_t lo = team.unit_lo(k), n = team.unit_hi(k) - lo;
      first.push_back(pack(reset_after ? std::vector<int64_t>{0, 1, 2} : std::vector<int64_t>{0, 1}, lo, n));
      if (!reset_after) candidate.push_back(pack({2}, lo, n));
    }
  }
  const PackedWeights& first_of(int k) const { return first[by_rows ? 0 : k]; }
  const PackedWeights& candidate_of(int k) const { return candidate[by_rows ? 0 : k]; }

  // GI [N, 3H] = X [N, I] @ W_ih^T, the rows split over torch's threads in blocks claimed one at a
  // time, as mm_parallel's (gemm.h run_blocks)
  void project(int64_t N, const float* x, float* gi) const {
    const int64_t threads = product_threads(), block = rows_per_block(N, threads);
    run_blocks(threads, (N + block - 1) / block, [&](int64_t i) {
      PreparedRows rows;
      const int64_t n0 = i * block, n = std::min(block, N - n0);
      low_precision_mm(w_ih, Product::projection, n, x + n0 * w_ih.K, w_ih.K, gi + n0 * w_ih.N, w_ih.N, rows);
    });
  }
};

}  // namespace grukit
