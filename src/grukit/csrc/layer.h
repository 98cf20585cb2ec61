// The layer driver: one GRU layer in one direction, forward and backward, padded (with lengths)
// or packed, plain or with any of layer norm, zoneout and recurrent dropout.
//
//   forward:  GI = X W_ih^T                  one GEMM over all T*B (or N) rows; with a one-thread
//                                            recurrence, by a helper thread alongside it
//                                            (projection_ahead.h)
//             per step: GH = h~ W_hh^T       one GEMM (two for reset before)
//                       the cell's element-wise passes (cell.h)
//   backward: per step, the mirror image: the element-wise passes, one GEMM (two for reset
//             before) for the gradient flowing into h_{t-1}; then dX, dW_ih, dW_hh as single
//             GEMMs over all steps (weight_gradients.h).
//
// The equations (grukit/reference.py, gru_forward, has them with comments):
//   gi = LN(x W_ih^T; gamma_ih, beta_ih) + b_ih                  (without layer norm: x W_ih^T + b_ih)
//   h~ = h * m                                                   recurrent dropout, m [B, H] fixed in time
//   reset after:  gh = LN(h~ W_hh^T; gamma_hh, beta_hh) + b_hh   (over 3H)
//                 r, z = sigmoid(gi_{r,z} + gh_{r,z});  n = tanh(gi_n + r * gh_n)
//   reset before: gh_rz = LN(h~ W_rz^T; gamma_hh[:2H], beta_hh[:2H]) + b_hh[:2H]
//                 r, z = sigmoid(gi_{r,z} + gh_{r,z})
//                 gh_n = LN((r * h~) W_n^T; gamma_hh[2H:], beta_hh[2H:]) + b_hn;  n = tanh(gi_n + gh_n)
//   h' = z h + (1 - z) n   (keeps_state)   or   (1 - z) h + z n   (takes_candidate)
//   h_t = k h + (1 - k) h'   zoneout: k the 0/1 mask of step t (training) or the probability p (evaluation)
//   (Cho et al. 2014; layer norm: Ba et al. 2016; zoneout: Krueger et al. 2016; recurrent dropout:
//   Gal and Ghahramani 2016)
//
// The variants are compile-time policies, as Haste's PointwiseOperations and the cell's zoneout:
//   Z    zoneout: NoZoneout or Zoneout<T> (cell.h)
//   LN   layer norm. Its mean and variance run over every unit of a row, so layer norm takes the
//        rows-only thread team; the input projection is normalised step by step, by the thread
//        that owns the row, just before the row's recurrence needs it
//   RD   recurrent dropout: h~ = h * m enters the recurrent products, kept beside h
// Without layer norm the team splits batch rows or (small batch, large H) hidden units (team.h),
// with one barrier per step (two for reset before).
//   P    the weights' precision (forward only, inference): float32 (x's dtype, the GEMMs of gemm.h),
//        or bfloat16 / int8 weights with float32 x, state and gates, whose products are
//        low_precision.h's (low_precision_weights.h packs them)
//
// Rows of a padded batch that a step does not run (past a sequence's length): their state is
// carried, and the step writes zeros to their output, saved activations and per-row gradients.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cell.h"
#include "gemm.h"
#include "layer_inputs.h"
#include "layer_norm.h"
#include "low_precision_weights.h"
#include "problem.h"
#include "projection_ahead.h"
#include "saved_layout.h"
#include "team.h"
#include "weight_gradients.h"
#include "workspace.h"

namespace grukit {

// The parameters of a call as the passes read them: pointers into contiguous tensors, or into
// zeros / ones when absent. Without layer norm the biases are folded into the cell's passes
// (rz = b_i{r,z} + b_h{r,z}); with it they are added after each norm and the cell's biases are zero.
template <typename T>
struct LayerParameters {
  std::vector<T> zeros, ones, rz;  // rz [2H]
  Tensor held[6];                  // the contiguous copies the pointers below read, kept alive
  const T *b_ih, *b_hh, *gamma_ih, *beta_ih, *gamma_hh, *beta_hh;
  // the cell passes' biases: [2H] for r, z; [H] for the candidate's input and recurrent terms
  const T *cell_rz, *cell_in, *cell_rec_n;

