"""Low-precision inference: a GRU whose weights are stored in bfloat16 or int8.

Train in float32, then serve with fewer bytes per weight and more products per instruction::

    gru = grukit.GRU(40, 512, num_layers=2)      # trained as usual
    fast = gru.quantized("int8")                  # or "bfloat16"
    output, h_n = fast(x)                         # the call grukit.GRU takes

    fast = grukit.QuantizedGRU.from_float(torch_gru, "int8")   # a torch.nn.GRU works too

What each precision computes (the kernels: ``grukit/csrc/low_precision.h``):

* **int8**: each row of W_ih and W_hh (one output unit's weights) is stored as
  ``w_q = round(W / s_w)`` in [-127, 127] with ``s_w = max |row| / 127`` (symmetric, per output
  row). Every row of x and of h (one sequence's step) is quantized where it enters a product, with
  its own scale ``s_a = max |row| / 127``; the products are summed in int32 and scaled back,
  ``x W^T ~= s_a s_w sum_k a_q w_q``. Gates, biases, layer norm and the state stay float32.
* **bfloat16**: W is stored in bfloat16; x and h are rounded to bfloat16 where they enter a
  product, the sums are float32; gates and state float32.

The products use ``vpdpbusd`` (AVX512_VNNI) and ``vdpbf16ps`` (AVX512_BF16) in the fused CPU
kernels' AVX-512 build where the CPU has them, AVX2 kernels (``vpmaddubsw``; bfloat16 widened to
float32) on other x86-64-v3 CPUs, and float32 GEMMs on the rounded values elsewhere: the same
int8 numbers on every path (:func:`instructions` says which runs; :func:`use_instructions` picks one).
Inference only: the module has no parameters to train, and a backward pass through it raises.

Both GRU forms (``reset_after``), both update meanings, layer norm and zoneout (its evaluation
value) carry over from the float module; dropout and recurrent dropout do nothing at inference.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .backends import cpu_fused
from .functional import call_scope, run_quantized_layers
from .module_parts import (
    ALWAYS,
    GRU_FIELDS,
    LAYER_NORM_INPUTS,
    LAYER_NORM_NAMES,
    GRUWeights,
    describe,
    describe_grukit_module,
    describe_modules_layers,
    extra_repr_of,
    layer_suffixes,
    refuse_torchscript,
)
from .stream import GRUStream
from .torch_call import call_as_torch_gru
from .validation import (
    KEEPS_STATE,
    DtypeError,
    check_bool,
    check_probability,
    check_size,
    check_tensor,
    check_update_gate,
)

PRECISIONS = ("int8", "bfloat16")
_FLOAT32_CPU = torch.empty(0)  # what a QuantizedGRU's input must be like, whatever its weights' storage
STORAGE = {"int8": torch.int8, "bfloat16": torch.bfloat16}


def check_precision(precision) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def quantize_weight(weight: Tensor, precision: str, name: str = "weight") -> Tuple[Tensor, Optional[Tensor]]:
    """``weight`` [R, C] in ``precision``: (w_q int8 [R, C], s_w float32 [R]) with w_q = round(W / s_w),
    s_w = max_c |W[r, c]| / 127 (1 for an all-zero row); or (W in bfloat16, None). ValueError naming
    ``name`` if W holds NaN or inf: int8 would turn them into plausible numbers (NaN rows become 0)."""
    weight = weight.detach().float()
    check_finite(name, weight, NOT_QUANTIZABLE)
    if precision == "bfloat16":
        return weight.to(torch.bfloat16), None
    scale = weight.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


NOT_QUANTIZABLE = "a model with them computes NaN, and quantizing would hide it: retrain or repair the weights first"


def check_finite(name: str, t: Tensor, why: str = "") -> Tensor:
    """``t`` if every value is finite; else ValueError naming ``name``, how many are not, and ``why``."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN or infinite values of {t.numel()}" + (f"; {why}" if why else "")
        )
    return t


