"""Fused CPU backend: one C++ call per layer and direction, forward and backward.

The kernels are in ``grukit/csrc/gru_cpu.cpp`` and registered as the
``torch.ops.grukit.gru_layer_fwd`` / ``gru_layer_bwd`` operators; this module
builds them, registers the autograd formula (``torch.library.register_autograd``)
and a shape-only implementation for ``torch.compile`` (``register_fake``).

Building: the first time the backend is asked for, the C++ source is compiled
against the installed torch with the machine's C++ compiler (about a minute on
2 cores) into a cache folder keyed by the source, the torch version and the
compiler flags: ``$GRUKIT_BUILD_DIR`` if set, else ``~/.cache/grukit``. Later
processes load the cached library in well under a second. Nothing is built at
install time, so ``pip install`` never needs torch in a build environment. If
the build fails (no compiler, say) the backend reports itself unavailable, one
warning says why, and ``grukit.functional.gru`` uses the portable torch path.

Supports CPU tensors of float32 and float64. Double backward is not supported
(the backward op is not itself differentiable).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .masks import ZoneoutDraw

NAME = "cpu_fused"
SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "gru_cpu.cpp"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"]
LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_state = {"loaded": False, "error": None, "module": None}


def _build_dir() -> Path:
    root = os.environ.get("GRUKIT_BUILD_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "grukit")
    key = hashlib.sha256()
    for source in sorted(SOURCE.parent.glob("*")):  # the .cpp and the headers it includes
        key.update(source.read_bytes())
    key.update(torch.__version__.encode())
    key.update(" ".join(CFLAGS).encode())
    key.update(platform.machine().encode())
    key.update(os.environ.get("CXX", "").encode())
    return Path(root) / f"cpu-{key.hexdigest()[:16]}"


def load() -> bool:
    """Build (or load from the cache) the kernels; True if they are usable."""
    with _lock:
        if _state["loaded"] or _state["error"] is not None:
            return _state["loaded"]
        try:
            from torch.utils import cpp_extension

            build_dir = _build_dir()
            build_dir.mkdir(parents=True, exist_ok=True)
            # ninja from this environment's bin folder (a virtualenv's is not always on PATH)
            bin_dir = os.path.dirname(sys.executable)
            if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
                os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
            _state["module"] = cpp_extension.load(
                name="grukit_cpu",
                sources=[str(SOURCE)],
                extra_cflags=CFLAGS,
                extra_ldflags=LDFLAGS,
                build_directory=str(build_dir),
                is_python_module=True,
                verbose=bool(os.environ.get("GRUKIT_VERBOSE_BUILD")),
            )
            _register_autograd()
            _state["loaded"] = True
        except Exception as exc:  # a compiler error, a missing compiler, a missing BLAS symbol ...
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _state["error"] = f"{type(exc).__name__}: {first_line}"
            warnings.warn(
                f"grukit: the fused CPU kernels could not be built ({_state['error'][:200]}); "
                "using the portable torch path",
                RuntimeWarning,
                stacklevel=3,
            )
        return _state["loaded"]


def extension():
    """The compiled module (for ``grukit.stream``); None if it is unavailable."""
    return _state["module"] if is_available() else None


def is_available() -> bool:
    if os.environ.get("GRUKIT_DISABLE_BUILD"):
        return False
    # once loaded, no lock is taken: torch.compile traces this and cannot trace a lock
    if _state["loaded"]:
        return True
    if torch.compiler.is_compiling():
        return False  # never build inside a trace (grukit.GRU loads the kernels when it is made)
    return load()


def why_unavailable() -> str:
    if os.environ.get("GRUKIT_DISABLE_BUILD"):
        return "$GRUKIT_DISABLE_BUILD is set"
    return _state["error"] or ""


def supports(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


# ------------------------------------------------------------------ autograd


def _register_autograd() -> None:
    op = "grukit::gru_layer_fwd"

    @torch.library.register_fake(op)
    def _fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_sizes, reverse, reset_after, keeps_state, training):
        H = w_hh.shape[1]
        rows = x.shape[:-1]  # (T, B) padded, (N,) packed
        n = rows[0] * rows[1] if len(rows) == 2 else rows[0]
        ws = x.new_empty((n, (4 if reset_after else 3) * H)) if training else x.new_empty((0,))
        return x.new_empty(rows + (H,)), x.new_empty((h0.shape[0], H)), ws

    @torch.library.register_fake("grukit::gru_layer_bwd")
    def _fake_bwd(d_out, d_hn, x, h0, w_ih, w_hh, lengths, batch_sizes, out, ws, reverse, reset_after,
                  keeps_state, has_bias):
        n = w_hh.shape[0] if has_bias else 0
        return [torch.empty_like(x), torch.empty_like(h0), torch.empty_like(w_ih),
                torch.empty_like(w_hh), w_hh.new_empty((n,)), w_hh.new_empty((n,))]

    def setup_context(ctx, inputs, output):
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_sizes, reverse, reset_after, keeps_state, training = inputs
        out, _, ws = output
        ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, batch_sizes, out, ws)
        ctx.flags = (reverse, reset_after, keeps_state, b_ih is not None)

    def backward(ctx, d_out, d_hn, _d_ws):
        x, h0, w_ih, w_hh, lengths, batch_sizes, out, ws = ctx.saved_tensors
        reverse, reset_after, keeps_state, has_bias = ctx.flags
        if not ws.numel():
            raise RuntimeError(
                "grukit: backward through a fused GRU layer that ran without saving activations "
                "(training=False); call it with grad enabled"
            )
        d_out = torch.zeros_like(out) if d_out is None else d_out
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.grukit.gru_layer_bwd(
            d_out, d_hn, x, h0, w_ih, w_hh, lengths, batch_sizes, out, ws, reverse, reset_after, keeps_state,
            has_bias,
        )
        if not has_bias:
            db_ih = db_hh = None
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None, None, None

    torch.library.register_autograd(op, backward, setup_context=setup_context)
    _register_regularised_autograd()


def _register_regularised_autograd() -> None:
    """The same for ``grukit::gru_layer_reg_fwd`` (layer norm, zoneout, recurrent dropout)."""
    op = "grukit::gru_layer_reg_fwd"

    def width(H, reset_after, layer_norm):
        return (4 if reset_after else 3) * H + (6 * H + 3 if layer_norm else 0)

    @torch.library.register_fake(op)
    def _fake(x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, beta_ih, gamma_hh, beta_hh, zoneout_mask, zoneout_p,
              zoneout_seed, recurrent_mask, lengths, batch_sizes, reverse, reset_after, keeps_state, training):
        H = w_hh.shape[1]
        rows = x.shape[:-1]
        n = rows[0] * rows[1] if len(rows) == 2 else rows[0]
        ws = x.new_empty((n, width(H, reset_after, gamma_ih is not None))) if training else x.new_empty((0,))
        return x.new_empty(rows + (H,)), x.new_empty((h0.shape[0], H)), ws

    @torch.library.register_fake("grukit::gru_layer_reg_bwd")
    def _fake_bwd(d_out, d_hn, x, h0, w_ih, w_hh, gamma_ih, gamma_hh, zoneout_mask, zoneout_p, zoneout_seed,
                  recurrent_mask, lengths, batch_sizes, out, ws, reverse, reset_after, keeps_state, has_bias):
        n = w_hh.shape[0] if has_bias else 0
        g = w_hh.shape[0] if gamma_ih is not None else 0
        return [torch.empty_like(x), torch.empty_like(h0), torch.empty_like(w_ih), torch.empty_like(w_hh),
                w_hh.new_empty((n,)), w_hh.new_empty((n,))] + [w_hh.new_empty((g,)) for _ in range(4)]

    def setup_context(ctx, inputs, output):
        (x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, beta_ih, gamma_hh, beta_hh, zoneout_mask, zoneout_p,
         zoneout_seed, recurrent_mask, lengths, batch_sizes, reverse, reset_after, keeps_state, training) = inputs
        out, _, ws = output
        ctx.save_for_backward(x, h0, w_ih, w_hh, gamma_ih, gamma_hh, zoneout_mask, recurrent_mask, lengths,
                              batch_sizes, out, ws)
        ctx.flags = (zoneout_p, zoneout_seed, reverse, reset_after, keeps_state, b_ih is not None,
                     gamma_ih is not None)

    def backward(ctx, d_out, d_hn, _d_ws):
        x, h0, w_ih, w_hh, gamma_ih, gamma_hh, zoneout_mask, recurrent_mask, lengths, batch_sizes, out, ws = \
            ctx.saved_tensors
        zoneout_p, zoneout_seed, reverse, reset_after, keeps_state, has_bias, has_ln = ctx.flags
        if not ws.numel():
            raise RuntimeError("grukit: backward through a fused GRU layer that ran without saving activations "
                               "(training=False); call it with grad enabled")
        d_out = torch.zeros_like(out) if d_out is None else d_out.contiguous()
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn.contiguous()
        grads = torch.ops.grukit.gru_layer_reg_bwd(
            d_out, d_hn, x, h0, w_ih, w_hh, gamma_ih, gamma_hh, zoneout_mask, zoneout_p, zoneout_seed,
            recurrent_mask, lengths, batch_sizes, out, ws, reverse, reset_after, keeps_state, has_bias)
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dg_i, dbe_i, dg_h, dbe_h = grads
        if not has_bias:
            db_ih = db_hh = None
        if not has_ln:
            dg_i = dbe_i = dg_h = dbe_h = None
        return (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dg_i, dbe_i, dg_h, dbe_h) + (None,) * 10

    torch.library.register_autograd(op, backward, setup_context=setup_context)


# ------------------------------------------------------------------ backend entry point


def _training(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


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
    zoneout: Union[None, float, Tensor] = None,
    recurrent_mask: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction; the contract of :func:`grukit.backends.torch_ops.gru_layer`."""
    if layer_norm is not None or zoneout is not None or recurrent_mask is not None:
        return _regularised(x, None, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after, keeps_state,
                            layer_norm, zoneout, recurrent_mask)
    out, h_n, _ = torch.ops.grukit.gru_layer_fwd(
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, None, reverse, reset_after, keeps_state,
        _training(x, h0, w_ih, w_hh, b_ih, b_hh),
    )
    return out, h_n


