// The grukit operators: one GRU layer in one direction, forward and backward, on the CPU.
//
//   torch.ops.grukit.gru_layer_fwd   (x, h0, weights, optional lengths / batch_sizes, optional
//                                     regularisers, flags) -> (out, h_n, saved)
//   torch.ops.grukit.gru_layer_bwd   (d_out, d_hn, what the forward saw and saved, flags) -> grads
//
// The operators are public, so every tensor is checked here, at the boundary, before a kernel
// reads it: shape, dtype, device and contiguity, with messages that name the argument
// (causal-conv1d's CHECK_SHAPE style). The driver is chosen inside: the plain one (layer_plain.h)
// without regularisers, the normalised one (layer_normalised.h) with any of them.
//
// This file is the extension's one translation unit; the kernels are in the headers it includes:
//   gemm.h, activations.h    matrix products and activations
//   cell.h                   the cell's element-wise passes (the one copy of the step math)
//   workspace.h              the buffer pool          problem.h   sizes, layout, sorting
//   team.h                   thread teams             saved_layout.h   what forward saves
//   layer_plain.h, layer_normalised.h   layer drivers
//   weight_gradients.h       the backward pass's closing GEMMs
//   layer_norm.h             layer norm of a row      stream.h    streaming inference

#include <torch/extension.h>
#include <torch/library.h>

#include <sstream>
#include <string>

#include "layer_normalised.h"
#include "layer_plain.h"
#include "problem.h"
#include "saved_layout.h"
#include "stream.h"

namespace grukit {
namespace {

// ---------------------------------------------------------------- boundary checks

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  return s.str() + "]";
}

// `t` is a contiguous CPU tensor of `like`'s dtype and exactly `shape`.
void check_tensor(const char* op, const char* name, const Tensor& t, const Tensor& like,
                  std::initializer_list<int64_t> shape) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "grukit::", op, ": ", name, " must be on the CPU, got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == like.scalar_type(), "grukit::", op, ": ", name, " must have dtype ",
                   like.scalar_type(), " (the input's), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes().equals(shape), "grukit::", op, ": ", name, " must have shape ",
                    shape_text(at::IntArrayRef(shape)), ", got ", shape_text(t.sizes()));
  TORCH_CHECK_VALUE(t.is_contiguous(), "grukit::", op, ": ", name, " must be contiguous");
}

void check_optional(const char* op, const char* name, const c10::optional<Tensor>& t, const Tensor& like,
                    std::initializer_list<int64_t> shape) {
  if (t.has_value() && t->defined()) check_tensor(op, name, *t, like, shape);
}

bool given(const c10::optional<Tensor>& t) {
  return t.has_value() && t->defined();
}

// The sizes of a call, from x, h0 and w_hh, after checking every tensor against them.
struct Sizes {
  int64_t T = 0, B = 0, I = 0, H = 0, N = 0;
  bool packed = false;
};

