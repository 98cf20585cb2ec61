"""Triton backend: every GRU variant and regulariser on a GPU.

For each layer and direction, in one of two designs (:func:`design` picks by size):

* the input projection of all steps as one GEMM (``x W_ih^T + b_ih``, or layer-normalised,
  through torch, so autograd carries its gradient to x, W_ih and b_ih);
* the time loop, which saves the gates for the backward pass:
  "stepwise" (``triton_steps``): per step the recurrent products by cuBLAS and one or two
  element-wise Triton kernels (``triton_step_kernels``), the whole loop recorded in a CUDA graph
  and replayed (Haste's and cuDNN's layout of the work); or "persistent" (``triton_kernels``): one
  kernel launch for all steps, each program owning 16 batch rows and doing their products itself;
* the backward time loop in the same design, giving the gradients of the input projection, of
  h0 and of the recurrent products; then the weight gradients of W_hh as one GEMM over all steps,
  and those of b_hh and the layer-norm parameters as sums.

Both designs are built from the same element-wise passes (``triton_passes``).

Auto-selected on CUDA (when triton imports) for every variant PyTorch's fused op does not
compute; selectable by name for the cuDNN form too. On CPU tensors it runs under Triton's
interpreter (``TRITON_INTERPRET=1``), which is how it is tested without a GPU.

Precision: float32 and float64 compute in their own dtype; float16 and bfloat16 inputs (for
example under ``torch.autocast``) are computed in float32 and the output is returned in the
input's dtype. The recurrent products use TF32 only if ``torch.backends.cuda.matmul.allow_tf32``
is set (``torch.set_float32_matmul_precision("high")`` sets it), as torch's own float32 matrix
products; torch.nn.GRU's cuDNN kernels follow ``torch.backends.cudnn.allow_tf32`` instead, which
is on by default, so in float32 torch.nn.GRU runs TF32 products unless told otherwise.

Zoneout's training mask is drawn inside the kernels from the call's seed, with the CPU kernel's
hash, so on a call without lengths the triton and cpu_fused backends zone out the same units.
Second derivatives (``create_graph=True``) are not computed by these kernels: that backward
raises and names the backends that compute them.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import settings
from . import torch_ops
from .layer_options import LayerOptions, LayerWeightsTuple
from .masks import ZoneoutDraw

NAME = "triton"
AUTO_DEVICE_TYPES = ("cuda",)
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


DESIGNS = ("persistent", "stepwise")
DESIGN_ENV_VAR = "GRUKIT_TRITON_DESIGN"
# the per-step design's loops are recorded in CUDA graphs and replayed (GRUKIT_CUDA_GRAPHS=0: run them eagerly)
USE_CUDA_GRAPHS = settings.is_on("GRUKIT_CUDA_GRAPHS")


def design(B: int, H: int) -> str:
    """Which of the two designs runs a layer of batch B and hidden size H: "persistent" (one
    kernel launch for all steps, ``triton_kernels``) or "stepwise" (cuBLAS products and an
    element-wise kernel per step, replayed from a CUDA graph, ``triton_steps``).
    $GRUKIT_TRITON_DESIGN names one to use at every size.

    Measured on an H100 (``python bench/gpu_speed.py``, T = 100, reset before, fwd+bwd ms,
    persistent / per-step): H = 32, B = 1: 1.5 / 1.9, B = 64: 2.1 / 3.6; H = 64, B = 8: 2.1 / 2.6,
    B = 64: 2.1 / 3.4; H = 128, B = 1: 3.0 / 2.4, B = 8: 3.2 / 18.3 (cuBLAS runs a 52 us kernel for
    an 8 or 16 x 128 result: ``bench/gpu_step_products.py``), B = 64: 3.5 / 3.9 (reset after 3.1 /
    2.3); H = 512, every B: 28-34 / 2.7-10.5. So persistent up to H = 64, and at H = 128 for
    batches of 2 to 16; per-step elsewhere."""
    forced = settings.get(DESIGN_ENV_VAR)
    if forced:
        return forced
    if H <= 64 or (H <= 128 and 2 <= B <= 16):
        return "persistent"
    return "stepwise"


def _steps():
    """The per-step design's module (imports triton)."""
    from . import triton_steps

    return triton_steps


class _Graphs:
    """The process's cache of recorded per-step loops, made on first use."""

    cache = None

    def acquire(self, key, config, like):
        if self.cache is None:
            self.cache = _steps().GraphCache()
        return self.cache.acquire(key, config, like)

    def lease(self, entry):
        return _steps().GraphCache.lease(entry)

    def clear(self):
        if self.cache is not None:
            self.cache.clear()


