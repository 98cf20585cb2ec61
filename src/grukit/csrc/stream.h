// Streaming inference: a multi-layer, one-direction GRU that carries its state across calls,
// for real-time use: one call per time step (or per chunk), inference only. The weights are
// packed once when the stream is made; each step is one pybind call into this code, with no
// dispatcher or autograd on the way, so a batch-1 step costs a few microseconds. The weights are
// float32/float64 (the state's dtype), or bfloat16 / int8 with float32 state: then every product
// is low_precision.h's, with the weights packed once here (low_precision_weights.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <vector>

#include "cell.h"
#include "gemm.h"
#include "low_precision_weights.h"
#include "stream_state.h"

namespace grukit {

using at::Tensor;

class Stream : public NativeStream<Stream> {
 public:
  // weights: per layer (w_ih [3H, I_l], w_hh [3H, H], b_ih [3H] or undefined, b_hh);
  // h0: [L, B, H] initial state (copied); scales: per layer (s_ih, s_hh [3H]) for int8 weights.
  Stream(const std::vector<std::vector<Tensor>>& weights, const Tensor& h0, bool reset_after, bool keeps_state,
         const std::vector<std::vector<Tensor>>& scales = {})
      : NativeStream<Stream>(h0, weights[0][0].size(1)), reset_after_(reset_after), keeps_(keeps_state) {
    auto opts = h0.options();
    const at::ScalarType weight_type = weights[0][1].scalar_type();
    low_ = weight_type == at::kChar || weight_type == at::kBFloat16;
    TORCH_CHECK_VALUE(!low_ || h0.scalar_type() == at::kFloat, "a stream with ", weight_type,
                      " weights keeps a float32 state, got ", h0.scalar_type());
    TORCH_CHECK_VALUE(weight_type != at::kChar || scales.size() == weights.size(),
                      "int8 weights need one (s_ih, s_hh) pair of scales per layer");
    Team whole;  // one thread, every unit
    whole.B = B_;
    whole.H = H_;
    for (size_t l = 0; l < weights.size(); ++l) {
      const auto& w = weights[l];
      if (low_) {
        const bool int8 = weight_type == at::kChar;
        low_weights_.emplace_back(w[0], w[1], int8 ? scales[l][0] : Tensor(), int8 ? scales[l][1] : Tensor(),
                                  whole, reset_after);
      } else {
        w_ih_t_.push_back(w[0].t().contiguous());  // [I_l, 3H]
        w_hh_t_.push_back(w[1].contiguous().t().contiguous());  // [H, 3H]: r, z, n columns
      }
      Tensor bias = at::zeros({4, H_}, opts);   // rows: b_ir + b_hr, b_iz + b_hz, b_in, b_hn
      if (w.size() == 4 && w[2].defined()) {
        bias[0].copy_(w[2].narrow(0, 0, H_) + w[3].narrow(0, 0, H_));
        bias[1].copy_(w[2].narrow(0, H_, H_) + w[3].narrow(0, H_, H_));
        bias[2].copy_(w[2].narrow(0, 2 * H_, H_));
        bias[3].copy_(w[3].narrow(0, 2 * H_, H_));
      }
      biases_.push_back(bias);
    }
    gi_ = at::empty({B_, 3 * H_}, opts);
    gh_ = at::empty({B_, 3 * H_}, opts);
    rh_ = at::empty({B_, H_}, opts);
    saved_ = at::empty({B_, 4 * H_}, opts);
    h_next_ = at::empty({B_, H_}, opts);
  }

 private:
  friend class NativeStream<Stream>;

  template <typename T>
  void step_impl(const T* x, T* y) {
    const int64_t B = B_, H = H_;
    T* gi = gi_.data_ptr<T>();
    T* gh = gh_.data_ptr<T>();
    T* s = saved_.data_ptr<T>();
    const T* in = x;
    int64_t in_size = I_;
    for (int64_t l = 0; l < L_; ++l) {
      T* h = h_.data_ptr<T>() + l * B * H;
      T* h_next = l == L_ - 1 ? y : h_next_.data_ptr<T>();
      const T* bias = biases_[l].data_ptr<T>();
      // x W_ih^T [B, 3H] and h W_hh^T (r, z columns; and n for reset after); `candidate`: (r * h) W_n^T
      auto product = [&](int which, const T* A, int64_t K, int64_t cols, T* C) {
        if constexpr (std::is_same<T, float>::value) {
          if (low_) {
            const LowPrecisionWeights& w = low_weights_[l];
            low_precision_mm(which == 0 ? w.w_ih : which == 1 ? w.first_of(0) : w.candidate_of(0), Product::recurrent,
                             B, A, K, C, 3 * H, prepared_);
            return;
          }
        }
        const T* b = which == 0 ? w_ih_t_[l].data_ptr<T>() : w_hh_t_[l].data_ptr<T>() + (which == 2 ? 2 * H : 0);
        mm<T>(Product::recurrent, B, cols, K, A, K, b, 3 * H, C, 3 * H, false);
      };
      product(0, in, in_size, 3 * H, gi);
      if (reset_after_) {
        product(1, h, H, 3 * H, gh);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = gi + b * 3 * H;
          const T* q = gh + b * 3 * H;
          T* sb = s + b * 4 * H;
          (keeps_ ? forward_after<T, true, NoZoneout>
                  : forward_after<T, false, NoZoneout>)(H, g, g + H, g + 2 * H, q, q + H, q + 2 * H, bias, bias + H,
                                                        bias + 2 * H, bias + 3 * H, h + b * H, h_next + b * H, h_next + b * H,
                                                        sb, sb + H, sb + 2 * H, sb + 3 * H, NoZoneout());
        }
      } else {
        T* rh = rh_.data_ptr<T>();
        product(1, h, H, 2 * H, gh);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = gi + b * 3 * H;
          const T* q = gh + b * 3 * H;
          T* sb = s + b * 4 * H;
          forward_before_gates<T>(H, g, g + H, q, q + H, bias, bias + H, h + b * H, sb, sb + H, rh + b * H);
        }
        product(2, rh, H, H, gh + 2 * H);
        for (int64_t b = 0; b < B; ++b) {
          const T* g = gi + b * 3 * H;
          T* sb = s + b * 4 * H;
          (keeps_ ? forward_before_state<T, true, NoZoneout>
                  : forward_before_state<T, false, NoZoneout>)(H, g + 2 * H, gh + b * 3 * H + 2 * H, bias + 2 * H,
                                                               bias + 3 * H, sb + H, h + b * H, h_next + b * H, h_next + b * H,
                                                               sb + 2 * H, NoZoneout());
        }
      }
      std::copy(h_next, h_next + B * H, h);  // the layer's new state
      in = h;
      in_size = H;
    }
  }

  bool reset_after_, keeps_, low_ = false;
  std::vector<Tensor> w_ih_t_, w_hh_t_, biases_;
  std::vector<LowPrecisionWeights> low_weights_;  // bfloat16 / int8 weights, packed
  PreparedRows prepared_;                         // the rows of x and h in the weights' precision
  Tensor gi_, gh_, rh_, saved_, h_next_;
};

}  // namespace grukit
