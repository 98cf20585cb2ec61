// The inputs of one GRU layer call, declared once.
//
// The weights are x's dtype (float32 or float64), or, for inference, bfloat16 or int8 with
// float32 x: int8 weights come with their per-row scales w_ih_scale and w_hh_scale
// (low_precision.h has the arithmetic).
//
// GRUKIT_LAYER_INPUTS is the one list of what the layer operators take. Everything else derives
// from it: the operators' schemas (ops.cpp), the struct the drivers read (LayerInputs), the
// order of the gradients gru_layer_bwd returns, and, through the schema and `layer_gradients()`,
// the Python side (backends/cpu_fused.py builds its named tuple, the fake implementation, the
// autograd context and every call from them). Adding an input is one line here.
//
//   X(schema type, C++ type, name, default in the schema, differentiable)
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/stack.h>

#include "low_precision.h"

#include <string>
#include <vector>

namespace grukit {

using at::Tensor;
using OptionalTensor = c10::optional<Tensor>;

#define GRUKIT_LAYER_INPUTS(X)                                                                       \
  X("Tensor", Tensor, x, "", true)                  /* [T, B, I] padded or [N, I] packed */          \
  X("Tensor", Tensor, h0, "", true)                 /* [B, H] */                                     \
  X("Tensor", Tensor, w_ih, "", true)               /* [3H, I], gates r, z, n */                     \
  X("Tensor", Tensor, w_hh, "", true)               /* [3H, H] */                                    \
  X("Tensor?", OptionalTensor, b_ih, "=None", true) /* [3H]: both biases or neither */               \
  X("Tensor?", OptionalTensor, b_hh, "=None", true)                                                  \
  X("Tensor?", OptionalTensor, lengths, "=None", false)     /* [B] int64, padded input */            \
  X("Tensor?", OptionalTensor, batch_sizes, "=None", false) /* [T] int64 CPU: x is packed */         \
  X("Tensor?", OptionalTensor, gamma_ih, "=None", true)     /* layer norm [3H]: all four or none */  \
  X("Tensor?", OptionalTensor, beta_ih, "=None", true)                                               \
  X("Tensor?", OptionalTensor, gamma_hh, "=None", true)                                              \
  X("Tensor?", OptionalTensor, beta_hh, "=None", true)                                               \
  X("Tensor?", OptionalTensor, zoneout_mask, "=None", false) /* 0/1, x's rows by H */                \
  X("float", double, zoneout_p, "=0.", false)       /* drawn with this p (seed >= 0), or expected */ \
  X("int", int64_t, zoneout_seed, "=-1", false)                                                      \
  X("Tensor?", OptionalTensor, recurrent_mask, "=None", false) /* [B, H], fixed in time */           \
  X("bool", bool, reverse, "=False", false)                                                          \
  X("bool", bool, reset_after, "=True", false)                                                       \
  X("bool", bool, keeps_state, "=True", false)                                                       \
  X("Tensor?", OptionalTensor, w_ih_scale, "=None", false) /* int8 weights: [3H] float32 s_w per row */ \
  X("Tensor?", OptionalTensor, w_hh_scale, "=None", false)

inline bool given(const OptionalTensor& t) {
  return t.has_value() && t->defined();
}

struct LayerInputs {
#define GRUKIT_FIELD(schema_type, cpp_type, name, default_value, differentiable) cpp_type name;
  GRUKIT_LAYER_INPUTS(GRUKIT_FIELD)
#undef GRUKIT_FIELD

  bool layer_norm() const { return given(gamma_ih); }
  bool zoneout() const { return given(zoneout_mask) || zoneout_p > 0; }
  bool recurrent_dropout() const { return given(recurrent_mask); }
  bool has_bias() const { return given(b_ih); }
  // the weights' precision: float32/float64 (x's dtype), or bfloat16 / int8 weights for inference
  Precision precision() const {
    if (w_hh.scalar_type() == at::kChar) return Precision::int8;
    if (w_hh.scalar_type() == at::kBFloat16) return Precision::bfloat16;
    return Precision::float32;
  }
};

// "Tensor x, Tensor h0, ..., bool keeps_state=True": the inputs as a schema's argument list.
inline std::string layer_inputs_schema() {
  std::string s;
#define GRUKIT_SCHEMA(schema_type, cpp_type, name, default_value, differentiable) \
  s += std::string(s.empty() ? "" : ", ") + schema_type + " " #name + default_value;
  GRUKIT_LAYER_INPUTS(GRUKIT_SCHEMA)
#undef GRUKIT_SCHEMA
  return s;
}

// The names of the differentiable inputs: gru_layer_bwd returns one gradient per name, in this
// order (an empty tensor where the input was not given).
inline std::vector<std::string> layer_gradients() {
  std::vector<std::string> names;
#define GRUKIT_GRADIENT(schema_type, cpp_type, name, default_value, differentiable) \
  if (differentiable) names.push_back(#name);
  GRUKIT_LAYER_INPUTS(GRUKIT_GRADIENT)
#undef GRUKIT_GRADIENT
  return names;
}

namespace detail {
template <typename V>
V read(const c10::IValue& v);
template <>
inline Tensor read<Tensor>(const c10::IValue& v) {
  return v.toTensor();
}
template <>
inline OptionalTensor read<OptionalTensor>(const c10::IValue& v) {
  return v.isNone() ? OptionalTensor() : OptionalTensor(v.toTensor());
}
template <>
inline double read<double>(const c10::IValue& v) {
  return v.toDouble();
}
template <>
inline int64_t read<int64_t>(const c10::IValue& v) {
  return v.toInt();
}
template <>
inline bool read<bool>(const c10::IValue& v) {
  return v.toBool();
}
}  // namespace detail

constexpr size_t kLayerInputCount = 0
#define GRUKIT_COUNT(schema_type, cpp_type, name, default_value, differentiable) +1
    GRUKIT_LAYER_INPUTS(GRUKIT_COUNT)
#undef GRUKIT_COUNT
    ;

// The inputs from an operator's argument stack, starting at argument `first`.
inline LayerInputs read_layer_inputs(const torch::jit::Stack& stack, size_t first) {
  LayerInputs in;
  size_t i = first;
#define GRUKIT_READ(schema_type, cpp_type, name, default_value, differentiable) \
  in.name = detail::read<cpp_type>(stack[i++]);
  GRUKIT_LAYER_INPUTS(GRUKIT_READ)
#undef GRUKIT_READ
  return in;
}

}  // namespace grukit
