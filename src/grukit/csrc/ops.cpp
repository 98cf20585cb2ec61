// The grukit operators: one GRU layer in one direction, forward and backward, on the CPU.
//
//   torch.ops.grukit.gru_layer_fwd   (the layer's inputs, save_for_backward) -> (out, h_n, saved)
//   torch.ops.grukit.gru_layer_bwd   (out, saved, d_out, d_hn, the layer's inputs) -> one gradient
//                                     per differentiable input
//
// The layer's inputs are declared once (layer_inputs.h): both schemas, the struct the driver
// reads and the Python side derive from that list. The operators are public, so every tensor is
// checked here, at the boundary, before a kernel reads it: shape, dtype, device and contiguity,
// with messages that name the argument (causal-conv1d's CHECK_SHAPE style).
//
// This file is the extension's one translation unit; the kernels are in the headers it includes:
//   gemm.h, row_product.h, activations.h   matrix products and activations
//   cell.h                   the cell's element-wise passes (the one copy of the step math)
//   layer.h                  the layer driver (its policies: zoneout, layer norm, recurrent dropout)
//   layer_inputs.h           the operators' inputs      problem.h   sizes, layout, sorting
//   low_precision.h          bfloat16 and int8 products for inference
//   workspace.h              the buffer pool            team.h      thread teams
//   contention.h             teams that step aside when another process takes a core
//   projection_ahead.h       the input projection beside a one-thread recurrence
//   saved_layout.h           what forward saves         weight_gradients.h   the backward's closing GEMMs
//   layer_norm.h             layer norm of a row        stream.h    streaming inference
//   min_gru_scan.h           the minGRU's scan (torch.ops.grukit.min_gru_scan / min_gru_scan_backward)
//   stream_state.h           a stream's state and input checks    min_gru_stream.h   the minGRU's stream

#include <torch/extension.h>
#include <torch/library.h>

#include <sstream>
#include <string>

#include "layer.h"
#include "layer_inputs.h"
#include "min_gru_scan.h"
#include "min_gru_stream.h"
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

void check_optional(const char* op, const char* name, const OptionalTensor& t, const Tensor& like,
                    std::initializer_list<int64_t> shape) {
  if (given(t)) check_tensor(op, name, *t, like, shape);
}

// The sizes of a call, from x, h0 and w_hh, after checking every input against them.
struct Sizes {
  int64_t T = 0, B = 0, I = 0, H = 0, N = 0;
  bool packed = false;
};