def dequantize_weight(weight: Tensor, scale: Optional[Tensor]) -> Tensor:
    """The float32 weights a stored weight stands for: w_q * s_w (int8) or the bfloat16 values."""
    return weight.float() if scale is None else weight.float() * scale[:, None]


def instructions(precision: str) -> str:
    """The instructions ``precision``'s products use in this build on this CPU ("float32 GEMM on the
    ... values" where the CPU or the build level lacks them)."""
    _require_kernels()
    return cpu_fused.extension().low_precision_instructions(check_precision(precision))


@contextlib.contextmanager
def use_instructions(name: str):
    """Within the block, quantized layers called and streams made compute their products with
    ``name`` ("avx512", "avx2" or "float32_gemm") instead of the best this build and CPU have;
    for comparing the paths on one machine. ValueError if this build or CPU lacks it."""
    _require_kernels()
    extension = cpu_fused.extension()
    extension.set_low_precision_instructions(name)
    try:
        yield
    finally:
        extension.set_low_precision_instructions("")


def _require_kernels() -> None:
    if not cpu_fused.is_available():
        raise RuntimeError(
            "a quantized GRU runs on the fused CPU kernels, which are unavailable here: "
            f"{cpu_fused.why_unavailable() or 'unknown reason'}"
        )


class _InferenceOnly(torch.autograd.Function):
    """(output, h_n) joined to the inputs that require grad, so that a backward pass reaches this
    node and raises with what to do instead (not torch's "does not require grad")."""

    @staticmethod
    def forward(output, h_n, *inputs):
        return output.clone(), h_n.clone()

    @staticmethod
    def setup_context(ctx, inputs, outputs):  # forward and context apart: torch.func transforms need it
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "a QuantizedGRU computes inference only and has no backward pass: train the float32 "
            "grukit.GRU, then quantize it again (gru.quantized(precision))"
        )


