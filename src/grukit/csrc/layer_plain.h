// The plain layer driver: one GRU layer-direction without layer norm, zoneout or recurrent
// dropout, forward and backward, padded (with lengths) or packed.
//
//   forward:  GI = X W_ih^T                         one GEMM over all T*B rows (with a one-thread
//                                                   recurrence: by a helper thread alongside
//                                                   it, projection_ahead.h)
//             per step: GH = h W_hh^T               one GEMM (two for reset-before)
//                       one fused element-wise pass (cell.h)
//   backward: per step, the mirror image: one element-wise pass, one GEMM (two for
//             reset-before) for the gradient flowing into h_{t-1}; then dX, dW_ih, dW_hh as
//             single GEMMs over all steps (weight_gradients.h).
//
// The threads split batch rows or hidden units (team.h), whichever the sizes favour.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <tuple>
#include <vector>

#include "cell.h"
#include "gemm.h"
#include "problem.h"
#include "projection_ahead.h"
#include "saved_layout.h"
#include "team.h"
#include "weight_gradients.h"
#include "workspace.h"

namespace grukit {

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
std::tuple<Tensor, Tensor, Tensor> plain_forward(const Problem& p, const Tensor& x_in, const Tensor& h0_in,
                                                 const Tensor& w_ih_in, const Tensor& w_hh_in,
                                                 const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh,
                                                 bool training) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H;
  const Team team = make_team(B, H, 3 * H);
  const OneThreadCall one_thread(team);
  Tensor x = to_sorted(p, x_in, 1, kSortedX);
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  Biases<T> bias(b_ih, b_hh, H);
  auto opts = x.options();

  // GI = X [T*B, I] @ W_ih^T [I, 3H]: one product for all steps
  Tensor gi = workspace(kGI, {p.N, 3 * H}, opts);
  Tensor w_ih_t = workspace(kWihT, {I, 3 * H}, opts);
  w_ih_t.copy_(w_ih.t());
  // with a one-thread recurrence, a helper thread computes GI block by block while the recurrence
  // runs (projection_ahead.h); otherwise every thread computes it first
  std::unique_ptr<ProjectionAhead> ahead;
  if (one_thread.limited && ProjectionAhead::worth_it(p.N, 3 * H, I))
    ahead = std::make_unique<ProjectionAhead>(p, 3 * H, I, x.data_ptr<T>(), w_ih_t.data_ptr<T>(), gi.data_ptr<T>());
  else
    mm_parallel<T>(Product::projection, p.N, 3 * H, I, x.data_ptr<T>(), I, w_ih_t.data_ptr<T>(), 3 * H,
                   gi.data_ptr<T>(), 3 * H, false);

  Tensor w_rec = pack_by_team(w_hh, team, p.reset_after ? 3 : 2);
  // saved for backward (saved_layout.h): r, z, n, and (reset after) hn = h U_n^T + b_hn per row
  const int64_t G = SavedLayout(H, p.reset_after, false).width / H;
  Tensor ws = training ? workspace(kSaved, {p.N, G * H}, opts) : at::empty({0}, opts);
  Tensor scratch = training ? Tensor() : workspace(kScratch, {B, G * H}, opts);  // one step, inference
  // the output in sorted order: returned as is, or reordered into a fresh tensor at the end
  const std::vector<int64_t> out_shape = p.packed ? std::vector<int64_t>{p.N, H} : std::vector<int64_t>{T_, B, H};
  Tensor out = p.order.defined() ? workspace(kSortedOut, out_shape, opts) : at::empty(out_shape, opts);
  Tensor hbuf = workspace(kHbuf, {2, B, H}, opts);  // double-buffered state: read one, write the other
  hbuf[0].copy_(to_sorted(p, h0_in, 0, kSortedH0));
  Tensor gh = workspace(kGH, {B, 3 * H}, opts);  // recurrent products, thread k's columns at 3*lo[k]
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