Sizes check_inputs(const char* op, const LayerInputs& in) {
  const Tensor &x = in.x, &w_hh = in.w_hh;
  Sizes s;
  TORCH_CHECK_VALUE(x.device().is_cpu(), "grukit::", op, ": x must be on the CPU, got ", x.device());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "grukit::", op,
                   ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.is_contiguous(), "grukit::", op, ": x must be contiguous");
  TORCH_CHECK_VALUE(w_hh.dim() == 2 && w_hh.size(0) == 3 * w_hh.size(1), "grukit::", op,
                    ": w_hh must have shape [3H, H], got ", shape_text(w_hh.sizes()));
  s.H = w_hh.size(1);
  s.packed = given(in.batch_sizes);
  TORCH_CHECK_VALUE(!(s.packed && given(in.lengths)), "grukit::", op,
                    ": give lengths (padded input) or batch_sizes (packed input), not both");
  if (s.packed) {
    const Tensor& bs = *in.batch_sizes;
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
    if (given(in.lengths)) {
      const Tensor& len = *in.lengths;
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
  check_tensor(op, "h0", in.h0, x, {s.B, s.H});
  const Precision precision = in.precision();
  if (precision == Precision::float32) {
    check_tensor(op, "w_ih", in.w_ih, x, {3 * s.H, s.I});
    check_tensor(op, "w_hh", w_hh, x, {3 * s.H, s.H});
  } else {  // inference with bfloat16 or int8 weights
    TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "grukit::", op, ": ", w_hh.scalar_type(),
                     " weights take float32 x, got ", x.scalar_type());
    TORCH_CHECK_TYPE(in.w_ih.scalar_type() == w_hh.scalar_type(), "grukit::", op, ": w_ih must have dtype ",
                     w_hh.scalar_type(), " (w_hh's), got ", in.w_ih.scalar_type());
    check_tensor(op, "w_ih", in.w_ih, w_hh, {3 * s.H, s.I});
    check_tensor(op, "w_hh", w_hh, w_hh, {3 * s.H, s.H});
  }
  const bool int8 = precision == Precision::int8;
  TORCH_CHECK_VALUE(given(in.w_ih_scale) == int8 && given(in.w_hh_scale) == int8, "grukit::", op,
                    ": w_ih_scale and w_hh_scale go with int8 weights (both), and only with them");
  if (int8) {
    const Tensor f32 = at::empty({0}, at::kFloat);
    check_tensor(op, "w_ih_scale", *in.w_ih_scale, f32, {3 * s.H});
    check_tensor(op, "w_hh_scale", *in.w_hh_scale, f32, {3 * s.H});
    TORCH_CHECK_VALUE(s.I <= kInt8MaxK && s.H <= kInt8MaxK, "grukit::", op, ": int8 weights take input and hidden sizes up to ",
                      kInt8MaxK, " (int32 sums), got ", s.I, " and ", s.H);
  }
  TORCH_CHECK_VALUE(given(in.b_ih) == given(in.b_hh), "grukit::", op, ": give both b_ih and b_hh, or neither");
  check_optional(op, "b_ih", in.b_ih, x, {3 * s.H});
  check_optional(op, "b_hh", in.b_hh, x, {3 * s.H});
  const bool ln = given(in.gamma_ih);
  TORCH_CHECK_VALUE(given(in.gamma_hh) == ln && given(in.beta_ih) == ln && given(in.beta_hh) == ln, "grukit::", op,
                    ": layer norm needs all of gamma_ih, beta_ih, gamma_hh, beta_hh, or none");
  check_optional(op, "gamma_ih", in.gamma_ih, x, {3 * s.H});
  check_optional(op, "beta_ih", in.beta_ih, x, {3 * s.H});
  check_optional(op, "gamma_hh", in.gamma_hh, x, {3 * s.H});
  check_optional(op, "beta_hh", in.beta_hh, x, {3 * s.H});
  if (s.packed)
    check_optional(op, "zoneout_mask", in.zoneout_mask, x, {s.N, s.H});
  else
    check_optional(op, "zoneout_mask", in.zoneout_mask, x, {s.T, s.B, s.H});
  TORCH_CHECK_VALUE(in.zoneout_p >= 0 && in.zoneout_p <= 1, "grukit::", op, ": zoneout_p must be in [0, 1], got ",
                    in.zoneout_p);
  check_optional(op, "recurrent_mask", in.recurrent_mask, x, {s.B, s.H});
  return s;
}

Problem problem_of(const LayerInputs& in) {
  return describe(in.x, in.w_hh, in.lengths, in.batch_sizes, in.reverse, in.reset_after, in.keeps_state);
}

// ---------------------------------------------------------------- operators (boxed: the arguments are
// read off the stack in GRUKIT_LAYER_INPUTS' order)

// gru_layer_fwd(<layer inputs>, bool save_for_backward) -> (out, h_n, saved)
void gru_layer_fwd(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  const char* op = "gru_layer_fwd";
  const size_t first = stack->size() - kLayerInputCount - 1;
  const LayerInputs in = read_layer_inputs(*stack, first);
  const bool save = (*stack)[first + kLayerInputCount].toBool();
  check_inputs(op, in);
  const Precision precision = in.precision();
  TORCH_CHECK_VALUE(precision == Precision::float32 || !save, "grukit::", op, ": ", in.w_hh.scalar_type(),
                    " weights are for inference: save_for_backward must be False");
  const Problem p = problem_of(in);
  at::NoGradGuard no_grad;
  auto [out, h_n, saved] = [&] {
    if (precision == Precision::int8) return layer_forward<float, Precision::int8>(p, in, false);
    if (precision == Precision::bfloat16) return layer_forward<float, Precision::bfloat16>(p, in, false);
    return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "gru_layer_fwd", [&] {
      return layer_forward<scalar_t>(p, in, save);
    });
  }();
  torch::jit::drop(*stack, kLayerInputCount + 1);
  torch::jit::push(*stack, out, h_n, saved);
}