def gru_layer_packed(
    x: Tensor,
    batch_sizes: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    reverse: bool,
    reset_after: bool,
    keeps_state: bool,
    layer_norm: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None,
    zoneout: Union[None, float, Tensor] = None,
    recurrent_mask: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction, on the data of a PackedSequence, with no padding.

    Args:
        x: [N, I] the packed steps (``PackedSequence.data``): step t's ``batch_sizes[t]``
            rows follow step t-1's, sequences sorted longest first.
        batch_sizes: [T] int64 on the CPU, positive and non-increasing, summing to N.
        h0: [B, H] initial states in the same sorted order (B = batch_sizes[0]).
        the rest: as :func:`grukit.backends.torch_ops.gru_layer`.

    Returns:
        out: [N, H] the states in the packed layout; h_n: [B, H] each sequence's final state.
        (a zoneout mask is [N, H], in the packed layout)
    """
    if layer_norm is not None or zoneout is not None or recurrent_mask is not None:
        return _regularised(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, None, reverse, reset_after, keeps_state,
                            layer_norm, zoneout, recurrent_mask)
    out, h_n, _ = torch.ops.grukit.gru_layer_fwd(
        x, h0, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, reverse, reset_after, keeps_state,
        _training(x, h0, w_ih, w_hh, b_ih, b_hh),
    )
    return out, h_n


def _regularised(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after, keeps_state,
                 layer_norm, zoneout, recurrent_mask):
    """The layer with layer norm, zoneout and/or recurrent dropout: the ``gru_layer_reg_fwd`` kernel."""
    ln = tuple(layer_norm) if layer_norm is not None else (None, None, None, None)
    mask = zoneout if isinstance(zoneout, Tensor) else None
    if isinstance(zoneout, ZoneoutDraw):  # the kernel draws the mask from the seed (never stored)
        p, seed = zoneout.p, zoneout.seed
    else:
        p, seed = (float(zoneout) if isinstance(zoneout, (int, float)) else 0.0), -1
    out, h_n, _ = torch.ops.grukit.gru_layer_reg_fwd(
        x, h0, w_ih, w_hh, b_ih, b_hh, *ln, mask, p, seed, recurrent_mask, lengths, batch_sizes, reverse,
        reset_after, keeps_state, _training(x, h0, w_ih, w_hh, b_ih, b_hh, *ln),
    )
    return out, h_n
