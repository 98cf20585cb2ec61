"""Fused CPU backend: one C++ call per layer and direction, forward and backward.

The kernels are in ``grukit/csrc/`` (``ops.cpp`` and the headers it includes) and
registered as the ``torch.ops.grukit.gru_layer_fwd`` / ``gru_layer_bwd`` operator pair,
which takes the regularisers (layer norm, zoneout, recurrent dropout) as optional
inputs; this module builds them, registers the autograd formula
(``torch.library.register_autograd``) and a shape-only implementation for
``torch.compile`` (``register_fake``).

Building: the first time the backend is asked for, the C++ source is compiled
against the installed torch with the machine's C++ compiler (about 40 s; BENCHMARKS.md) for
this CPU's instruction-set level, in a child process, and cached (``cpu_build.py``: keyed by
source, torch, compiler, flags and level; written atomically, checked before loading, never
reused on a CPU that lacks the level). The cache is ``$GRUKIT_BUILD_DIR`` if set, else
``~/.cache/grukit``; later processes load it in well under a second. Nothing is built at install
time, so ``pip install`` never needs torch in a build environment. If the build fails (no
compiler, say) the backend reports itself unavailable, one warning says why, and
``grukit.functional.gru`` uses the portable torch path. After loading, the matrix-product
routine for each kind of product is set from a per-machine measurement (``gemm_choice.py``).

Supports CPU tensors of float32 and float64. The backward op is not itself differentiable:
with ``create_graph=True`` (second derivatives) the backward recomputes the layer on the portable
path and differentiates that (``differentiable_backward``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import cpu_build, gemm_choice
from .masks import ZoneoutDraw

NAME = "cpu_fused"
SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "ops.cpp"
CFLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"]  # + the level's flags
LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_state = {"loaded": False, "error": None, "module": None, "gemm": None, "library": None}


def cache_root() -> Path:
    """The folder holding the builds: ``$GRUKIT_BUILD_DIR`` if set, else ``~/.cache/grukit``."""
    return Path(os.environ.get("GRUKIT_BUILD_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "grukit"))


def _build_inputs(level: str, cpu_flags):
    """(key, compiler flags): the cache key covers the sources, torch, the compiler and the flags."""
    cflags = CFLAGS + cpu_build.compile_flags(level)
    inputs = [source.read_bytes() for source in sorted(SOURCE.parent.glob("*"))]  # the .cpp and its headers
    inputs += [torch.__version__.encode(), " ".join(cflags).encode(), os.environ.get("CXX", "").encode()]
    return cpu_build.cache_key(inputs, level, cpu_flags), cflags


def build_dir() -> Path:
    """Where the kernels for this source, torch, compiler, flags and instruction-set level are cached."""
    flags = cpu_build.cpu_flags()
    key, _ = _build_inputs(cpu_build.chosen_level(flags), flags)
    return cache_root() / f"cpu-{key}"


def _compile_into(folder: Path, cflags) -> Path:
    """Compile the extension into ``folder`` in a child process (which also imports it once, so a
    library that cannot load is never cached); returns the library's path."""
    arguments = {
        "name": "grukit_cpu",
        "sources": [str(SOURCE)],
        "extra_cflags": cflags,
        "extra_ldflags": LDFLAGS,
        "build_directory": str(folder),
        "is_python_module": True,
        "verbose": bool(os.environ.get("GRUKIT_VERBOSE_BUILD")),
    }
    code = "import json, sys\nfrom torch.utils import cpp_extension\ncpp_extension.load(**json.loads(sys.argv[1]))\n"
    env = dict(os.environ)
    bin_dir = os.path.dirname(sys.executable)  # ninja from this environment (a virtualenv's is not always on PATH)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arguments)], env=env, capture_output=True, text=True
    )
    if arguments["verbose"]:
        sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines or [f"exit status {result.returncode}"]
        raise RuntimeError(f"compiling {SOURCE.name} failed: {errors[0].strip()}")
    libraries = sorted(folder.glob("grukit_cpu*.so")) + sorted(folder.glob("grukit_cpu*.pyd"))
    if not libraries:
        raise RuntimeError(f"compiling {SOURCE.name} produced no library in {folder}")
    return libraries[0]


def load() -> bool:
    """Build (or load from the cache) the kernels; True if they are usable."""
    with _lock:
        if _state["loaded"] or _state["error"] is not None:
            return _state["loaded"]
        try:
            flags = cpu_build.cpu_flags()
            level = cpu_build.chosen_level(flags)
            key, cflags = _build_inputs(level, flags)
            library = cpu_build.build(
                cache_root(),
                key,
                level,
                flags,
                lambda folder: _compile_into(folder, cflags),
                {"torch": torch.__version__, "compiler": os.environ.get("CXX", "c++"), "cflags": " ".join(cflags)},
            )
            spec = importlib.util.spec_from_file_location("grukit_cpu", library)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _state["module"], _state["library"] = module, library
            _state["gemm"] = gemm_choice.configure(module, library.parent)
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
    """The loaded extension module (``None`` until ``load()`` succeeds)."""
    return _state["module"]