// gru_layer_bwd(out, saved, d_out, d_hn, <layer inputs>) -> [one gradient per layer_gradients() name]
void gru_layer_bwd(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  const char* op = "gru_layer_bwd";
  const size_t first = stack->size() - 4 - kLayerInputCount;
  const Tensor out = (*stack)[first].toTensor(), saved = (*stack)[first + 1].toTensor();
  const Tensor d_out = (*stack)[first + 2].toTensor(), d_hn = (*stack)[first + 3].toTensor();
  const LayerInputs in = read_layer_inputs(*stack, first + 4);
  const Sizes s = check_inputs(op, in);
  TORCH_CHECK_VALUE(in.precision() == Precision::float32, "grukit::", op, ": ", in.w_hh.scalar_type(),
                    " weights are for inference: there is no backward pass (train the float32 GRU)");
  if (s.packed) {
    check_tensor(op, "out", out, in.x, {s.N, s.H});
    check_tensor(op, "d_out", d_out, in.x, {s.N, s.H});
  } else {
    check_tensor(op, "out", out, in.x, {s.T, s.B, s.H});
    check_tensor(op, "d_out", d_out, in.x, {s.T, s.B, s.H});
  }
  check_tensor(op, "d_hn", d_hn, in.x, {s.B, s.H});
  const int64_t width = SavedLayout(s.H, in.reset_after, in.layer_norm()).width;
  TORCH_CHECK_VALUE(saved.numel() != 0 || s.N == 0, "grukit::", op,
                    ": the forward pass saved no activations (it ran with save_for_backward=False)");
  check_tensor(op, "saved", saved, in.x, {s.N, width});
  const Problem p = problem_of(in);
  at::NoGradGuard no_grad;
  std::vector<Tensor> grads = AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "gru_layer_bwd", [&] {
    return layer_backward<scalar_t>(p, in, out, saved, d_out, d_hn);
  });
  torch::jit::drop(*stack, 4 + kLayerInputCount);
  torch::jit::push(*stack, grads);
}

// ---------------------------------------------------------------- the minGRU's scan (min_gru_scan.h)

// k [T, B, 2H] gate pre-activations, h0 [B, H] -> h [T, B, H]
Tensor min_gru_scan_op(const Tensor& k, const Tensor& h0) {
  const char* op = "min_gru_scan";
  TORCH_CHECK_VALUE(h0.dim() == 2, "grukit::", op, ": h0 must be [B, H], got ", shape_text(h0.sizes()));
  const int64_t B = h0.size(0), H = h0.size(1);
  TORCH_CHECK_VALUE(k.dim() == 3, "grukit::", op, ": k must be [T, B, 2H], got ", shape_text(k.sizes()));
  TORCH_CHECK_TYPE(k.scalar_type() == at::kFloat || k.scalar_type() == at::kDouble, "grukit::", op,
                   ": k must be float32 or float64, got ", k.scalar_type());
  check_tensor(op, "k", k, k, {k.size(0), B, 2 * H});
  check_tensor(op, "h0", h0, k, {B, H});
  const int64_t T = k.size(0);
  Tensor h = workspace(kMinScanH, {T, B, H}, k.options());  // reused once the caller lets go of it
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "min_gru_scan", [&] {
    min_gru_scan_forward<scalar_t>(k.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), T, B, H);
  });
  return h;
}

