// The normalised layer driver: one GRU layer-direction with layer norm, zoneout and/or
// recurrent dropout, forward and backward, padded (with lengths) or packed. It calls the same
// cell passes (cell.h) as the plain driver, with the biases added where layer norm needs them.
//
// Equations (grukit/reference.py, gru_forward, has the same with comments):
//   gi = LN(x W_ih^T; gamma_ih, beta_ih) + b_ih                 (LN over 3H; without LN: x W_ih^T + b_ih)
//   h~ = h * m                                                   recurrent dropout, m [B, H] fixed in time
//   reset after:  gh = LN(h~ W_hh^T; gamma_hh, beta_hh) + b_hh   (over 3H)
//                 r, z = sigmoid(gi_{r,z} + gh_{r,z});  n = tanh(gi_n + r * gh_n)
//   reset before: gh_rz = LN(h~ W_rz^T; gamma_hh[:2H], beta_hh[:2H]) + b_hh[:2H]
//                 r, z = sigmoid(gi_{r,z} + gh_{r,z})
//                 gh_n = LN((r * h~) W_n^T; gamma_hh[2H:], beta_hh[2H:]) + b_hn;  n = tanh(gi_n + gh_n)
//   h' = z h + (1 - z) n   (keeps_state)   or   (1 - z) h + z n
//   h_t = k h + (1 - k) h'   zoneout: k the 0/1 mask of step t (training) or the probability p (evaluation)
//   (layer norm: Ba et al. 2016; zoneout: Krueger et al. 2016; recurrent dropout: Gal and Ghahramani 2016)
//
// Layer norm needs whole rows (its mean and variance run over all units), so the threads split
// batch rows only, never hidden units, and no step needs a barrier.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cell.h"
#include "gemm.h"
#include "layer_norm.h"
#include "problem.h"
#include "saved_layout.h"
#include "team.h"
#include "weight_gradients.h"
#include "workspace.h"