  const NoZoneout none;
  run_team(team, [&](int k) {
    const int64_t a = team.unit_lo(k), Hc = team.unit_hi(k) - team.unit_lo(k);
    const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
    if (Hc <= 0 || r0 >= r1) {  // nothing to do: still take part in any barriers
      for (int64_t s = 0; s < T_ * (after ? 1 : 2); ++s) team_barrier(team);
      return;
    }
    for (int64_t step = 0; step < T_; ++step) {
      if (ahead) ahead->wait_for_step(step);  // (a one-thread team) this step's rows of GI
      const int64_t t = step_at(p, step);
      const int64_t bs = p.bs[t];
      const int64_t re = std::min(r1, bs);  // this thread's running rows: r0 .. re
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
        mm<T>(Product::recurrent, m, 3 * Hc, H, h + r0 * H, H, wr + 3 * a * H, 3 * Hc, q0 + r0 * ldq, ldq, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          const T* q = q0 + b * ldq;
          T* s = wst + b * G * H + a;
          (keeps ? forward_after<T, true, NoZoneout>
                 : forward_after<T, false, NoZoneout>)(Hc, g, g + H, g + 2 * H, q, q + Hc, q + 2 * Hc, brz + a,
                                                       brz + H + a, bin + a, bhn + a, h + b * H + a, hn_out + b * H + a,
                                                       outt + b * H + a, s, s + H, s + 2 * H, s + 3 * H, none);
        }
      } else {
        // [r | z] pre-activations of units a..a+Hc: h [bs, H] @ W_k^T [H, 2Hc]
        mm<T>(Product::recurrent, m, 2 * Hc, H, h + r0 * H, H, wr + 2 * a * H, 2 * Hc, q0 + r0 * ldq, ldq, false);
        T* rhp = rh.data_ptr<T>();
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          const T* q = q0 + b * ldq;
          T* s = wst + b * G * H + a;
          forward_before_gates<T>(Hc, g, g + H, q, q + Hc, brz + a, brz + H + a, h + b * H + a, s, s + H,
                                  rhp + b * H + a);
        }
        team_barrier(team);  // every unit of r * h is needed below
        // (r * h) [bs, H] @ W_n[units]^T [H, Hc], into this thread's columns of gh
        mm<T>(Product::recurrent, m, Hc, H, rhp + r0 * H, H, whn_t + a, H, q0 + r0 * ldq, ldq, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* g = git + b * 3 * H + a;
          T* s = wst + b * G * H + a;
          (keeps ? forward_before_state<T, true, NoZoneout>
                 : forward_before_state<T, false, NoZoneout>)(Hc, g + 2 * H, q0 + b * ldq, bin + a, bhn + a, s + H,
                                                              h + b * H + a, hn_out + b * H + a, outt + b * H + a,
                                                              s + 2 * H, none);
        }
      }
      // rows not running at this step: state carried; padded layout: output 0 (this thread's units)
      for (int64_t b = std::max(bs, r0); b < r1; ++b) {
        std::copy(h + b * H + a, h + b * H + a + Hc, hn_out + b * H + a);
        if (p.packed) continue;  // packed: the step has no rows for them
        std::fill(outt + b * H + a, outt + b * H + a + Hc, T(0));
        if (training)
          for (int64_t g = 0; g < G; ++g)
            std::fill(wst + b * G * H + g * H + a, wst + b * G * H + g * H + a + Hc, T(0));
      }
      team_barrier(team);  // the new state is complete
    }
  });
  Tensor h_n = hbuf[T_ & 1].clone();  // hbuf is a reused workspace: return a copy
  return {to_original(p, out, 1), to_original(p, h_n, 0), ws};
}