  LayerParameters(const LayerInputs& in, int64_t H, bool layer_norm)
      : zeros(3 * H, T(0)), ones(layer_norm ? 3 * H : 0, T(1)), rz(2 * H, T(0)) {
    b_ih = read(in.b_ih, 0, zeros.data());
    b_hh = read(in.b_hh, 1, zeros.data());
    gamma_ih = layer_norm ? read(in.gamma_ih, 2, ones.data()) : nullptr;
    beta_ih = layer_norm ? read(in.beta_ih, 3, zeros.data()) : nullptr;
    gamma_hh = layer_norm ? read(in.gamma_hh, 4, ones.data()) : nullptr;
    beta_hh = layer_norm ? read(in.beta_hh, 5, zeros.data()) : nullptr;
    for (int64_t j = 0; j < 2 * H; ++j) rz[j] = b_ih[j] + b_hh[j];
    cell_rz = layer_norm ? zeros.data() : rz.data();
    cell_in = layer_norm ? zeros.data() : b_ih + 2 * H;
    cell_rec_n = layer_norm ? zeros.data() : b_hh + 2 * H;
  }

 private:
  const T* read(const OptionalTensor& t, int slot, const T* fallback) {
    if (!given(t)) return fallback;
    held[slot] = t->contiguous();
    return held[slot].data_ptr<T>();
  }
};

// y[j] = v[j] * m[j] over n values (h~ = h * m, and d h += d h~ * m with accumulate)
template <typename T>
inline void times_mask(int64_t n, const T* __restrict v, const T* __restrict m, T* __restrict y, bool accumulate) {
  if (accumulate) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] += v[j] * m[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = v[j] * m[j];
  }
}

template <typename T>
inline void fill_units(T* row, int64_t a, int64_t n) {
  std::fill(row + a, row + a + n, T(0));
}

template <typename T>
inline void fill_groups(T* row, int64_t groups, int64_t H, int64_t a, int64_t n) {
  for (int64_t g = 0; g < groups; ++g) fill_units(row + g * H, a, n);
}

// The team of a call: rows only with layer norm, else by rows or units as the sizes favour.
inline Team team_for(const Problem& p, bool layer_norm) {
  return layer_norm ? rows_only_team(p.B, p.H) : make_team(p.B, p.H, 3 * p.H);
}

