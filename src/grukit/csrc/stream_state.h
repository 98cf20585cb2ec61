// What every native stream keeps between calls: the state h [L, B, H] of its layers, and the checks
// of each call's input. The GRU's stream (stream.h) and the minGRU's (min_gru_stream.h) build on it.
#pragma once

#include <ATen/ATen.h>

namespace grukit {

using at::Tensor;

class StreamState {
 public:
  Tensor state() const { return h_.clone(); }
  void set_state(const Tensor& h) {
    TORCH_CHECK_VALUE(h.sizes() == h_.sizes(), "state must have shape ", h_.sizes(), ", got ", h.sizes());
    TORCH_CHECK_TYPE(h.scalar_type() == h_.scalar_type(), "state must have dtype ", h_.scalar_type(), ", got ",
                     h.scalar_type());
    h_.copy_(h);
  }

 protected:
  // h0 [L, B, H] (copied); input_size: I, the features of each step's x
  StreamState(const Tensor& h0, int64_t input_size)
      : L_(h0.size(0)), B_(h0.size(1)), I_(input_size), H_(h0.size(2)), h_(h0.clone().contiguous()) {}

  // x [B, I] (dims 2) or [T, B, I] (dims 3), in the state's dtype, on the CPU
  void check_input(const Tensor& x, int64_t dims) const {
    TORCH_CHECK_TYPE(x.scalar_type() == h_.scalar_type(), "x must have dtype ", h_.scalar_type(),
                     " (the stream's), got ", x.scalar_type());
    TORCH_CHECK_VALUE(x.device().is_cpu(), "x must be on the CPU, got ", x.device());
    const bool ok = x.dim() == dims && x.size(dims - 2) == B_ && x.size(dims - 1) == I_;
    TORCH_CHECK_VALUE(ok, "x must have shape ", dims == 2 ? "" : "[T, ", dims == 2 ? "[" : "", B_, ", ", I_,
                      "] (batch_size, input_size), got ", x.sizes());
  }

  int64_t L_, B_, I_, H_;
  Tensor h_;
};

}  // namespace grukit
