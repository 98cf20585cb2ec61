"""The GRU's arithmetic for Triton kernels: helpers and the element-wise passes of one step.

Both designs of the triton backend are built from these functions, so they compute the same
numbers in the same order: the persistent kernels (``triton_kernels``: one launch runs every step)
and the per-step kernels (``triton_step_kernels``: cuBLAS does the recurrent products between
launches). A pass handles ``BLOCK_B`` batch rows and walks the units in column blocks of
``BLOCK_N`` from ``col_start`` in strides of ``col_step`` (0 and BLOCK_N: all H units; the per-step
kernels without layer norm split the units across programs); the caller orders a pass after the
writes it reads (a barrier or a new launch).

Forward (Cho et al. 2014; gate order r, z, n; ``~h = h_{t-1} * m`` with m the recurrent-dropout
mask or 1; ``P(v) = v`` or, with layer norm, ``LN(v) * gamma_hh + beta_hh`` over the segment's units)::

    reset after  (one product over 3H):   g = P(~h W_hh^T) + b_hh
        r = sigmoid(gi_r + g_r),  z = sigmoid(gi_z + g_z),  n = tanh(gi_n + r * g_n)
    reset before (2H, then H):           g_rz = P(~h W_hr,z^T) + b_hr,z
        r, z as above,  n = tanh(gi_n + P((r * ~h) W_hn^T) + b_hn)
    keeps_state:  h' = n + z (h - n)      takes_candidate:  h' = h + z (n - h)
    zoneout:      h_t = k h_{t-1} + (1 - k) h'   (k: drawn 0/1, given 0/1, or the probability)
    lengths:      a row past its length keeps its state; its output is 0

``gi`` (the input projection of every step, one large GEMM) is computed by the caller, and the
weight gradients are GEMMs over all steps after the backward loop (Haste's and cuDNN's layout of
the work). Equations and their derivatives: ``grukit.reference``.

Buffers are indexed by time t for what the caller sees (gi, out, d_gi) and by processing
step s for what is saved (s = t forward, s = T - 1 - t reversed): ``hs[s]`` is the state before
step s, ``hs[T]`` the final state. Saved per step: gates [T, B, 3H] (r, z, n), ghraw [T, B, 3H]
(the recurrent products before layer norm and bias), rhd [T, B, H] (r * ~h, reset before),
stats [T, B, 4] (layer norm's mean and 1/std of the r,z / n segments, or of all 3H at slot 0).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .. import reference

# zoneout modes (constexpr ZONEOUT)
ZONEOUT_NONE, ZONEOUT_EXPECTED, ZONEOUT_DRAWN, ZONEOUT_GIVEN = 0, 1, 2, 3
LN_EPS = tl.constexpr(reference.LN_EPS)  # a Triton constant: the compiler refuses a plain global


@triton.jit
def _sigmoid(v):
    return 1.0 / (1.0 + tl.exp(-v))


@triton.jit
def _tanh(v):
    # tanh(v) = 2 sigmoid(2v) - 1, in the dtype of v (float64 stays float64)
    return 2.0 / (1.0 + tl.exp(-2.0 * v)) - 1.0


@triton.jit
def _zoneout_keep(zmask, zoneout_p, zoneout_threshold, seed, t, rows, cols, B, H, mask2, ZONEOUT: tl.constexpr, like):
    """k [BLOCK_B, BLOCK_N], zoneout's weight of h_{t-1}: p everywhere (evaluation, ``zoneout_p``), a
    drawn 0/1, or the given mask's.

    Drawn: splitmix64's mixer of (seed, (t * B + row) * H + col), the same bits as the CPU
    kernel's for a call without lengths, compared with ``zoneout_threshold`` = p * 2^32 (an
    integer, computed on the host exactly as the CPU kernel does).
    """
    if ZONEOUT == 1:
        k = tl.zeros_like(like) + zoneout_p
    elif ZONEOUT == 2:
        index = ((t * B + rows[:, None]).to(tl.uint64) * H + cols[None, :].to(tl.uint64)).to(tl.uint64)
        z = seed.to(tl.uint64) + (index + 1) * 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        z = z ^ (z >> 31)
        k = tl.where((z >> 32) < zoneout_threshold.to(tl.uint64), 1.0, 0.0).to(like.dtype)
    else:
        k = tl.load(zmask + (t * B + rows[:, None]) * H + cols[None, :], mask=mask2, other=0.0)
    return k


@triton.jit
def product_tile(
    src,
    src_stride,
    rmask,
    w,
    w_row0,
    rows,
    row_ok,
    cols,
    col_ok,
    H,
    APPLY_RMASK: tl.constexpr,
    TRANSPOSED: tl.constexpr,
    K,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """acc [BLOCK_B, BLOCK_N] = src[rows, :K] @ W-block, src's rows ``src_stride`` apart.

    TRANSPOSED: acc[b, c] = sum_k src[b, k] * W[w_row0 + c, k], read from w = W^T [H, 3H] (so
                a tile's rows are contiguous: coalesced loads);
    else:       acc[b, c] = sum_k src[b, k] * w[w_row0 + k, c]   (w = W [3H, H]).
    With APPLY_RMASK, src's elements are first multiplied by rmask [B, K] (the state's mask).
    """
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=src.dtype.element_ty)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k_ok = kk < K
        a_mask = row_ok[:, None] & k_ok[None, :]
        a = tl.load(src + rows[:, None] * src_stride + kk[None, :], mask=a_mask, other=0.0)
        if APPLY_RMASK:
            a = a * tl.load(rmask + rows[:, None] * K + kk[None, :], mask=a_mask, other=0.0)
        w_mask = k_ok[:, None] & col_ok[None, :]
        if TRANSPOSED:
            b = tl.load(w + kk[:, None] * (3 * H) + (w_row0 + cols[None, :]), mask=w_mask, other=0.0)
        else:
            b = tl.load(w + (w_row0 + kk[:, None]) * H + cols[None, :], mask=w_mask, other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    return acc


@triton.jit
def _normalise(v, stats, s, rows, row_ok, B, slot: tl.constexpr, g, beta, gb_cols, col_ok):
    """LN(v) * gamma + beta with the row's saved mean and 1/std (``stats[s, row, slot:slot+2]``)."""
    mean = tl.load(stats + (s * B + rows) * 4 + slot, mask=row_ok, other=0.0)
    rstd = tl.load(stats + (s * B + rows) * 4 + slot + 1, mask=row_ok, other=0.0)
    gamma = tl.load(g + gb_cols, mask=col_ok, other=0.0)
    shift = tl.load(beta + gb_cols, mask=col_ok, other=0.0)
    return (v - mean[:, None]) * rstd[:, None] * gamma[None, :] + shift[None, :]