GRAPHS = _Graphs()


def release_cuda_graphs() -> None:
    """Free the memory of the per-step loops recorded in CUDA graphs that no call is using."""
    GRAPHS.clear()


def _precision(x: Tensor) -> str:
    if x.dtype == torch.float32 and x.is_cuda and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


class _Config:
    """The constant part of one call: sizes, flags, zoneout's mode, the design and its tiles.

    Tensors that change from call to call (masks, lengths, the zoneout seed) go into the
    loop's buffers (:meth:`bind`), never into kernel arguments, so a recorded CUDA graph can
    be replayed with new ones."""

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
        self.zoneout_p, self.zoneout_threshold, self.seed = 0.0, 0, 0
        self.zoneout_given = False
        if zoneout is None:
            mode = kernels.ZONEOUT_NONE
        elif isinstance(zoneout, ZoneoutDraw):
            mode = kernels.ZONEOUT_DRAWN
            self.zoneout_p = float(zoneout.p)
            self.zoneout_threshold = int(min(zoneout.p, 1.0) * 4294967296.0)  # p * 2^32, as the CPU kernel
            self.seed = zoneout.seed
        elif isinstance(zoneout, float):
            mode = kernels.ZONEOUT_EXPECTED
            self.zoneout_p = zoneout
        else:
            mode = kernels.ZONEOUT_GIVEN
            self.zoneout_given = True
        self.flags["ZONEOUT"] = mode
        self.design = design(B, H)
        self.tiles = _blocks(B, H)
        self.grid = (triton_cdiv(B, self.tiles["BLOCK_B"]),)

    def key(self, like: Tensor) -> tuple:
        """What a recorded CUDA graph of this call depends on."""
        return (
            like.device,
            like.dtype,
            self.T,
            self.B,
            self.H,
            self.zoneout_p,
            self.zoneout_threshold,
            tuple(sorted(self.flags.items())),
        )

    def bind(self, loop, gi, h0, w_hh, b_hh, gamma_hh, beta_hh, rmask, zoneout, lengths) -> None:
        """Put this call's inputs into ``loop``'s buffers (:class:`triton_steps.LoopBuffers`)."""
        loop.set("gi", gi)
        loop.set("w_hh", w_hh)
        loop.set("w_hh_t", w_hh.t())
        loop.set("b_hh", b_hh)
        loop.set("gamma", gamma_hh)
        loop.set("beta", beta_hh)
        loop.set("rmask", rmask)
        loop.set("zmask", zoneout.to(gi.dtype) if self.zoneout_given else None)
        loop.set("lengths", lengths)
        loop.seed.fill_(self.seed)
        loop.hs[0].copy_(h0)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _persistent_forward(config, loop) -> None:
    f = config.flags
    _kernels().gru_forward_kernel[config.grid](
        loop.gi, loop.w_hh_t, loop.b_hh, loop.gamma, loop.beta, loop.rmask, loop.zmask, loop.lengths, loop.seed,
        loop.hs, loop.out, loop.gates, loop.ghraw, loop.rhd, loop.stats,
        config.T, config.B, config.H, config.zoneout_p, config.zoneout_threshold,
        **f, **config.tiles,
    )  # fmt: skip


def _persistent_backward(config, loop) -> None:
    loop.d_htilde[0].zero_()
    _kernels().gru_backward_kernel[config.grid](
        loop.d_out, loop.w_hh, loop.b_hh, loop.gamma, loop.beta, loop.rmask, loop.zmask, loop.lengths, loop.seed,
        loop.hs, loop.gates, loop.ghraw, loop.rhd, loop.stats,
        loop.d_gi, loop.d_gh, loop.d_gh_post, loop.d_direct, loop.d_htilde, loop.d_rhd,
        config.T, config.B, config.H, config.zoneout_p, config.zoneout_threshold,
        **config.flags, **config.tiles,
    )  # fmt: skip


def _run_loop(which: str, config, loop, entry) -> None:
    """Run the "forward" or "backward" time loop on ``loop``'s buffers in the config's design: the
    persistent kernel, the per-step loop from ``entry``'s recorded CUDA graph, or the per-step loop
    launched eagerly (no entry: CPU, a caller's own capture, graphs off, or none free)."""
    if config.design == "persistent":
        (_persistent_forward if which == "forward" else _persistent_backward)(config, loop)
        return
    steps = _steps()
    run = steps.forward_steps if which == "forward" else steps.backward_steps
    if entry is not None:
        entry.run(which, lambda: run(config, loop))
    else:
        run(config, loop)