namespace grukit {

// The regularisers of one call, as the op received them.
struct Regularisers {
  c10::optional<Tensor> gamma_ih, beta_ih, gamma_hh, beta_hh;  // layer norm: all four or none
  c10::optional<Tensor> zoneout_mask;                          // [T, B, H] or [N, H] 0/1, or none
  double zoneout_p = 0;                                        // drawn (seed >= 0) or expected value
  int64_t zoneout_seed = -1;
  c10::optional<Tensor> recurrent_mask;  // [B, H], or none
  bool layer_norm() const { return gamma_ih.has_value() && gamma_ih->defined(); }
  bool zoneout() const { return (zoneout_mask.has_value() && zoneout_mask->defined()) || zoneout_p > 0; }
  bool recurrent_dropout() const { return recurrent_mask.has_value() && recurrent_mask->defined(); }
  bool any() const { return layer_norm() || zoneout() || recurrent_dropout(); }
};

// A [3H] parameter as a contiguous tensor, or `fallback` (3H copies of one value) when absent.
template <typename T>
Tensor parameter_or(const c10::optional<Tensor>& t, std::vector<T>& fallback, const at::TensorOptions& opts) {
  return t.has_value() && t->defined() ? t->contiguous()
                                       : at::from_blob(fallback.data(), {int64_t(fallback.size())}, opts);
}

// Calls `body(zoneout_policy)` with NoZoneout or the call's Zoneout<T> (`mask`: the sorted mask or null).
template <typename T, typename F>
void with_zoneout(const Regularisers& g, const T* mask, const F& body) {
  if (g.zoneout())
    body(Zoneout<T>(mask, g.zoneout_p, g.zoneout_seed));
  else
    body(NoZoneout());
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> normalised_forward(const Problem& p, const Regularisers& g, const Tensor& x_in,
                                                      const Tensor& h0_in, const Tensor& w_ih_in, const Tensor& w_hh_in,
                                                      const c10::optional<Tensor>& b_ih,
                                                      const c10::optional<Tensor>& b_hh, bool save) {
  const int64_t B = p.B, I = p.I, H = p.H, N = p.N;
  const bool after = p.reset_after, ln = g.layer_norm(), rd = g.recurrent_dropout();
  const SavedLayout layout(H, after, ln);
  const int64_t W = layout.width;
  auto opts = x_in.options();
  Tensor x = to_sorted(p, x_in, 1, kSortedX);
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  Tensor zo = g.zoneout_mask.has_value() && g.zoneout_mask->defined()
                  ? to_sorted(p, *g.zoneout_mask, p.packed ? 0 : 1, kSortedZoneout)
                  : Tensor();
  Tensor rdm = rd ? to_sorted(p, *g.recurrent_mask, 0, kSortedRecurrent) : Tensor();
  std::vector<T> zeros(3 * H, T(0)), ones(3 * H, T(1));
  Tensor bi = parameter_or<T>(b_ih, zeros, opts), bh = parameter_or<T>(b_hh, zeros, opts);
  Tensor gi_g = parameter_or<T>(g.gamma_ih, ones, opts), gi_b = parameter_or<T>(g.beta_ih, zeros, opts);
  Tensor gh_g = parameter_or<T>(g.gamma_hh, ones, opts), gh_b = parameter_or<T>(g.beta_hh, zeros, opts);
  const T *b_i = bi.data_ptr<T>(), *b_h = bh.data_ptr<T>();
  const T *ga_i = gi_g.data_ptr<T>(), *be_i = gi_b.data_ptr<T>(), *ga_h = gh_g.data_ptr<T>(),
          *be_h = gh_b.data_ptr<T>();
  const T* zero = zeros.data();  // the cell passes' biases: here they are added before (layer norm's order)

  // rows past a sequence's length are never written: zero them, the backward sums over every row
  const bool skipping = skips_rows(p);
  Tensor ws = save ? workspace(kSaved, {N, W}, opts) : at::empty({0}, opts);
  if (save && skipping) ws.zero_();
  Tensor scratch = save ? Tensor() : workspace(kNormScratch, {B, W}, opts);  // one step's saved values

  // gi = LN(x W_ih^T) + b_ih  (or x W_ih^T + b_ih) for all steps: one product, then one pass per row
  Tensor gi = workspace(kNormGI, {N, 3 * H}, opts);
  Tensor w_ih_t = w_ih.t().contiguous();
  mm_parallel<T>(Product::projection, N, 3 * H, I, x.data_ptr<T>(), I, w_ih_t.data_ptr<T>(), 3 * H, gi.data_ptr<T>(),
                 3 * H, false);
  {
    T* gip = gi.data_ptr<T>();
    T* wsp = save ? ws.data_ptr<T>() : nullptr;
    at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
      std::vector<T> hat(3 * H);
      for (int64_t row = n0; row < n1; ++row) {
        T* v = gip + row * 3 * H;
        if (ln) {
          T* h = save ? wsp + row * W + layout.x_hat() : hat.data();
          const T rstd = layer_norm_row<T>(3 * H, v, ga_i, be_i, h, v);
          if (save) wsp[row * W + layout.stats()] = rstd;
        }
#pragma omp simd
        for (int64_t j = 0; j < 3 * H; ++j) v[j] += b_i[j];
      }
    });
  }

  const std::vector<int64_t> out_shape = p.packed ? std::vector<int64_t>{N, H} : std::vector<int64_t>{p.T, B, H};
  Tensor out = skipping ? at::zeros(out_shape, opts) : at::empty(out_shape, opts);  // 0 past a sequence's end
  Tensor hbuf = workspace(kNormHbuf, {2, B, H}, opts);  // double-buffered state: read one, write the other
  hbuf[0].copy_(to_sorted(p, h0_in, 0, kSortedH0));
  Tensor hd = rd ? workspace(kNormHd, {B, H}, opts) : Tensor();
  Tensor gh = workspace(kNormGH, {B, 3 * H}, opts);
  Tensor rh = after ? Tensor() : workspace(kNormRH, {B, H}, opts);
  Tensor w_hh_t = w_hh.t().contiguous();  // [H, 3H]
  const T* whh_t = w_hh_t.data_ptr<T>();
  T* const h_bufs[2] = {hbuf.data_ptr<T>(), hbuf.data_ptr<T>() + B * H};
  T* ghp = gh.data_ptr<T>();
  T* rhp = after ? nullptr : rh.data_ptr<T>();
  const T* rdp = rd ? rdm.data_ptr<T>() : nullptr;
  const T* zop = zo.defined() ? zo.data_ptr<T>() : nullptr;
  const bool keeps = p.keeps_state;

