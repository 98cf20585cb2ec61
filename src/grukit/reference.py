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

Tutorials write ``W_z . [h_{t-1}, x_t] + b_z``: one matrix applied to the
concatenation of h and x. That is the same as ``x W_z^T + h U_z^T`` with the
matrix split in two; the split form is what every library stores.

Two choices change the function, and the notes and libraries disagree on both:

``reset_after`` -- where the reset gate acts on the candidate state.
    False: before the recurrent matmul, as most tutorials write it
        (Cho et al. 2014, v3)::
            n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)
    True: after it, as cuDNN, PyTorch and Keras (default) compute it
        (Cho et al. 2014, v1)::
            n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))

``update_gate`` -- what the update gate z means.
    "keeps_state": z is the share of the old state that is kept
        (Cho et al. 2014, PyTorch, Keras, ONNX, oneDNN)::
            h' = z * h + (1 - z) * n
    "takes_candidate": z is the share of the new candidate that is taken
        (Chung et al. 2014, arXiv 1412.3555, and many tutorials)::
            h' = (1 - z) * h + z * n

The two update meanings describe the same family of functions (negate the z
weights and biases to go from one to the other), but a gate value of 0.9 means
opposite things in the two, which matters for gate plots and weight import.

Three optional regularisers, all off by default (exact equations in
:func:`gru_forward`): ``layer_norm`` (Ba et al. 2016: the input and the
recurrent projections each normalised with their own gain and bias),
``zoneout`` (Krueger et al. 2016: each unit keeps its old value with
probability p, a fresh mask per step) and ``recurrent_mask`` (Gal and
Ghahramani 2016, Keras' ``recurrent_dropout``: one dropout mask on h_{t-1}
for the whole sequence). The masks are passed in, so the oracle is
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Union

import numpy as np

from .validation import KEEPS_STATE, TAKES_CANDIDATE, UPDATE_GATE_MEANINGS, check_update_gate  # noqa: F401


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-a)), computed without overflow for large |a|."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def split_gates(m: np.ndarray):
    """Split a stacked [3H, ...] array (order r, z, n) into its three gate blocks."""
    H = m.shape[0] // 3
    return m[:H], m[H : 2 * H], m[2 * H :]


LN_EPS = 1e-5  # layer norm's epsilon, as torch.nn.LayerNorm: the one Python copy (C++: csrc/layer_norm.h)


def layer_normalize(v: np.ndarray, gamma: np.ndarray, beta: np.ndarray):
    """LN(v) = gamma * (v - mean(v)) / sqrt(var(v) + eps) + beta over the last axis (biased variance).

    Returns the result and (v_hat, 1 / sqrt(var + eps)) for :func:`layer_normalize_backward`.
    """
    mean = v.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(v.var(-1, keepdims=True) + LN_EPS)
    v_hat = (v - mean) * rstd
    return gamma * v_hat + beta, (v_hat, rstd)


def layer_normalize_backward(dy: np.ndarray, gamma: np.ndarray, cache):
    """Gradients of :func:`layer_normalize`: (d v, d gamma, d beta)."""
    v_hat, rstd = cache
    d_hat = dy * gamma
    dv = rstd * (d_hat - d_hat.mean(-1, keepdims=True) - v_hat * (d_hat * v_hat).mean(-1, keepdims=True))
    return dv, (dy * v_hat).sum(0), dy.sum(0)


@dataclass
class StepCache:
    """What one forward step keeps for the backward pass (all [B, H] except x [B, I])."""

    x: np.ndarray
    h: np.ndarray  # h_{t-1}
    hd: np.ndarray  # h_{t-1} * recurrent-dropout mask (h_{t-1} itself without it)
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    hn: Optional[np.ndarray]  # the candidate's recurrent term before r multiplies it (reset after only)
    rh: Optional[np.ndarray]  # r * hd                (reset before only)
    keep: object  # zoneout: the share of h_{t-1} kept ([B, H] mask or a number), or None
    ln: Dict[str, tuple]  # layer-norm caches: "i" (input), "h" (recurrent; "h_rz", "h_n" reset before)


