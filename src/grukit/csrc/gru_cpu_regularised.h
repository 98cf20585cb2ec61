// Fused CPU kernels for one GRU layer-direction with the regularisers: layer norm, zoneout and
// recurrent dropout, forward and backward. Included by gru_cpu.cpp inside its namespace: it
// uses that file's Problem, mm, workspaces, activations and team helpers.
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
//
// Layer norm needs whole rows (its mean and variance run over all units), so the threads split
// batch rows only, never hidden units, and no step needs a barrier.

constexpr double kLayerNormEps = 1e-5;  // as torch.nn.LayerNorm

// workspace slots of these kernels, after gru_cpu.cpp's own
enum RegSlot { kRegGI = kSlots, kRegHd, kRegGH, kRegRH, kRegH, kRegDGI, kRegDRaw, kRegDGH, kRegHdAll, kRegRhAll,
               kRegDh, kRegDhd, kRegXT, kRegHT, kRegDWihT, kRegDWhhT, kRegSortedZo, kRegSortedRd,
               kRegSortedX, kRegSortedOut, kRegSortedDOut, kRegWs, kRegSlots };
static_assert(kRegSlots <= kMaxSlots, "raise kMaxSlots in gru_cpu.cpp");

// A tensor handed to autograd (the saved activations), recycled: the buffer of the previous call
// is reused once nothing holds its storage any more (its backward ran, or the graph was freed),
// which spares the page faults of a fresh multi-megabyte allocation on every training step.
Tensor recycled(int slot, at::IntArrayRef shape, const at::TensorOptions& opts) {
  thread_local std::vector<Tensor> pool(kMaxSlots);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  Tensor& buf = pool[slot];
  if (!buf.defined() || buf.storage().use_count() > 1 || buf.scalar_type() != opts.dtype().toScalarType() ||
      buf.numel() < numel) {
    c10::InferenceMode normal(false);
    buf = at::empty({std::max<int64_t>(numel, 1)}, opts);
  }
  return buf.narrow(0, 0, numel).view(shape);
}

// Zoneout's mask drawn inside the kernel: element `index` of a call keeps h_{t-1} when a hash of
// (seed, index) falls below p * 2^32 (splitmix64's mixer: the forward and the backward pass
// compute the same bits, so nothing is stored, and drawing costs about a nanosecond an element).
inline bool zoneout_keeps(uint64_t seed, uint64_t index, uint32_t threshold) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return uint32_t(z >> 32) < threshold;
}

// The thread team for these kernels: gru_cpu.cpp's team when it splits batch rows, else one
// thread (a split by hidden units cannot compute a row's layer-norm statistics without a barrier).
Team rows_only_team(int64_t B, int64_t H) {
  Team team = make_team(B, H, 3 * H);
  if (!team.by_rows) {
    team.n = 1;
    team.by_rows = true;
    team.row_chunk = B;
  }
  return team;
}

// y = gamma * v_hat + beta over n values, v_hat = (v - mean) * rstd; v_hat written to `hat`
// (may alias nothing else), the result to `y` (may alias v). Returns rstd.
template <typename T>
T layer_norm_row(int64_t n, const T* v, const T* gamma, const T* beta, T* hat, T* y) {
  T sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += v[j];
  const T m = sum / T(n);
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) sq += (v[j] - m) * (v[j] - m);
  const T rstd = T(1) / std::sqrt(sq / T(n) + T(kLayerNormEps));
  for (int64_t j = 0; j < n; ++j) {
    const T h = (v[j] - m) * rstd;
    hat[j] = h;
    y[j] = gamma[j] * h + beta[j];
  }
  return rstd;
}

// d v = rstd * (d_hat - mean(d_hat) - v_hat * mean(d_hat * v_hat)),  d_hat = dy * gamma. dv may alias dy.
template <typename T>
void layer_norm_row_backward(int64_t n, const T* dy, const T* gamma, const T* hat, T rstd, T* dv) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t j = 0; j < n; ++j) {
    const T d = dy[j] * gamma[j];
    s1 += d;
    s2 += d * hat[j];
  }
  const T m1 = s1 / T(n), m2 = s2 / T(n);
  for (int64_t j = 0; j < n; ++j) dv[j] = rstd * (dy[j] * gamma[j] - m1 - hat[j] * m2);
}

