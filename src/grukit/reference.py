"""The GRU as equations: a NumPy float64 forward pass and a hand-derived backward pass.

This file is the oracle that every fast path in grukit is tested against, and the
file to read if you want to see exactly what a GRU computes. One layer, one
direction, a batch of sequences that all have the same length.

Notation (shapes in brackets; B = batch, I = input size, H = hidden size)::

    x_t   [B, I]    input at step t
    h     [B, H]    previous hidden state h_{t-1}
    W_r, W_z, W_n   [H, I]  input weights of the reset gate, update gate, candidate
    U_r, U_z, U_n   [H, H]  recurrent weights of the same
    b_i*, b_h*      [H]     input-side and recurrent-side biases

The weights are stored the way ``torch.nn.GRU`` stores them, gates stacked in
the order r, z, n::

    w_ih = [W_r; W_z; W_n]   [3H, I]        b_ih = [b_ir; b_iz; b_in]   [3H]
    w_hh = [U_r; U_z; U_n]   [3H, H]        b_hh = [b_hr; b_hz; b_hn]   [3H]

The seed notes write ``W_z . [h_{t-1}, x_t] + b_z``: one matrix applied to the
concatenation of h and x. That is the same as ``x W_z^T + h U_z^T`` with the
matrix split in two; the split form is what every library stores.

Two choices change the function, and the notes and libraries disagree on both:

``reset_after`` -- where the reset gate acts on the candidate state.
    False: before the recurrent matmul, as the seed notes write it
        (Cho et al. 2014, v3)::
            n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)
    True: after it, as cuDNN, PyTorch and Keras (default) compute it
        (Cho et al. 2014, v1)::
            n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))

``update_gate`` -- what the update gate z means.
    "keeps_state": z is the share of the old state that is kept
        (Cho et al., PyTorch, Keras, ONNX, oneDNN, seed 002)::
            h' = z * h + (1 - z) * n
    "takes_candidate": z is the share of the new candidate that is taken
        (Chung et al. 2014, seeds 000 and 001)::
            h' = (1 - z) * h + z * n

The two update meanings describe the same family of functions (negate the z
weights and biases to go from one to the other), but a gate value of 0.9 means
opposite things in the two, which matters for gate plots and weight import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

KEEPS_STATE = "keeps_state"
TAKES_CANDIDATE = "takes_candidate"
UPDATE_GATE_MEANINGS = (KEEPS_STATE, TAKES_CANDIDATE)


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-a)), computed without overflow for large |a|."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def split_gates(m: np.ndarray):
    """Split a stacked [3H, ...] array (order r, z, n) into its three gate blocks."""
    H = m.shape[0] // 3
    return m[:H], m[H : 2 * H], m[2 * H :]


@dataclass
class StepCache:
    """What one forward step keeps for the backward pass (all [B, H] except x [B, I])."""

    x: np.ndarray
    h: np.ndarray  # h_{t-1}
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    hn: Optional[np.ndarray]  # h U_n^T + b_hn        (reset after only)
    rh: Optional[np.ndarray]  # r * h                 (reset before only)


@dataclass
class ForwardCache:
    steps: list
    w_ih: np.ndarray
    w_hh: np.ndarray
    reset_after: bool
    update_gate: str
    has_bias: bool


def _check_update_gate(update_gate: str) -> None:
    if update_gate not in UPDATE_GATE_MEANINGS:
        raise ValueError(
            f"update_gate must be one of {UPDATE_GATE_MEANINGS}, got {update_gate!r}"
        )


def gru_forward(
    x: np.ndarray,
    h0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: Optional[np.ndarray] = None,
    b_hh: Optional[np.ndarray] = None,
    *,
    reset_after: bool = True,
    update_gate: str = KEEPS_STATE,
):
    """Run one GRU layer over a sequence.

    Args:
        x: [T, B, I] inputs, time first.
        h0: [B, H] initial state.
        w_ih: [3H, I], w_hh: [3H, H], b_ih / b_hh: [3H] or None (no bias): see the module doc.
        reset_after: where the reset gate acts (see the module doc).
        update_gate: "keeps_state" or "takes_candidate" (see the module doc).

    Returns:
        hs: [T, B, H] the hidden state after every step (hs[-1] is the final state).
        cache: what :func:`gru_backward` needs.
    """
    _check_update_gate(update_gate)
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h0, dtype=np.float64)
    H = h.shape[1]
    has_bias = b_ih is not None
    if not has_bias:
        b_ih = np.zeros(3 * H)
        b_hh = np.zeros(3 * H)
    W_r, W_z, W_n = split_gates(np.asarray(w_ih, dtype=np.float64))
    U_r, U_z, U_n = split_gates(np.asarray(w_hh, dtype=np.float64))
    b_ir, b_iz, b_in = split_gates(np.asarray(b_ih, dtype=np.float64))
    b_hr, b_hz, b_hn = split_gates(np.asarray(b_hh, dtype=np.float64))

    steps = []
    hs = np.empty((x.shape[0], h.shape[0], H))
    for t in range(x.shape[0]):
        x_t = x[t]
        # r = sigmoid(x W_r^T + b_ir + h U_r^T + b_hr)              reset gate
        r = sigmoid(x_t @ W_r.T + b_ir + h @ U_r.T + b_hr)
        # z = sigmoid(x W_z^T + b_iz + h U_z^T + b_hz)              update gate
        z = sigmoid(x_t @ W_z.T + b_iz + h @ U_z.T + b_hz)
        if reset_after:
            # n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))       candidate, reset after
            hn = h @ U_n.T + b_hn
            n = np.tanh(x_t @ W_n.T + b_in + r * hn)
            rh = None
        else:
            # n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)       candidate, reset before
            rh = r * h
            n = np.tanh(x_t @ W_n.T + b_in + rh @ U_n.T + b_hn)
            hn = None
        if update_gate == KEEPS_STATE:
            # h' = z * h + (1 - z) * n
            h_new = z * h + (1.0 - z) * n
        else:
            # h' = (1 - z) * h + z * n
            h_new = (1.0 - z) * h + z * n
        steps.append(StepCache(x=x_t, h=h, r=r, z=z, n=n, hn=hn, rh=rh))
        hs[t] = h_new
        h = h_new
    cache = ForwardCache(
        steps=steps,
        w_ih=np.asarray(w_ih, dtype=np.float64),
        w_hh=np.asarray(w_hh, dtype=np.float64),
        reset_after=reset_after,
        update_gate=update_gate,
        has_bias=has_bias,
    )
    return hs, cache


def gru_backward(
    d_hs: np.ndarray, d_h_last: Optional[np.ndarray], cache: ForwardCache
) -> Dict[str, Optional[np.ndarray]]:
    """Backpropagation through time for :func:`gru_forward`.

    Args:
        d_hs: [T, B, H] gradient of the loss with respect to every output hs[t].
        d_h_last: [B, H] gradient with respect to the final state, on top of d_hs[-1]
            (the final state is returned separately by GRU layers), or None.
        cache: the second result of :func:`gru_forward`.

    Returns:
        A dict with the gradient for "x" [T, B, I], "h0" [B, H], "w_ih" [3H, I],
        "w_hh" [3H, H], "b_ih" [3H] and "b_hh" [3H] (None when there is no bias).

    Each step is walked backwards with the chain rule; the comments name the
    forward equation each block differentiates.
    """
    W_r, W_z, W_n = split_gates(cache.w_ih)
    U_r, U_z, U_n = split_gates(cache.w_hh)
    H = cache.w_hh.shape[1]
    d_w_ih = np.zeros_like(cache.w_ih)
    d_w_hh = np.zeros_like(cache.w_hh)
    d_b_ih = np.zeros(3 * H)
    d_b_hh = np.zeros(3 * H)
    dW_r, dW_z, dW_n = split_gates(d_w_ih)  # views: writing them fills d_w_ih
    dU_r, dU_z, dU_n = split_gates(d_w_hh)
    db_ir, db_iz, db_in = split_gates(d_b_ih)
    db_hr, db_hz, db_hn = split_gates(d_b_hh)

    T = len(cache.steps)
    d_x = np.zeros((T,) + cache.steps[0].x.shape) if T else np.zeros((0,))
    # gradient flowing into h_t from later steps (starts with the final-state gradient)
    d_h_next = np.zeros_like(d_hs[0]) if d_h_last is None else np.array(d_h_last, dtype=np.float64)

    for t in reversed(range(T)):
        s = cache.steps[t]
        # total gradient of h' = h_t: from the output at t and from step t+1
        dh_new = d_hs[t] + d_h_next

        if cache.update_gate == KEEPS_STATE:
            # h' = z * h + (1 - z) * n
            dz = dh_new * (s.h - s.n)
            dn = dh_new * (1.0 - s.z)
            dh = dh_new * s.z
        else:
            # h' = (1 - z) * h + z * n
            dz = dh_new * (s.n - s.h)
            dn = dh_new * s.z
            dh = dh_new * (1.0 - s.z)

        # n = tanh(a_n)  =>  d a_n = dn * (1 - n^2)
        da_n = dn * (1.0 - s.n**2)
        if cache.reset_after:
            # a_n = x W_n^T + b_in + r * hn,   hn = h U_n^T + b_hn
            dr = da_n * s.hn
            d_hn = da_n * s.r
            dU_n += d_hn.T @ s.h
            db_hn += d_hn.sum(0)
            dh += d_hn @ U_n
        else:
            # a_n = x W_n^T + b_in + rh U_n^T + b_hn,   rh = r * h
            d_rh = da_n @ U_n
            dU_n += da_n.T @ s.rh
            db_hn += da_n.sum(0)
            dr = d_rh * s.h
            dh += d_rh * s.r
        dW_n += da_n.T @ s.x
        db_in += da_n.sum(0)

        # z = sigmoid(a_z),  r = sigmoid(a_r)  =>  d a = d gate * gate * (1 - gate)
        da_z = dz * s.z * (1.0 - s.z)
        da_r = dr * s.r * (1.0 - s.r)
        # a_z = x W_z^T + b_iz + h U_z^T + b_hz   (and the same for r)
        dW_z += da_z.T @ s.x
        dW_r += da_r.T @ s.x
        dU_z += da_z.T @ s.h
        dU_r += da_r.T @ s.h
        db_iz += da_z.sum(0)
        db_hz += da_z.sum(0)
        db_ir += da_r.sum(0)
        db_hr += da_r.sum(0)
        dh += da_z @ U_z + da_r @ U_r

        d_x[t] = da_n @ W_n + da_z @ W_z + da_r @ W_r
        d_h_next = dh

    return {
        "x": d_x,
        "h0": d_h_next,
        "w_ih": d_w_ih,
        "w_hh": d_w_hh,
        "b_ih": d_b_ih if cache.has_bias else None,
        "b_hh": d_b_hh if cache.has_bias else None,
    }