template <typename T>
std::vector<Tensor> plain_backward(const Problem& p, const Tensor& d_out_in, const Tensor& d_hn_in, const Tensor& x_in,
                                   const Tensor& h0_in, const Tensor& w_ih_in, const Tensor& w_hh_in,
                                   const Tensor& out_in, const Tensor& ws, bool has_bias) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H;
  const int64_t G = SavedLayout(H, p.reset_after, false).width / H;
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

  const NoZoneout none;
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
      const int64_t re = std::min(r1, bs);  // this thread's running rows: r0 .. re
      const int64_t m = std::max<int64_t>(0, re - r0);
      const int64_t pad_end = p.packed ? 0 : r1;  // padded rows to zero: max(bs, r0) .. pad_end
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
          const T* s = s_all + b * G * H + a;
          const T* hsrc = (b < bs_prev ? prev_out + b * H : h0p + b * H) + a;
          T* gi_ = dgit + b * 3 * H + a;
          T* gh_ = dght + b * 3 * H + a;
          (keeps ? backward_after<T, true, NoZoneout>
                 : backward_after<T, false, NoZoneout>)(Hc, s, s + H, s + 2 * H, s + 3 * H, hsrc, dot + b * H + a,
                                                        dhp + b * H + a, gi_, gi_ + H, gi_ + 2 * H, gh_, gh_ + H,
                                                        gh_ + 2 * H, hpt + b * H + a, none);
        }
        for (int64_t b = std::max(bs, r0); b < pad_end; ++b)
          for (int64_t g = 0; g < 3; ++g) {
            std::fill(dgit + b * 3 * H + g * H + a, dgit + b * 3 * H + g * H + a + Hc, T(0));
            std::fill(dght + b * 3 * H + g * H + a, dght + b * 3 * H + g * H + a + Hc, T(0));
          }
        for (int64_t b = std::max(bs, r0); b < pad_end; ++b) std::fill(hpt + b * H + a, hpt + b * H + a + Hc, T(0));
        team_barrier(team);  // every unit of dGH_t is needed below
        // dh_{t-1}[:, units] += dGH_t [bs, 3H] @ W_hh[:, units] [3H, Hc]
        mm<T>(Product::recurrent, m, Hc, 3 * H, dght + r0 * 3 * H, 3 * H, whh + a, H, dhp + r0 * H + a, H, true);
      } else {
        T* rht = rhs.data_ptr<T>() + p.off[t] * H;
        T* drhp = drh.data_ptr<T>();
        for (int64_t b = r0; b < re; ++b) {
          const T* s = s_all + b * G * H + a;
          const T* hsrc = (b < bs_prev ? prev_out + b * H : h0p + b * H) + a;
          T* gi_ = dgit + b * 3 * H + a;
          (keeps ? backward_before_candidate<T, true, NoZoneout>
                 : backward_before_candidate<T, false, NoZoneout>)(Hc, s + H, s + 2 * H, hsrc, dot + b * H + a,
                                                                   dhp + b * H + a, gi_ + H, gi_ + 2 * H,
                                                                   hpt + b * H + a, none);
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
        mm<T>(Product::recurrent, m, Hc, H, dgit + r0 * 3 * H + 2 * H, 3 * H, whh + 2 * H * H + a, H, drhp + r0 * H + a,
              H, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* s = s_all + b * G * H + a;
          T* gi_ = dgit + b * 3 * H + a;
          backward_before_gates<T>(Hc, s, s + H, hpt + b * H + a, drhp + b * H + a, dhp + b * H + a, gi_, gi_ + H,
                                   rht + b * H + a);
        }
        team_barrier(team);  // every unit of da_r, da_z is needed below
        // dh_{t-1}[:, units] += [da_r, da_z] [bs, 2H] @ W_hh[:2H, units] [2H, Hc]
        mm<T>(Product::recurrent, m, Hc, 2 * H, dgit + r0 * 3 * H, 3 * H, whh + a, H, dhp + r0 * H + a, H, true);
      }
    }
  });

  // input, weight and bias gradients: one product (or sum) each over all rows
  const InputAndWeightGradients g = input_and_weight_gradients<T>(p, x, w_ih, dgi, hprev, rhs, after ? dgh : dgi);
  Tensor db_ih = at::empty({0}, opts), db_hh = at::empty({0}, opts);  // empty: no bias
  if (has_bias) std::tie(db_ih, db_hh) = bias_gradients(dgi, after ? dgh : Tensor());
  return {to_original(p, g.dx, 1), to_original(p, dh, 0), g.dw_ih, g.dw_hh, db_ih, db_hh};
}

}  // namespace grukit