// Padded input with lengths: some rows of some steps are never computed (their outputs are 0).
bool skips_rows(const Problem& p) {
  return !p.packed && std::any_of(p.bs.begin(), p.bs.end(), [&](int64_t b) { return b < p.B; });
}

// dst[j] += a[j] * b[j] over one row's n values (into a per-thread accumulator).
template <typename T>
inline void accumulate_product(int64_t n, const T* __restrict a, const T* __restrict b, T* __restrict dst) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] += a[j] * b[j];
}

// What the regularised kernels are asked to do, and where each saved value sits in a row of the
// workspace: [r | z | n | hn (reset after)] then, with layer norm, [xi_hat (3H) | xh_hat (3H) |
// rstd_i, rstd_h (or rstd_rz, rstd_n)].
struct Reg {
  bool ln = false, zo_mask = false, rd = false;
  double zo_p = 0;
  int64_t zo_seed = -1;  // >= 0 (and no mask): draw the zoneout mask in the kernel with probability zo_p
  uint32_t zo_threshold = 0;
  int64_t H = 0, base = 0, width = 0;
  Reg(const c10::optional<Tensor>& gamma_ih, const c10::optional<Tensor>& zoneout_mask, double zoneout_p,
      int64_t zoneout_seed, const c10::optional<Tensor>& recurrent_mask, int64_t H_, bool after)
      : ln(gamma_ih.has_value() && gamma_ih->defined()),
        zo_mask(zoneout_mask.has_value() && zoneout_mask->defined()),
        rd(recurrent_mask.has_value() && recurrent_mask->defined()),
        zo_p(zoneout_p), zo_seed(zoneout_seed), zo_threshold(uint32_t(std::min(zoneout_p, 1.0) * 4294967296.0)),
        H(H_) {
    base = (after ? 4 : 3) * H;
    width = base + (ln ? 6 * H + 3 : 0);
  }
  // zoneout's k for element `index` (row * H + unit) of the call: the given mask, the drawn one, or p
  template <typename T>
  T keep(const T* mask, int64_t index) const {
    if (mask) return mask[index];
    if (zo_seed >= 0) return T(zoneout_keeps(uint64_t(zo_seed), uint64_t(index), zo_threshold));
    return T(zo_p);
  }
  int64_t xi_hat() const { return base; }
  int64_t xh_hat() const { return base + 3 * H; }
  int64_t stats() const { return base + 6 * H; }
};

