"""Triton kernels of the minGRU's scan (Feng et al. 2024): a chunked scan, forward and backward.

The scan ``h_t = a_t h_{t-1} + b_t`` (a_t = 1 - z_t, b_t = z_t h~_t; equations in
``grukit.min_gru_reference``) is linear in h, so a run of steps is an affine map of the state that
entered it. Time is cut into chunks of ``CHUNK`` steps, and the B*H units into blocks of
``BLOCK`` units; the forward is three launches:

1. ``chunk_summary``: every (chunk, block) program scans its chunk from a zero state, giving the
   chunk's map  h_out = A h_in + S  (A = prod of a_t, S = the zero-state scan's last value);
2. ``chunk_carry``: one program per block walks the chunks in order, h_in(c+1) = A_c h_in(c) + S_c,
   from h0 (T / CHUNK steps: the only sequential part);
3. ``chunk_apply``: every (chunk, block) program scans its chunk again from its h_in, writing h.

All programs of 1 and 3 run at once, so a GPU is filled even when B*H is small; the passes read k
twice and h0 once, and write h once. The backward is the same three launches in reverse time for
``delta_t = d_h_t + a_{t+1} delta_{t+1}`` (a chunk maps the carry a_{t+1} delta_{t+1} entering
from its right to the one leaving on its left, again affinely), the last launch writing dL/dk.

Layout: k [T, B, 2H] (the update gate's columns, then the candidate's), h and d_h [T, B, H],
contiguous; unit n = b H + j. Computes in float64 for float64, else float32.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _gates(k, t, rows, units, H, mask):
    """z_t and h~_t of units (rows, units): z = sigmoid(k_z), h~ = g(k_h), g(v) = v + 1/2 (v >= 0),
    sigmoid(v) (v < 0); with g'(k_h) for the backward."""
    offset = (t * rows + units // H) * 2 * H + units % H
    k_z = tl.load(k + offset, mask=mask, other=0.0)
    k_h = tl.load(k + offset + H, mask=mask, other=0.0)
    z = 1.0 / (1.0 + tl.exp(-k_z))
    s = 1.0 / (1.0 + tl.exp(-k_h))
    candidate = tl.where(k_h >= 0, k_h + 0.5, s)
    slope = tl.where(k_h >= 0, 1.0, s * (1.0 - s))
    return z, candidate, slope, offset


@triton.jit
def chunk_summary(k, A, S, T, rows, H, CHUNK: tl.constexpr, BLOCK: tl.constexpr, DTYPE: tl.constexpr):
    """A[c, n] = prod over chunk c of (1 - z_t); S[c, n] = the chunk's scan from a zero state."""
    c, n = tl.program_id(0), tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    N = rows * H
    mask = n < N
    product = tl.full((BLOCK,), 1.0, DTYPE)
    state = tl.zeros((BLOCK,), DTYPE)
    for t in range(c * CHUNK, tl.minimum(T, (c + 1) * CHUNK)):
        z, candidate, _, _ = _gates(k, t, rows, n, H, mask)
        state = state + z * (candidate - state)  # (1 - z) h + z h~
        product = product * (1.0 - z)
    tl.store(A + c * N + n, product, mask=mask)
    tl.store(S + c * N + n, state, mask=mask)


@triton.jit
def chunk_carry(A, S, h0, carry, chunks, N, BLOCK: tl.constexpr):
    """carry[c, n] = the state entering chunk c: carry[0] = h0, carry[c+1] = A_c carry[c] + S_c."""
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    state = tl.load(h0 + n, mask=mask, other=0.0)
    for c in range(chunks):
        tl.store(carry + c * N + n, state, mask=mask)
        state = tl.load(A + c * N + n, mask=mask, other=0.0) * state + tl.load(S + c * N + n, mask=mask, other=0.0)


@triton.jit
def chunk_apply(k, carry, h, T, rows, H, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """h[t, n] for the steps of chunk c, scanned from carry[c, n]."""
    c, n = tl.program_id(0), tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    N = rows * H
    mask = n < N
    state = tl.load(carry + c * N + n, mask=mask, other=0.0)
    for t in range(c * CHUNK, tl.minimum(T, (c + 1) * CHUNK)):
        z, candidate, _, _ = _gates(k, t, rows, n, H, mask)
        state = state + z * (candidate - state)
        tl.store(h + t * N + n, state, mask=mask)


@triton.jit
def reverse_summary(k, d_h, P, Q, T, rows, H, CHUNK: tl.constexpr, BLOCK: tl.constexpr, DTYPE: tl.constexpr):
    """For chunk c in reverse time from a zero carry: P = prod (1 - z_t), Q = the carry (1 - z) delta
    leaving the chunk's first step."""
    c, n = tl.program_id(0), tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    N = rows * H
    mask = n < N
    product = tl.full((BLOCK,), 1.0, DTYPE)
    leaving = tl.zeros((BLOCK,), DTYPE)
    end = tl.minimum(T, (c + 1) * CHUNK)
    for i in range(0, end - c * CHUNK):
        t = end - 1 - i
        z, _, _, _ = _gates(k, t, rows, n, H, mask)
        delta = tl.load(d_h + t * N + n, mask=mask, other=0.0) + leaving
        leaving = (1.0 - z) * delta
        product = product * (1.0 - z)
    tl.store(P + c * N + n, product, mask=mask)
    tl.store(Q + c * N + n, leaving, mask=mask)


@triton.jit
def reverse_carry(P, Q, carry, d_h0, chunks, N, BLOCK: tl.constexpr, DTYPE: tl.constexpr):
    """carry[c, n] = the carry entering chunk c from its right (zero for the last chunk); d_h0 = the one
    leaving chunk 0, (1 - z_1) delta_1."""
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    state = tl.zeros((BLOCK,), DTYPE)
    for i in range(chunks):
        c = chunks - 1 - i
        tl.store(carry + c * N + n, state, mask=mask)
        state = tl.load(P + c * N + n, mask=mask, other=0.0) * state + tl.load(Q + c * N + n, mask=mask, other=0.0)
    tl.store(d_h0 + n, state, mask=mask)


@triton.jit
def reverse_apply(k, d_h, h, h0, carry, d_k, T, rows, H, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """dL/dk for the steps of chunk c:
    delta_t = d_h_t + carry; d_k_z = delta (h~ - h_{t-1}) z (1 - z); d_k_h = delta z g'(k_h)."""
    c, n = tl.program_id(0), tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    N = rows * H
    mask = n < N
    leaving = tl.load(carry + c * N + n, mask=mask, other=0.0)
    end = tl.minimum(T, (c + 1) * CHUNK)
    for i in range(0, end - c * CHUNK):
        t = end - 1 - i
        z, candidate, slope, offset = _gates(k, t, rows, n, H, mask)
        delta = tl.load(d_h + t * N + n, mask=mask, other=0.0) + leaving
        if t > 0:
            previous = tl.load(h + (t - 1) * N + n, mask=mask, other=0.0)
        else:
            previous = tl.load(h0 + n, mask=mask, other=0.0)
        tl.store(d_k + offset, delta * (candidate - previous) * z * (1.0 - z), mask=mask)
        tl.store(d_k + offset + H, delta * z * slope, mask=mask)
        leaving = (1.0 - z) * delta
