// What the forward pass saves for the backward pass: one row of `width` values per row of the
// input (T * B padded, N packed), written by the layer driver's forward pass, read by its backward pass (layer.h),
// freed by autograd when the backward pass has run. The one definition of this layout; the
// Python side asks the extension for the width (`saved_width`).
//
//   columns             what                                            when
//   [0, H)              r, the reset gate                               always
//   [H, 2H)             z, the update gate                              always
//   [2H, 3H)            n, the candidate                                always
//   [3H, 4H)            rec_n = h U_n^T + b_hn (LN'd when layer norm)   reset after only
//   [base, base + 3H)   x_hat: the normalised input projection          layer norm
//   [.. + 3H, .. + 6H)  h_hat: the normalised recurrent projection(s)   layer norm
//   last 3              1/std of x W_ih^T, of h W_hh^T (reset after)    layer norm
//                       or of the r,z block and the n block (before)
//
// base = 4H (reset after) or 3H (reset before). Rows of steps a padded sequence never runs are 0.
#pragma once

#include <cstdint>

namespace grukit {

struct SavedLayout {
  int64_t H = 0, base = 0, width = 0;
  SavedLayout(int64_t H_, bool reset_after, bool layer_norm)
      : H(H_), base((reset_after ? 4 : 3) * H_), width(base + (layer_norm ? 6 * H_ + 3 : 0)) {}
  int64_t r() const { return 0; }
  int64_t z() const { return H; }
  int64_t n() const { return 2 * H; }
  int64_t rec_n() const { return 3 * H; }
  int64_t x_hat() const { return base; }
  int64_t h_hat() const { return base + 3 * H; }
  int64_t stats() const { return base + 6 * H; }  // rstd of the input row, then of the recurrent row(s)
};

}  // namespace grukit
