// Streaming inference for the minGRU (grukit.MinGRU.stream(); Feng et al. 2024): a multi-layer,
// one-direction minGRU that carries its state across calls, one pybind call per step with no
// dispatcher or autograd on the way, as stream.h does for the GRU. Per layer l, with x the layer's
// input [B, I_l] (the previous layer's new state above the first):
//
//   k   = x W_l^T + b_l                      [B, 2H]  (z columns, then candidate columns)
//   h_t = h_{t-1} + z (h~ - h_{t-1})          z = sigmoid(k_z), h~ = g(k_h)  (min_gru_scan.h)
//
// The weights are transposed once when the stream is made: make a new stream after changing them.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <vector>

#include "gemm.h"
#include "min_gru_scan.h"
#include "stream_state.h"

namespace grukit {

class MinGruStream : public NativeStream<MinGruStream> {
 public:
  // weights: per layer (w [2H, I_l], b [2H] or undefined); h0: [L, B, H] initial state (copied)
  MinGruStream(const std::vector<std::vector<Tensor>>& weights, const Tensor& h0)
      : NativeStream<MinGruStream>(h0, weights[0][0].size(1)) {
    TORCH_CHECK_VALUE((int64_t)weights.size() == L_, "min_gru stream: ", weights.size(), " layers of weights for a [",
                      L_, ", B, H] state");
    for (const auto& w : weights) {
      w_t_.push_back(w[0].t().contiguous());  // [I_l, 2H]
      biases_.push_back(w.size() > 1 && w[1].defined() ? w[1].contiguous() : at::zeros({2 * H_}, h0.options()));
    }
    k_ = at::empty({B_, 2 * H_}, h0.options());
  }

 private:
  friend class NativeStream<MinGruStream>;

  template <typename T>
  void step_impl(const T* x, T* y) {
    const int64_t B = B_, H = H_;
    T* k = k_.data_ptr<T>();
    const T* in = x;
    int64_t in_size = I_;
    for (int64_t l = 0; l < L_; ++l) {
      T* h = h_.data_ptr<T>() + l * B * H;
      const T* bias = biases_[l].data_ptr<T>();
      mm<T>(Product::recurrent, B, 2 * H, in_size, in, in_size, w_t_[l].data_ptr<T>(), 2 * H, k, 2 * H, false);
      for (int64_t b = 0; b < B; ++b) {
        const T* kz = k + b * 2 * H;
        const T* kh = kz + H;
        T* hb = h + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T z = sigmoid_act(kz[j] + bias[j]);
          hb[j] += z * (min_gru_candidate(kh[j] + bias[H + j]) - hb[j]);
        }
      }
      in = h;  // the next layer reads this layer's new state
      in_size = H;
    }
    std::copy(in, in + B * H, y);
  }

  std::vector<Tensor> w_t_, biases_;
  Tensor k_;
};

}  // namespace grukit