@triton.jit
def raw_products_pass(
    src,
    rmask,
    w,
    ghraw,
    stats,
    s,
    rows,
    row_ok,
    B,
    H,
    gate0: tl.constexpr,
    gates: tl.constexpr,
    src_is_state: tl.constexpr,
    slot: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    HAS_LN: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Store src @ W[gate0*H : (gate0+gates)*H]^T into ghraw[s] (its columns gate0*H ...), and
    with layer norm the segment's mean and 1/std into stats[s, :, slot:slot+2]."""
    total = tl.zeros((BLOCK_B,), dtype=ghraw.dtype.element_ty)
    total_sq = tl.zeros((BLOCK_B,), dtype=ghraw.dtype.element_ty)
    width = gates * H
    for c0 in range(0, width, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < width
        acc = product_tile(
            src,
            H,
            rmask,
            w,
            gate0 * H,
            rows,
            row_ok,
            cols,
            col_ok,
            H,
            HAS_RMASK and src_is_state,
            True,
            H,
            BLOCK_B,
            BLOCK_N,
            BLOCK_K,
            PRECISION,
        )
        mask2 = row_ok[:, None] & col_ok[None, :]
        tl.store(ghraw + (s * B + rows[:, None]) * 3 * H + gate0 * H + cols[None, :], acc, mask=mask2)
        if HAS_LN:
            acc = tl.where(mask2, acc, 0.0)
            total += tl.sum(acc, axis=1)
            total_sq += tl.sum(acc * acc, axis=1)
    if HAS_LN:
        _store_ln_stats(total, total_sq, width, stats, s, rows, row_ok, B, slot)


@triton.jit
def _projected(
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    s,
    rows,
    row_ok,
    cols,
    col_ok,
    B,
    H,
    gate: tl.constexpr,
    slot: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
):
    """P(raw) + b_hh for gate ``gate``'s units ``cols`` at step s (see the module doc)."""
    mask2 = row_ok[:, None] & col_ok[None, :]
    v = tl.load(ghraw + (s * B + rows[:, None]) * 3 * H + gate * H + cols[None, :], mask=mask2, other=0.0)
    if HAS_LN:
        v = _normalise(v, stats, s, rows, row_ok, B, slot, ln_g, ln_b, gate * H + cols, col_ok)
    if HAS_BIAS:
        v = v + tl.load(b_hh + gate * H + cols, mask=col_ok, other=0.0)[None, :]
    return v


@triton.jit
def _reset_and_update_gates(
    gi_row,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    saved,
    s,
    rows,
    row_ok,
    cols,
    col_ok,
    B,
    H,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
):
    """r = sigmoid(gi_r + P(~h U_r^T) + b_hr) and z likewise for the units ``cols`` of step s, stored
    in the saved gates (``saved`` points at their r columns) and returned."""
    mask2 = row_ok[:, None] & col_ok[None, :]
    r = _sigmoid(
        tl.load(gi_row, mask=mask2, other=0.0)
        + _projected(ghraw, stats, b_hh, ln_g, ln_b, s, rows, row_ok, cols, col_ok, B, H, 0, 0, HAS_BIAS, HAS_LN)
    )
    z = _sigmoid(
        tl.load(gi_row + H, mask=mask2, other=0.0)
        + _projected(ghraw, stats, b_hh, ln_g, ln_b, s, rows, row_ok, cols, col_ok, B, H, 1, 0, HAS_BIAS, HAS_LN)
    )
    tl.store(saved, r, mask=mask2)
    tl.store(saved + H, z, mask=mask2)
    return r, z


@triton.jit
def _store_ln_stats(total, total_sq, width, stats, s, rows, row_ok, B, slot: tl.constexpr):
    """Layer norm's mean and 1/std of a segment ``width`` wide from its row sums and sums of squares."""
    mean = total / width
    var = tl.maximum(total_sq / width - mean * mean, 0.0)
    rstd = 1.0 / tl.sqrt(var + LN_EPS)
    tl.store(stats + (s * B + rows) * 4 + slot, mean, mask=row_ok)
    tl.store(stats + (s * B + rows) * 4 + slot + 1, rstd, mask=row_ok)


@triton.jit
def ln_stats_pass(
    ghraw,
    stats,
    s,
    rows,
    row_ok,
    B,
    H,
    gate0: tl.constexpr,
    gates: tl.constexpr,
    slot: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Layer norm's statistics of the products ghraw[s] already stored (columns gate0*H, ``gates``
    gates wide) into stats[s, :, slot:slot+2]: the per-step design, where cuBLAS made the products."""
    total = tl.zeros((BLOCK_B,), dtype=ghraw.dtype.element_ty)
    total_sq = tl.zeros((BLOCK_B,), dtype=ghraw.dtype.element_ty)
    width = gates * H
    for c0 in range(0, width, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        mask2 = row_ok[:, None] & (cols < width)[None, :]
        v = tl.load(ghraw + (s * B + rows[:, None]) * 3 * H + gate0 * H + cols[None, :], mask=mask2, other=0.0)
        total += tl.sum(v, axis=1)
        total_sq += tl.sum(v * v, axis=1)
    _store_ln_stats(total, total_sq, width, stats, s, rows, row_ok, B, slot)


@triton.jit
def forward_reset_gates_pass(
    gi,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    gates,
    rhd,
    rmask,
    state,
    s,
    t,
    rows,
    row_ok,
    B,
    H,
    col_start,
    col_step,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Reset before, between the two products: r and z, then rhd[s] = r * ~h, the input of the
    candidate's product. ``state`` points at h_{t-1} [B, H]."""
    for c0 in range(col_start, H, col_step):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < H
        mask2 = row_ok[:, None] & col_ok[None, :]
        gi_row = gi + (t * B + rows[:, None]) * 3 * H + cols[None, :]
        saved = gates + (s * B + rows[:, None]) * 3 * H + cols[None, :]
        r, z = _reset_and_update_gates(
            gi_row, ghraw, stats, b_hh, ln_g, ln_b, saved, s, rows, row_ok, cols, col_ok, B, H, HAS_BIAS, HAS_LN
        )
        h_tilde = tl.load(state + rows[:, None] * H + cols[None, :], mask=mask2, other=0.0)
        if HAS_RMASK:
            h_tilde = h_tilde * tl.load(rmask + rows[:, None] * H + cols[None, :], mask=mask2, other=0.0)
        tl.store(rhd + (s * B + rows[:, None]) * H + cols[None, :], r * h_tilde, mask=mask2)


@triton.jit
def forward_state_pass(
    gi,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    gates,
    rmask,
    zmask,
    zoneout_p,
    zoneout_threshold,
    seed,
    hs,
    out,
    htilde_next,
    s,
    t,
    rows,
    row_ok,
    active,
    B,
    H,
    col_start,
    col_step,
    RESET_AFTER: tl.constexpr,
    KEEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    ZONEOUT: tl.constexpr,
    STORE_HTILDE: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The last pass of a step: (reset after: r, z,) the candidate n and the new state into
    hs[s + 1] and out[t]; ``active`` [BLOCK_B] marks the rows still inside their length. With
    STORE_HTILDE, also htilde_next [B, H] = hs[s + 1] * m (the next product's input, per-step design)."""
    state = hs + s * B * H
    for c0 in range(col_start, H, col_step):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < H
        mask2 = row_ok[:, None] & col_ok[None, :]
        gi_row = gi + (t * B + rows[:, None]) * 3 * H + cols[None, :]
        saved = gates + (s * B + rows[:, None]) * 3 * H + cols[None, :]
        h = tl.load(state + rows[:, None] * H + cols[None, :], mask=mask2, other=0.0)
        if RESET_AFTER:
            r, z = _reset_and_update_gates(
                gi_row, ghraw, stats, b_hh, ln_g, ln_b, saved, s, rows, row_ok, cols, col_ok, B, H, HAS_BIAS, HAS_LN
            )
            g_n = _projected(
                ghraw, stats, b_hh, ln_g, ln_b, s, rows, row_ok, cols, col_ok, B, H, 2, 0, HAS_BIAS, HAS_LN
            )
            # n = tanh(gi_n + r * (P(~h U_n^T) + b_hn))
            n = _tanh(tl.load(gi_row + 2 * H, mask=mask2, other=0.0) + r * g_n)
        else:
            z = tl.load(saved + H, mask=mask2, other=0.0)
            # n = tanh(gi_n + P((r * ~h) U_n^T) + b_hn)
            n = _tanh(
                tl.load(gi_row + 2 * H, mask=mask2, other=0.0)
                + _projected(
                    ghraw, stats, b_hh, ln_g, ln_b, s, rows, row_ok, cols, col_ok, B, H, 2, 2, HAS_BIAS, HAS_LN
                )
            )
        tl.store(saved + 2 * H, n, mask=mask2)
        if KEEPS:
            h_new = n + z * (h - n)  # h' = z h + (1 - z) n
        else:
            h_new = h + z * (n - h)  # h' = (1 - z) h + z n
        if ZONEOUT != 0:
            k = _zoneout_keep(zmask, zoneout_p, zoneout_threshold, seed, t, rows, cols, B, H, mask2, ZONEOUT, h)
            h_new = k * h + (1.0 - k) * h_new  # h_t = k h_{t-1} + (1 - k) h'
        act = active[:, None] & col_ok[None, :]
        h_next = tl.where(act, h_new, h)
        tl.store(hs + ((s + 1) * B + rows[:, None]) * H + cols[None, :], h_next, mask=mask2)
        tl.store(out + (t * B + rows[:, None]) * H + cols[None, :], tl.where(act, h_new, 0.0), mask=mask2)
        if STORE_HTILDE:
            m = tl.load(rmask + rows[:, None] * H + cols[None, :], mask=mask2, other=0.0)
            tl.store(htilde_next + rows[:, None] * H + cols[None, :], h_next * m, mask=mask2)


@triton.jit
def _ln_dxhat_xhat(dpost, ghraw, ln_g, at, gamma_cols, col_ok, mask2, mean, rstd):
    """dxhat = dpost * gamma and xhat = (v - mean) * rstd at the offsets ``at`` of one column block."""
    dxhat = tl.load(dpost + at, mask=mask2, other=0.0) * tl.load(ln_g + gamma_cols, mask=col_ok, other=0.0)[None, :]
    xhat = (tl.load(ghraw + at, mask=mask2, other=0.0) - mean[:, None]) * rstd[:, None]
    return dxhat, xhat


@triton.jit
def ln_backward_pass(
    dpost,
    dpre,
    ghraw,
    stats,
    ln_g,
    s,
    rows,
    row_ok,
    B,
    H,
    gate0: tl.constexpr,
    gates: tl.constexpr,
    slot: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """dpre = d LN(v)/dv applied to dpost over the segment of ``gates`` gates from ``gate0``:
    with xhat = (v - mean) * rstd and dxhat = dpost * gamma,
    dv = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
    width = gates * H
    mean = tl.load(stats + (s * B + rows) * 4 + slot, mask=row_ok, other=0.0)
    rstd = tl.load(stats + (s * B + rows) * 4 + slot + 1, mask=row_ok, other=0.0)
    sum_d = tl.zeros((BLOCK_B,), dtype=dpost.dtype.element_ty)
    sum_dx = tl.zeros((BLOCK_B,), dtype=dpost.dtype.element_ty)
    for c0 in range(0, width, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < width
        mask2 = row_ok[:, None] & col_ok[None, :]
        at = (s * B + rows[:, None]) * 3 * H + gate0 * H + cols[None, :]
        dxhat, xhat = _ln_dxhat_xhat(dpost, ghraw, ln_g, at, gate0 * H + cols, col_ok, mask2, mean, rstd)
        sum_d += tl.sum(tl.where(mask2, dxhat, 0.0), axis=1)
        sum_dx += tl.sum(tl.where(mask2, dxhat * xhat, 0.0), axis=1)
    mean_d = sum_d / width
    mean_dx = sum_dx / width
    for c0 in range(0, width, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < width
        mask2 = row_ok[:, None] & col_ok[None, :]
        at = (s * B + rows[:, None]) * 3 * H + gate0 * H + cols[None, :]
        dxhat, xhat = _ln_dxhat_xhat(dpost, ghraw, ln_g, at, gate0 * H + cols, col_ok, mask2, mean, rstd)
        tl.store(dpre + at, rstd[:, None] * (dxhat - mean_d[:, None] - xhat * mean_dx[:, None]), mask=mask2)


@triton.jit
def backward_state_pass(
    d_out,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    gates,
    rmask,
    zmask,
    zoneout_p,
    zoneout_threshold,
    seed,
    state,
    direct_in,
    htilde_in,
    direct_out,
    d_gi,
    dpost,
    s,
    t,
    rows,
    row_ok,
    active,
    B,
    H,
    col_start,
    col_step,
    RESET_AFTER: tl.constexpr,
    KEEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    ZONEOUT: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The first pass of a backward step: through the state update, the candidate and the update
    gate (and, reset after, the reset gate). With dh the gradient of h_t, the sum of
    ``direct_in`` (through the state), ``htilde_in * m`` (through the products) and d_out[t]
    where the row is active::

        dh' = (1 - k) dh;     keeps: dn = dh' (1 - z), dz = dh' (h - n), dh_{t-1} = dh' z + k dh
                              takes: dn = dh' z, dz = dh' (n - h), dh_{t-1} = dh' (1 - z) + k dh
        dn_pre = dn (1 - n^2);  dz_pre = dz z (1 - z)
        reset after:  dr_pre = dn_pre g_n r (1 - r),  d g_n = dn_pre r

    Writes direct_out (dh_{t-1} through the state; dh itself where the row is inactive), the
    z and n (and r) blocks of d_gi[t], and the gradient of the products after layer norm, ``dpost``[s].
    """
    for c0 in range(col_start, H, col_step):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < H
        mask2 = row_ok[:, None] & col_ok[None, :]
        act = active[:, None] & col_ok[None, :]
        at = rows[:, None] * H + cols[None, :]
        dh = tl.load(direct_in + at, mask=mask2, other=0.0)
        d_ht = tl.load(htilde_in + at, mask=mask2, other=0.0)
        if HAS_RMASK:
            d_ht = d_ht * tl.load(rmask + at, mask=mask2, other=0.0)
        dh = (
            dh
            + d_ht
            + tl.where(act, tl.load(d_out + (t * B + rows[:, None]) * H + cols[None, :], mask=mask2, other=0.0), 0.0)
        )
        h = tl.load(state + at, mask=mask2, other=0.0)
        saved = gates + (s * B + rows[:, None]) * 3 * H + cols[None, :]
        r = tl.load(saved, mask=mask2, other=0.0)
        z = tl.load(saved + H, mask=mask2, other=0.0)
        n = tl.load(saved + 2 * H, mask=mask2, other=0.0)
        if ZONEOUT != 0:
            k = _zoneout_keep(zmask, zoneout_p, zoneout_threshold, seed, t, rows, cols, B, H, mask2, ZONEOUT, h)
            d_new = (1.0 - k) * dh
            d_prev = k * dh
        else:
            d_new = dh
            d_prev = tl.zeros_like(dh)
        if KEEPS:
            dn = d_new * (1.0 - z)
            dz = d_new * (h - n)
            d_prev += d_new * z
        else:
            dn = d_new * z
            dz = d_new * (n - h)
            d_prev += d_new * (1.0 - z)
        dn_pre = tl.where(act, dn * (1.0 - n * n), 0.0)
        dz_pre = tl.where(act, dz * z * (1.0 - z), 0.0)
        tl.store(direct_out + at, tl.where(act, d_prev, dh), mask=mask2)
        gi_at = (t * B + rows[:, None]) * 3 * H + cols[None, :]
        tl.store(d_gi + gi_at + H, dz_pre, mask=mask2)
        tl.store(d_gi + gi_at + 2 * H, dn_pre, mask=mask2)
        post = (s * B + rows[:, None]) * 3 * H + cols[None, :]
        tl.store(dpost + post + H, dz_pre, mask=mask2)
        if RESET_AFTER:
            g_n = _projected(
                ghraw, stats, b_hh, ln_g, ln_b, s, rows, row_ok, cols, col_ok, B, H, 2, 0, HAS_BIAS, HAS_LN
            )
            dr_pre = tl.where(act, dn_pre * g_n * r * (1.0 - r), 0.0)
            tl.store(d_gi + gi_at, dr_pre, mask=mask2)
            tl.store(dpost + post, dr_pre, mask=mask2)
            tl.store(dpost + post + 2 * H, dn_pre * r, mask=mask2)
        else:
            tl.store(dpost + post + 2 * H, dn_pre, mask=mask2)


@triton.jit
def reset_before_dr_block(
    acc, state, rmask, gates, d_gi, dpost, d_rhd, s, t, rows, row_ok, cols, col_ok, B, H, HAS_RMASK: tl.constexpr
):
    """Reset before, one column block: from acc = d(r ~h) = P'(d g_n) W_hn, the reset gate's
    gradient dr_pre = acc ~h r (1 - r) (into d_gi[t] and dpost[s]) and d_rhd = acc r, the part of
    d~h that comes through the candidate's product."""
    mask2 = row_ok[:, None] & col_ok[None, :]
    at = rows[:, None] * H + cols[None, :]
    h_tilde = tl.load(state + at, mask=mask2, other=0.0)
    if HAS_RMASK:
        h_tilde = h_tilde * tl.load(rmask + at, mask=mask2, other=0.0)
    r = tl.load(gates + (s * B + rows[:, None]) * 3 * H + cols[None, :], mask=mask2, other=0.0)
    dr_pre = acc * h_tilde * r * (1.0 - r)
    tl.store(d_gi + (t * B + rows[:, None]) * 3 * H + cols[None, :], dr_pre, mask=mask2)
    tl.store(dpost + (s * B + rows[:, None]) * 3 * H + cols[None, :], dr_pre, mask=mask2)
    tl.store(d_rhd + at, acc * r, mask=mask2)