Sizes check_layer(const char* op, const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                  const c10::optional<Tensor>& lengths, const c10::optional<Tensor>& batch_sizes) {
  Sizes s;
  TORCH_CHECK_VALUE(x.device().is_cpu(), "grukit::", op, ": x must be on the CPU, got ", x.device());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "grukit::", op,
                   ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.is_contiguous(), "grukit::", op, ": x must be contiguous");
  TORCH_CHECK_VALUE(w_hh.dim() == 2 && w_hh.size(0) == 3 * w_hh.size(1), "grukit::", op,
                    ": w_hh must have shape [3H, H], got ", shape_text(w_hh.sizes()));
  s.H = w_hh.size(1);
  s.packed = given(batch_sizes);
  TORCH_CHECK_VALUE(!(s.packed && given(lengths)), "grukit::", op,
                    ": give lengths (padded input) or batch_sizes (packed input), not both");
  if (s.packed) {
    const Tensor& bs = *batch_sizes;
    TORCH_CHECK_VALUE(x.dim() == 2, "grukit::", op, ": packed x must be [N, I], got ", shape_text(x.sizes()));
    TORCH_CHECK_TYPE(bs.scalar_type() == at::kLong && bs.dim() == 1 && bs.device().is_cpu() && bs.numel() > 0,
                     "grukit::", op, ": batch_sizes must be a non-empty 1-D int64 CPU tensor");
    s.N = x.size(0);
    s.I = x.size(1);
    s.T = bs.numel();
    s.B = bs.contiguous().data_ptr<int64_t>()[0];
  } else {
    TORCH_CHECK_VALUE(x.dim() == 3, "grukit::", op, ": x must be [T, B, I], got ", shape_text(x.sizes()));
    s.T = x.size(0);
    s.B = x.size(1);
    s.I = x.size(2);
    s.N = s.T * s.B;
    if (given(lengths)) {
      const Tensor& len = *lengths;
      TORCH_CHECK_TYPE(len.scalar_type() == at::kLong, "grukit::", op, ": lengths must be int64, got ",
                       len.scalar_type());
      TORCH_CHECK_VALUE(len.dim() == 1 && len.size(0) == s.B, "grukit::", op, ": lengths must have shape [", s.B,
                        "], got ", shape_text(len.sizes()));
      if (s.B) {
        const Tensor cpu = len.cpu();
        const int64_t lo = cpu.min().item<int64_t>(), hi = cpu.max().item<int64_t>();
        TORCH_CHECK_VALUE(lo >= 0 && hi <= s.T, "grukit::", op, ": lengths must lie in 0..", s.T, ", got ", lo, "..",
                          hi);
      }
    }
  }
  check_tensor(op, "h0", h0, x, {s.B, s.H});
  check_tensor(op, "w_ih", w_ih, x, {3 * s.H, s.I});
  check_tensor(op, "w_hh", w_hh, x, {3 * s.H, s.H});
  return s;
}

// The regularisers of a call, checked against its sizes.
Regularisers check_regularisers(const char* op, const Sizes& s, const Tensor& x, const c10::optional<Tensor>& gamma_ih,
                                const c10::optional<Tensor>& beta_ih, const c10::optional<Tensor>& gamma_hh,
                                const c10::optional<Tensor>& beta_hh, const c10::optional<Tensor>& zoneout_mask,
                                double zoneout_p, int64_t zoneout_seed, const c10::optional<Tensor>& recurrent_mask,
                                bool check_betas) {
  const bool ln = given(gamma_ih);
  TORCH_CHECK_VALUE(given(gamma_hh) == ln && (!check_betas || (given(beta_ih) == ln && given(beta_hh) == ln)),
                    "grukit::", op, ": layer norm needs all of gamma_ih, beta_ih, gamma_hh, beta_hh, or none");
  for (auto [name, t] : {std::pair<const char*, const c10::optional<Tensor>*>{"gamma_ih", &gamma_ih},
                         {"beta_ih", &beta_ih},
                         {"gamma_hh", &gamma_hh},
                         {"beta_hh", &beta_hh}})
    check_optional(op, name, *t, x, {3 * s.H});
  if (s.packed)
    check_optional(op, "zoneout_mask", zoneout_mask, x, {s.N, s.H});
  else
    check_optional(op, "zoneout_mask", zoneout_mask, x, {s.T, s.B, s.H});
  TORCH_CHECK_VALUE(zoneout_p >= 0 && zoneout_p <= 1, "grukit::", op, ": zoneout_p must be in [0, 1], got ", zoneout_p);
  check_optional(op, "recurrent_mask", recurrent_mask, x, {s.B, s.H});
  Regularisers g;
  g.gamma_ih = gamma_ih;
  g.beta_ih = beta_ih;
  g.gamma_hh = gamma_hh;
  g.beta_hh = beta_hh;
  g.zoneout_mask = zoneout_mask;
  g.zoneout_p = given(zoneout_mask) ? 0.0 : zoneout_p;
  g.zoneout_seed = zoneout_seed;
  g.recurrent_mask = recurrent_mask;
  return g;
}

// ---------------------------------------------------------------- operators

