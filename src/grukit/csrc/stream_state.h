// What every native stream keeps between calls: the state h [L, B, H] of its layers, the checks of
// each call's input, and the calls themselves (a step, or a chunk of steps one after another).
// The recurrence is the derived class's (CRTP: a compile-time policy): the GRU's stream (stream.h)
// and the minGRU's (min_gru_stream.h) each give `template <typename T> void step_impl(const T* x,
// T* y)`, which advances every layer's state by one step of x [B, I] and writes the last layer's to y.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include "gemm.h"

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

template <typename Recurrence>
class NativeStream : public StreamState {
 public:
  // x [B, I] -> the last layer's new state [B, H] (a new tensor); every layer's state advances.
  Tensor step(const Tensor& x) {
    check_input(x, 2);
    Tensor y = at::empty({B_, H_}, h_.options());
    AT_DISPATCH_FLOATING_TYPES(h_.scalar_type(), "stream_step", [&] {
      SequentialBlas one;
      recurrence().template step_impl<scalar_t>(x.contiguous().data_ptr<scalar_t>(), y.data_ptr<scalar_t>());
    });
    return y;
  }

  // x [T, B, I] -> the last layer's states [T, B, H]
  Tensor run(const Tensor& x) {
    check_input(x, 3);
    const int64_t T = x.size(0);
    Tensor xc = x.contiguous();
    Tensor y = at::empty({T, B_, H_}, h_.options());
    AT_DISPATCH_FLOATING_TYPES(h_.scalar_type(), "stream_run", [&] {
      SequentialBlas one;
      for (int64_t t = 0; t < T; ++t)
        recurrence().template step_impl<scalar_t>(xc.data_ptr<scalar_t>() + t * B_ * I_,
                                                  y.data_ptr<scalar_t>() + t * B_ * H_);
    });
    return y;
  }

 protected:
  using StreamState::StreamState;

 private:
  Recurrence& recurrence() { return static_cast<Recurrence&>(*this); }
};

}  // namespace grukit