def _graphs_usable(like: Tensor) -> bool:
    return USE_CUDA_GRAPHS and like.is_cuda and not torch.cuda.is_current_stream_capturing()


class _TimeLoop(torch.autograd.Function):
    """(gi [T, B, 3H], h0 [B, H], w_hh, b_hh, gamma_hh, beta_hh) -> (out [T, B, H], h_n [B, H]).

    The design (persistent or per-step, :func:`design`) is the config's; the per-step loops run
    from a recorded CUDA graph on CUDA (``triton_steps``)."""

    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh, gamma_hh, beta_hh, config, rmask, zoneout, lengths):
        T = config.T
        entry = None
        if config.design == "stepwise" and _graphs_usable(gi):
            entry = GRAPHS.acquire(config.key(gi), config, gi)
        loop = entry.buffers if entry is not None else _steps().LoopBuffers(config, gi, static=False)
        config.bind(loop, gi, h0, w_hh, b_hh, gamma_hh, beta_hh, rmask, zoneout, lengths)
        _run_loop("forward", config, loop, entry)
        ctx.config, ctx.loop, ctx.entry = config, loop, entry
        ctx.lease = GRAPHS.lease(entry) if entry is not None else None
        ctx.save_for_backward(w_hh, b_hh, gamma_hh, beta_hh)  # version-checked: not changed in place since
        out = loop.out.clone() if entry is not None else loop.out  # a recorded loop's buffers are reused
        return out, loop.hs[T].clone()

    @staticmethod
    def backward(ctx, d_out, d_hn):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "the triton backend does not compute second derivatives (create_graph=True); "
                "use backend='torch' or, on CPU, 'cpu_fused' for double backward"
            )
        config, loop, entry = ctx.config, ctx.loop, ctx.entry
        T, B, H = config.T, config.B, config.H
        w_hh, b_hh, gamma_hh, beta_hh = ctx.saved_tensors
        loop.add_backward(config)
        loop.set("d_out", d_out.to(loop.out.dtype) if d_out is not None else torch.zeros_like(loop.out))
        if d_hn is None:
            loop.d_direct[0].zero_()
        else:
            loop.d_direct[0].copy_(d_hn)
        _run_loop("backward", config, loop, entry)
        hs, rhd, stats, ghraw, d_gh = loop.hs, loop.rhd, loop.stats, loop.ghraw, loop.d_gh
        last = T % 2
        mask = loop.rmask if config.flags["HAS_RMASK"] else None
        d_h0 = loop.d_direct[last] + (loop.d_htilde[last] * mask if mask is not None else loop.d_htilde[last])

        # weight gradients: one GEMM over all steps.  d W_hh = sum_s d_gh[s]^T ~h[s]
        h_tilde = hs[:T] if mask is None else hs[:T] * mask
        flat_dgh = d_gh.reshape(T * B, 3 * H)
        if config.flags["RESET_AFTER"]:
            d_w_hh = flat_dgh.t() @ h_tilde.reshape(T * B, H)
        else:  # the candidate's product takes r * ~h
            d_w_hh = torch.cat(
                (flat_dgh[:, : 2 * H].t() @ h_tilde.reshape(T * B, H), flat_dgh[:, 2 * H :].t() @ rhd.reshape(T * B, H))
            )
        has_ln = config.flags["HAS_LN"]
        d_post = loop.d_gh_post if has_ln else d_gh  # the gradient after layer norm, where b_hh adds
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
        return loop.d_gi, d_h0, d_w_hh, d_b_hh, d_gamma, d_beta, None, None, None, None