template <typename T, typename ZC, bool LN, bool RD, Precision P>
std::tuple<Tensor, Tensor, Tensor> forward_with(const Problem& p, const LayerInputs& in, const ZC& zoneout_call,
                                                bool save) {
  using Z = decltype(zoneout_call.for_row(0, 0, nullptr));  // NoZoneout or ZoneoutRow<T>
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H;
  const bool after = p.reset_after, keeps = p.keeps_state;
  const Team team = team_for(p, LN);
  const OneThreadCall one_thread(team);
  constexpr bool low = P != Precision::float32;
  Tensor x = to_sorted(p, in.x, 1, kSortedX);
  const LayerParameters<T> par(in, H, LN);
  const SavedLayout layout(H, after, LN);
  const int64_t W = layout.width;
  auto opts = x.options();

  // GI = X [N, I] @ W_ih^T [I, 3H]: one product for all steps
  Tensor gi = workspace(kGI, {p.N, 3 * H}, opts);
  std::unique_ptr<ProjectionAhead> ahead;
  std::unique_ptr<LowPrecisionWeights> low_weights;
  std::vector<PreparedRows> prepared(low ? team.n : 0);  // each part's h rows in the weights' precision
  const int64_t gates = after ? 3 : 2;  // recurrent products per unit in the first product of a step
  Tensor w_rec, w_n_t;
  if constexpr (low) {
    low_weights = std::make_unique<LowPrecisionWeights>(in.w_ih, in.w_hh, given(in.w_ih_scale) ? *in.w_ih_scale : Tensor(),
                                                        given(in.w_hh_scale) ? *in.w_hh_scale : Tensor(), team, after);
    low_weights->project(p.N, x.data_ptr<float>(), gi.data_ptr<float>());
  } else {
    Tensor w_ih = in.w_ih.contiguous(), w_hh = in.w_hh.contiguous();
    Tensor w_ih_t = workspace(kWihT, {I, 3 * H}, opts);
    w_ih_t.copy_(w_ih.t());
    // with a one-thread recurrence, a helper thread computes GI block by block while the recurrence
    // runs (projection_ahead.h); otherwise every thread computes it first
    if (one_thread.limited && ProjectionAhead::worth_it(p.N, 3 * H, I))
      ahead = std::make_unique<ProjectionAhead>(p, 3 * H, I, x.data_ptr<T>(), w_ih_t.data_ptr<T>(), gi.data_ptr<T>());
    else
      mm_parallel<T>(Product::projection, p.N, 3 * H, I, x.data_ptr<T>(), I, w_ih_t.data_ptr<T>(), 3 * H,
                     gi.data_ptr<T>(), 3 * H, false);
    w_rec = pack_by_team(w_hh, team, gates);
    w_n_t = after ? Tensor() : w_hh.narrow(0, 2 * H, H).t().contiguous();  // [H, H]
  }
  Tensor saved = save ? workspace(kSaved, {p.N, W}, opts) : at::empty({0}, opts);
  Tensor scratch = save ? Tensor() : workspace(kScratch, {B, W}, opts);  // one step's values, inference
  // the output in sorted order: returned as is, or reordered into a fresh tensor at the end
  const std::vector<int64_t> out_shape = p.packed ? std::vector<int64_t>{p.N, H} : std::vector<int64_t>{T_, B, H};
  Tensor out = p.order.defined() ? workspace(kSortedOut, out_shape, opts) : at::empty(out_shape, opts);
  // double-buffered state h (and h~ = h * m with recurrent dropout): read one, write the other
  Tensor h_buffers = workspace(kHbuf, {2, B, H}, opts);
  h_buffers[0].copy_(to_sorted(p, in.h0, 0, kSortedH0));
  Tensor mask = RD ? to_sorted(p, *in.recurrent_mask, 0, kSortedRecurrent) : Tensor();
  Tensor hd_buffers = RD ? workspace(kHdbuf, {2, B, H}, opts) : Tensor();
  if (RD) {
    Tensor hd0 = hd_buffers[0];
    at::mul_out(hd0, h_buffers[0], mask);
  }
  Tensor gh = workspace(kGH, {B, 3 * H}, opts);  // recurrent products, thread k's columns at gates*unit_lo(k)
  Tensor rh = after ? Tensor() : workspace(kRH, {B, H}, opts);

  const T* wr = low ? nullptr : w_rec.data_ptr<T>();
  const T* wn_t = after || low ? nullptr : w_n_t.data_ptr<T>();
  const T *b_i = par.b_ih, *b_h = par.b_hh, *ga_i = par.gamma_ih, *be_i = par.beta_ih;
  const T *ga_h = par.gamma_hh, *be_h = par.beta_hh;
  const T* mp = RD ? mask.data_ptr<T>() : nullptr;
  T* const h_at[2] = {h_buffers.data_ptr<T>(), h_buffers.data_ptr<T>() + B * H};
  T* const hd_at[2] = {RD ? hd_buffers.data_ptr<T>() : nullptr, RD ? hd_buffers.data_ptr<T>() + B * H : nullptr};
  T* ghp = gh.data_ptr<T>();
  T* rhp = after ? nullptr : rh.data_ptr<T>();

  run_team(team, [&](int k) {
    const int64_t a = team.unit_lo(k), Hc = team.unit_hi(k) - team.unit_lo(k);
    const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
    if (Hc <= 0 || r0 >= r1) {  // nothing to do: still take part in any barriers
      for (int64_t s = 0; s < T_ * (after ? 1 : 2); ++s) team_barrier(team);
      return;
    }
    std::vector<T> hat(LN ? 3 * H : 0), keep(Hc);  // layer norm's v_hat in inference; zoneout's k
    // this thread's recurrent columns, C [m, cols] = A [m, H] @ (its block of W_hh)^T: the first
    // product of a step ([r | z | n] or [r | z] of its units) or the candidate's (n, reset before)
    auto recurrent = [&](bool candidate, int64_t m, const T* A, T* C, int64_t ldc) {
      if constexpr (low) {
        const PackedWeights& w = candidate ? low_weights->candidate_of(k) : low_weights->first_of(k);
        low_precision_mm(w, Product::recurrent, m, A, H, C, ldc, prepared[k]);
      } else if (candidate) {
        mm<T>(Product::recurrent, m, Hc, H, A, H, wn_t + a, H, C, ldc, false);
      } else {
        mm<T>(Product::recurrent, m, gates * Hc, H, A, H, wr + gates * a * H, gates * Hc, C, ldc, false);
      }
    };
    for (int64_t step = 0; step < T_; ++step) {
      const int64_t t = step_at(p, step);
      const int64_t bs = p.bs[t];
      const int64_t re = std::min(r1, bs);  // this thread's running rows: r0 .. re
      const int64_t m = std::max<int64_t>(0, re - r0);
      const T* h = h_at[step & 1];
      T* h_next = h_at[(step + 1) & 1];
      const T* hin = RD ? hd_at[step & 1] : h;  // what enters the recurrent products: h~
      // this step's rows of GI (a one-thread team with a helper: its rows, or computed here)
      T* git = ahead ? static_cast<T*>(ahead->rows_for_step(step)) : gi.data_ptr<T>() + p.off[t] * 3 * H;
      T* outt = out.data_ptr<T>() + p.off[t] * H;
      T* savedt = save ? saved.data_ptr<T>() + p.off[t] * W : scratch.data_ptr<T>();
      T* q0 = ghp + gates * a;  // this thread's recurrent-product columns
      const int64_t ldq = gates * H;
      if constexpr (LN) {  // gi = LN(x W_ih^T) + b_ih of the running rows (whole rows: Hc == H)
        for (int64_t b = r0; b < re; ++b) {
          T* v = git + b * 3 * H;
          T* s = savedt + b * W;
          const T rstd = layer_norm_row<T>(3 * H, v, ga_i, be_i, save ? s + layout.x_hat() : hat.data(), v);
          s[layout.stats()] = rstd;
#pragma omp simd
          for (int64_t j = 0; j < 3 * H; ++j) v[j] += b_i[j];
        }
      }
      auto zoneout_of_row = [&](int64_t b) { return zoneout_call.for_row((p.off[t] + b) * H + a, Hc, keep.data()); };
      if (after) {
        // [r | z | n] pre-activations of units a..a+Hc: h~ [bs, H] @ W_k^T [H, 3Hc]
        recurrent(false, m, hin + r0 * H, q0 + r0 * ldq, ldq);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          T* q = q0 + b * ldq;
          T* s = savedt + b * W;
          if constexpr (LN) {  // gh = LN(h~ W_hh^T) + b_hh
            s[layout.stats() + 1] = layer_norm_row<T>(3 * H, q, ga_h, be_h, save ? s + layout.h_hat() : hat.data(), q);
#pragma omp simd
            for (int64_t j = 0; j < 3 * H; ++j) q[j] += b_h[j];
          }
          (keeps ? forward_after<T, true, Z> : forward_after<T, false, Z>)(
              Hc, g, g + H, g + 2 * H, q, q + Hc, q + 2 * Hc, par.cell_rz + a, par.cell_rz + H + a, par.cell_in + a,
              par.cell_rec_n + a, h + b * H + a, h_next + b * H + a, outt + b * H + a, s + layout.r() + a,
              s + layout.z() + a, s + layout.n() + a, s + layout.rec_n() + a, zoneout_of_row(b));
        }
      } else {
        // [r | z] pre-activations of units a..a+Hc: h~ [bs, H] @ W_k^T [H, 2Hc]
        recurrent(false, m, hin + r0 * H, q0 + r0 * ldq, ldq);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          T* q = q0 + b * ldq;
          T* s = savedt + b * W;
          if constexpr (LN) {  // gh_rz = LN(h~ W_rz^T) + b_hh[:2H]
            s[layout.stats() + 1] = layer_norm_row<T>(2 * H, q, ga_h, be_h, save ? s + layout.h_hat() : hat.data(), q);
#pragma omp simd
            for (int64_t j = 0; j < 2 * H; ++j) q[j] += b_h[j];
          }
          forward_before_gates<T>(Hc, g, g + H, q, q + Hc, par.cell_rz + a, par.cell_rz + H + a, hin + b * H + a,
                                  s + layout.r() + a, s + layout.z() + a, rhp + b * H + a);
        }
        team_barrier(team);  // every unit of r * h~ is needed below
        // (r * h~) [bs, H] @ W_n[units]^T [H, Hc], into this thread's columns of gh
        recurrent(true, m, rhp + r0 * H, q0 + r0 * ldq, ldq);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          T* q = q0 + b * ldq;
          T* s = savedt + b * W;
          if constexpr (LN) {  // gh_n = LN((r * h~) W_n^T) + b_hn
            T* hat_n = save ? s + layout.h_hat() + 2 * H : hat.data();
            s[layout.stats() + 2] = layer_norm_row<T>(H, q, ga_h + 2 * H, be_h + 2 * H, hat_n, q);
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) q[j] += b_h[2 * H + j];
          }
          (keeps ? forward_before_state<T, true, Z> : forward_before_state<T, false, Z>)(
              Hc, g + 2 * H, q, par.cell_in + a, par.cell_rec_n + a, s + layout.z() + a, h + b * H + a,
              h_next + b * H + a, outt + b * H + a, s + layout.n() + a, zoneout_of_row(b));
        }
      }
      if constexpr (RD)  // h~ of the next step, this thread's units
        for (int64_t b = r0; b < re; ++b) times_mask<T>(Hc, h_next + b * H + a, mp + b * H + a, hd_at[(step + 1) & 1] + b * H + a, false);
      // rows not running at this step: state carried; padded layout: output and saved values 0
      for (int64_t b = std::max(bs, r0); b < r1; ++b) {
        std::copy(h + b * H + a, h + b * H + a + Hc, h_next + b * H + a);
        if constexpr (RD) std::copy(hin + b * H + a, hin + b * H + a + Hc, hd_at[(step + 1) & 1] + b * H + a);
        if (p.packed) continue;  // packed: the step has no rows for them
        fill_units(outt + b * H, a, Hc);
        if (save) fill_groups(savedt + b * W, LN ? 1 : W / H, LN ? W : H, LN ? 0 : a, LN ? W : Hc);
      }
      step_barrier(team, k);  // the new state is complete
    }
  });
  Tensor h_n = h_buffers[T_ & 1].clone();  // a reused workspace: return a copy
  return {to_original(p, out, 1), to_original(p, h_n, 0), saved};
}

