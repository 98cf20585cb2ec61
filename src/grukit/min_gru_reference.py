"""The minGRU in NumPy float64: forward and hand-derived backward, the oracle of every minGRU path.

The minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201) drops the previous
state from the GRU's gates (Cho et al. 2014), so the gates of every step depend on the input alone:

    z_t  = sigmoid(x_t W_z^T + b_z)                 update gate                   [B, H]
    h~_t = g(x_t W_h^T + b_h)                       candidate                     [B, H]
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t         a linear recurrence in h

    g(v) = v + 1/2 for v >= 0, sigmoid(v) for v < 0 (continuous, increasing and positive)

The gate pre-activations ``k = x W^T + b`` (``[T, B, 2H]``, the z columns first) are one matrix
product over all steps; what remains is the scan ``h_t = a_t h_{t-1} + b_t`` with ``a_t = 1 - z_t``
and ``b_t = z_t h~_t``, which :func:`scan_forward` computes step by step and :func:`scan_backward`
differentiates. The backward is a reverse scan: with ``delta_t = dL/dh_t`` (everything that
reaches h_t, through the output and through h_{t+1}),

    delta_t    = dL/dout_t + (1 - z_{t+1}) * delta_{t+1}       (delta_T = 0)
    dL/dz_t    = delta_t * (h~_t - h_{t-1})
    dL/dh~_t   = delta_t * z_t
    dL/dh_0    = (1 - z_1) * delta_1
    dL/dk_z    = dL/dz_t * z_t (1 - z_t)
    dL/dk_h    = dL/dh~_t * g'(k_h),   g'(v) = 1 for v >= 0, sigmoid(v) (1 - sigmoid(v)) for v < 0

(steps counted from 1 here; arrays below are indexed from 0).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # no overflow for large |v|


def candidate(v: np.ndarray) -> np.ndarray:
    """g(v) = v + 1/2 for v >= 0, sigmoid(v) for v < 0."""
    return np.where(v >= 0, v + 0.5, sigmoid(np.minimum(v, 0.0)))


def candidate_slope(v: np.ndarray) -> np.ndarray:
    """g'(v) = 1 for v >= 0, sigmoid(v) (1 - sigmoid(v)) for v < 0."""
    s = sigmoid(np.minimum(v, 0.0))
    return np.where(v >= 0, 1.0, s * (1.0 - s))


def scan_forward(k: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """k [T, B, 2H] gate pre-activations (z columns, then candidate columns), h0 [B, H]
    -> h [T, B, H], the state after each step."""
    H = h0.shape[-1]
    z, cand = sigmoid(k[..., :H]), candidate(k[..., H:])
    h = np.empty(k.shape[:-1] + (H,))
    state = h0
    for t in range(k.shape[0]):
        state = (1.0 - z[t]) * state + z[t] * cand[t]
        h[t] = state
    return h


def scan_backward(d_h: np.ndarray, h: np.ndarray, k: np.ndarray, h0: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The gradients of :func:`scan_forward`: d_h [T, B, H] = dL/dh (from outside the scan),
    h its output -> (dL/dk [T, B, 2H], dL/dh0 [B, H])."""
    H = h0.shape[-1]
    z, cand = sigmoid(k[..., :H]), candidate(k[..., H:])
    d_k = np.empty_like(k)
    carry = np.zeros_like(h0)  # (1 - z_{t+1}) * delta_{t+1}
    for t in reversed(range(k.shape[0])):
        delta = d_h[t] + carry
        previous = h[t - 1] if t > 0 else h0
        d_k[t, :, :H] = delta * (cand[t] - previous) * z[t] * (1.0 - z[t])
        d_k[t, :, H:] = delta * z[t] * candidate_slope(k[t, :, H:])
        carry = (1.0 - z[t]) * delta
    return d_k, carry


def layer_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, h0: np.ndarray) -> Tuple[np.ndarray, Dict]:
    """One minGRU layer in one direction.

    Args:
        x: [T, B, I] input.  weight: [2H, I] (rows: W_z, then W_h).  bias: [2H].  h0: [B, H].

    Returns:
        (h [T, B, H], cache for :func:`layer_backward`).
    """
    k = x @ weight.T + bias
    h = scan_forward(k, h0)
    return h, {"x": x, "weight": weight, "k": k, "h": h, "h0": h0}


def layer_backward(d_h: np.ndarray, cache: Dict) -> Dict[str, np.ndarray]:
    """The gradients of :func:`layer_forward` for d_h = dL/dh [T, B, H]: x, weight, bias, h0."""
    d_k, d_h0 = scan_backward(d_h, cache["h"], cache["k"], cache["h0"])
    x = cache["x"]
    rows = d_k.reshape(-1, d_k.shape[-1])
    return {
        "x": d_k @ cache["weight"],
        "weight": rows.T @ x.reshape(-1, x.shape[-1]),
        "bias": rows.sum(axis=0),
        "h0": d_h0,
    }