def gru_layer(
    x: Tensor, h0: Tensor, weights: LayerWeightsTuple, lengths: Optional[Tensor], options: LayerOptions
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction; arguments and results as :func:`grukit.backends.torch_ops.gru_layer`."""
    w_ih, w_hh, b_ih, b_hh = weights
    reverse, reset_after, keeps_state = options.reverse, options.reset_after, options.keeps_state
    layer_norm, zoneout, recurrent_mask = options.layer_norm, options.zoneout, options.recurrent_mask
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
            gi, h0, w_hh, b_hh, gamma_hh, beta_hh, config, recurrent_mask,
            zoneout if config.zoneout_given else None, lengths,
        )  # fmt: skip
    return out.to(out_dtype), h_n.to(out_dtype)


# ---------------------------------------------------------------- the minGRU's scan

MIN_GRU_BLOCK = 128  # units per program


def min_gru_chunk(T: int, units: int) -> int:
    """Steps per chunk of the minGRU's chunked scan (``triton_min_gru``): about 64 steps, fewer where
    there are few units, so that chunks x unit blocks keep a GPU's multiprocessors busy."""
    blocks = -(-units // MIN_GRU_BLOCK)
    chunk = 64 if blocks >= 64 else 16
    return max(1, min(chunk, T))


def _min_gru_kernels():
    if not is_available():
        raise RuntimeError(f"the triton backend is unavailable: {why_unavailable()}")
    from . import triton_min_gru

    return triton_min_gru


def _min_gru_launch(k: Tensor, h0: Tensor, chunk: int):
    """What both directions of the chunked scan launch with: the kernels, the sizes (T, B, H, N = B*H,
    chunks), the grid (chunks, unit blocks), the compute dtype, and three [chunks, N] work buffers
    (the chunks' affine summaries and the carries between chunks)."""
    kernels = _min_gru_kernels()
    T, (B, H) = k.shape[0], h0.shape
    N, chunks = B * H, -(-T // chunk)
    dtype = kernels.tl.float64 if k.dtype == torch.float64 else kernels.tl.float32
    buffers = tuple(k.new_empty(chunks, N) for _ in range(3))
    return kernels, (T, B, H, N, chunks), (chunks, triton_cdiv(N, MIN_GRU_BLOCK)), dtype, buffers


class _MinGRUScan(torch.autograd.Function):
    """The chunked scan's three launches each way (``triton_min_gru``), on contiguous float32/float64."""

    @staticmethod
    def forward(ctx, k: Tensor, h0: Tensor, chunk: int) -> Tensor:
        kernels, (T, B, H, N, chunks), blocks, dtype, (A, S, carry) = _min_gru_launch(k, h0, chunk)
        h = k.new_empty(T, B, H)
        kernels.chunk_summary[blocks](k, A, S, T, B, H, CHUNK=chunk, BLOCK=MIN_GRU_BLOCK, DTYPE=dtype)
        kernels.chunk_carry[(blocks[1],)](A, S, h0, carry, chunks, N, BLOCK=MIN_GRU_BLOCK)
        kernels.chunk_apply[blocks](k, carry, h, T, B, H, CHUNK=chunk, BLOCK=MIN_GRU_BLOCK)
        ctx.save_for_backward(k, h0, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    def backward(ctx, d_h: Tensor):
        k, h0, h = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the scan in torch ops, differentiated twice
            return (*torch_ops.min_gru_scan_gradients(k, h0, d_h), None)
        kernels, (T, B, H, N, chunks), blocks, dtype, (P, Q, carry) = _min_gru_launch(k, h0, ctx.chunk)
        chunk, d_h = ctx.chunk, d_h.contiguous()
        d_k, d_h0 = torch.empty_like(k), torch.empty_like(h0)
        kernels.reverse_summary[blocks](k, d_h, P, Q, T, B, H, CHUNK=chunk, BLOCK=MIN_GRU_BLOCK, DTYPE=dtype)
        kernels.reverse_carry[(blocks[1],)](P, Q, carry, d_h0, chunks, N, BLOCK=MIN_GRU_BLOCK, DTYPE=dtype)
        kernels.reverse_apply[blocks](k, d_h, h, h0, carry, d_k, T, B, H, CHUNK=chunk, BLOCK=MIN_GRU_BLOCK)
        return d_k, d_h0, None


def min_gru_scan(k: Tensor, h0: Tensor, chunk: Optional[int] = None) -> Tensor:
    """The minGRU's scan (``grukit.min_gru``) by the chunked Triton kernels.

    Args:
        k: [T, B, 2H] gate pre-activations (update gate's columns, then the candidate's).
        h0: [B, H].
        chunk: steps per chunk (None: :func:`min_gru_chunk`).

    Returns:
        h: [T, B, H] in k's dtype (float16 and bfloat16 are computed in float32).
    """
    compute = torch.float64 if k.dtype == torch.float64 else torch.float32
    chunk = min_gru_chunk(k.shape[0], h0.numel()) if chunk is None else chunk
    with torch.autocast(k.device.type, enabled=False):
        h = _MinGRUScan.apply(k.to(compute).contiguous(), h0.to(compute).contiguous(), chunk)
    return h.to(k.dtype)