@dataclass
class ForwardCache:
    steps: list
    w_ih: np.ndarray
    w_hh: np.ndarray
    reset_after: bool
    update_gate: str
    has_bias: bool
    layer_norm: Optional[tuple] = None
    recurrent_mask: Optional[np.ndarray] = None


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
    layer_norm: Optional[tuple] = None,
    zoneout: Union[None, float, np.ndarray] = None,
    recurrent_mask: Optional[np.ndarray] = None,
):
    """Run one GRU layer over a sequence.

    Args:
        x: [T, B, I] inputs, time first.
        h0: [B, H] initial state.
        w_ih: [3H, I], w_hh: [3H, H], b_ih / b_hh: [3H] or None (no bias): see the module doc.
        reset_after: where the reset gate acts (see the module doc).
        update_gate: "keeps_state" or "takes_candidate" (see the module doc).
        layer_norm: None, or (gamma_ih, beta_ih, gamma_hh, beta_hh), each [3H]: the input
            projection and the recurrent projection are each layer-normalised (Ba et al. 2016,
            as Haste's LayerNormGRU) before the biases are added::

                gi = LN(x W_ih^T; gamma_ih, beta_ih) + b_ih          (over 3H)
                gh = LN(h U^T;    gamma_hh, beta_hh) + b_hh          (reset after: over 3H)

            With the reset gate before the product, the candidate's recurrent term needs r,
            so the recurrent projection is normalised in two blocks::

                gh_rz = LN(h [U_r; U_z]^T; gamma_hh[:2H], beta_hh[:2H]) + b_hh[:2H]
                gh_n  = LN((r * h) U_n^T;  gamma_hh[2H:], beta_hh[2H:]) + b_hn

        zoneout: None; or the share of h_{t-1} each unit keeps (Krueger et al. 2016)::

                h_t = k * h_{t-1} + (1 - k) * h'_t        (h'_t: the GRU's new state)

            a [T, B, H] array of 0/1 (training: a fresh mask per step and unit, 1 = keep the old
            value), or the probability p itself (evaluation: the expected value).
        recurrent_mask: None, or [B, H] (Gal and Ghahramani 2016, as Keras' recurrent_dropout):
            h_{t-1} is multiplied by this one mask (0 or 1/(1-p)) wherever it enters a matrix
            product, at every step; the update h' = z*h + ... uses the undropped h_{t-1}.

    Returns:
        hs: [T, B, H] the hidden state after every step (hs[-1] is the final state).
        cache: what :func:`gru_backward` needs.
    """
    check_update_gate(update_gate)
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h0, dtype=np.float64)
    H = h.shape[1]
    has_bias = b_ih is not None
    if not has_bias:
        b_ih = np.zeros(3 * H)
        b_hh = np.zeros(3 * H)
    w_ih = np.asarray(w_ih, dtype=np.float64)
    w_hh = np.asarray(w_hh, dtype=np.float64)
    b_ih = np.asarray(b_ih, dtype=np.float64)
    b_hh = np.asarray(b_hh, dtype=np.float64)
    W_r, W_z, W_n = split_gates(w_ih)
    U_r, U_z, U_n = split_gates(w_hh)
    b_ir, b_iz, b_in = split_gates(b_ih)
    b_hr, b_hz, b_hn = split_gates(b_hh)
    if layer_norm is not None:
        g_i, be_i, g_h, be_h = (np.asarray(a, dtype=np.float64) for a in layer_norm)
        layer_norm = (g_i, be_i, g_h, be_h)

    steps = []
    hs = np.empty((x.shape[0], h.shape[0], H))
    for t in range(x.shape[0]):
        x_t = x[t]
        ln = {}
        # h~ = h * m     recurrent dropout: the h that enters the recurrent products
        hd = h if recurrent_mask is None else h * recurrent_mask
        if layer_norm is None:
            a_i = x_t @ w_ih.T + b_ih  # [x W_r^T + b_ir | x W_z^T + b_iz | x W_n^T + b_in]
        else:
            a_i, ln["i"] = layer_normalize(x_t @ w_ih.T, g_i, be_i)
            a_i = a_i + b_ih  # LN(x W_ih^T) + b_ih
        gi_r, gi_z, gi_n = np.split(a_i, 3, axis=1)
        if reset_after:
            if layer_norm is None:
                a_h = hd @ w_hh.T + b_hh  # [h U_r^T + b_hr | h U_z^T + b_hz | h U_n^T + b_hn]
            else:
                a_h, ln["h"] = layer_normalize(hd @ w_hh.T, g_h, be_h)
                a_h = a_h + b_hh  # LN(h U^T) + b_hh
            gh_r, gh_z, hn = np.split(a_h, 3, axis=1)
            # r = sigmoid(x W_r^T + b_ir + h U_r^T + b_hr)              reset gate
            r = sigmoid(gi_r + gh_r)
            # z = sigmoid(x W_z^T + b_iz + h U_z^T + b_hz)              update gate
            z = sigmoid(gi_z + gh_z)
            # n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn))       candidate, reset after
            n = np.tanh(gi_n + r * hn)
            rh = None
        else:
            U_rz = w_hh[: 2 * H]
            if layer_norm is None:
                a_h = hd @ U_rz.T + b_hh[: 2 * H]
            else:
                a_h, ln["h_rz"] = layer_normalize(hd @ U_rz.T, g_h[: 2 * H], be_h[: 2 * H])
                a_h = a_h + b_hh[: 2 * H]
            gh_r, gh_z = np.split(a_h, 2, axis=1)
            r = sigmoid(gi_r + gh_r)  # reset gate
            z = sigmoid(gi_z + gh_z)  # update gate
            # n = tanh(x W_n^T + b_in + (r * h) U_n^T + b_hn)       candidate, reset before
            rh = r * hd
            if layer_norm is None:
                gh_n = rh @ U_n.T + b_hn
            else:
                gh_n, ln["h_n"] = layer_normalize(rh @ U_n.T, g_h[2 * H :], be_h[2 * H :])
                gh_n = gh_n + b_hn
            n = np.tanh(gi_n + gh_n)
            hn = None
        if update_gate == KEEPS_STATE:
            # h' = z * h + (1 - z) * n
            h_new = z * h + (1.0 - z) * n
        else:
            # h' = (1 - z) * h + z * n
            h_new = (1.0 - z) * h + z * n
        keep = None
        if zoneout is not None:
            keep = zoneout if np.isscalar(zoneout) else np.asarray(zoneout, dtype=np.float64)[t]
            # h_t = k * h_{t-1} + (1 - k) * h'          zoneout
            h_new = keep * h + (1.0 - keep) * h_new
        steps.append(StepCache(x=x_t, h=h, hd=hd, r=r, z=z, n=n, hn=hn, rh=rh, keep=keep, ln=ln))
        hs[t] = h_new
        h = h_new
    cache = ForwardCache(
        steps=steps,
        w_ih=w_ih,
        w_hh=w_hh,
        reset_after=reset_after,
        update_gate=update_gate,
        has_bias=has_bias,
        layer_norm=layer_norm,
        recurrent_mask=recurrent_mask,
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
        "w_hh" [3H, H], "b_ih" [3H] and "b_hh" [3H] (None when there is no bias), and
        with layer norm "gamma_ih", "beta_ih", "gamma_hh", "beta_hh" [3H].

    Each step is walked backwards with the chain rule; the comments name the
    forward equation each block differentiates. The three gates' pre-activations are
    handled stacked, [r | z | n], as the weights store them.
    """
    w_ih, w_hh = cache.w_ih, cache.w_hh
    H = w_hh.shape[1]
    U_n = w_hh[2 * H :]
    ln_on = cache.layer_norm is not None
    if ln_on:
        g_i, _, g_h, _ = cache.layer_norm
        d_ln = {k: np.zeros(3 * H) for k in ("gamma_ih", "beta_ih", "gamma_hh", "beta_hh")}
    d_w_ih = np.zeros_like(w_ih)
    d_w_hh = np.zeros_like(w_hh)
    d_b_ih = np.zeros(3 * H)
    d_b_hh = np.zeros(3 * H)

    T = len(cache.steps)
    d_x = np.zeros((T,) + cache.steps[0].x.shape) if T else np.zeros((0,))
    # gradient flowing into h_t from later steps (starts with the final-state gradient)
    d_h_next = np.zeros_like(d_hs[0]) if d_h_last is None else np.array(d_h_last, dtype=np.float64)

    for t in reversed(range(T)):
        s = cache.steps[t]
        # total gradient of h_t: from the output at t and from step t+1
        dh_new = d_hs[t] + d_h_next
        if s.keep is not None:
            # h_t = k * h_{t-1} + (1 - k) * h'          zoneout
            dh = s.keep * dh_new
            dh_new = (1.0 - s.keep) * dh_new
        else:
            dh = np.zeros_like(dh_new)

        if cache.update_gate == KEEPS_STATE:
            # h' = z * h + (1 - z) * n
            dz = dh_new * (s.h - s.n)
            dn = dh_new * (1.0 - s.z)
            dh += dh_new * s.z
        else:
            # h' = (1 - z) * h + z * n
            dz = dh_new * (s.n - s.h)
            dn = dh_new * s.z
            dh += dh_new * (1.0 - s.z)

        # n = tanh(a_n)  =>  d a_n = dn * (1 - n^2)
        da_n = dn * (1.0 - s.n**2)
        # z = sigmoid(a_z),  r = sigmoid(a_r)  =>  d a = d gate * gate * (1 - gate)
        da_z = dz * s.z * (1.0 - s.z)
        if cache.reset_after:
            # a_n = gi_n + r * hn     (hn: the candidate's recurrent term, bias included)
            dr = da_n * s.hn
            da_r = dr * s.r * (1.0 - s.r)
            d_gh = np.concatenate([da_r, da_z, da_n * s.r], axis=1)  # d [gh_r | gh_z | hn]
            d_b_hh += d_gh.sum(0)
            if ln_on:
                # gh = LN(h~ U^T) + b_hh
                d_gh, dg, db = layer_normalize_backward(d_gh, g_h, s.ln["h"])
                d_ln["gamma_hh"] += dg
                d_ln["beta_hh"] += db
            # gh = h~ U^T (+ ...)
            d_w_hh += d_gh.T @ s.hd
            d_hd = d_gh @ w_hh
        else:
            # a_n = gi_n + gh_n,  gh_n = (r * h~) U_n^T + b_hn  (or its LN)
            d_ghn = da_n
            d_b_hh[2 * H :] += d_ghn.sum(0)
            if ln_on:
                d_ghn, dg, db = layer_normalize_backward(d_ghn, g_h[2 * H :], s.ln["h_n"])
                d_ln["gamma_hh"][2 * H :] += dg
                d_ln["beta_hh"][2 * H :] += db
            d_w_hh[2 * H :] += d_ghn.T @ s.rh
            d_rh = d_ghn @ U_n
            # rh = r * h~
            dr = d_rh * s.hd
            d_hd = d_rh * s.r
            da_r = dr * s.r * (1.0 - s.r)
            d_gh = np.concatenate([da_r, da_z], axis=1)  # d [gh_r | gh_z]
            d_b_hh[: 2 * H] += d_gh.sum(0)
            if ln_on:
                d_gh, dg, db = layer_normalize_backward(d_gh, g_h[: 2 * H], s.ln["h_rz"])
                d_ln["gamma_hh"][: 2 * H] += dg
                d_ln["beta_hh"][: 2 * H] += db
            d_w_hh[: 2 * H] += d_gh.T @ s.hd
            d_hd += d_gh @ w_hh[: 2 * H]
        # h~ = h * m   (recurrent dropout)
        dh += d_hd if cache.recurrent_mask is None else d_hd * cache.recurrent_mask

        # gi = x W_ih^T + b_ih   (or LN(x W_ih^T) + b_ih)
        d_gi = np.concatenate([da_r, da_z, da_n], axis=1)
        d_b_ih += d_gi.sum(0)
        if ln_on:
            d_gi, dg, db = layer_normalize_backward(d_gi, g_i, s.ln["i"])
            d_ln["gamma_ih"] += dg
            d_ln["beta_ih"] += db
        d_w_ih += d_gi.T @ s.x
        d_x[t] = d_gi @ w_ih
        d_h_next = dh

    grads = {
        "x": d_x,
        "h0": d_h_next,
        "w_ih": d_w_ih,
        "w_hh": d_w_hh,
        "b_ih": d_b_ih if cache.has_bias else None,
        "b_hh": d_b_hh if cache.has_bias else None,
    }
    if ln_on:
        grads.update(d_ln)
    return grads
