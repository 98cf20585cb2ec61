"""Triton backend: every GRU variant and regulariser on a GPU, one kernel launch per layer-direction.

For each layer and direction (see ``grukit.backends.triton_kernels`` for the kernels):

* forward: the input projection of all steps as one GEMM (``x W_ih^T + b_ih``, or layer-normalised,
  through torch, so autograd carries its gradient to x, W_ih and b_ih), then one persistent
  kernel for the time loop, which saves the gates for the backward pass;
* backward: one persistent kernel for the time loop in reverse, giving the gradients of the
  input projection, of h0 and of the recurrent products; then the weight gradients of W_hh as
  one GEMM over all steps, and those of b_hh and the layer-norm parameters as sums.

Auto-selected on CUDA (when triton imports) for every variant PyTorch's fused op does not
compute; selectable by name for the cuDNN form too. On CPU tensors it runs under Triton's
interpreter (``TRITON_INTERPRET=1``), which is how it is tested without a GPU.

Precision: float32 and float64 compute in their own dtype; float16 and bfloat16 inputs (for
example under ``torch.autocast``) are computed in float32 and the output is returned in the
input's dtype. The products inside the kernels use TF32 only if
``torch.backends.cuda.matmul.allow_tf32`` is set, as torch's own float32 matrix products.

Zoneout's training mask is drawn inside the kernels from the call's seed, with the CPU kernel's
hash, so on a call without lengths the triton and cpu_fused backends zone out the same units.
Second derivatives (``create_graph=True``) are not computed by these kernels: that backward
raises and names the backends that compute them.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import torch_ops
from .masks import ZoneoutDraw

NAME = "triton"
AUTO_DEVICE_TYPES = ("cuda",)
# "auto" passes over triton above this hidden size: each program runs all H units of its 16 rows
# on one multiprocessor, so its time grows with H^2 while the portable path's cuBLAS products use
# the whole GPU. On an H100 (python bench/gpu_speed.py, reset before, T = 100, float32):
# B = 256, T = 50, H = 512: triton 8.4 / 16.9 ms (inference / fwd+bwd), portable 10.3 / 39.3;
# B = 64, H = 1024: triton 57.9 / 111.7 ms, portable 15.5 / 71.4.
AUTO_MAX_HIDDEN = 512
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_state = {"kernels": None, "error": None}


def interpreted() -> bool:
    """True when Triton's interpreter runs the kernels on CPU tensors (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


def _kernels():
    """The kernel module, imported on first use (triton is optional)."""
    if _state["kernels"] is None and _state["error"] is None:
        try:
            from . import triton_kernels

            _state["kernels"] = triton_kernels
        except ImportError as error:  # triton not installed, or a broken install
            _state["error"] = f"triton does not import ({error}); pip install triton"
    return _state["kernels"]


def is_available() -> bool:
    return _kernels() is not None


def why_unavailable() -> str:
    _kernels()
    return _state["error"] or ""


def runs_on(device_type: str, dtype: torch.dtype) -> bool:
    """CUDA tensors; CPU tensors only under the interpreter."""
    return dtype in FLOAT_DTYPES and (device_type == "cuda" or (device_type == "cpu" and interpreted()))


def supports(x: Tensor) -> bool:
    return runs_on(x.device.type, x.dtype)


def _blocks(B: int, H: int) -> dict:
    """Tile sizes: 16 rows per program (the smallest tl.dot tile; more rows per program made
    fewer, slower programs), 128 units per column block and 8 warps where H allows. Measured on
    an H100 with ``python bench/gpu_speed.py --sweep`` (reset-before GRU, T = 100): at B = 64,
    H = 256 inference 5.2 ms with (16, 128, 64, 8 warps) against 6.1 ms with (16, 64, 64, 4)
    and 11.1 ms with (16, 32, 32, 4); at H = 1024, 58 against 66 and 139 ms."""
    block_n = 128 if H >= 128 else (64 if H >= 64 else (32 if H >= 32 else 16))
    block_k = min(block_n, 64)
    return dict(BLOCK_B=16, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=8 if block_n == 128 else 4)


def _precision(x: Tensor) -> str:
    if x.dtype == torch.float32 and x.is_cuda and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


