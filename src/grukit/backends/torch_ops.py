"""Portable backend: one GRU layer in plain torch ops, differentiated by autograd.

Works on every device and floating dtype torch supports. It is the fallback when
no faster kernel applies, and the second reference (after ``grukit.reference``)
the fused kernels are compared with.

The shape of the computation is the one fast RNN libraries share: one large
matrix product for the input projection of all time steps, then per step the
recurrent product and the element-wise gate math. Equations: see
``grukit.reference``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..reference import LN_EPS
from .layer_options import LayerOptions, LayerWeightsTuple
from .masks import ZoneoutDraw

NAME = "torch"


def input_projection(
    x: Tensor, w_ih: Tensor, b_ih: Optional[Tensor], layer_norm: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]]
) -> Tensor:
    """The input side of every step at once, [T, B, I] -> [T, B, 3H]: x W_ih^T + b_ih, or with
    layer norm LN(x W_ih^T; gamma_ih, beta_ih) + b_ih, normalised over the 3H pre-activations of
    each step and row. One large product (differentiated by autograd); other backends call it too."""
    if layer_norm is None:
        return torch.nn.functional.linear(x, w_ih, b_ih)
    gamma_ih, beta_ih = layer_norm[:2]
    gi = torch.nn.functional.layer_norm(
        torch.nn.functional.linear(x, w_ih), (w_ih.shape[0],), gamma_ih, beta_ih, LN_EPS
    )
    return gi if b_ih is None else gi + b_ih


def gru_layer(
    x: Tensor, h0: Tensor, weights: LayerWeightsTuple, lengths: Optional[Tensor], options: LayerOptions
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction: the contract of every backend's ``gru_layer``.

    Args:
        x: [T, B, I] input, time first, T >= 1, B >= 1. Steps at or past a
            sequence's length must already be zero (``functional.gru`` does this).
        h0: [B, H] initial state.
        weights: (w_ih [3H, I], w_hh [3H, H], b_ih [3H] or None, b_hh [3H] or None), gate order r, z, n.
        lengths: [B] int64 on x's device, 0 <= lengths <= T, or None (all T).
        options: direction, GRU variant and regularisers (:class:`.layer_options.LayerOptions`).

    Returns:
        out: [T, B, H] the state after each step, zero at steps past a sequence's length.
        h_n: [B, H] the state after each sequence's last valid step (h0 if length 0).
    """
    w_ih, w_hh, b_ih, b_hh = weights
    reverse, reset_after, keeps_state = options.reverse, options.reset_after, options.keeps_state
    layer_norm, zoneout, recurrent_mask = options.layer_norm, options.zoneout, options.recurrent_mask
    T, B, _ = x.shape
    H = w_hh.shape[1]
    if isinstance(zoneout, ZoneoutDraw):
        zoneout = zoneout.mask((T, B, H), x)
    gi_all = input_projection(x, w_ih, b_ih, layer_norm)
    if layer_norm is not None:
        g_h, be_h = layer_norm[2:]
    if reset_after:
        w_hh_rz, b_hh_rz = w_hh, b_hh  # one product gives all three recurrent terms
    else:
        w_hh_rz = w_hh[: 2 * H]
        w_hn = w_hh[2 * H :]
        b_hh_rz = None if b_hh is None else b_hh[: 2 * H]
        b_hn = None if b_hh is None else b_hh[2 * H :]

    def recurrent(h_in, weight, bias, block):
        """h W^T + b, or LN(h W^T) + b with gamma_hh / beta_hh's ``block`` slice."""
        if layer_norm is None:
            return torch.nn.functional.linear(h_in, weight, bias)
        y = torch.nn.functional.layer_norm(
            torch.nn.functional.linear(h_in, weight), (weight.shape[0],), g_h[block], be_h[block], LN_EPS
        )
        return y if bias is None else y + bias

    if lengths is not None:
        steps = torch.arange(T, device=x.device).unsqueeze(1)
        active_all = (steps < lengths.unsqueeze(0)).unsqueeze(2)  # [T, B, 1]

    h = h0
    outputs = [None] * T
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        gi_r, gi_z, gi_n = gi_all[t].chunk(3, dim=1)
        # h~ = h * m: recurrent dropout on what enters the products
        hd = h if recurrent_mask is None else h * recurrent_mask
        gh = recurrent(hd, w_hh_rz, b_hh_rz, slice(0, 3 * H if reset_after else 2 * H))
        # r = sigmoid(x W_r^T + b_ir + h U_r^T + b_hr);  z likewise
        r = torch.sigmoid(gi_r + gh[:, :H])
        z = torch.sigmoid(gi_z + gh[:, H : 2 * H])
        if reset_after:
            # n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))
            n = torch.tanh(gi_n + r * gh[:, 2 * H :])
        else:
            # n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)
            n = torch.tanh(gi_n + recurrent(r * hd, w_hn, b_hn, slice(2 * H, 3 * H)))
        if keeps_state:
            # h' = z * h + (1 - z) * n  =  n + z * (h - n)
            h_new = n + z * (h - n)
        else:
            # h' = (1 - z) * h + z * n  =  h + z * (n - h)
            h_new = h + z * (n - h)
        if zoneout is not None:
            keep = zoneout if isinstance(zoneout, float) else zoneout[t]
            # h_t = k * h_{t-1} + (1 - k) * h'   (zoneout)
            h_new = keep * h + (1 - keep) * h_new  # exactly h_{t-1} where k = 1
        if lengths is None:
            h = h_new
            outputs[t] = h_new
        else:
            active = active_all[t]
            # a finished (or not yet started, when reversed) sequence keeps its state
            h = torch.where(active, h_new, h)
            outputs[t] = torch.where(active, h_new, torch.zeros_like(h_new))
    return torch.stack(outputs, 0), h