def build_manifest() -> Optional[dict]:
    """The loaded build's manifest (level, required CPU flags, CPU, compiler flags; ``cpu_build``)
    and its folder as ``"folder"``; ``None`` until the kernels are loaded."""
    if _state["library"] is None:
        return None
    folder = _state["library"].parent
    return {**json.loads((folder / cpu_build.MANIFEST).read_text()), "folder": str(folder)}


def gemm_routines() -> Optional[dict]:
    """The matrix-product routine chosen for each kind of product, and how it was chosen
    (``gemm_choice.configure``); ``None`` until the kernels are loaded."""
    return _state["gemm"]


def open_stream(weights, h0: Tensor, reset_after: bool, keeps_state: bool):
    """The streaming capability (``grukit.stream``): a native multi-layer, one-direction GRU that
    keeps its state between calls; plain GRU only (no layer norm or zoneout).

    Args:
        weights: per layer (w_ih [3H, I_l], w_hh [3H, H][, b_ih, b_hh [3H]]).
        h0: [L, B, H] initial state (copied).

    Returns an object with ``step(x [B, I]) -> [B, H]``, ``run(x [T, B, I]) -> [T, B, H]``,
    ``state() -> [L, B, H]`` and ``set_state(h)``.
    """
    if not is_available():
        raise RuntimeError(f"the fused CPU kernels are unavailable: {why_unavailable()}")
    return _state["module"].Stream([list(w) for w in weights], h0, reset_after, keeps_state)


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


AUTO_DEVICE_TYPES = ("cpu",)


def runs_on(device_type: str, dtype: torch.dtype) -> bool:
    return device_type == "cpu" and dtype in (torch.float32, torch.float64)


def supports(x: Tensor) -> bool:
    return runs_on(x.device.type, x.dtype)


# ------------------------------------------------------------------ autograd