  const Team team = rows_only_team(B, H);
  with_zoneout<T>(g, zop, [&](const auto& zoneout) {
    using Z = decltype(zoneout.for_row(0, 0, nullptr));  // NoZoneout or ZoneoutRow<T>
    run_team(team, [&](int k) {
      const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
      if (r0 >= r1) return;
      std::vector<T> hat(3 * H), keeps_k(H);  // keeps_k: a row's zoneout k, when drawn or p
      for (int64_t step = 0; step < p.T; ++step) {
        const int64_t t = step_at(p, step);
        const int64_t re = std::min(r1, p.bs[t]);
        const int64_t m = std::max<int64_t>(0, re - r0);
        const T* h = h_bufs[step & 1];
        T* h_new = h_bufs[(step + 1) & 1];
        for (int64_t b = std::max(re, r0); b < r1; ++b)  // rows not running at this step: state carried
          std::copy(h + b * H, h + (b + 1) * H, h_new + b * H);
        if (m == 0) continue;
        const T* git = gi.data_ptr<T>() + p.off[t] * 3 * H;
        T* outt = out.data_ptr<T>() + p.off[t] * H;
        T* wst = save ? ws.data_ptr<T>() + p.off[t] * W : scratch.data_ptr<T>();
        const T* hin = h;  // what enters the recurrent products: h~ = h * m
        if (rd) {
          T* hdp = hd.data_ptr<T>();
          for (int64_t b = r0; b < re; ++b)
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) hdp[b * H + j] = h[b * H + j] * rdp[b * H + j];
          hin = hdp;
        }
        // recurrent products of the running rows: h~ W^T ([r | z | n] after, [r | z] before)
        const int64_t rec = after ? 3 * H : 2 * H;
        mm<T>(Product::recurrent, m, rec, H, hin + r0 * H, H, whh_t, 3 * H, ghp + r0 * 3 * H, 3 * H, false);
        for (int64_t b = r0; b < re; ++b) {
          T* q = ghp + b * 3 * H;
          T* s = wst + b * W;
          const T* gib = git + b * 3 * H;
          if (ln) {
            T* hh = save ? s + layout.h_hat() : hat.data();
            const T rstd = layer_norm_row<T>(rec, q, ga_h, be_h, hh, q);
            if (save) s[layout.stats() + 1] = rstd;
          }
#pragma omp simd
          for (int64_t j = 0; j < rec; ++j) q[j] += b_h[j];
          const int64_t index0 = (p.off[t] + b) * H;
          if (after) {
            (keeps ? forward_after<T, true, Z>
                   : forward_after<T, false, Z>)(H, gib, gib + H, gib + 2 * H, q, q + H, q + 2 * H, zero, zero, zero,
                                                 zero, h + b * H, h_new + b * H, outt + b * H, s + layout.r(),
                                                 s + layout.z(), s + layout.n(), s + layout.hn(),
                                                 zoneout.for_row(index0, H, keeps_k.data()));
          } else {
            forward_before_gates<T>(H, gib, gib + H, q, q + H, zero, zero, hin + b * H, s + layout.r(), s + layout.z(),
                                    rhp + b * H);
          }
        }
        if (!after) {
          // the candidate's recurrent term: (r * h~) W_n^T
          mm<T>(Product::recurrent, m, H, H, rhp + r0 * H, H, whh_t + 2 * H, 3 * H, ghp + r0 * 3 * H + 2 * H, 3 * H,
                false);
          for (int64_t b = r0; b < re; ++b) {
            T* q = ghp + b * 3 * H + 2 * H;
            T* s = wst + b * W;
            if (ln) {
              T* hh = save ? s + layout.h_hat() + 2 * H : hat.data();
              const T rstd = layer_norm_row<T>(H, q, ga_h + 2 * H, be_h + 2 * H, hh, q);
              if (save) s[layout.stats() + 2] = rstd;
            }
            const T* gib = git + b * 3 * H;
            (keeps ? forward_before_state<T, true, Z>
                   : forward_before_state<T, false, Z>)(H, gib + 2 * H, q, zero, b_h + 2 * H, s + layout.z(), h + b * H,
                                                        h_new + b * H, outt + b * H, s + layout.n(),
                                                        zoneout.for_row((p.off[t] + b) * H, H, keeps_k.data()));
          }
        }
      }
    });
  });
  Tensor h_n = hbuf[p.T & 1].clone();  // hbuf is a reused workspace: return a copy
  return {to_original(p, out, 1), to_original(p, h_n, 0), ws};
}

