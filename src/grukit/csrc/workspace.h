// One pool of reused buffers for the GRU kernels.
//
// Temporaries that never leave a call (projections, packed weights, per-step gradients) and
// the saved activations handed to autograd live in per-thread buffers, one per slot, that grow
// and are reused: a fresh multi-megabyte allocation on every call costs page faults (over a
// third of a small backward pass, measured when these kernels were written). A slot's buffer
// is reused only when nothing outside the pool still holds its storage (a tensor returned to
// the caller, saved activations whose backward has not run yet); otherwise the slot gets a new
// buffer and the old one lives on with its holder. Buffers are kept until the thread ends.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <vector>

namespace grukit {

// Every slot of the pool: the layer driver's (layer.h), then the sorted copies of the caller's
// tensors and the weight-gradient products, then the minGRU scan's outputs (min_gru_scan.h).
enum Slot {
  // forward
  kGI,
  kWihT,
  kScratch,
  kHbuf,
  kHdbuf,
  kGH,
  kRH,
  kSaved,
  // backward
  kDGI,
  kDGH,
  kDRec,
  kHprev,
  kRHs,
  kDRH,
  kDhd,
  // the sorted copies of the caller's tensors and the weight-gradient products
  kSortedX,
  kSortedH0,
  kSortedOut,
  kSortedDOut,
  kSortedDHn,
  kSortedDX,
  kSortedZoneout,
  kSortedRecurrent,
  kXT,
  kHpT,
  kRhT,
  kDWihT,
  kDWhhT,
  // the minGRU's scan (min_gru_scan.h): its output h and its gradients
  kMinScanH,
  kMinScanDK,
  kMinScanDH0,
  kSlots
};

// A [shape] tensor in this thread's buffer for `slot`.
inline at::Tensor workspace(int slot, at::IntArrayRef shape, const at::TensorOptions& opts) {
  thread_local std::vector<at::Tensor> buffers(kSlots);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  at::Tensor& buf = buffers[slot];
  if (!buf.defined() || buf.storage().use_count() > 1 || buf.scalar_type() != opts.dtype().toScalarType() ||
      buf.numel() < numel) {
    // a normal tensor even when made under torch.inference_mode(), so that a later call
    // outside inference mode may still write into it
    c10::InferenceMode normal(false);
    buf = at::empty({std::max<int64_t>(numel, 1)}, opts);
  }
  return buf.narrow(0, 0, numel).view(shape);
}

}  // namespace grukit