def _register_autograd() -> None:
    """The autograd formula (``register_autograd``) and the shape-only implementation for
    ``torch.compile`` (``register_fake``) of the one operator pair."""
    forward_op, backward_op = "grukit::gru_layer_fwd", "grukit::gru_layer_bwd"
    saved_width = _state["module"].saved_width  # columns of the saved activations (csrc/saved_layout.h)

    @torch.library.register_fake(forward_op)
    def _fake(
        x,
        h0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        lengths,
        batch_sizes,
        gamma_ih,
        beta_ih,
        gamma_hh,
        beta_hh,
        zoneout_mask,
        zoneout_p,
        zoneout_seed,
        recurrent_mask,
        reverse,
        reset_after,
        keeps_state,
        save_for_backward,
    ):
        H = w_hh.shape[1]
        rows = x.shape[:-1]  # (T, B) padded, (N,) packed
        n = rows[0] * rows[1] if len(rows) == 2 else rows[0]
        width = saved_width(H, reset_after, gamma_ih is not None)
        saved = x.new_empty((n, width)) if save_for_backward else x.new_empty((0,))
        return x.new_empty(rows + (H,)), x.new_empty((h0.shape[0], H)), saved

    @torch.library.register_fake(backward_op)
    def _fake_bwd(
        d_out,
        d_hn,
        x,
        h0,
        w_ih,
        w_hh,
        lengths,
        batch_sizes,
        gamma_ih,
        gamma_hh,
        zoneout_mask,
        zoneout_p,
        zoneout_seed,
        recurrent_mask,
        out,
        saved,
        reverse,
        reset_after,
        keeps_state,
        has_bias,
    ):
        n = w_hh.shape[0] if has_bias or gamma_ih is not None else 0
        g = w_hh.shape[0] if gamma_ih is not None else 0
        return [
            torch.empty_like(x),
            torch.empty_like(h0),
            torch.empty_like(w_ih),
            torch.empty_like(w_hh),
            w_hh.new_empty((n,)),
            w_hh.new_empty((n,)),
        ] + [w_hh.new_empty((g,)) for _ in range(4)]

    def setup_context(ctx, inputs, output):
        (
            x,
            h0,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            lengths,
            batch_sizes,
            gamma_ih,
            beta_ih,
            gamma_hh,
            beta_hh,
            zoneout_mask,
            zoneout_p,
            zoneout_seed,
            recurrent_mask,
            reverse,
            reset_after,
            keeps_state,
            _,
        ) = inputs
        out, _, saved = output
        ctx.save_for_backward(
            x, h0, w_ih, w_hh, lengths, batch_sizes, gamma_ih, gamma_hh, zoneout_mask, recurrent_mask, out, saved
        )
        ctx.flags = (zoneout_p, zoneout_seed, reverse, reset_after, keeps_state, b_ih is not None, gamma_ih is not None)
        ctx.biases = (b_ih, b_hh, beta_ih, beta_hh)  # only a differentiable backward needs them

    def backward(ctx, d_out, d_hn, _d_saved):
        (x, h0, w_ih, w_hh, lengths, batch_sizes, gamma_ih, gamma_hh, zoneout_mask, recurrent_mask, out, saved) = (
            ctx.saved_tensors
        )
        zoneout_p, zoneout_seed, reverse, reset_after, keeps_state, has_bias, has_ln = ctx.flags
        # create_graph=True (the gradient itself must be differentiable), or gradients batched by
        # torch's vmap (gradcheck's check_batched_grad): the layer recomputed in torch ops, differentiated
        if torch.is_grad_enabled() or _batched(d_out, d_hn):
            b_ih, b_hh, beta_ih, beta_hh = ctx.biases
            layer_norm = (gamma_ih, beta_ih, gamma_hh, beta_hh) if has_ln else None
            inputs = (x, h0, w_ih, w_hh, b_ih, b_hh) + (layer_norm or (None,) * 4)
            if zoneout_mask is None and zoneout_seed >= 0:
                raise RuntimeError(
                    "grukit: double backward (create_graph=True) or batched gradients through zoneout drawn "
                    "inside the fused CPU kernel are not supported: pass backend='torch', or an explicit zoneout mask"
                )
            zoneout = zoneout_mask if zoneout_mask is not None else (zoneout_p or None)
            return (
                differentiable_backward(
                    inputs,
                    d_out,
                    d_hn,
                    lengths,
                    batch_sizes,
                    reverse,
                    reset_after,
                    keeps_state,
                    zoneout,
                    recurrent_mask,
                )
                + (None,) * 8
            )
        if not saved.numel():
            raise RuntimeError(
                "grukit: backward through a fused GRU layer that ran without saving activations "
                "(save_for_backward=False); call it with grad enabled"
            )
        d_out = torch.zeros_like(out) if d_out is None else d_out.contiguous()
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn.contiguous()
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dg_i, dbe_i, dg_h, dbe_h = torch.ops.grukit.gru_layer_bwd(
            d_out,
            d_hn,
            x,
            h0,
            w_ih,
            w_hh,
            lengths,
            batch_sizes,
            gamma_ih,
            gamma_hh,
            zoneout_mask,
            zoneout_p,
            zoneout_seed,
            recurrent_mask,
            out,
            saved,
            reverse,
            reset_after,
            keeps_state,
            has_bias,
        )
        if not has_bias:
            db_ih = db_hh = None
        if not has_ln:
            dg_i = dbe_i = dg_h = dbe_h = None
        return (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None, dg_i, dbe_i, dg_h, dbe_h) + (None,) * 8

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)
    for name in (forward_op, backward_op):
        torch.library.register_vmap(name, _vmap_by_loop(name))


def _batched(*tensors) -> bool:
    """Some of ``tensors`` carry a vmap batch dimension (torch.func's or the older torch.vmap's)."""
    functorch = torch._C._functorch
    return any(
        t is not None and (functorch.is_batchedtensor(t) or functorch.is_legacy_batchedtensor(t)) for t in tensors
    )


def _vmap_by_loop(name: str):
    """A batching rule for ``torch.func.vmap`` (and so ``jacrev``, ``check_batched_grad``): the op
    once per slice of the vmapped dimension, results stacked along dimension 0. Each call is the
    whole fused kernel, so this is exact; it is as fast as a Python loop over the slices."""
    namespace, op_name = name.split("::")
    op = getattr(getattr(torch.ops, namespace), op_name).default

    def rule(info, in_dims, *args):
        results = []
        for i in range(info.batch_size):
            sliced = [a.select(d, i) if d is not None else a for a, d in zip(args, in_dims)]
            results.append(op(*sliced))
        stacked = [torch.stack(parts) for parts in zip(*results)]
        if isinstance(results[0], tuple):
            return tuple(stacked), (0,) * len(stacked)
        return stacked, [0] * len(stacked)

    return rule