class _Config:
    """The constant part of one call: flags, sizes, masks and zoneout's mode."""

    def __init__(self, T, B, H, reverse, reset_after, keeps_state, has_bias, layer_norm, rmask, zoneout, lengths, like):
        kernels = _kernels()
        self.T, self.B, self.H = T, B, H
        self.flags = dict(
            REVERSE=bool(reverse),
            RESET_AFTER=bool(reset_after),
            KEEPS=bool(keeps_state),
            HAS_BIAS=bool(has_bias),
            HAS_LN=bool(layer_norm),
            HAS_RMASK=rmask is not None,
            HAS_LENGTHS=lengths is not None,
            PRECISION=_precision(like),
        )
        self.dummy = like.new_zeros(1)
        self.rmask = rmask.contiguous() if rmask is not None else self.dummy
        self.lengths = lengths.contiguous() if lengths is not None else like.new_zeros(1, dtype=torch.int64)
        self.zmask = self.dummy
        self.zoneout_p, self.seed = 0.0, 0
        if zoneout is None:
            mode = kernels.ZONEOUT_NONE
        elif isinstance(zoneout, ZoneoutDraw):
            mode = kernels.ZONEOUT_DRAWN
            self.zoneout_p = int(min(zoneout.p, 1.0) * 4294967296.0)  # threshold p * 2^32, as the CPU kernel
            self.seed = zoneout.seed
        elif isinstance(zoneout, float):
            mode = kernels.ZONEOUT_EXPECTED
            self.zoneout_p = zoneout
        else:
            mode = kernels.ZONEOUT_GIVEN
            self.zmask = zoneout.to(like.dtype).contiguous()
        self.flags["ZONEOUT"] = mode
        self.tiles = _blocks(B, H)
        self.grid = (triton_cdiv(B, self.tiles["BLOCK_B"]),)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _TimeLoop(torch.autograd.Function):
    """(gi [T, B, 3H], h0 [B, H], w_hh, b_hh, gamma_hh, beta_hh) -> (out [T, B, H], h_n [B, H])."""

    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh, gamma_hh, beta_hh, config):
        kernels = _kernels()
        T, B, H = config.T, config.B, config.H
        hs = gi.new_empty(T + 1, B, H)
        hs[0] = h0
        out = gi.new_empty(T, B, H)
        gates = gi.new_empty(T, B, 3 * H)
        ghraw = gi.new_empty(T, B, 3 * H)
        rhd = gi.new_empty(T, B, H) if not config.flags["RESET_AFTER"] else config.dummy
        stats = gi.new_empty(T, B, 4) if config.flags["HAS_LN"] else config.dummy
        dummy = config.dummy
        kernels.gru_forward_kernel[config.grid](
            gi, w_hh.t().contiguous(), b_hh if b_hh is not None else dummy,
            gamma_hh if gamma_hh is not None else dummy, beta_hh if beta_hh is not None else dummy,
            config.rmask, config.zmask, config.lengths,
            hs, out, gates, ghraw, rhd, stats,
            T, B, H, config.zoneout_p, config.seed,
            **config.flags, **config.tiles,
        )  # fmt: skip
        ctx.config = config
        ctx.save_for_backward(w_hh, b_hh, gamma_hh, beta_hh, hs, gates, ghraw, rhd, stats)
        return out, hs[T].clone()

    @staticmethod
    def backward(ctx, d_out, d_hn):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "the triton backend does not compute second derivatives (create_graph=True); "
                "use backend='torch' or, on CPU, 'cpu_fused' for double backward"
            )
        kernels = _kernels()
        config = ctx.config
        T, B, H = config.T, config.B, config.H
        w_hh, b_hh, gamma_hh, beta_hh, hs, gates, ghraw, rhd, stats = ctx.saved_tensors
        dtype = hs.dtype
        d_out = torch.zeros_like(hs[1:]) if d_out is None else d_out.to(dtype).contiguous()
        d_direct = hs.new_zeros(2, B, H)
        if d_hn is not None:
            d_direct[0] = d_hn
        d_htilde = hs.new_zeros(2, B, H)
        d_gi = hs.new_empty(T, B, 3 * H)
        d_gh = hs.new_empty(T, B, 3 * H)
        has_ln = config.flags["HAS_LN"]
        d_gh_post = hs.new_empty(T, B, 3 * H) if has_ln else config.dummy
        d_rhd = hs.new_empty(B, H) if not config.flags["RESET_AFTER"] else config.dummy
        dummy = config.dummy
        kernels.gru_backward_kernel[config.grid](
            d_out, w_hh, b_hh if b_hh is not None else dummy,
            gamma_hh if gamma_hh is not None else dummy, beta_hh if beta_hh is not None else dummy,
            config.rmask, config.zmask, config.lengths,
            hs, gates, ghraw, rhd, stats,
            d_gi, d_gh, d_gh_post, d_direct, d_htilde, d_rhd,
            T, B, H, config.zoneout_p, config.seed,
            **config.flags, **config.tiles,
        )  # fmt: skip
        last = T % 2
        mask = config.rmask if config.flags["HAS_RMASK"] else None
        d_h0 = d_direct[last] + (d_htilde[last] * mask if mask is not None else d_htilde[last])

        # weight gradients: one GEMM over all steps.  d W_hh = sum_s d_gh[s]^T ~h[s]
        h_tilde = hs[:T] if mask is None else hs[:T] * mask
        flat_dgh = d_gh.reshape(T * B, 3 * H)
        if config.flags["RESET_AFTER"]:
            d_w_hh = flat_dgh.t() @ h_tilde.reshape(T * B, H)
        else:  # the candidate's product takes r * ~h
            d_w_hh = torch.cat(
                (flat_dgh[:, : 2 * H].t() @ h_tilde.reshape(T * B, H), flat_dgh[:, 2 * H :].t() @ rhd.reshape(T * B, H))
            )
        d_post = d_gh_post if has_ln else d_gh  # the gradient after layer norm, where b_hh adds
        d_b_hh = d_post.sum((0, 1)) if b_hh is not None else None
        d_gamma = d_beta = None
        if has_ln:
            # xhat = (raw - mean) * rstd per segment: [3H] (reset after) or [2H | H] (before)
            if config.flags["RESET_AFTER"]:
                xhat = (ghraw - stats[..., 0:1]) * stats[..., 1:2]
            else:
                xhat = torch.cat(
                    (
                        (ghraw[..., : 2 * H] - stats[..., 0:1]) * stats[..., 1:2],
                        (ghraw[..., 2 * H :] - stats[..., 2:3]) * stats[..., 3:4],
                    ),
                    dim=2,
                )
            d_gamma = (d_post * xhat).sum((0, 1))
            d_beta = d_post.sum((0, 1))
        return d_gi, d_h0, d_w_hh, d_b_hh, d_gamma, d_beta, None


def gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    lengths: Optional[Tensor],
    reverse: bool,
    reset_after: bool,
    keeps_state: bool,
    layer_norm: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None,
    zoneout: Union[None, float, Tensor, ZoneoutDraw] = None,
    recurrent_mask: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction; arguments and results as :func:`grukit.backends.torch_ops.gru_layer`."""
    if not is_available():
        raise RuntimeError(f"the triton backend is unavailable: {why_unavailable()}")
    out_dtype = x.dtype
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.autocast(x.device.type, enabled=False):
        x, h0, w_ih, w_hh, b_ih, b_hh = (
            t.to(compute) if t is not None else None for t in (x, h0, w_ih, w_hh, b_ih, b_hh)
        )
        if recurrent_mask is not None:
            recurrent_mask = recurrent_mask.to(compute)
        T, B, _ = x.shape
        H = w_hh.shape[1]
        if layer_norm is not None:
            layer_norm = tuple(t.to(compute) for t in layer_norm)
        gi = torch_ops.input_projection(x, w_ih, b_ih, layer_norm)  # all steps: [T, B, 3H]
        gamma_hh, beta_hh = layer_norm[2:] if layer_norm is not None else (None, None)
        config = _Config(
            T, B, H, reverse, reset_after, keeps_state, b_hh is not None, layer_norm is not None,
            recurrent_mask, zoneout, lengths, x,
        )  # fmt: skip
        out, h_n = _TimeLoop.apply(
            gi.contiguous(), h0.contiguous(), w_hh.contiguous(),
            b_hh.contiguous() if b_hh is not None else None,
            gamma_hh.contiguous() if gamma_hh is not None else None,
            beta_hh.contiguous() if beta_hh is not None else None,
            config,
        )  # fmt: skip
    return out.to(out_dtype), h_n.to(out_dtype)