template <typename T>
std::vector<Tensor> normalised_backward(const Problem& p, const Regularisers& g, const Tensor& d_out_in,
                                        const Tensor& d_hn_in, const Tensor& x_in, const Tensor& h0_in,
                                        const Tensor& w_ih_in, const Tensor& w_hh_in, const Tensor& out_in,
                                        const Tensor& ws, bool has_bias) {
  const int64_t B = p.B, H = p.H, N = p.N;
  const bool after = p.reset_after, keeps = p.keeps_state, ln = g.layer_norm(), rd = g.recurrent_dropout();
  const SavedLayout layout(H, after, ln);
  const int64_t W = layout.width;
  auto opts = x_in.options();
  Tensor x = to_sorted(p, x_in, p.packed ? 0 : 1, kSortedX);
  Tensor out = to_sorted(p, out_in, p.packed ? 0 : 1, kSortedOut);
  Tensor d_out = to_sorted(p, d_out_in, p.packed ? 0 : 1, kSortedDOut);
  Tensor h0 = to_sorted(p, h0_in, 0, kSortedH0);
  // dh is written in place and, unsorted, returned as d h0: a copy of d_hn either way
  Tensor dh = p.order.defined() ? to_sorted(p, d_hn_in, 0, kSortedDHn) : d_hn_in.contiguous().clone();
  Tensor zo = g.zoneout_mask.has_value() && g.zoneout_mask->defined()
                  ? to_sorted(p, *g.zoneout_mask, p.packed ? 0 : 1, kSortedZoneout)
                  : Tensor();
  Tensor rdm = rd ? to_sorted(p, *g.recurrent_mask, 0, kSortedRecurrent) : Tensor();
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  std::vector<T> ones(3 * H, T(1));
  Tensor ga_i_t = parameter_or<T>(g.gamma_ih, ones, opts), ga_h_t = parameter_or<T>(g.gamma_hh, ones, opts);
  const T *ga_i = ga_i_t.data_ptr<T>(), *ga_h = ga_h_t.data_ptr<T>();

  // per row of the (sorted) input: dGI, the gradient of gi (input side); dGH, of gh after layer
  // norm (reset after; reset before reaches gh's pre-activations through dGI itself); dRaw, of
  // the raw recurrent products (layer norm taken back); HD = h~ and RH = r * h~ for the weight
  // gradients. Without layer norm dRaw is dGH (after) or dGI (before). Zero at padded rows.
  const bool skipping = skips_rows(p);
  auto buffer = [&](int slot, int64_t cols) {
    Tensor t = workspace(slot, {N, cols}, opts);
    return skipping ? t.zero_() : t;
  };
  Tensor dgi = buffer(kNormDGI, 3 * H);
  Tensor dgh = after ? buffer(kNormDGH, 3 * H) : dgi;
  Tensor draw = ln ? buffer(kNormDRaw, 3 * H) : dgh;
  Tensor hdall = buffer(kNormHdAll, H);
  Tensor rhall = after ? Tensor() : buffer(kNormRhAll, H);
  const Team team = rows_only_team(B, H);
  std::vector<std::vector<T>> dgamma_h(ln ? team.n : 0, std::vector<T>(3 * H, T(0)));
  Tensor dhd = workspace(kNormDhd, {B, H}, opts);                     // d h~ of the running rows
  Tensor drh = after ? Tensor() : workspace(kNormDRH, {B, H}, opts);  // d (r * h~)
  T *dgip = dgi.data_ptr<T>(), *dghp = dgh.data_ptr<T>(), *drawp = draw.data_ptr<T>();
  T *hdallp = hdall.data_ptr<T>(), *rhallp = after ? nullptr : rhall.data_ptr<T>();
  T *dhp = dh.data_ptr<T>(), *dhdp = dhd.data_ptr<T>(), *drhp = after ? nullptr : drh.data_ptr<T>();
  const T *outp = out.data_ptr<T>(), *h0p = h0.data_ptr<T>(), *dop = d_out.data_ptr<T>(), *wsp = ws.data_ptr<T>();
  const T* zop = zo.defined() ? zo.data_ptr<T>() : nullptr;
  const T* rdp = rd ? rdm.data_ptr<T>() : nullptr;
  const T* whh = w_hh.data_ptr<T>();

  with_zoneout<T>(g, zop, [&](const auto& zoneout) {
    using Z = decltype(zoneout.for_row(0, 0, nullptr));  // NoZoneout or ZoneoutRow<T>
    run_team(team, [&](int k) {
      const int64_t r0 = team.row_lo(k), r1 = team.row_hi(k);
      if (r0 >= r1) return;
      std::vector<T> keeps_k(H);  // a row's zoneout k, when drawn or p
      for (int64_t step = p.T - 1; step >= 0; --step) {
        const int64_t t = step_at(p, step);
        const int64_t re = std::min(r1, p.bs[t]);
        const int64_t m = std::max<int64_t>(0, re - r0);
        if (m == 0) continue;
        const int64_t tp = p.reverse ? t + 1 : t - 1;  // the step before this one in the forward pass
        const int64_t bs_prev = step == 0 ? 0 : p.bs[tp];
        const T* prev_out = step == 0 ? nullptr : outp + p.off[tp] * H;
        const int64_t o = p.off[t];
        for (int64_t b = r0; b < re; ++b) {
          const T* s = wsp + (o + b) * W;
          const T* h = b < bs_prev ? prev_out + b * H : h0p + b * H;  // h_{t-1}
          T* hdr = hdallp + (o + b) * H;
          T* dgir = dgip + (o + b) * 3 * H;
          T* dghr = dghp + (o + b) * 3 * H;
          T* drr = drawp + (o + b) * 3 * H;
          const T* dout = dop + (o + b) * H;
          const int64_t index0 = (o + b) * H;
          if (after) {
            (keeps ? backward_after<T, true, Z>
                   : backward_after<T, false, Z>)(H, s + layout.r(), s + layout.z(), s + layout.n(), s + layout.hn(), h,
                                                  dout, dhp + b * H, dgir, dgir + H, dgir + 2 * H, dghr, dghr + H,
                                                  dghr + 2 * H, hdr, zoneout.for_row(index0, H, keeps_k.data()));
            if (ln) {
              layer_norm_row_backward<T>(3 * H, dghr, ga_h, s + layout.h_hat(), s[layout.stats() + 1], drr);
              accumulate_product<T>(3 * H, dghr, s + layout.h_hat(), dgamma_h[k].data());
            }
          } else {
            (keeps ? backward_before_candidate<T, true, Z>
                   : backward_before_candidate<T, false, Z>)(H, s + layout.z(), s + layout.n(), h, dout, dhp + b * H,
                                                             dgir + H, dgir + 2 * H, hdr,
                                                             zoneout.for_row(index0, H, keeps_k.data()));
            if (ln) {
              layer_norm_row_backward<T>(H, dgir + 2 * H, ga_h + 2 * H, s + layout.h_hat() + 2 * H,
                                         s[layout.stats() + 2], drr + 2 * H);
              accumulate_product<T>(H, dgir + 2 * H, s + layout.h_hat() + 2 * H, dgamma_h[k].data() + 2 * H);
            }
          }
          if (rd)  // the weight gradients see h~ = h * m
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) hdr[j] = h[j] * rdp[b * H + j];
        }
        if (after) {
          // d h~ = dRaw [m, 3H] @ W_hh [3H, H]
          mm<T>(Product::recurrent, m, H, 3 * H, drawp + (o + r0) * 3 * H, 3 * H, whh, H, dhdp + r0 * H, H, false);
        } else {
          // d(r * h~) = dRaw_n [m, H] @ W_n [H, H]
          mm<T>(Product::recurrent, m, H, H, drawp + (o + r0) * 3 * H + 2 * H, 3 * H, whh + 2 * H * H, H, drhp + r0 * H,
                H, false);
          std::fill(dhdp + r0 * H, dhdp + re * H, T(0));
          for (int64_t b = r0; b < re; ++b) {
            const T* s = wsp + (o + b) * W;
            T* dgir = dgip + (o + b) * 3 * H;
            backward_before_gates<T>(H, s + layout.r(), s + layout.z(), hdallp + (o + b) * H, drhp + b * H,
                                     dhdp + b * H, dgir, dgir + H, rhallp + (o + b) * H);
            if (ln) {
              layer_norm_row_backward<T>(2 * H, dgir, ga_h, s + layout.h_hat(), s[layout.stats() + 1],
                                         drawp + (o + b) * 3 * H);
              accumulate_product<T>(2 * H, dgir, s + layout.h_hat(), dgamma_h[k].data());
            }
          }
          // d h~ += dRaw_rz [m, 2H] @ W_rz [2H, H]
          mm<T>(Product::recurrent, m, H, 2 * H, drawp + (o + r0) * 3 * H, 3 * H, whh, H, dhdp + r0 * H, H, true);
        }
        for (int64_t b = r0; b < re; ++b)  // h~ = h * m
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) dhp[b * H + j] += rd ? dhdp[b * H + j] * rdp[b * H + j] : dhdp[b * H + j];
      }
    });
  });

  // biases and gains: sums over every row (padded rows hold zeros). b_ih and beta_ih (b_hh and
  // beta_hh) are added at the same place: the same gradient.
  Tensor db_ih = at::empty({0}, opts), db_hh = at::empty({0}, opts);
  Tensor dg_i = at::empty({0}, opts), dbe_i = at::empty({0}, opts), dg_h = at::empty({0}, opts),
         dbe_h = at::empty({0}, opts);
  if (has_bias || ln) std::tie(db_ih, db_hh) = bias_gradients(dgi, after ? dgh : Tensor());
  if (ln) {
    dbe_i = db_ih.clone();
    dbe_h = db_hh.clone();
    std::vector<double> gamma_i(3 * H, 0.0), gamma_h(3 * H, 0.0);  // the threads' partial sums, added in double
    for (const auto& part : dgamma_h)
      for (int64_t j = 0; j < 3 * H; ++j) gamma_h[j] += part[j];
    // gi = LN(x W_ih^T) + b_ih: dGI -> d of the raw input product, row by row, in place
    std::mutex lock;
    at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
      std::vector<T> part(3 * H, T(0));
      for (int64_t row = n0; row < n1; ++row) {
        const T* s = wsp + row * W;
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
    dg_i = to_tensor(gamma_i);
    dg_h = to_tensor(gamma_h);
  }
  const InputAndWeightGradients w = input_and_weight_gradients<T>(p, x, w_ih, dgi, hdall, rhall, draw);
  if (!has_bias) db_ih = db_hh = at::empty({0}, opts);
  return {to_original(p, w.dx, 1), to_original(p, dh, 0), w.dw_ih, w.dw_hh, db_ih, db_hh, dg_i, dbe_i, dg_h, dbe_h};
}

}  // namespace grukit
