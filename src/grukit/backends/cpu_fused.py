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

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import cpu_quota, onnx_translation, settings
from . import cpu_build, gemm_choice
from .layer_options import LayerOptions, LayerWeightsTuple
from .masks import ZoneoutDraw

NAME = "cpu_fused"
SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "ops.cpp"
CFLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"]  # + the level's flags
LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_state = {"loaded": False, "error": None, "module": None, "gemm": None, "library": None, "inputs": None}


def cache_root() -> Path:
    """The folder holding the builds: ``$GRUKIT_BUILD_DIR`` if set, else ``~/.cache/grukit``."""
    return Path(settings.get("GRUKIT_BUILD_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "grukit"))


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


def build_diagnostic(output: str) -> str:
    """The line of a failed build's output that says what went wrong, for a one-line message: the
    compiler's or linker's diagnostic ("ops.cpp:12:3: error: ..."), else the shell's ("g++: not
    found"), else ninja's FAILED line; never a line of the Python traceback that wraps them."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    python = ("Traceback", 'File "', "raise ", "return ", "^", "The above exception", "subprocess.", "_")
    lines = [line for line in lines if not line.startswith(python)]
    for wanted in (
        lambda line: ": error:" in line or line.startswith(("error:", "fatal error:")) or ": fatal error:" in line,
        lambda line: line.endswith(("not found", "No such file or directory", "Permission denied")),
        lambda line: line.startswith("FAILED:"),
    ):
        found = [line for line in lines if wanted(line)]
        if found:
            return found[0]
    return lines[-1] if lines else "no output"


def _compile_into(folder: Path, cflags) -> Path:
    """Compile the extension into ``folder`` in a child process (which also imports it once, so a
    library that cannot load is never cached); returns the library's path."""
    compiler = os.environ.get("CXX") or "c++"  # what torch.utils.cpp_extension runs
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler: {compiler!r} was not found (install g++, or set $CXX to a compiler)")
    arguments = {
        "name": "grukit_cpu",
        "sources": [str(SOURCE)],
        "extra_cflags": cflags,
        "extra_ldflags": LDFLAGS,
        "build_directory": str(folder),
        "is_python_module": True,
        "verbose": settings.is_on("GRUKIT_VERBOSE_BUILD"),
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
        raise RuntimeError(f"compiling {SOURCE.name} failed: {build_diagnostic(result.stderr or result.stdout)}")
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
            settings.get("GRUKIT_GEMM")  # refused now, not after a 40 s build
            adapts = settings.get("GRUKIT_CONTENTION") == "adapt"
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
            cpu_quota.apply_default_threads()  # a container's CPU quota, before the GEMM routines are timed
            _state["gemm"] = gemm_choice.configure(module, library.parent)
            module.set_contention_adapts(adapts)  # csrc/contention.h
            _register_autograd()
            _register_min_gru_scan()
            _state["loaded"] = True
        except settings.SettingError:
            raise  # a GRUKIT_* variable with a value it does not allow: the user's to fix, not a fallback
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


@contextlib.contextmanager
def call_scope():
    """One whole call on these kernels (``functional.gru``, ``QuantizedGRU``). When recent calls of
    this process lost time to another process (csrc/contention.h), the call runs on this thread
    alone: its layers and torch's operations around them (the zero initial state, stacking the final
    states), which would otherwise wake OpenMP's other thread to spin on a shared core
    (csrc/team.h, begin_call_aside)."""
    module = _state["module"]
    allowed = module.begin_call_aside() if module is not None else 0
    try:
        yield
    finally:
        if allowed:
            module.end_call_aside(allowed)


def open_stream(weights, h0: Tensor, reset_after: bool, keeps_state: bool, scales=None):
    """The streaming capability (``grukit.stream``): a native multi-layer, one-direction GRU that
    keeps its state between calls; plain GRU only (no layer norm or zoneout).

    Args:
        weights: per layer (w_ih [3H, I_l], w_hh [3H, H][, b_ih, b_hh [3H]]).
        h0: [L, B, H] initial state (copied).
        scales: for int8 weights (``grukit.QuantizedGRU``), per layer (s_ih, s_hh [3H]); weights in
            bfloat16 or int8 keep a float32 state.

    Returns an object with ``step(x [B, I]) -> [B, H]``, ``run(x [T, B, I]) -> [T, B, H]``,
    ``state() -> [L, B, H]`` and ``set_state(h)``.
    """
    if not is_available():
        raise RuntimeError(f"the fused CPU kernels are unavailable: {why_unavailable()}")
    return _state["module"].Stream(
        [list(w) for w in weights], h0, reset_after, keeps_state, [list(s) for s in scales or []]
    )


def open_min_gru_stream(weights, h0: Tensor):
    """The minGRU's streaming capability (``grukit.MinGRU.stream``; csrc/min_gru_stream.h): a native
    multi-layer minGRU that keeps its state between calls.

    Args:
        weights: per layer (w [2H, I_l], b [2H] or None), float32 or float64 as h0.
        h0: [L, B, H] initial state (copied).

    Returns an object with ``step(x [B, I]) -> [B, H]``, ``run(x [T, B, I]) -> [T, B, H]``,
    ``state() -> [L, B, H]`` and ``set_state(h)``.
    """
    if not is_available():
        raise RuntimeError(f"the fused CPU kernels are unavailable: {why_unavailable()}")
    layers = [[w.detach()] + ([b.detach()] if b is not None else []) for w, b in weights]
    return _state["module"].MinGruStream(layers, h0)


def is_available() -> bool:
    if settings.is_on("GRUKIT_DISABLE_BUILD"):
        return False
    # once loaded, no lock is taken: torch.compile traces this and cannot trace a lock
    if _state["loaded"]:
        return True
    if torch.compiler.is_compiling():
        return False  # never build inside a trace (grukit.GRU loads the kernels when it is made)
    return load()


def why_unavailable() -> str:
    if settings.is_on("GRUKIT_DISABLE_BUILD"):
        return "$GRUKIT_DISABLE_BUILD is 1"
    return _state["error"] or ""


AUTO_DEVICE_TYPES = ("cpu",)


def runs_on(device_type: str, dtype: torch.dtype) -> bool:
    return device_type == "cpu" and dtype in (torch.float32, torch.float64)


def supports(x: Tensor) -> bool:
    return runs_on(x.device.type, x.dtype)


# ------------------------------------------------------------------ the op's inputs and autograd

FORWARD_OP, BACKWARD_OP = "grukit::gru_layer_fwd", "grukit::gru_layer_bwd"


class OpInputs:
    """The layer operators' inputs, read from the one declaration (``csrc/layer_inputs.h``): the
    forward op's schema gives their names and defaults, the extension the names gru_layer_bwd
    returns gradients for. Every call, the fake implementation and the autograd formula below
    derive from this; nothing restates the argument list."""

    def __init__(self, extension):
        schema = torch.ops.grukit.gru_layer_fwd.default._schema
        arguments = [a for a in schema.arguments if a.name != "save_for_backward"]
        self.names = tuple(a.name for a in arguments)
        self.defaults = {a.name: a.default_value for a in arguments if a.has_default_value()}
        self.gradients = tuple(extension.layer_gradients())
        self.tensors = tuple(a.name for a in arguments if str(a.type) in ("Tensor", "Optional[Tensor]"))

    def bind(self, args, kwargs=None) -> dict:
        """``{name: value}`` for every input, from an op call's positional and keyword arguments."""
        kwargs = dict(kwargs or {})
        values = dict(zip(self.names, args))
        for name in self.names[len(values) :]:
            values[name] = kwargs.pop(name) if name in kwargs else self.defaults[name]
        return values

    def positional(self, values: dict) -> list:
        return [values[name] for name in self.names]


def op_inputs() -> OpInputs:
    """The declaration of the operators' inputs (the kernels must be loaded)."""
    if _state["inputs"] is None:
        raise RuntimeError(f"the fused CPU kernels are unavailable: {why_unavailable()}")
    return _state["inputs"]


def _register_autograd() -> None:
    """The autograd formula (``register_autograd``) and the shape-only implementation for
    ``torch.compile`` (``register_fake``) of the one operator pair, from the declaration."""
    declared = _state["inputs"] = OpInputs(_state["module"])
    saved_width = _state["module"].saved_width  # columns of the saved activations (csrc/saved_layout.h)

    @torch.library.register_fake(FORWARD_OP)
    def _fake(*args, **kwargs):
        save = args[len(declared.names)] if len(args) > len(declared.names) else kwargs.get("save_for_backward", False)
        inputs = declared.bind(args, kwargs)
        x, h0, H = inputs["x"], inputs["h0"], inputs["w_hh"].shape[1]
        rows = x.shape[:-1]  # (T, B) padded, (N,) packed
        n = rows[0] * rows[1] if len(rows) == 2 else rows[0]
        width = saved_width(H, inputs["reset_after"], inputs["gamma_ih"] is not None)
        saved = x.new_empty((n, width)) if save else x.new_empty((0,))
        return x.new_empty(rows + (H,)), x.new_empty((h0.shape[0], H)), saved

    @torch.library.register_fake(BACKWARD_OP)
    def _fake_bwd(out, saved, d_out, d_hn, *args, **kwargs):
        inputs = declared.bind(args, kwargs)
        like = inputs["w_hh"]
        return [
            torch.empty_like(inputs[name]) if inputs[name] is not None else like.new_empty((0,))
            for name in declared.gradients
        ]

    def setup_context(ctx, inputs, output):
        values = declared.bind(inputs[: len(declared.names)])
        out, _, saved = output
        tensors = [name for name in declared.tensors if values[name] is not None]
        ctx.save_for_backward(*(values[name] for name in tensors), out, saved)
        ctx.tensor_names = tensors
        ctx.values = {name: value for name, value in values.items() if name not in declared.tensors}

    def backward(ctx, d_out, d_hn, _d_saved):
        *tensors, out, saved = ctx.saved_tensors
        inputs = {name: None for name in declared.tensors}
        inputs.update(zip(ctx.tensor_names, tensors))
        inputs.update(ctx.values)
        # create_graph=True (the gradient itself must be differentiable), or gradients batched by
        # torch's vmap (gradcheck's check_batched_grad): the layer recomputed in torch ops, differentiated
        if torch.is_grad_enabled() or _batched(d_out, d_hn):
            grads = differentiable_backward(inputs, d_out, d_hn)
        else:
            if not saved.numel():
                raise RuntimeError(
                    "grukit: backward through a fused GRU layer that ran without saving activations "
                    "(save_for_backward=False); call it with grad enabled"
                )
            d_out = torch.zeros_like(out) if d_out is None else d_out.contiguous()
            d_hn = torch.zeros_like(inputs["h0"]) if d_hn is None else d_hn.contiguous()
            returned = torch.ops.grukit.gru_layer_bwd(out, saved, d_out, d_hn, *declared.positional(inputs))
            grads = {name: g if inputs[name] is not None else None for name, g in zip(declared.gradients, returned)}
        return tuple(grads.get(name) for name in declared.names) + (None,)  # (save_for_backward)

    torch.library.register_autograd(FORWARD_OP, backward, setup_context=setup_context)
    onnx_translation.register_torchscript_symbolic(declared.names)  # torch.onnx.export(dynamo=False)
    onnx_translation.register_with_dynamo_exporter(declared.names)  # the default exporter
    for name in (FORWARD_OP, BACKWARD_OP):
        torch.library.register_vmap(name, _vmap_by_loop(name))


# ------------------------------------------------------------------ the minGRU's scan

MIN_GRU_SCAN_OP, MIN_GRU_SCAN_BACKWARD_OP = "grukit::min_gru_scan", "grukit::min_gru_scan_backward"


def min_gru_scan(k: Tensor, h0: Tensor) -> Tensor:
    """The minGRU's scan (``grukit.min_gru``; csrc/min_gru_scan.h), one fused kernel each way.

    Args:
        k: [T, B, 2H] gate pre-activations x W^T + b (update-gate columns, then candidate columns).
        h0: [B, H] initial state.

    Returns:
        h: [T, B, H], h_t = (1 - z_t) h_{t-1} + z_t g(k_h), z_t = sigmoid(k_z).
    """
    return torch.ops.grukit.min_gru_scan(k.contiguous(), h0.contiguous())


def _register_min_gru_scan() -> None:
    """The scan's autograd formula (the backward kernel, a reverse scan) and shapes for torch.compile."""

    @torch.library.register_fake(MIN_GRU_SCAN_OP)
    def _fake(k, h0):
        return k.new_empty(k.shape[:2] + h0.shape[1:])

    @torch.library.register_fake(MIN_GRU_SCAN_BACKWARD_OP)
    def _fake_backward(d_h, h, k, h0):
        return torch.empty_like(k), torch.empty_like(h0)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs, output)

    def backward(ctx, d_h):
        k, h0, h = ctx.saved_tensors
        if torch.is_grad_enabled() or _batched(d_h):
            # second derivatives, or gradients batched by vmap: the scan in torch ops, differentiated
            from .torch_ops import min_gru_scan_gradients

            return min_gru_scan_gradients(k, h0, d_h)
        return torch.ops.grukit.min_gru_scan_backward(d_h.contiguous(), h, k, h0)

    torch.library.register_autograd(MIN_GRU_SCAN_OP, backward, setup_context=setup_context)
    for name in (MIN_GRU_SCAN_OP, MIN_GRU_SCAN_BACKWARD_OP):
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
        if isinstance(results[0], Tensor):
            return torch.stack(results), 0
        stacked = [torch.stack(parts) for parts in zip(*results)]
        if isinstance(results[0], tuple):
            return tuple(stacked), (0,) * len(stacked)
        return stacked, [0] * len(stacked)

    return rule


def differentiable_backward(inputs: dict, d_out, d_hn) -> dict:
    """The layer's gradients as a differentiable function (for ``create_graph=True``): the forward
    is run again on the portable path (``torch_ops.gru_layer``, plain torch ops, so autograd can
    differentiate it twice) and differentiated with ``create_graph=True``.

    Args:
        inputs: the op's inputs by name (``OpInputs``); x [T, B, I] padded or [N, I] packed (with
            batch_sizes [T]).
        d_out, d_hn: the incoming gradients of out and h_n (None: zero).

    Returns ``{name: gradient}`` for the differentiable inputs that require one.
    """
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

    from . import torch_ops

    if inputs["zoneout_mask"] is None and inputs["zoneout_seed"] >= 0:
        raise RuntimeError(
            "grukit: double backward (create_graph=True) or batched gradients through zoneout drawn "
            "inside the fused CPU kernel are not supported: pass backend='torch', or an explicit zoneout mask"
        )
    norm = tuple(inputs[name] for name in ("gamma_ih", "beta_ih", "gamma_hh", "beta_hh"))
    layer_norm = norm if norm[0] is not None else None
    zoneout = inputs["zoneout_mask"] if inputs["zoneout_mask"] is not None else (inputs["zoneout_p"] or None)
    x, lengths, batch_sizes = inputs["x"], inputs["lengths"], inputs["batch_sizes"]
    flags = {name: inputs[name] for name in ("reverse", "reset_after", "keeps_state")}
    options = LayerOptions(**flags, layer_norm=layer_norm, recurrent_mask=inputs["recurrent_mask"])
    h0, weights = inputs["h0"], tuple(inputs[name] for name in ("w_ih", "w_hh", "b_ih", "b_hh"))
    with torch.enable_grad():
        if batch_sizes is not None:  # packed rows -> padded [T, B, I] with lengths, and back
            padded, lengths = pad_packed_sequence(PackedSequence(x, batch_sizes))
            if isinstance(zoneout, Tensor):
                zoneout, _ = pad_packed_sequence(PackedSequence(zoneout, batch_sizes))
            options = replace(options, zoneout=zoneout)
            out, h_n = torch_ops.gru_layer(padded, h0, weights, lengths.to(x.device), options)
            out = pack_padded_sequence(out, lengths).data
        else:
            out, h_n = torch_ops.gru_layer(x, h0, weights, lengths, replace(options, zoneout=zoneout))
        wanted = [name for name, t in inputs.items() if isinstance(t, Tensor) and t.requires_grad]
        grads = torch.autograd.grad(
            [out, h_n],
            [inputs[name] for name in wanted],
            [torch.zeros_like(out) if d_out is None else d_out, torch.zeros_like(h_n) if d_hn is None else d_hn],
            create_graph=True,
            allow_unused=True,
        )
    return dict(zip(wanted, grads))


# ------------------------------------------------------------------ backend entry point


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def _layer(x: Tensor, h0: Tensor, weights: LayerWeightsTuple, options: LayerOptions, **rows):
    """One call of ``gru_layer_fwd``, padded (``rows``: ``lengths``) or packed (``batch_sizes``), plain
    or regularised: (out, h_n). The op's inputs by their own names (csrc/layer_inputs.h), from the
    tensors and the :class:`LayerOptions`."""
    inputs = dict(x=x, h0=h0, **dict(zip(("w_ih", "w_hh", "b_ih", "b_hh"), weights)), **rows)
    inputs.update(reverse=options.reverse, reset_after=options.reset_after, keeps_state=options.keeps_state)
    inputs.update(recurrent_mask=options.recurrent_mask)
    inputs.update(zip(("gamma_ih", "beta_ih", "gamma_hh", "beta_hh"), options.layer_norm or (None,) * 4))
    zoneout = options.zoneout
    if isinstance(zoneout, ZoneoutDraw):  # the kernel draws the mask from the seed (never stored)
        inputs.update(zoneout_p=zoneout.p, zoneout_seed=zoneout.seed)
    elif isinstance(zoneout, Tensor):
        inputs.update(zoneout_mask=zoneout)
    elif zoneout:  # evaluation: k = p
        inputs.update(zoneout_p=float(zoneout))
    inputs = {name: _contiguous(value) if isinstance(value, Tensor) else value for name, value in inputs.items()}
    # torch.jit.trace records the flag as a constant, so a trace always saves: the traced module then
    # runs backward whether it was traced (or its trace checked) with grad on or off
    save = torch.jit.is_tracing() or _needs_grad(*(inputs.get(name) for name in op_inputs().gradients))
    out, h_n, _ = torch.ops.grukit.gru_layer_fwd(**inputs, save_for_backward=save)
    return out, h_n


def gru_layer(
    x: Tensor, h0: Tensor, weights: LayerWeightsTuple, lengths: Optional[Tensor], options: LayerOptions
) -> Tuple[Tensor, Tensor]:
    """One layer, one direction; the contract of :func:`grukit.backends.torch_ops.gru_layer`."""
    return _layer(x, h0, weights, options, lengths=lengths)


def gru_layer_packed(
    x: Tensor, batch_sizes: Tensor, h0: Tensor, weights: LayerWeightsTuple, options: LayerOptions
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
    return _layer(x, h0, weights, options, batch_sizes=batch_sizes)