def is_available() -> bool:
    return True


def why_unavailable() -> str:
    return ""


def min_gru_gates(k: Tensor) -> Tuple[Tensor, Tensor]:
    """The minGRU's gates from their pre-activations k [T, B, 2H] (Feng et al. 2024):
    z = sigmoid(k_z) and h~ = g(k_h), g(v) = v + 1/2 for v >= 0, sigmoid(v) for v < 0; each [T, B, H]."""
    k_z, k_h = k.chunk(2, dim=-1)
    return torch.sigmoid(k_z), torch.where(k_h >= 0, k_h + 0.5, torch.sigmoid(k_h))


def min_gru_scan(k: Tensor, h0: Tensor) -> Tensor:
    """The minGRU's scan in plain torch ops (autograd, forward-mode AD and vmap differentiate it).

    h_t = (1 - z_t) h_{t-1} + z_t h~_t is the linear recurrence h_t = a_t h_{t-1} + b_t; it is computed
    for all t at once by recursive doubling (Hillis and Steele 1986): after the round with offset d,
    (a_t, b_t) describes steps t-2d+1 .. t, combined as (a_t a_{t-d}, a_t b_{t-d} + b_t). log2(T) rounds
    of element-wise products of numbers in [0, 1], so no cancellation and no logarithm: stable in
    float32 at any T (the log-space scan of the paper loses digits at large T; BENCHMARKS.md).

    Args:
        k: [T, B, 2H] gate pre-activations.  h0: [B, H].

    Returns:
        h: [T, B, H].
    """
    z, candidate = min_gru_gates(k)
    a = 1 - z
    b = z * candidate
    b = torch.cat([b[:1] + a[:1] * h0, b[1:]])  # h0 enters through the first step
    offset = 1
    while offset < k.shape[0]:
        b = torch.cat([b[:offset], a[offset:] * b[:-offset] + b[offset:]])
        if 2 * offset < k.shape[0]:
            a = torch.cat([a[:offset], a[offset:] * a[:-offset]])
        offset *= 2
    return b


def min_gru_scan_gradients(k: Tensor, h0: Tensor, d_h: Tensor) -> Tuple[Tensor, Tensor]:
    """(dL/dk, dL/dh0) of :func:`min_gru_scan` for d_h = dL/dh, as a differentiable function of k, h0
    and d_h: the backward of the fused scans where a second derivative is asked for
    (``create_graph=True``) or the gradient is batched by vmap."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in (k, h0)]
        d_k, d_h0 = torch.autograd.grad(min_gru_scan(*inputs), inputs, d_h, create_graph=True)
    return d_k, d_h0


AUTO_DEVICE_TYPES = ()  # the fallback: "auto" returns it when nothing else applies


def runs_on(device_type: str, dtype: torch.dtype) -> bool:
    return True


def supports(x: Tensor) -> bool:
    return True