template <typename T>
std::tuple<Tensor, Tensor, Tensor> reg_forward_impl(
    const Problem& p, const Reg& g, const Tensor& x_in, const Tensor& h0_in, const Tensor& w_ih_in,
    const Tensor& w_hh_in, const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh,
    const c10::optional<Tensor>& gamma_ih, const c10::optional<Tensor>& beta_ih,
    const c10::optional<Tensor>& gamma_hh, const c10::optional<Tensor>& beta_hh,
    const c10::optional<Tensor>& zo_mask_in, const c10::optional<Tensor>& rd_mask_in, bool training) {
  const int64_t B = p.B, I = p.I, H = p.H, N = p.N;
  const bool after = p.reset_after, keeps = p.keeps_state;
  auto opts = x_in.options();
  Tensor x = to_sorted(p, x_in, 1, kRegSortedX);
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  Tensor zo = g.zo_mask ? to_sorted(p, *zo_mask_in, p.packed ? 0 : 1, kRegSortedZo) : Tensor();
  Tensor rd = g.rd ? to_sorted(p, *rd_mask_in, 0, kRegSortedRd) : Tensor();
  std::vector<T> zeros(3 * H, T(0)), ones(3 * H, T(1));
  auto ptr_or = [&](const c10::optional<Tensor>& t, std::vector<T>& fallback) -> Tensor {
    return t.has_value() && t->defined() ? t->contiguous() : at::from_blob(fallback.data(), {3 * H}, opts);
  };
  Tensor bi = ptr_or(b_ih, zeros), bh = ptr_or(b_hh, zeros);
  Tensor gi_g = ptr_or(gamma_ih, ones), gi_b = ptr_or(beta_ih, zeros);
  Tensor gh_g = ptr_or(gamma_hh, ones), gh_b = ptr_or(beta_hh, zeros);
  const T *b_i = bi.data_ptr<T>(), *b_h = bh.data_ptr<T>();
  const T *ga_i = gi_g.data_ptr<T>(), *be_i = gi_b.data_ptr<T>(), *ga_h = gh_g.data_ptr<T>(), *be_h = gh_b.data_ptr<T>();

  const int64_t W = g.width;
  // rows past a sequence's length are never written: zero them, the backward sums over every row
  const bool skipping = skips_rows(p);
  Tensor ws = training ? recycled(kRegWs, {N, W}, opts) : at::empty({0}, opts);
  if (training && skipping) ws.zero_();
  Tensor scratch = training ? Tensor() : workspace(kRegDGH, {B, W}, opts);  // one step's saved values

  // gi = LN(x W_ih^T) + b_ih  (or x W_ih^T + b_ih) for all steps: one product, then one pass per row
  Tensor gi = workspace(kRegGI, {N, 3 * H}, opts);
  Tensor w_ih_t = w_ih.t().contiguous();
  mm_parallel<T>(N, 3 * H, I, x.data_ptr<T>(), I, w_ih_t.data_ptr<T>(), 3 * H, gi.data_ptr<T>(), 3 * H, false);
  {
    T* gip = gi.data_ptr<T>();
    T* wsp = training ? ws.data_ptr<T>() : nullptr;
    at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
      std::vector<T> hat(3 * H);
      for (int64_t row = n0; row < n1; ++row) {
        T* v = gip + row * 3 * H;
        if (g.ln) {
          T* h = training ? wsp + row * W + g.xi_hat() : hat.data();
          const T rstd = layer_norm_row<T>(3 * H, v, ga_i, be_i, h, v);
          if (training) wsp[row * W + g.stats()] = rstd;
        }
        #pragma omp simd
        for (int64_t j = 0; j < 3 * H; ++j) v[j] += b_i[j];
      }
    });
  }

  const std::vector<int64_t> out_shape = p.packed ? std::vector<int64_t>{N, H} : std::vector<int64_t>{p.T, B, H};
  Tensor out = skipping ? at::zeros(out_shape, opts) : at::empty(out_shape, opts);  // 0 past a sequence's end
  Tensor hstate = workspace(kRegH, {B, H}, opts);
  hstate.copy_(to_sorted(p, h0_in, 0, kRegSortedOut));
  Tensor hd = g.rd ? workspace(kRegHd, {B, H}, opts) : hstate;
  Tensor gh = workspace(kRegGH, {B, 3 * H}, opts);
  Tensor rh = after ? Tensor() : workspace(kRegRH, {B, H}, opts);
  Tensor w_hh_t = w_hh.t().contiguous();  // [H, 3H]
  const T* whh_t = w_hh_t.data_ptr<T>();
  T* hs = hstate.data_ptr<T>();
  T* hdp = hd.data_ptr<T>();
  T* ghp = gh.data_ptr<T>();
  T* rhp = after ? nullptr : rh.data_ptr<T>();
  const T* rdp = g.rd ? rd.data_ptr<T>() : nullptr;
  const T* zop = g.zo_mask ? zo.data_ptr<T>() : nullptr;

  const Team rows_team = rows_only_team(B, H);
  run_team(rows_team, [&](int k) {
    const int64_t r0 = rows_team.row_lo(k), r1 = rows_team.row_hi(k);
    if (r0 >= r1) return;
    std::vector<T> hat(3 * H);
    for (int64_t step = 0; step < p.T; ++step) {
      const int64_t t = step_at(p, step);
      const int64_t re = std::min(r1, p.bs[t]);
      const int64_t m = std::max<int64_t>(0, re - r0);
      if (m == 0) continue;
      const T* git = gi.data_ptr<T>() + p.off[t] * 3 * H;
      T* outt = out.data_ptr<T>() + p.off[t] * H;
      T* wst = training ? ws.data_ptr<T>() + p.off[t] * W : scratch.data_ptr<T>();
      if (g.rd)  // h~ = h * m
        for (int64_t b = r0; b < re; ++b)
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) hdp[b * H + j] = hs[b * H + j] * rdp[b * H + j];
      // recurrent products of the running rows: h~ W^T ([r | z | n] after, [r | z] before)
      mm<T>(m, after ? 3 * H : 2 * H, H, hdp + r0 * H, H, whh_t, 3 * H, ghp + r0 * 3 * H, 3 * H, false);
      for (int64_t b = r0; b < re; ++b) {
        T* q = ghp + b * 3 * H;
        T* s = wst + b * W;
        const T* gib = git + b * 3 * H;
        const int64_t rec = after ? 3 * H : 2 * H;
        if (g.ln) {
          T* h = training ? s + g.xh_hat() : hat.data();
          const T rstd = layer_norm_row<T>(rec, q, ga_h, be_h, h, q);
          if (training) s[g.stats() + 1] = rstd;
        }
        #pragma omp simd
        for (int64_t j = 0; j < rec; ++j) q[j] += b_h[j];
        #pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          s[j] = sigmoid_act(gib[j] + q[j]);              // r
          s[H + j] = sigmoid_act(gib[H + j] + q[H + j]);  // z
        }
        if (after) {
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = s[j], hn = q[2 * H + j];
            s[2 * H + j] = tanh_act(gib[2 * H + j] + r * hn);  // n
            s[3 * H + j] = hn;
          }
        } else {
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) rhp[b * H + j] = s[j] * hdp[b * H + j];  // r * h~
        }
      }
      if (!after) {
        // the candidate's recurrent term: (r * h~) W_n^T
        mm<T>(m, H, H, rhp + r0 * H, H, whh_t + 2 * H, 3 * H, ghp + r0 * 3 * H + 2 * H, 3 * H, false);
        for (int64_t b = r0; b < re; ++b) {
          T* q = ghp + b * 3 * H + 2 * H;
          T* s = wst + b * W;
          if (g.ln) {
            T* h = training ? s + g.xh_hat() + 2 * H : hat.data();
            const T rstd = layer_norm_row<T>(H, q, ga_h + 2 * H, be_h + 2 * H, h, q);
            if (training) s[g.stats() + 2] = rstd;
          }
          const T* gib = git + b * 3 * H;
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) s[2 * H + j] = tanh_act(gib[2 * H + j] + q[j] + b_h[2 * H + j]);
        }
      }
      for (int64_t b = r0; b < re; ++b) {
        const T* s = wst + b * W;
        T* h = hs + b * H;
        T* o = outt + b * H;
        #pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T z = s[H + j], n = s[2 * H + j];
          const T hc = keeps ? n + z * (h[j] - n) : h[j] + z * (n - h[j]);
          const T keep = g.keep<T>(zop, (p.off[t] + b) * H + j);
          const T hnew = keep * h[j] + (T(1) - keep) * hc;  // zoneout (exactly h_{t-1} where k = 1)
          o[j] = hnew;
          h[j] = hnew;
        }
      }
    }
  });
  // padded input with lengths: back to the caller's batch order (fresh tensors either way)
  Tensor h_n = p.order.defined() ? to_original(p, hstate, 0) : hstate.clone();
  return {to_original(p, out, 1), h_n, ws};
}