template <typename T, typename ZC, bool LN, bool RD>
std::vector<Tensor> backward_with(const Problem& p, const LayerInputs& in, const ZC& zoneout_call, const Tensor& out_in,
                                  const Tensor& saved, const Tensor& d_out_in, const Tensor& d_hn) {
  using Z = decltype(zoneout_call.for_row(0, 0, nullptr));
  const int64_t T_ = p.T, B = p.B, H = p.H, N = p.N;
  const bool after = p.reset_after, keeps = p.keeps_state;
  const SavedLayout layout(H, after, LN);
  const int64_t W = layout.width;
  const Team team = team_for(p, LN);
  Tensor x = to_sorted(p, in.x, 1, kSortedX);
  Tensor h0 = to_sorted(p, in.h0, 0, kSortedH0);
  Tensor out = to_sorted(p, out_in, 1, kSortedOut);
  Tensor d_out = to_sorted(p, d_out_in, 1, kSortedDOut);
  // the running gradient of the state, all rows: written in place, so never the caller's tensor
  Tensor dh = p.order.defined() ? to_sorted(p, d_hn, 0, kSortedDHn) : d_hn.clone(at::MemoryFormat::Contiguous);
  Tensor mask = RD ? to_sorted(p, *in.recurrent_mask, 0, kSortedRecurrent) : Tensor();
  Tensor w_ih = in.w_ih.contiguous(), w_hh = in.w_hh.contiguous();
  const LayerParameters<T> par(in, H, LN);
  auto opts = x.options();

  // per input row: dGI, the gradients of gi (input side: [da_r, da_z, da_n]); dGH (reset after),
  // of gh after its layer norm ([da_r, da_z, d(gh_n)]); dRec, of the raw recurrent products
  // (layer norm taken back; without it dGH, or dGI for reset before); HP = h~_{t-1} and
  // RH = r * h~_{t-1} (reset before) for the weight gradients
  Tensor dgi = workspace(kDGI, {N, 3 * H}, opts);
  Tensor dgh = after ? workspace(kDGH, {N, 3 * H}, opts) : dgi;
  Tensor drec = LN ? workspace(kDRec, {N, 3 * H}, opts) : dgh;
  Tensor hprev = workspace(kHprev, {N, H}, opts);
  Tensor rhs = after ? Tensor() : workspace(kRHs, {N, H}, opts);
  Tensor drh = after ? Tensor() : workspace(kDRH, {B, H}, opts);  // d(r * h~) of a step
  Tensor dhd = RD ? workspace(kDhd, {B, H}, opts) : Tensor();      // d h~ of a step
  std::vector<std::vector<T>> dgamma_h(LN ? team.n : 0, std::vector<T>(3 * H, T(0)));

  T *dgip = dgi.data_ptr<T>(), *dghp = dgh.data_ptr<T>(), *drecp = drec.data_ptr<T>();
  T *hpp = hprev.data_ptr<T>(), *rhsp = after ? nullptr : rhs.data_ptr<T>();
  T *dhp = dh.data_ptr<T>(), *drhp = after ? nullptr : drh.data_ptr<T>(), *dhdp = RD ? dhd.data_ptr<T>() : nullptr;
  // d h~ accumulates here: into dh directly, or (recurrent dropout) into dhd, then dh += dhd * m
  T* dhin = RD ? dhdp : dhp;
  const T *whh = w_hh.data_ptr<T>(), *outp = out.data_ptr<T>(), *h0p = h0.data_ptr<T>();
  const T *dop = d_out.data_ptr<T>(), *sp = saved.data_ptr<T>(), *mp = RD ? mask.data_ptr<T>() : nullptr;
  const T* ga_h = par.gamma_hh;

  run_team(team, [&](int k) {
    const int64_t a = team.unit_lo(k), Hc = team.unit_hi(k) - team.unit_lo(k);
    const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
    if (Hc <= 0 || r0 >= r1) {
      for (int64_t s = 0; s < T_ * (after ? 1 : 2); ++s) team_barrier(team);
      return;
    }
    std::vector<T> keep(Hc);
    for (int64_t step = T_ - 1; step >= 0; --step) {
      const int64_t t = step_at(p, step);
      const int64_t bs = p.bs[t];
      const int64_t re = std::min(r1, bs);  // this thread's running rows: r0 .. re
      const int64_t m = std::max<int64_t>(0, re - r0);
      const int64_t pad_end = p.packed ? 0 : r1;  // padded rows to zero: max(bs, r0) .. pad_end
      // the step processed before this one in the forward pass, and how many of its rows ran
      const int64_t tp = p.reverse ? t + 1 : t - 1;
      const int64_t bs_prev = step == 0 ? 0 : p.bs[tp];
      const T* prev_out = step == 0 ? nullptr : outp + p.off[tp] * H;
      const int64_t o = p.off[t];
      auto h_before = [&](int64_t b) { return (b < bs_prev ? prev_out + b * H : h0p + b * H) + a; };  // h_{t-1}
      auto zoneout_of_row = [&](int64_t b) { return zoneout_call.for_row((o + b) * H + a, Hc, keep.data()); };

      for (int64_t b = r0; b < re; ++b) {
        const T* s = sp + (o + b) * W;
        const T* hv = h_before(b);
        const T* dout = dop + (o + b) * H + a;
        T* gi_ = dgip + (o + b) * 3 * H + a;
        T* hp = hpp + (o + b) * H + a;
        if (after) {
          T* gh_ = dghp + (o + b) * 3 * H + a;
          (keeps ? backward_after<T, true, Z> : backward_after<T, false, Z>)(
              Hc, s + layout.r() + a, s + layout.z() + a, s + layout.n() + a, s + layout.rec_n() + a, hv, dout,
              dhp + b * H + a, gi_, gi_ + H, gi_ + 2 * H, gh_, gh_ + H, gh_ + 2 * H, hp, zoneout_of_row(b));
          if constexpr (LN) {  // gh = LN(raw) + b_hh: dGH -> dRec (whole rows: a == 0, Hc == H)
            layer_norm_row_backward<T>(3 * H, gh_, ga_h, s + layout.h_hat(), s[layout.stats() + 1],
                                       drecp + (o + b) * 3 * H);
            accumulate_product<T>(3 * H, gh_, s + layout.h_hat(), dgamma_h[k].data());
          }
        } else {
          (keeps ? backward_before_candidate<T, true, Z> : backward_before_candidate<T, false, Z>)(
              Hc, s + layout.z() + a, s + layout.n() + a, hv, dout, dhp + b * H + a, gi_ + H, gi_ + 2 * H, hp,
              zoneout_of_row(b));
          if constexpr (LN) {  // gh_n = LN(raw_n) + b_hn
            layer_norm_row_backward<T>(H, gi_ + 2 * H, ga_h + 2 * H, s + layout.h_hat() + 2 * H, s[layout.stats() + 2],
                                       drecp + (o + b) * 3 * H + 2 * H);
            accumulate_product<T>(H, gi_ + 2 * H, s + layout.h_hat() + 2 * H, dgamma_h[k].data() + 2 * H);
          }
        }
        if constexpr (RD) times_mask<T>(Hc, hv, mp + b * H + a, hp, false);  // the products saw h~ = h * m
      }
      for (int64_t b = std::max(bs, r0); b < pad_end; ++b) {
        fill_groups(dgip + (o + b) * 3 * H, 3, H, a, Hc);
        if (after) fill_groups(dghp + (o + b) * 3 * H, 3, H, a, Hc);
        if (LN) fill_groups(drecp + (o + b) * 3 * H, 3, H, a, Hc);
        fill_units(hpp + (o + b) * H, a, Hc);
        if (!after) fill_units(rhsp + (o + b) * H, a, Hc);
      }
      step_barrier(team, k);  // every unit of this step's dRec is needed below
      const T* drect = drecp + (o + r0) * 3 * H;
      if (after) {
        // d h~_{t-1}[:, units] (+)= dRec [bs, 3H] @ W_hh[:, units] [3H, Hc]
        mm<T>(Product::recurrent, m, Hc, 3 * H, drect, 3 * H, whh + a, H, dhin + r0 * H + a, H, !RD);
      } else {
        // d(r * h~)[:, units] = dRec_n [bs, H] @ W_n[:, units] [H, Hc]
        mm<T>(Product::recurrent, m, Hc, H, drect + 2 * H, 3 * H, whh + 2 * H * H + a, H, drhp + r0 * H + a, H, false);
        if constexpr (RD)
          for (int64_t b = r0; b < re; ++b) fill_units(dhdp + b * H, a, Hc);
        for (int64_t b = r0; b < re; ++b) {
          const T* s = sp + (o + b) * W;
          T* gi_ = dgip + (o + b) * 3 * H + a;
          backward_before_gates<T>(Hc, s + layout.r() + a, s + layout.z() + a, hpp + (o + b) * H + a, drhp + b * H + a,
                                   dhin + b * H + a, gi_, gi_ + H, rhsp + (o + b) * H + a);
          if constexpr (LN) {  // gh_rz = LN(raw_rz) + b_hh[:2H]
            layer_norm_row_backward<T>(2 * H, gi_, ga_h, s + layout.h_hat(), s[layout.stats() + 1],
                                       drecp + (o + b) * 3 * H);
            accumulate_product<T>(2 * H, gi_, s + layout.h_hat(), dgamma_h[k].data());
          }
        }
        team_barrier(team);  // every unit of da_r, da_z is needed below
        // d h~_{t-1}[:, units] += dRec_rz [bs, 2H] @ W_rz[:, units] [2H, Hc]
        mm<T>(Product::recurrent, m, Hc, 2 * H, drect, 3 * H, whh + a, H, dhin + r0 * H + a, H, true);
      }
      if constexpr (RD)  // h~ = h * m: dh += d h~ * m
        for (int64_t b = r0; b < re; ++b) times_mask<T>(Hc, dhdp + b * H + a, mp + b * H + a, dhp + b * H + a, true);
    }
  });

  // biases and gains: sums over every row (rows a step did not run hold zeros). b_ih and beta_ih
  // (b_hh and beta_hh) are added at the same place: the same gradient.
  Tensor none = at::empty({0}, opts);
  Tensor db_ih = none, db_hh = none, dgamma_ih = none, dbeta_ih = none, dgamma_hh = none, dbeta_hh = none;
  if (in.has_bias() || LN) std::tie(db_ih, db_hh) = bias_gradients(dgi, after ? dgh : Tensor());
  if constexpr (LN) {
    dbeta_ih = db_ih.clone();
    dbeta_hh = db_hh.clone();
    const T* ga_i = par.gamma_ih;
    std::vector<double> gamma_i(3 * H, 0.0), gamma_h(3 * H, 0.0);  // the threads' partial sums, added in double
    for (const auto& part : dgamma_h)
      for (int64_t j = 0; j < 3 * H; ++j) gamma_h[j] += part[j];
    // gi = LN(x W_ih^T) + b_ih: dGI -> d of the raw input product, row by row, in place
    std::mutex lock;
    at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
      std::vector<T> part(3 * H, T(0));
      for (int64_t row = n0; row < n1; ++row) {
        const T* s = sp + row * W;
        accumulate_product<T>(3 * H, dgip + row * 3 * H, s + layout.x_hat(), part.data());
        layer_norm_row_backward<T>(3 * H, dgip + row * 3 * H, ga_i, s + layout.x_hat(), s[layout.stats()],
                                   dgip + row * 3 * H);
      }
      std::lock_guard<std::mutex> guard(lock);
      for (int64_t j = 0; j < 3 * H; ++j) gamma_i[j] += part[j];
    });
    auto to_tensor = [&](const std::vector<double>& v) {
      return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(opts.dtype());
    };
    dgamma_ih = to_tensor(gamma_i);
    dgamma_hh = to_tensor(gamma_h);
  }
  const InputAndWeightGradients w = input_and_weight_gradients<T>(p, x, w_ih, dgi, hprev, rhs, drec);
  if (!in.has_bias()) db_ih = db_hh = none;
  // one gradient per differentiable input, in GRUKIT_LAYER_INPUTS' order (layer_gradients())
  return {to_original(p, w.dx, 1), to_original(p, dh, 0), w.dw_ih, w.dw_hh, db_ih, db_hh,
          dgamma_ih, dbeta_ih, dgamma_hh, dbeta_hh};
}

