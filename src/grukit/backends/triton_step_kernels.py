"""Per-step Triton kernels: the element-wise work of one time step, between cuBLAS products.

The other design of the triton backend (``triton_kernels`` is the persistent one). Per step the
recurrent products run as cuBLAS matrix products over the whole batch (``triton_steps``), which
use every multiprocessor, and these kernels do the rest: Haste's and cuDNN's layout of the work
(one GEMM for the input projection of all steps; per step the recurrent GEMM(s) and a fused
element-wise kernel). The Python loop that launches them is recorded once in a CUDA graph and
replayed, so a step costs GPU time, not Python time.

Each program owns ``BLOCK_B`` batch rows and walks all H units (layer norm needs whole rows), with
the same passes as the persistent kernels (``triton_passes``), so both designs compute the same
numbers. Step index s (processing order) and time t come as arguments; the forward step of
the reset-before GRU is two launches (before and after the candidate's product), its backward
step too.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_passes import (
    backward_state_pass,
    forward_reset_gates_pass,
    forward_state_pass,
    ln_backward_pass,
    ln_stats_pass,
    reset_before_dr_block,
)


@triton.jit
def _rows_of_program(B, BLOCK_B: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    return rows, rows < B


@triton.jit
def _columns(SPLIT_COLUMNS: tl.constexpr, BLOCK_N: tl.constexpr):
    """(first column, stride) of this program's column blocks: with SPLIT_COLUMNS the units are
    dealt out over the grid's second axis (not with layer norm, which needs whole rows)."""
    if SPLIT_COLUMNS:
        start = tl.program_id(1) * BLOCK_N
        step = tl.num_programs(1) * BLOCK_N
    else:
        start = 0
        step = BLOCK_N
    return start, step


@triton.jit
def _active(lengths, t, rows, row_ok, HAS_LENGTHS: tl.constexpr):
    """[BLOCK_B]: the rows whose sequence has not ended at time t."""
    if HAS_LENGTHS:
        active = t < tl.load(lengths + rows, mask=row_ok, other=0)
    else:
        active = row_ok
    return active