template <typename T>
std::vector<Tensor> reg_backward_impl(const Problem& p, const Reg& g, const Tensor& d_out_in, const Tensor& d_hn_in,
                                      const Tensor& x_in, const Tensor& h0_in, const Tensor& w_ih_in,
                                      const Tensor& w_hh_in, const c10::optional<Tensor>& gamma_ih,
                                      const c10::optional<Tensor>& gamma_hh, const c10::optional<Tensor>& zo_mask_in,
                                      const c10::optional<Tensor>& rd_mask_in, const Tensor& out_in,
                                      const Tensor& ws, bool has_bias) {
  const int64_t B = p.B, I = p.I, H = p.H, N = p.N, W = g.width;
  const bool after = p.reset_after, keeps = p.keeps_state;
  auto opts = x_in.options();
  Tensor x = to_sorted(p, x_in, p.packed ? 0 : 1, kRegSortedX);
  Tensor out = to_sorted(p, out_in, p.packed ? 0 : 1, kRegSortedOut);
  Tensor d_out = to_sorted(p, d_out_in, p.packed ? 0 : 1, kRegSortedDOut);
  Tensor h0 = to_sorted(p, h0_in, 0, kSortedH0);
  // dh is written in place and, unsorted, returned as d h0: a copy of d_hn either way
  Tensor dh = p.order.defined() ? to_sorted(p, d_hn_in, 0, kSortedDHn) : d_hn_in.contiguous().clone();
  Tensor zo = g.zo_mask ? to_sorted(p, *zo_mask_in, p.packed ? 0 : 1, kRegSortedZo) : Tensor();
  Tensor rd = g.rd ? to_sorted(p, *rd_mask_in, 0, kRegSortedRd) : Tensor();
  Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  std::vector<T> ones(3 * H, T(1));
  auto gamma = [&](const c10::optional<Tensor>& t) {
    return t.has_value() && t->defined() ? t->contiguous() : at::from_blob(ones.data(), {3 * H}, opts);
  };
  Tensor ga_i_t = gamma(gamma_ih), ga_h_t = gamma(gamma_hh);
  const T *ga_i = ga_i_t.data_ptr<T>(), *ga_h = ga_h_t.data_ptr<T>();

  // per row of the (sorted) input: d of gi and of gh after LN (dGI, dGH), d of the raw recurrent
  // products (dRaw), h~ and r * h~ for the weight gradients. Zero at padded rows.
  // without layer norm dGH and dRaw are the same numbers: one buffer
  const bool skipping = skips_rows(p);
  auto buffer = [&](int slot, int64_t cols) {
    Tensor t = workspace(slot, {N, cols}, opts);
    return skipping ? t.zero_() : t;
  };
  Tensor dgi = buffer(kRegDGI, 3 * H);
  Tensor draw = buffer(kRegDRaw, 3 * H);
  Tensor dgh = g.ln ? buffer(kRegDGH, 3 * H) : draw;
  Tensor hdall = buffer(kRegHdAll, H);
  Tensor rhall = after ? Tensor() : buffer(kRegRhAll, H);
  std::vector<std::vector<T>> dgamma_h(g.ln ? rows_only_team(B, H).n : 0, std::vector<T>(3 * H, T(0)));
  Tensor dhd = workspace(kRegDhd, {B, H}, opts);
  T *dgip = dgi.data_ptr<T>(), *dghp = dgh.data_ptr<T>(), *drawp = draw.data_ptr<T>(), *hdallp = hdall.data_ptr<T>();
  T* rhallp = after ? nullptr : rhall.data_ptr<T>();
  T *dhp = dh.data_ptr<T>(), *dhdp = dhd.data_ptr<T>();
  const T *outp = out.data_ptr<T>(), *h0p = h0.data_ptr<T>(), *dop = d_out.data_ptr<T>(), *wsp = ws.data_ptr<T>();
  const T* zop = g.zo_mask ? zo.data_ptr<T>() : nullptr;
  const T* rdp = g.rd ? rd.data_ptr<T>() : nullptr;
  const T* whh = w_hh.data_ptr<T>();

  const Team rows_team = rows_only_team(B, H);
  run_team(rows_team, [&](int k) {
    const int64_t r0 = rows_team.row_lo(k), r1 = rows_team.row_hi(k);
    if (r0 >= r1) return;
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
        T* dh_ = dhp + b * H;
        const T* dout = dop + (o + b) * H;
        #pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          hdr[j] = g.rd ? h[j] * rdp[b * H + j] : h[j];  // h~
          const T r = s[j], z = s[H + j], n = s[2 * H + j];
          const T dH = dout[j] + dh_[j];
          const T keep = g.keep<T>(zop, (o + b) * H + j);
          const T dhc = (T(1) - keep) * dH;  // h_t = k h + (1 - k) h'
          T dz, dn, dprev = keep * dH;
          if (keeps) {  // h' = z h + (1 - z) n
            dz = dhc * (h[j] - n);
            dn = dhc * (T(1) - z);
            dprev += dhc * z;
          } else {      // h' = (1 - z) h + z n
            dz = dhc * (n - h[j]);
            dn = dhc * z;
            dprev += dhc * (T(1) - z);
          }
          const T da_n = dn * (T(1) - n * n);
          const T da_z = dz * z * (T(1) - z);
          dgir[H + j] = da_z;
          dgir[2 * H + j] = da_n;
          dh_[j] = dprev;  // the direct part of dh_{t-1}; the recurrent products add to it below
          if (after) {     // n = tanh(gi_n + r * hn)
            const T hn = s[3 * H + j];
            const T da_r = da_n * hn * r * (T(1) - r);
            dgir[j] = da_r;
            dghr[j] = da_r;
            dghr[H + j] = da_z;
            dghr[2 * H + j] = da_n * r;
          } else {
            dghr[H + j] = da_z;
            dghr[2 * H + j] = da_n;
          }
        }
        T* drr = drawp + (o + b) * 3 * H;
        if (after) {
          if (g.ln) layer_norm_row_backward<T>(3 * H, dghr, ga_h, s + g.xh_hat(), s[g.stats() + 1], drr);
          else if (dghr != drr) std::copy(dghr, dghr + 3 * H, drr);
          if (g.ln) accumulate_product<T>(3 * H, dghr, s + g.xh_hat(), dgamma_h[k].data());
        } else {
          if (g.ln) layer_norm_row_backward<T>(H, dghr + 2 * H, ga_h + 2 * H, s + g.xh_hat() + 2 * H,
                                               s[g.stats() + 2], drr + 2 * H);
          else if (dghr != drr) std::copy(dghr + 2 * H, dghr + 3 * H, drr + 2 * H);
          if (g.ln) accumulate_product<T>(H, dghr + 2 * H, s + g.xh_hat() + 2 * H, dgamma_h[k].data() + 2 * H);
        }
      }
      if (after) {
        // d h~ = dRaw [m, 3H] @ W_hh [3H, H]
        mm<T>(m, H, 3 * H, drawp + (o + r0) * 3 * H, 3 * H, whh, H, dhdp + r0 * H, H, false);
      } else {
        // d(r * h~) = dRaw_n [m, H] @ W_n [H, H]   (parked in dhd)
        mm<T>(m, H, H, drawp + (o + r0) * 3 * H + 2 * H, 3 * H, whh + 2 * H * H, H, dhdp + r0 * H, H, false);
        for (int64_t b = r0; b < re; ++b) {
          const T* s = wsp + (o + b) * W;
          const T* hdr = hdallp + (o + b) * H;
          T* rhr = rhallp + (o + b) * H;
          T* dgir = dgip + (o + b) * 3 * H;
          T* dghr = dghp + (o + b) * 3 * H;
          T* dhd_ = dhdp + b * H;
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = s[j];
            rhr[j] = r * hdr[j];
            const T da_r = dhd_[j] * hdr[j] * r * (T(1) - r);  // rh = r * h~
            dhd_[j] *= r;
            dgir[j] = da_r;
            dghr[j] = da_r;
          }
          T* drr = drawp + (o + b) * 3 * H;
          if (g.ln) layer_norm_row_backward<T>(2 * H, dghr, ga_h, s + g.xh_hat(), s[g.stats() + 1], drr);
          else if (dghr != drr) std::copy(dghr, dghr + 2 * H, drr);
          if (g.ln) accumulate_product<T>(2 * H, dghr, s + g.xh_hat(), dgamma_h[k].data());
        }
        // d h~ += dRaw_rz [m, 2H] @ W_rz [2H, H]
        mm<T>(m, H, 2 * H, drawp + (o + r0) * 3 * H, 3 * H, whh, H, dhdp + r0 * H, H, true);
      }
      for (int64_t b = r0; b < re; ++b)  // h~ = h * m
        #pragma omp simd
        for (int64_t j = 0; j < H; ++j) dhp[b * H + j] += g.rd ? dhdp[b * H + j] * rdp[b * H + j] : dhdp[b * H + j];
    }
  });

  // biases and gains: sums over every row (padded rows hold zeros)
  Tensor db_ih = at::empty({0}, opts), db_hh = at::empty({0}, opts);
  Tensor dg_i = at::empty({0}, opts), dbe_i = at::empty({0}, opts), dg_h = at::empty({0}, opts), dbe_h = at::empty({0}, opts);
  if (has_bias || g.ln) {  // b_ih and beta_ih (b_hh and beta_hh) are added at the same place: same gradient
    db_ih = dgi.sum(0);
    db_hh = dgh.sum(0);
  }
  if (g.ln) {
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
        accumulate_product<T>(3 * H, dgip + row * 3 * H, s + g.xi_hat(), part.data());
        layer_norm_row_backward<T>(3 * H, dgip + row * 3 * H, ga_i, s + g.xi_hat(), s[g.stats()], dgip + row * 3 * H);
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
  // dX [N, I] = dGI [N, 3H] @ W_ih [3H, I]
  const std::vector<int64_t> dx_shape = p.packed ? std::vector<int64_t>{N, I} : std::vector<int64_t>{p.T, B, I};
  Tensor dx = at::empty(dx_shape, opts);
  mm_parallel<T>(N, I, 3 * H, dgip, 3 * H, w_ih.data_ptr<T>(), I, dx.data_ptr<T>(), I, false);
  // dW_ih^T [I, 3H] = X^T [I, N] @ dGI [N, 3H]
  Tensor x_t = workspace(kRegXT, {I, N}, opts);
  x_t.copy_(x.view({N, I}).t());
  Tensor dw_ih_t = workspace(kRegDWihT, {I, 3 * H}, opts);
  mm_parallel<T>(I, 3 * H, N, x_t.data_ptr<T>(), N, dgip, 3 * H, dw_ih_t.data_ptr<T>(), 3 * H, false);
  // dW_hh^T [H, 3H] = H~^T @ dRaw  (reset before: the n block from (r * h~)^T)
  Tensor h_t = workspace(kRegHT, {H, N}, opts);
  h_t.copy_(hdall.t());
  Tensor dw_hh_t = workspace(kRegDWhhT, {H, 3 * H}, opts);
  mm_parallel<T>(H, after ? 3 * H : 2 * H, N, h_t.data_ptr<T>(), N, drawp, 3 * H, dw_hh_t.data_ptr<T>(), 3 * H, false);
  if (!after) {
    h_t.copy_(rhall.t());
    mm_parallel<T>(H, H, N, h_t.data_ptr<T>(), N, drawp + 2 * H, 3 * H, dw_hh_t.data_ptr<T>() + 2 * H, 3 * H, false);
  }
  if (!has_bias) db_ih = db_hh = at::empty({0}, opts);
  Tensor dw_ih = dw_ih_t.t().clone(at::MemoryFormat::Contiguous);
  Tensor dw_hh = dw_hh_t.t().clone(at::MemoryFormat::Contiguous);
  return {to_original(p, dx, 1), to_original(p, dh, 0), dw_ih, dw_hh, db_ih, db_hh, dg_i, dbe_i, dg_h, dbe_h};
}