// (d_h, h [T, B, H], k [T, B, 2H], h0 [B, H]) -> (d_k [T, B, 2H], d_h0 [B, H])
std::tuple<Tensor, Tensor> min_gru_scan_backward_op(const Tensor& d_h, const Tensor& h, const Tensor& k,
                                                    const Tensor& h0) {
  const char* op = "min_gru_scan_backward";
  TORCH_CHECK_VALUE(h.dim() == 3, "grukit::", op, ": h must be [T, B, H], got ", shape_text(h.sizes()));
  TORCH_CHECK_TYPE(h.scalar_type() == at::kFloat || h.scalar_type() == at::kDouble, "grukit::", op,
                   ": h must be float32 or float64, got ", h.scalar_type());
  const int64_t T = h.size(0), B = h.size(1), H = h.size(2);
  check_tensor(op, "h", h, h, {T, B, H});
  check_tensor(op, "d_h", d_h, h, {T, B, H});
  check_tensor(op, "k", k, h, {T, B, 2 * H});
  check_tensor(op, "h0", h0, h, {B, H});
  Tensor d_k = workspace(kMinScanDK, {T, B, 2 * H}, k.options());
  Tensor d_h0 = workspace(kMinScanDH0, {B, H}, k.options());
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "min_gru_scan_backward", [&] {
    min_gru_scan_backward<scalar_t>(d_h.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                                    h0.data_ptr<scalar_t>(), d_k.data_ptr<scalar_t>(), d_h0.data_ptr<scalar_t>(), T,
                                    B, H);
  });
  return {d_k, d_h0};
}

}  // namespace