def differentiable_backward(
    inputs, d_out, d_hn, lengths, batch_sizes, reverse, reset_after, keeps_state, zoneout, recurrent_mask
):
    """The layer's gradients as a differentiable function (for ``create_graph=True``): the forward
    is run again on the portable path (``torch_ops.gru_layer``, plain torch ops, so autograd can
    differentiate it twice) and differentiated with ``create_graph=True``.

    Args:
        inputs: (x, h0, w_ih, w_hh, b_ih, b_hh, gamma_ih, beta_ih, gamma_hh, beta_hh), the op's
            differentiable inputs (None where absent); x [T, B, I] padded or [N, I] packed.
        d_out, d_hn: the incoming gradients of out and h_n.
        batch_sizes: [T] for packed input (the op's batch_sizes), else None.

    Returns the gradients in the op's argument order: x, h0, w_ih, w_hh, b_ih, b_hh, None for
    lengths and batch_sizes, then gamma_ih, beta_ih, gamma_hh, beta_hh.
    """
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

    from . import torch_ops

    x, h0, w_ih, w_hh, b_ih, b_hh, *norm = inputs
    layer_norm = tuple(norm) if norm[0] is not None else None
    with torch.enable_grad():
        if batch_sizes is not None:  # packed rows -> padded [T, B, I] with lengths, and back
            padded, lengths = pad_packed_sequence(PackedSequence(x, batch_sizes))
            if isinstance(zoneout, Tensor):
                zoneout, _ = pad_packed_sequence(PackedSequence(zoneout, batch_sizes))
            out, h_n = torch_ops.gru_layer(
                padded, h0, w_ih, w_hh, b_ih, b_hh, lengths.to(x.device), reverse, reset_after, keeps_state,
                layer_norm, zoneout, recurrent_mask,
            )  # fmt: skip
            out = pack_padded_sequence(out, lengths).data
        else:
            out, h_n = torch_ops.gru_layer(
                x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after, keeps_state, layer_norm, zoneout,
                recurrent_mask,
            )  # fmt: skip
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        grads = iter(
            torch.autograd.grad(
                [out, h_n],
                wanted,
                [torch.zeros_like(out) if d_out is None else d_out, torch.zeros_like(h_n) if d_hn is None else d_hn],
                create_graph=True,
                allow_unused=True,
            )
        )
    by_input = [next(grads) if t is not None and t.requires_grad else None for t in inputs]
    return tuple(by_input[:6]) + (None, None) + tuple(by_input[6:])


# ------------------------------------------------------------------ backend entry point


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def _layer(
    x,
    batch_sizes,
    h0,
    w_ih,
    w_hh,
    b_ih,
    b_hh,
    lengths,
    reverse,
    reset_after,
    keeps_state,
    layer_norm,
    zoneout,
    recurrent_mask,
):
    """One call of ``gru_layer_fwd``, padded or packed, plain or regularised: (out, h_n)."""
    ln = tuple(_contiguous(t) for t in layer_norm) if layer_norm is not None else (None, None, None, None)
    mask = zoneout.contiguous() if isinstance(zoneout, Tensor) else None
    if isinstance(zoneout, ZoneoutDraw):  # the kernel draws the mask from the seed (never stored)
        p, seed = zoneout.p, zoneout.seed
    else:
        p, seed = (float(zoneout) if isinstance(zoneout, (int, float)) else 0.0), -1
    weights = [_contiguous(t) for t in (h0, w_ih, w_hh, b_ih, b_hh)]
    out, h_n, _ = torch.ops.grukit.gru_layer_fwd(
        x.contiguous(),
        *weights,
        lengths,
        batch_sizes,
        *ln,
        mask,
        p,
        seed,
        _contiguous(recurrent_mask),
        reverse,
        reset_after,
        keeps_state,
        _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh, *ln),
    )
    return out, h_n


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
    """One layer, one direction; the contract of :func:`grukit.backends.torch_ops.gru_layer`."""
    return _layer(
        x,
        None,
        h0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        lengths,
        reverse,
        reset_after,
        keeps_state,
        layer_norm,
        zoneout,
        recurrent_mask,
    )


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
    zoneout: Union[None, float, Tensor, ZoneoutDraw] = None,
    recurrent_mask: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction, on the data of a PackedSequence, with no padding.

    Args:
        x: [N, I] the packed steps (``PackedSequence.data``): step t's ``batch_sizes[t]``
            rows follow step t-1's, sequences sorted longest first.
        batch_sizes: [T] int64 on the CPU, positive and non-increasing, summing to N.
        h0: [B, H] initial states in the same sorted order (B = batch_sizes[0]).
        the rest: as :func:`grukit.backends.torch_ops.gru_layer` (a zoneout mask is [N, H],
        in the packed layout).

    Returns:
        out: [N, H] the states in the packed layout; h_n: [B, H] each sequence's final state.
    """
    return _layer(
        x,
        batch_sizes,
        h0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        None,
        reverse,
        reset_after,
        keeps_state,
        layer_norm,
        zoneout,
        recurrent_mask,
    )
