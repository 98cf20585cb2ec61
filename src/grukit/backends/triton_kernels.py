"""Persistent Triton kernels of the GRU's time loop: one launch runs every step of a layer-direction.

Each program owns ``BLOCK_B`` batch rows and all H units and walks the time steps itself: rows
of a batch are independent, so programs never wait for each other, and one launch replaces the
per-step launches of a Python loop. Within a program a step is a few passes over column blocks
of ``BLOCK_N`` units (``triton_passes``, where the equations are); a pass that reads what an
earlier pass of the same step wrote (all units of a row) comes after a barrier
(``tl.debug_barrier``), which orders the program's global-memory writes before its later reads.
The recurrent products are computed inside the program with ``tl.dot`` (``product_tile``).

This design wins where there is little work per step (small batch and hidden size): it pays no
launch per step. Its limit is that one multiprocessor does all 3H x H products of its rows, so
large H or B leave the GPU mostly idle; ``triton_step_kernels`` is the other design.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_passes import (  # noqa: F401  (the zoneout modes, for the backend)
    ZONEOUT_DRAWN,
    ZONEOUT_EXPECTED,
    ZONEOUT_GIVEN,
    ZONEOUT_NONE,
    backward_state_pass,
    forward_reset_gates_pass,
    forward_state_pass,
    ln_backward_pass,
    product_tile,
    raw_products_pass,
    reset_before_dr_block,
)


@triton.jit
def gru_forward_kernel(
    gi,
    w_hh_t,
    b_hh,
    ln_g,
    ln_b,
    rmask,
    zmask,
    lengths,
    seed_ptr,
    hs,
    out,
    gates,
    ghraw,
    rhd,
    stats,
    T,
    B,
    H,
    zoneout_p,
    zoneout_threshold,
    REVERSE: tl.constexpr,
    RESET_AFTER: tl.constexpr,
    KEEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    ZONEOUT: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Every step of one layer-direction for rows [pid * BLOCK_B, ...).

    gi [T, B, 3H] (input projection with b_ih); w_hh_t [H, 3H] (W_hh transposed, contiguous);
    b_hh, ln_g, ln_b [3H]; rmask [B, H]; zmask [T, B, H] (given zoneout mask); lengths [B] int64;
    seed_ptr [1] int64 (drawn zoneout's seed). Writes hs [T+1, B, H] (hs[0] = h0 on entry),
    out [T, B, H], and for the backward pass gates, ghraw, rhd and stats (``triton_passes``).
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    seed = tl.load(seed_ptr)
    if HAS_LENGTHS:
        length = tl.load(lengths + rows, mask=row_ok, other=0)
    for s in range(T):
        if REVERSE:
            t = T - 1 - s
        else:
            t = s
        if HAS_LENGTHS:
            active = t < length
        else:
            active = row_ok
        state = hs + s * B * H  # [B, H] h_{t-1}
        # the recurrent products of r and z (reset before: 2 gates) or of all three gates (after)
        raw_products_pass(
            state, rmask, w_hh_t, ghraw, stats, s, rows, row_ok, B, H, 0, 2 + RESET_AFTER, True, 0,
            HAS_RMASK, HAS_LN, BLOCK_B, BLOCK_N, BLOCK_K, PRECISION,
        )  # fmt: skip
        tl.debug_barrier()
        if not RESET_AFTER:
            forward_reset_gates_pass(
                gi, ghraw, stats, b_hh, ln_g, ln_b, gates, rhd, rmask, state, s, t, rows, row_ok, B, H, 0, BLOCK_N,
                HAS_BIAS, HAS_LN, HAS_RMASK, BLOCK_N,
            )  # fmt: skip
            tl.debug_barrier()
            # (r * ~h) W_hn^T
            raw_products_pass(
                rhd + s * B * H, rmask, w_hh_t, ghraw, stats, s, rows, row_ok, B, H, 2, 1, False, 2,
                HAS_RMASK, HAS_LN, BLOCK_B, BLOCK_N, BLOCK_K, PRECISION,
            )  # fmt: skip
            tl.debug_barrier()
        forward_state_pass(
            gi, ghraw, stats, b_hh, ln_g, ln_b, gates, rmask, zmask, zoneout_p, zoneout_threshold, seed, hs, out, hs,
            s, t, rows, row_ok, active, B, H, 0, BLOCK_N,
            RESET_AFTER, KEEPS, HAS_BIAS, HAS_LN, HAS_RMASK, ZONEOUT, False, BLOCK_N,
        )  # fmt: skip
        tl.debug_barrier()


@triton.jit
def gru_backward_kernel(
    d_out,
    w_hh,
    b_hh,
    ln_g,
    ln_b,
    rmask,
    zmask,
    lengths,
    seed_ptr,
    hs,
    gates,
    ghraw,
    rhd,
    stats,
    d_gi,
    d_gh,
    d_gh_post,
    d_direct,
    d_htilde,
    d_rhd,
    T,
    B,
    H,
    zoneout_p,
    zoneout_threshold,
    REVERSE: tl.constexpr,
    RESET_AFTER: tl.constexpr,
    KEEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    ZONEOUT: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """The steps of :func:`gru_forward_kernel` in reverse, for rows [pid * BLOCK_B, ...).

    d_out [T, B, H]: gradient of the output. On entry d_direct[0] [B, H] holds the gradient of
    the final state and d_htilde[0] zeros; on exit d_direct[T % 2] and d_htilde[T % 2] hold the
    two parts of the gradient of h0 (h0's gradient = d_direct + d_htilde * m). Writes d_gi
    [T, B, 3H] (time order; 0 at inactive steps), d_gh [T, B, 3H] (gradient of the products
    before layer norm, processing order: the weight gradients' GEMM input), d_gh_post (the same
    after layer norm, for the bias and layer-norm gradients; only with layer norm), d_rhd [B, H]
    (scratch, reset before).

    Per step, after :func:`backward_state_pass` (P' is layer norm's backward, or the identity):
        reset after:  d~h = P'(d g) W_hh
        reset before: d(r ~h) = P'(d g_n) W_hn,  dr = d(r ~h) ~h,  d~h = P'(d g_rz) W_hr,z + d(r ~h) r
    and dh_{t-1} gets d~h m at the next step's first pass.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    seed = tl.load(seed_ptr)
    if HAS_LENGTHS:
        length = tl.load(lengths + rows, mask=row_ok, other=0)
    if HAS_LN:
        dpost = d_gh_post
    else:
        dpost = d_gh
    for step in range(T):
        s = T - 1 - step
        if REVERSE:
            t = T - 1 - s
        else:
            t = s
        if HAS_LENGTHS:
            active = t < length
        else:
            active = row_ok
        parity_in = step % 2
        direct_in = d_direct + parity_in * B * H
        direct_out = d_direct + (1 - parity_in) * B * H
        htilde_in = d_htilde + parity_in * B * H
        htilde_out = d_htilde + (1 - parity_in) * B * H
        state = hs + s * B * H
        backward_state_pass(
            d_out, ghraw, stats, b_hh, ln_g, ln_b, gates, rmask, zmask, zoneout_p, zoneout_threshold, seed, state,
            direct_in, htilde_in, direct_out, d_gi, dpost, s, t, rows, row_ok, active, B, H, 0, BLOCK_N,
            RESET_AFTER, KEEPS, HAS_BIAS, HAS_LN, HAS_RMASK, ZONEOUT, BLOCK_N,
        )  # fmt: skip
        tl.debug_barrier()
        if RESET_AFTER:
            if HAS_LN:
                ln_backward_pass(d_gh_post, d_gh, ghraw, stats, ln_g, s, rows, row_ok, B, H,
                                 gate0=0, gates=3, slot=0, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)  # fmt: skip
                tl.debug_barrier()
            # d~h = d_gh[s] W_hh  (all three gates)
            for c0 in range(0, H, BLOCK_N):
                cols = c0 + tl.arange(0, BLOCK_N)
                col_ok = cols < H
                acc = product_tile(
                    d_gh + s * B * 3 * H, 3 * H, rmask, w_hh, 0, rows, row_ok, cols, col_ok, H,
                    False, False, 3 * H, BLOCK_B, BLOCK_N, BLOCK_K, PRECISION,
                )  # fmt: skip
                tl.store(htilde_out + rows[:, None] * H + cols[None, :], acc, mask=row_ok[:, None] & col_ok[None, :])
        else:
            if HAS_LN:
                ln_backward_pass(d_gh_post, d_gh, ghraw, stats, ln_g, s, rows, row_ok, B, H,
                                 gate0=2, gates=1, slot=2, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)  # fmt: skip
                tl.debug_barrier()
            for c0 in range(0, H, BLOCK_N):
                cols = c0 + tl.arange(0, BLOCK_N)
                col_ok = cols < H
                # d(r ~h): d_gh[s]'s n block ([B, H] at column 2H of rows 3H long) times W_hn
                acc = product_tile(
                    d_gh + s * B * 3 * H + 2 * H, 3 * H, rmask, w_hh, 2 * H, rows, row_ok, cols, col_ok, H,
                    False, False, H, BLOCK_B, BLOCK_N, BLOCK_K, PRECISION,
                )  # fmt: skip
                reset_before_dr_block(
                    acc, state, rmask, gates, d_gi, dpost, d_rhd, s, t, rows, row_ok, cols, col_ok, B, H, HAS_RMASK
                )
            tl.debug_barrier()
            if HAS_LN:
                ln_backward_pass(d_gh_post, d_gh, ghraw, stats, ln_g, s, rows, row_ok, B, H,
                                 gate0=0, gates=2, slot=0, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)  # fmt: skip
                tl.debug_barrier()
            for c0 in range(0, H, BLOCK_N):
                cols = c0 + tl.arange(0, BLOCK_N)
                col_ok = cols < H
                mask2 = row_ok[:, None] & col_ok[None, :]
                at = rows[:, None] * H + cols[None, :]
                acc = product_tile(
                    d_gh + s * B * 3 * H, 3 * H, rmask, w_hh, 0, rows, row_ok, cols, col_ok, H,
                    False, False, 2 * H, BLOCK_B, BLOCK_N, BLOCK_K, PRECISION,
                )  # fmt: skip
                acc += tl.load(d_rhd + at, mask=mask2, other=0.0)
                tl.store(htilde_out + at, acc, mask=mask2)
        tl.debug_barrier()