TORCH_LIBRARY(grukit, m) {
  m.def("min_gru_scan(Tensor k, Tensor h0) -> Tensor");
  m.def("min_gru_scan_backward(Tensor d_h, Tensor h, Tensor k, Tensor h0) -> (Tensor, Tensor)");
  const std::string inputs = layer_inputs_schema();
  m.def(torch::schema(("gru_layer_fwd(" + inputs + ", bool save_for_backward=False) -> (Tensor, Tensor, Tensor)").c_str(),
                      c10::AliasAnalysisKind::FROM_SCHEMA));
  m.def(torch::schema(("gru_layer_bwd(Tensor out, Tensor saved, Tensor d_out, Tensor d_hn, " + inputs +
                       ") -> Tensor[]").c_str(),
                      c10::AliasAnalysisKind::FROM_SCHEMA));
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("gru_layer_fwd", torch::CppFunction::makeFromBoxedFunction<&gru_layer_fwd>());
  m.impl("gru_layer_bwd", torch::CppFunction::makeFromBoxedFunction<&gru_layer_bwd>());
  m.impl("min_gru_scan", &min_gru_scan_op);
  m.impl("min_gru_scan_backward", &min_gru_scan_backward_op);
}

}  // namespace grukit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("layer_norm_eps") = grukit::kLayerNormEps;
  m.def("layer_gradients", &grukit::layer_gradients,
        "The inputs gru_layer_bwd returns a gradient for, in its order (layer_inputs.h).");
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
  m.def(
      "low_precision_instructions",
      [](const std::string& precision) {
        TORCH_CHECK_VALUE(precision == "int8" || precision == "bfloat16",
                          "precision must be 'int8' or 'bfloat16', got '", precision, "'");
        return std::string(grukit::low_precision_instructions(precision == "int8" ? grukit::Precision::int8
                                                                                   : grukit::Precision::bfloat16));
      },
      "The instructions the products of a precision use in this build on this CPU (low_precision.h).");
  m.def(
      "set_low_precision_instructions",
      [](const std::string& name) {
        using grukit::Instructions;
        using grukit::Precision;
        const std::vector<std::pair<std::string, int>> names = {
            {"", -1}, {"float32_gemm", 0}, {"avx2", 1}, {"avx512", 2}};
        int chosen = -2;
        for (const auto& [known, value] : names)
          if (name == known) chosen = value;
        TORCH_CHECK_VALUE(chosen != -2, "instructions must be '' (the best here), 'float32_gemm', 'avx2' or 'avx512', got '",
                          name, "'");
        if (chosen >= 0)
          for (Precision p : {Precision::int8, Precision::bfloat16})
            TORCH_CHECK_VALUE(grukit::instructions_available(p, static_cast<Instructions>(chosen)), "'", name,
                              "' products are not available in this build on this CPU");
        grukit::chosen_instructions().store(chosen);
      },
      "Make later low-precision layers and streams use one path ('' again: the best available); for "
      "tests and benchmarks comparing the paths on one machine.");
  m.def(
      "set_contention_adapts", [](bool on) { grukit::contention_adapts().store(on); },
      "Whether unit-split teams step aside to one thread after a call that lost time to another "
      "process (contention.h; GRUKIT_CONTENTION).");
  m.def(
      "contention_step_aside",
      [](int64_t calls) {
        TORCH_CHECK_VALUE(calls >= 0, "calls must be >= 0, got ", calls);
        grukit::contention_policy().step_aside(calls);
      },
      "Make the process's next `calls` unit-split layer calls run on one thread (0: from now on, the "
      "full team), as after a contended call; for tests.");
  m.def("begin_call_aside", &grukit::begin_call_aside,
        "At the start of a module call: when the process's recent calls lost time to another process, "
        "make this thread's torch and grukit work of the call one-threaded and return the thread count "
        "to restore (end_call_aside); else 0 (team.h).");
  m.def("end_call_aside", &grukit::end_call_aside, "Restore the thread count begin_call_aside returned (0: nothing).");
  m.def(
      "set_projection_helper_delay",
      [](int64_t microseconds) {
        TORCH_CHECK_VALUE(microseconds >= 0, "microseconds must be >= 0, got ", microseconds);
        grukit::projection_helper_delay_us().store(microseconds);
      },
      "Make the input projection's helper thread pause after claiming each block (projection_ahead.h), as "
      "a helper another process descheduled; for tests.");
  m.def(
      "projection_steps_beside_helper", [] { return grukit::projection_steps_beside_helper().load(); },
      "How many steps a one-thread recurrence computed its own projection rows for, beside a block the "
      "helper had not finished (projection_ahead.h).");
  m.def(
      "contention_calls_aside", [] { return grukit::contention_policy().calls_aside(); },
      "How many layer calls of this process ran on one thread because of contention (contention.h).");
  m.def(
      "contention_replay",
      [](const std::vector<std::vector<int64_t>>& calls) {
        grukit::ContentionPolicy policy;  // a fresh one: the process's own is left as it is
        std::vector<bool> full;
        for (const auto& steps : calls) {
          full.push_back(policy.full_team_for_call());
          if (!full.back()) continue;  // a one-thread call has no barrier to stall at
          grukit::StepWatch watch;
          int64_t now = 0;
          watch.start(now);
          for (int64_t step_ns : steps) watch.step_ended(now += step_ns);
          policy.record(watch);
        }
        return full;
      },
      "Replays calls, each given by its steps' durations in nanoseconds, through a fresh "
      "ContentionPolicy and StepWatch on a fake clock; returns, per call, whether it ran on its full "
      "team. For tests of the policy without timing.");
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
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, const at::Tensor&, bool, bool,
                          const std::vector<std::vector<at::Tensor>>&>(),
           pybind11::arg("weights"), pybind11::arg("h0"), pybind11::arg("reset_after"), pybind11::arg("keeps_state"),
           pybind11::arg("scales") = std::vector<std::vector<at::Tensor>>())
      .def("step", &grukit::Stream::step)
      .def("run", &grukit::Stream::run)
      .def("state", &grukit::Stream::state)
      .def("set_state", &grukit::Stream::set_state);
  pybind11::class_<grukit::MinGruStream>(m, "MinGruStream")
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, const at::Tensor&>(), pybind11::arg("weights"),
           pybind11::arg("h0"))
      .def("step", &grukit::MinGruStream::step)
      .def("run", &grukit::MinGruStream::run)
      .def("state", &grukit::MinGruStream::state)
      .def("set_state", &grukit::MinGruStream::set_state);
}