class QuantizedGRU(nn.Module):
    r"""A multi-layer GRU for inference with bfloat16 or int8 weights (see the module doc).

    Make one from a trained GRU: ``grukit.GRU.quantized(precision)`` or
    :meth:`from_float` (which also takes a ``torch.nn.GRU``). Constructed directly, its weights are
    zeros until ``load_state_dict`` fills them (the state dict of another QuantizedGRU of the same
    configuration and precision).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as ``grukit.GRU``.
        precision: "int8" or "bfloat16".
        reset_after, update_gate, layer_norm, zoneout: as ``grukit.GRU`` (zoneout at its
            evaluation value: h_t = p h_{t-1} + (1 - p) h'_t).

    Inputs: ``input, h_0, lengths``: as ``grukit.GRU`` (input [T, B, I], [B, T, I] with
    ``batch_first``, [T, I] unbatched, or a ``PackedSequence``; h_0 [L*D, B, H] or None), plus
    ``lengths`` [B] for a padded batch. Input and h_0 are float32, on the CPU.

    Outputs: ``output, h_n``: as ``grukit.GRU``, float32.

    Buffers (in ``state_dict``): ``weight_ih_l{k}[_reverse]`` [3H, I_k] and ``weight_hh_l{k}...``
    [3H, H] in the precision's storage type (int8 or bfloat16); with int8 their scales
    ``weight_ih_scale_l{k}...`` and ``weight_hh_scale_l{k}...`` [3H] float32; biases and layer-norm
    gains float32, under ``torch.nn.GRU``'s / ``grukit.GRU``'s names.
    """

    __prepare_scriptable__ = refuse_torchscript

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        *,
        precision: str = "int8",
        reset_after: bool = True,
        update_gate: str = KEEPS_STATE,
        layer_norm: bool = False,
        zoneout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            check_bool(name, flag)
        self.precision = check_precision(precision)
        self.reset_after = check_bool("reset_after", reset_after)
        self.update_gate = check_update_gate(update_gate)
        self.layer_norm = check_bool("layer_norm", layer_norm)
        self.zoneout = check_probability("zoneout", zoneout)
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        D = 2 if bidirectional else 1
        H = hidden_size
        storage = STORAGE[precision]
        self._suffixes = layer_suffixes(num_layers, bidirectional)
        for k, suffix in enumerate(self._suffixes):
            in_size = input_size if k < D else D * H
            self.register_buffer("weight_ih" + suffix, torch.zeros(3 * H, in_size, dtype=storage))
            self.register_buffer("weight_hh" + suffix, torch.zeros(3 * H, H, dtype=storage))
            if precision == "int8":
                self.register_buffer("weight_ih_scale" + suffix, torch.ones(3 * H))
                self.register_buffer("weight_hh_scale" + suffix, torch.ones(3 * H))
            if bias:
                self.register_buffer("bias_ih" + suffix, torch.zeros(3 * H))
                self.register_buffer("bias_hh" + suffix, torch.zeros(3 * H))
            if layer_norm:
                for base in LAYER_NORM_NAMES:
                    self.register_buffer(base + suffix, torch.ones(3 * H) if "weight" in base else torch.zeros(3 * H))

    # ---- making one -------------------------------------------------------------------
    @classmethod
    def from_float(cls, module: nn.Module, precision: str = "int8") -> "QuantizedGRU":
        """The quantized copy of a trained ``grukit.GRU`` or ``torch.nn.GRU`` (float32 or float64): the one
        way in (``grukit.GRU.quantized(precision)`` calls this). Reads the module's description
        (``grukit.module_parts.describe``), so this module needs no import of ``grukit.nn``."""
        check_precision(precision)
        float_gru = describe(module)
        if float_gru.precision != "float":
            raise TypeError(f"module must be a float GRU; this one is already quantized ({float_gru.precision})")
        new = cls(
            float_gru.input_size,
            float_gru.hidden_size,
            float_gru.num_layers,
            float_gru.bias,
            float_gru.batch_first,
            float_gru.bidirectional,
            precision=precision,
            reset_after=float_gru.reset_after,
            update_gate=float_gru.update_gate,
            layer_norm=float_gru.layer_norm,
            zoneout=float_gru.zoneout,
        )
        with torch.no_grad():
            for suffix, source in zip(new._suffixes, float_gru.layers):
                for base, name in (("weight_ih", "w_ih"), ("weight_hh", "w_hh")):
                    stored, scale = quantize_weight(source[name], precision, base + suffix)
                    getattr(new, base + suffix).copy_(stored)
                    if scale is not None:
                        getattr(new, base + "_scale" + suffix).copy_(scale)
                extra = ([("bias_ih", "b_ih"), ("bias_hh", "b_hh")] if float_gru.bias else []) + (
                    list(zip(LAYER_NORM_NAMES, LAYER_NORM_INPUTS)) if float_gru.layer_norm else []
                )
                for base, name in extra:
                    getattr(new, base + suffix).copy_(
                        check_finite(base + suffix, source[name].detach().float(), NOT_QUANTIZABLE)
                    )
        return new

    # ---- loading a state_dict: every entry checked before it is copied --------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        """Refuse a damaged or crafted state_dict with one line naming the entry: stored weights of
        another dtype (``copy_`` would cast them: 300 becomes 44) or shape, int8 values outside
        [-127, 127] (the kernels' products assume that range), scales that are not finite and positive,
        biases and layer-norm gains that are not finite floats."""
        storage = STORAGE[self.precision]
        for name, buffer in self._buffers.items():
            key = prefix + name
            if key not in state_dict:
                continue  # torch reports missing keys itself
            value = state_dict[key]
            where = f"state_dict entry {key!r}"
            if not isinstance(value, Tensor):
                raise ValueError(f"{where} must be a tensor, got {type(value).__name__}")
            if tuple(value.shape) != tuple(buffer.shape):
                raise ValueError(f"{where} must have shape {list(buffer.shape)}, got {list(value.shape)}")
            if name.startswith(("weight_ih_l", "weight_hh_l")):
                if value.dtype != storage:
                    raise ValueError(
                        f"{where} must hold {self.precision} weights ({storage}), got {value.dtype}: this "
                        "QuantizedGRU loads only what one of its precision saved"
                    )
                if storage == torch.int8 and bool((value == -128).any()):
                    raise ValueError(f"{where} holds -128: int8 weights lie in [-127, 127] (symmetric quantization)")
                if storage == torch.bfloat16:
                    check_finite(where, value.float())
                continue
            if not value.is_floating_point():
                raise ValueError(f"{where} must be a float tensor, got {value.dtype}")
            check_finite(where, value.float())
            if "_scale_l" in name and not bool((value > 0).all()):
                raise ValueError(f"{where}: every int8 scale must be positive, got {float(value.min()):g}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    def _apply(self, fn, recurse=True):
        """``.to(device)``, ``.float()``, ``.half()``...: refused where they would convert the stored
        weights, scales or biases (the kernels read only bfloat16 / int8 weights and float32 rest)
        or move them off the CPU; a no-op conversion (``.float()`` of an int8 module, ``.cpu()``)
        passes."""
        for dtype in {STORAGE[self.precision], torch.float32}:
            probe = fn(torch.zeros(0, dtype=dtype))
            if probe.dtype != dtype or probe.device.type != "cpu":
                raise TypeError(
                    f"this {self.precision} QuantizedGRU keeps its stored weights in {STORAGE[self.precision]} and "
                    f"the rest in float32 on the CPU; this conversion would make them {probe.dtype} on "
                    f"{probe.device}. Convert the float model and quantize it again"
                )
        return super()._apply(fn, recurse)

    def dequantized_weights(self) -> List[Tuple[Tensor, ...]]:
        """Per layer and direction, the float32 weights the stored ones stand for, as
        ``grukit.functional.gru`` takes them: (w_ih, w_hh[, b_ih, b_hh])."""
        out = []
        for k in self._layer_inputs():
            weights = (dequantize_weight(k["w_ih"], k["w_ih_scale"]), dequantize_weight(k["w_hh"], k["w_hh_scale"]))
            out.append(weights + ((k["b_ih"], k["b_hh"]) if self.bias else ()))
        return out

    def _layer_inputs(self) -> List[Dict[str, Optional[Tensor]]]:
        """Per layer and direction, the op's weight inputs by name (None where absent)."""
        return list(describe_modules_layers(self, self._suffixes, self.layer_norm, self.precision == "int8"))

    def describe(self) -> GRUWeights:
        """This GRU with no module around it (its own tensors): what a stream reads."""
        return describe_grukit_module(self, self.precision, "cpu_fused", self._suffixes)

    def extra_repr(self) -> str:
        fields = (("precision", ALWAYS),) + tuple(
            field for field in GRU_FIELDS if field[0] not in ("dropout", "recurrent_dropout")
        )
        return extra_repr_of(self, fields)

    # ---- running it -------------------------------------------------------------------
    def _options(self) -> dict:
        return dict(
            hidden_size=self.hidden_size,
            bidirectional=self.bidirectional,
            reset_after=self.reset_after,
            keeps_state=self.update_gate == KEEPS_STATE,
            zoneout=self.zoneout,
        )

    def _check_float32_cpu(self, name: str, t: Optional[Tensor]) -> None:
        if t is None:
            return
        if t.dtype != torch.float32:
            raise DtypeError(f"{name} must be float32 (a QuantizedGRU computes in float32), got {t.dtype}")
        if t.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU (a QuantizedGRU runs there), got {t.device}")

    def _check_no_infinity(self, x: Tensor, h_n: Tensor) -> None:
        """int8 quantizes each row with the scale max |row| / 127: a row holding inf has no finite
        scale, and its outputs are NaN (the kernels' rule) where float32's can stay finite. Refused
        instead. Checked after the call, and only where the final state h_n [L*D, B, H] holds NaN
        (which every sequence with such a row ends in), so that a finite input costs no extra pass."""
        if self.precision == "int8" and bool(torch.isnan(h_n).any()) and bool(torch.isinf(x).any()):
            raise ValueError(
                "input holds inf: int8 quantizes each step's values with the scale max |x| / 127, which inf "
                "has not; clip the input, or use the float32 or bfloat16 model"
            )

    def forward(
        self, input: Union[Tensor, PackedSequence], hx: Optional[Tensor] = None, lengths=None
    ) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        _require_kernels()
        self._check_float32_cpu("input", input.data if isinstance(input, PackedSequence) else input)
        return call_as_torch_gru(
            self._run, input, hx, self.input_size, self.batch_first, _FLOAT32_CPU, self._run_packed, lengths
        )

    def _run(self, x: Tensor, hx: Optional[Tensor], lengths) -> Tuple[Tensor, Tensor]:
        """x [T, B, I] float32 -> (output [T, B, D*H], h_n [L*D, B, H])."""
        T, B, _ = x.shape
        D = 2 if self.bidirectional else 1
        if hx is not None:
            check_tensor("hx", hx, (self.num_layers * D, B, self.hidden_size), x)
        if T == 0 or B == 0:
            output = x.new_zeros(T, B, D * self.hidden_size)
            h_n = hx.clone() if hx is not None else x.new_zeros(self.num_layers * D, B, self.hidden_size)
        else:
            with call_scope(cpu_fused):  # the layers and the check, on one thread after contended calls
                output, h_n = run_quantized_layers(self._layer_inputs(), x, hx, lengths=lengths, **self._options())
                self._check_no_infinity(x, h_n)
        return self._inference_only(output, h_n, x, hx)

    def _run_packed(self, data: Tensor, batch_sizes: Tensor, hx: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """A PackedSequence's data [N, I] (longest first) -> (data [N, D*H], h_n), with no padding."""
        D = 2 if self.bidirectional else 1
        if hx is not None:
            check_tensor("hx", hx, (self.num_layers * D, int(batch_sizes[0]), self.hidden_size), data)
        with call_scope(cpu_fused):
            out, h_n = run_quantized_layers(
                self._layer_inputs(), data, hx, batch_sizes=batch_sizes.cpu(), **self._options()
            )
            self._check_no_infinity(data, h_n)
        return self._inference_only(out, h_n, data, hx)

    @staticmethod
    def _inference_only(output: Tensor, h_n: Tensor, *inputs) -> Tuple[Tensor, Tensor]:
        needing = [t for t in inputs if t is not None and t.requires_grad] if torch.is_grad_enabled() else []
        return _InferenceOnly.apply(output, h_n, *needing) if needing else (output, h_n)

    def stream(self, batch_size: int = 1, h0: Optional[Tensor] = None) -> GRUStream:
        """A :class:`grukit.stream.GRUStream` for step-by-step inference with these weights (packed
        once, each step one native call)."""
        _require_kernels()
        return GRUStream(self.describe(), batch_size, h0)


def quantize_grus(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """``model`` with every ``grukit.GRU`` inside it replaced by its :class:`QuantizedGRU` in
    ``precision`` ("int8" or "bfloat16"), in place; returned for chaining (what ``grukit quantize``
    does to a model file's network)."""
    for name, child in list(model.named_children()):
        # a grukit.GRU (it describes itself; a QuantizedGRU does too, and stays as it is)
        if callable(getattr(child, "describe", None)) and not isinstance(child, QuantizedGRU):
            setattr(model, name, QuantizedGRU.from_float(child, precision))
        else:
            quantize_grus(child, precision)
    return model