// Calls `body(zoneout_call, layer_norm, recurrent_dropout)` with the call's policies: NoZoneout or
// Zoneout<T> (its mask in the kernel's sorted row order), and std::true_type / std::false_type.
template <typename T, typename F>
auto with_policies(const Problem& p, const LayerInputs& in, const F& body) {
  auto with_flags = [&](const auto& zoneout) {
    auto with_rd = [&](auto ln) {
      return in.recurrent_dropout() ? body(zoneout, ln, std::true_type{}) : body(zoneout, ln, std::false_type{});
    };
    return in.layer_norm() ? with_rd(std::true_type{}) : with_rd(std::false_type{});
  };
  if (!in.zoneout()) return with_flags(NoZoneout());
  Tensor mask = given(in.zoneout_mask) ? to_sorted(p, *in.zoneout_mask, 1, kSortedZoneout) : Tensor();
  return with_flags(Zoneout<T>(mask.defined() ? mask.data_ptr<T>() : nullptr, given(in.zoneout_mask) ? 0.0 : in.zoneout_p,
                               in.zoneout_seed));
}

// out [T, B, H] or [N, H], h_n [B, H], and (when `save`) what the backward pass reads (saved_layout.h).
// P: the weights' precision (bfloat16 and int8 with T = float, inference only).
template <typename T, Precision P = Precision::float32>
std::tuple<Tensor, Tensor, Tensor> layer_forward(const Problem& p, const LayerInputs& in, bool save) {
  return with_policies<T>(p, in, [&](const auto& zoneout, auto ln, auto rd) {
    return forward_with<T, std::decay_t<decltype(zoneout)>, decltype(ln)::value, decltype(rd)::value, P>(p, in,
                                                                                                         zoneout, save);
  });
}

// The gradients of every differentiable input (layer_gradients()), from those of out and h_n.
template <typename T>
std::vector<Tensor> layer_backward(const Problem& p, const LayerInputs& in, const Tensor& out, const Tensor& saved,
                                   const Tensor& d_out, const Tensor& d_hn) {
  return with_policies<T>(p, in, [&](const auto& zoneout, auto ln, auto rd) {
    return backward_with<T, std::decay_t<decltype(zoneout)>, decltype(ln)::value, decltype(rd)::value>(
        p, in, zoneout, out, saved, d_out, d_hn);
  });
}

}  // namespace grukit