std::tuple<Tensor, Tensor, Tensor> gru_layer_fwd(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const c10::optional<Tensor>& b_ih,
    const c10::optional<Tensor>& b_hh, const c10::optional<Tensor>& lengths, const c10::optional<Tensor>& batch_sizes,
    const c10::optional<Tensor>& gamma_ih, const c10::optional<Tensor>& beta_ih, const c10::optional<Tensor>& gamma_hh,
    const c10::optional<Tensor>& beta_hh, const c10::optional<Tensor>& zoneout_mask, double zoneout_p,
    int64_t zoneout_seed, const c10::optional<Tensor>& recurrent_mask, bool reverse, bool reset_after, bool keeps_state,
    bool save_for_backward) {
  const char* op = "gru_layer_fwd";
  const Sizes s = check_layer(op, x, h0, w_ih, w_hh, lengths, batch_sizes);
  TORCH_CHECK_VALUE(given(b_ih) == given(b_hh), "grukit::", op, ": give both b_ih and b_hh, or neither");
  check_optional(op, "b_ih", b_ih, x, {3 * s.H});
  check_optional(op, "b_hh", b_hh, x, {3 * s.H});
  const Regularisers g = check_regularisers(op, s, x, gamma_ih, beta_ih, gamma_hh, beta_hh, zoneout_mask, zoneout_p,
                                            zoneout_seed, recurrent_mask, true);
  Problem p = describe(x, w_hh, lengths, batch_sizes, reverse, reset_after, keeps_state);
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_fwd", [&] {
    return g.any() ? normalised_forward<scalar_t>(p, g, x, h0, w_ih, w_hh, b_ih, b_hh, save_for_backward)
                   : plain_forward<scalar_t>(p, x, h0, w_ih, w_hh, b_ih, b_hh, save_for_backward);
  });
}

std::vector<Tensor> gru_layer_bwd(const Tensor& d_out, const Tensor& d_hn, const Tensor& x, const Tensor& h0,
                                  const Tensor& w_ih, const Tensor& w_hh, const c10::optional<Tensor>& lengths,
                                  const c10::optional<Tensor>& batch_sizes, const c10::optional<Tensor>& gamma_ih,
                                  const c10::optional<Tensor>& gamma_hh, const c10::optional<Tensor>& zoneout_mask,
                                  double zoneout_p, int64_t zoneout_seed, const c10::optional<Tensor>& recurrent_mask,
                                  const Tensor& out, const Tensor& saved, bool reverse, bool reset_after,
                                  bool keeps_state, bool has_bias) {
  const char* op = "gru_layer_bwd";
  const Sizes s = check_layer(op, x, h0, w_ih, w_hh, lengths, batch_sizes);
  const Regularisers g = check_regularisers(op, s, x, gamma_ih, c10::nullopt, gamma_hh, c10::nullopt, zoneout_mask,
                                            zoneout_p, zoneout_seed, recurrent_mask, false);
  if (s.packed) {
    check_tensor(op, "out", out, x, {s.N, s.H});
    check_tensor(op, "d_out", d_out, x, {s.N, s.H});
  } else {
    check_tensor(op, "out", out, x, {s.T, s.B, s.H});
    check_tensor(op, "d_out", d_out, x, {s.T, s.B, s.H});
  }
  check_tensor(op, "d_hn", d_hn, x, {s.B, s.H});
  const int64_t width = SavedLayout(s.H, reset_after, g.layer_norm()).width;
  TORCH_CHECK_VALUE(saved.numel() != 0 || s.N == 0, "grukit::", op,
                    ": the forward pass saved no activations (it ran with save_for_backward=False)");
  check_tensor(op, "saved", saved, x, {s.N, width});
  Problem p = describe(x, w_hh, lengths, batch_sizes, reverse, reset_after, keeps_state);
  at::NoGradGuard no_grad;
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_layer_bwd", [&] {
    if (g.any()) return normalised_backward<scalar_t>(p, g, d_out, d_hn, x, h0, w_ih, w_hh, out, saved, has_bias);
    std::vector<Tensor> grads = plain_backward<scalar_t>(p, d_out, d_hn, x, h0, w_ih, w_hh, out, saved, has_bias);
    for (int i = 0; i < 4; ++i) grads.push_back(at::empty({0}, x.options()));  // no layer-norm gradients
    return grads;
  });
}

}  // namespace

