"""Test helpers: random GRU weights, and the float64 oracle extended to lengths and directions.

``grukit.reference`` runs one layer, one direction over equal-length sequences.
Here each sequence of a batch is run through it on its own slice (reversed for
the reverse direction), which is what lengths and directions mean.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from grukit import reference

VARIANTS = list(itertools.product([True, False], reference.UPDATE_GATE_MEANINGS))
VARIANT_IDS = [f"{'after' if ra else 'before'}-{ug}" for ra, ug in VARIANTS]


def random_weights(rng: np.random.Generator, I: int, H: int, bias: bool = True, scale: float = 0.6):
    """One layer-direction (w_ih, w_hh, b_ih, b_hh) as float64 NumPy arrays."""
    w = [rng.normal(0, scale, (3 * H, I)), rng.normal(0, scale, (3 * H, H))]
    if bias:
        w += [rng.normal(0, scale, 3 * H), rng.normal(0, scale, 3 * H)]
    return w


def oracle_layer(
    x, h0, weights, lengths, reverse, reset_after, update_gate, layer_norm=None, zoneout=None, recurrent_mask=None
):
    """Forward of one layer-direction with per-sequence lengths, sequence by sequence.

    Args:
        x [T, B, I], h0 [B, H], weights (w_ih, w_hh[, b_ih, b_hh]), lengths [B] or None (all T).
        layer_norm: None or (gamma_ih, beta_ih, gamma_hh, beta_hh) [3H] each.
        zoneout: None, a [T, B, H] 0/1 mask in the input's time order, or a probability.
        recurrent_mask: None or [B, H].

    Returns out [T, B, H], h_n [B, H], and ``backward(d_out, d_hn) -> grads`` where grads
    has "x" [T, B, I], "h0" [B, H] and the summed weight gradients ("w_ih", "w_hh",
    "b_ih", "b_hh", and the layer-norm ones when there is layer norm).
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    lengths = [T] * B if lengths is None else [int(v) for v in lengths]
    bias = list(weights[2:]) if len(weights) == 4 else [None, None]
    out = np.zeros((T, B, H))
    h_n = np.array(h0, dtype=np.float64)
    caches = {}

    def steps(b):
        """Sequence b's valid steps in the order the direction runs them."""
        L = lengths[b]
        return slice(L - 1, None, -1) if reverse else slice(0, L)

    for b in range(B):
        if lengths[b] == 0:
            continue
        keep = zoneout[steps(b), b : b + 1] if isinstance(zoneout, np.ndarray) else zoneout
        hs, cache = reference.gru_forward(
            x[steps(b), b : b + 1],
            h0[b : b + 1],
            weights[0],
            weights[1],
            *bias,
            reset_after=reset_after,
            update_gate=update_gate,
            layer_norm=layer_norm,
            zoneout=keep,
            recurrent_mask=None if recurrent_mask is None else recurrent_mask[b : b + 1],
        )
        caches[b] = cache
        out[steps(b), b] = hs[:, 0]
        h_n[b] = hs[-1, 0]

    def backward(d_out, d_hn):
        grads = {
            "x": np.zeros_like(x, dtype=np.float64),
            "h0": np.array(d_hn, dtype=np.float64),  # a length-0 sequence passes h0 through
            "w_ih": np.zeros_like(weights[0]),
            "w_hh": np.zeros_like(weights[1]),
            "b_ih": np.zeros(3 * H),
            "b_hh": np.zeros(3 * H),
        }
        for b, cache in caches.items():
            g = reference.gru_backward(d_out[steps(b), b : b + 1], d_hn[b : b + 1], cache)
            grads["x"][steps(b), b] = g["x"][:, 0]
            grads["h0"][b] = g["h0"][0]
            for k, v in g.items():
                if k not in ("x", "h0") and v is not None:
                    grads[k] = grads.get(k, 0) + v
        return grads

    return out, h_n, backward


def torch_weights(weights, dtype=torch.float64, requires_grad=True):
    return tuple(torch.tensor(w, dtype=dtype, requires_grad=requires_grad) for w in weights)