@triton.jit
def step_forward_gates_kernel(
    gi,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    gates,
    rhd,
    rmask,
    hs,
    s,
    t,
    B,
    H,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    SPLIT_COLUMNS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Reset before, after the product ghraw[s, :, :2H] = ~h W_hr,z^T: r, z and rhd[s] = r * ~h."""
    rows, row_ok = _rows_of_program(B, BLOCK_B)
    col_start, col_step = _columns(SPLIT_COLUMNS, BLOCK_N)
    if HAS_LN:
        ln_stats_pass(ghraw, stats, s, rows, row_ok, B, H, gate0=0, gates=2, slot=0, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)
        tl.debug_barrier()
    forward_reset_gates_pass(
        gi, ghraw, stats, b_hh, ln_g, ln_b, gates, rhd, rmask, hs + s * B * H, s, t, rows, row_ok, B, H,
        col_start, col_step, HAS_BIAS, HAS_LN, HAS_RMASK, BLOCK_N,
    )  # fmt: skip


@triton.jit
def step_forward_state_kernel(
    gi,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    gates,
    rmask,
    zmask,
    lengths,
    seed_ptr,
    hs,
    out,
    htilde_next,
    s,
    t,
    B,
    H,
    zoneout_p,
    zoneout_threshold,
    RESET_AFTER: tl.constexpr,
    KEEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    ZONEOUT: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    SPLIT_COLUMNS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """After the last product of step s: the candidate and hs[s + 1], out[t]; with recurrent
    dropout also htilde_next [B, H] = hs[s + 1] * m, the next step's product input."""
    rows, row_ok = _rows_of_program(B, BLOCK_B)
    if HAS_LN:
        if RESET_AFTER:
            ln_stats_pass(
                ghraw, stats, s, rows, row_ok, B, H, gate0=0, gates=3, slot=0, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N
            )
        else:
            ln_stats_pass(
                ghraw, stats, s, rows, row_ok, B, H, gate0=2, gates=1, slot=2, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N
            )
        tl.debug_barrier()
    active = _active(lengths, t, rows, row_ok, HAS_LENGTHS)
    col_start, col_step = _columns(SPLIT_COLUMNS, BLOCK_N)
    forward_state_pass(
        gi, ghraw, stats, b_hh, ln_g, ln_b, gates, rmask, zmask, zoneout_p, zoneout_threshold, tl.load(seed_ptr),
        hs, out, htilde_next, s, t, rows, row_ok, active, B, H, col_start, col_step,
        RESET_AFTER, KEEPS, HAS_BIAS, HAS_LN, HAS_RMASK, ZONEOUT, HAS_RMASK, BLOCK_N,
    )  # fmt: skip


@triton.jit
def step_backward_state_kernel(
    d_out,
    ghraw,
    stats,
    b_hh,
    ln_g,
    ln_b,
    gates,
    rmask,
    zmask,
    lengths,
    seed_ptr,
    hs,
    direct_in,
    htilde_in,
    direct_out,
    d_gi,
    d_gh,
    d_gh_post,
    s,
    t,
    B,
    H,
    zoneout_p,
    zoneout_threshold,
    RESET_AFTER: tl.constexpr,
    KEEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    ZONEOUT: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    SPLIT_COLUMNS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The first launch of backward step s: ``backward_state_pass``, then with layer norm its
    backward over the gates whose product comes next (all three reset after, n reset before)."""
    rows, row_ok = _rows_of_program(B, BLOCK_B)
    active = _active(lengths, t, rows, row_ok, HAS_LENGTHS)
    col_start, col_step = _columns(SPLIT_COLUMNS, BLOCK_N)
    if HAS_LN:
        dpost = d_gh_post
    else:
        dpost = d_gh
    backward_state_pass(
        d_out, ghraw, stats, b_hh, ln_g, ln_b, gates, rmask, zmask, zoneout_p, zoneout_threshold, tl.load(seed_ptr),
        hs + s * B * H, direct_in, htilde_in, direct_out, d_gi, dpost, s, t, rows, row_ok, active, B, H,
        col_start, col_step, RESET_AFTER, KEEPS, HAS_BIAS, HAS_LN, HAS_RMASK, ZONEOUT, BLOCK_N,
    )  # fmt: skip
    if HAS_LN:
        tl.debug_barrier()
        if RESET_AFTER:
            ln_backward_pass(d_gh_post, d_gh, ghraw, stats, ln_g, s, rows, row_ok, B, H,
                             gate0=0, gates=3, slot=0, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)  # fmt: skip
        else:
            ln_backward_pass(d_gh_post, d_gh, ghraw, stats, ln_g, s, rows, row_ok, B, H,
                             gate0=2, gates=1, slot=2, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)  # fmt: skip


@triton.jit
def step_backward_reset_kernel(
    d_rhd_acc,
    ghraw,
    stats,
    ln_g,
    gates,
    rmask,
    hs,
    d_gi,
    d_gh,
    d_gh_post,
    d_rhd,
    s,
    t,
    B,
    H,
    HAS_LN: tl.constexpr,
    HAS_RMASK: tl.constexpr,
    SPLIT_COLUMNS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Reset before, after the product d_rhd_acc = d(r ~h) = P'(d g_n) W_hn [B, H]: the reset
    gate's gradient and d_rhd = d(r ~h) r (``reset_before_dr_block``), then with layer norm its
    backward over r and z."""
    rows, row_ok = _rows_of_program(B, BLOCK_B)
    if HAS_LN:
        dpost = d_gh_post
    else:
        dpost = d_gh
    state = hs + s * B * H
    col_start, col_step = _columns(SPLIT_COLUMNS, BLOCK_N)
    for c0 in range(col_start, H, col_step):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < H
        acc = tl.load(d_rhd_acc + rows[:, None] * H + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        reset_before_dr_block(
            acc, state, rmask, gates, d_gi, dpost, d_rhd, s, t, rows, row_ok, cols, col_ok, B, H, HAS_RMASK
        )
    if HAS_LN:
        tl.debug_barrier()
        ln_backward_pass(d_gh_post, d_gh, ghraw, stats, ln_g, s, rows, row_ok, B, H,
                         gate0=0, gates=2, slot=0, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N)  # fmt: skip