TORCH_LIBRARY(grukit, m) {
  m.def(
      "gru_layer_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
      "Tensor? batch_sizes, Tensor? gamma_ih, Tensor? beta_ih, Tensor? gamma_hh, Tensor? beta_hh, "
      "Tensor? zoneout_mask, float zoneout_p, int zoneout_seed, Tensor? recurrent_mask, bool reverse, "
      "bool reset_after, bool keeps_state, bool save_for_backward) -> (Tensor, Tensor, Tensor)");
  m.def(
      "gru_layer_bwd(Tensor d_out, Tensor d_hn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
      "Tensor? batch_sizes, Tensor? gamma_ih, Tensor? gamma_hh, Tensor? zoneout_mask, float zoneout_p, "
      "int zoneout_seed, Tensor? recurrent_mask, Tensor out, Tensor saved, bool reverse, bool reset_after, "
      "bool keeps_state, bool has_bias) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("gru_layer_fwd", &gru_layer_fwd);
  m.impl("gru_layer_bwd", &gru_layer_bwd);
}

}  // namespace grukit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def(
      "saved_width",
      [](int64_t H, bool reset_after, bool layer_norm) {
        return grukit::SavedLayout(H, reset_after, layer_norm).width;
      },
      "Columns per row of the activations gru_layer_fwd saves for the backward pass (saved_layout.h).");
  m.def(
      "gemm_seconds",
      [](int64_t routine, int64_t M, int64_t N, int64_t K, int64_t calls, int64_t repeats) {
        TORCH_CHECK(0 <= routine && routine < grukit::kRoutines, "routine must be 0 .. ", grukit::kRoutines - 1,
                    ", got ", routine);
        TORCH_CHECK(M > 0 && N > 0 && K > 0 && calls > 0 && repeats > 0,
                    "M, N, K, calls and repeats must be positive, got ", M, ", ", N, ", ", K, ", ", calls, ", ",
                    repeats);
        return grukit::gemm_seconds(static_cast<grukit::Routine>(routine), M, N, K, calls, repeats);
      },
      "Seconds per float32 product C[M, N] = A[M, K] @ B[K, N] by a routine (0 blas, 1 brgemm, "
      "2 brgemm tiled by rows), one thread: the best of `repeats` timings of `calls` calls. Releases "
      "the GIL, so Python threads can time products side by side.",
      pybind11::call_guard<pybind11::gil_scoped_release>());
  m.def("brgemm_works", &grukit::brgemm_works,
        "Whether oneDNN's brgemm runs on this CPU (tried once on a small product).");
  m.def(
      "set_gemm_routines",
      [](const std::vector<int64_t>& routines) {
        TORCH_CHECK(routines.size() == grukit::kProducts, "routines must name one routine per product kind (",
                    grukit::kProducts, "), got ", routines.size());
        for (int k = 0; k < grukit::kProducts; ++k) {
          TORCH_CHECK(0 <= routines[k] && routines[k] < grukit::kRoutines, "routines[", k, "] must be 0 .. ",
                      grukit::kRoutines - 1, ", got ", routines[k]);
          grukit::routine_table()[k].store(static_cast<int>(routines[k]));
        }
      },
      "Set the routine of each product kind (recurrent, projection, weight_gradient, row).");
  m.def(
      "gemm_routines",
      [] {
        std::vector<int64_t> out;
        for (int k = 0; k < grukit::kProducts; ++k) out.push_back(grukit::routine_table()[k].load());
        return out;
      },
      "The routine of each product kind (recurrent, projection, weight_gradient, row).");
  pybind11::class_<grukit::Stream>(m, "Stream")
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, const at::Tensor&, bool, bool>())
      .def("step", &grukit::Stream::step)
      .def("run", &grukit::Stream::run)
      .def("state", &grukit::Stream::state)
      .def("set_state", &grukit::Stream::set_state);
}
