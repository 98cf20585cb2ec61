"""What every grukit GRU module shares, below all of them: parameter names, the TorchScript refusal,
and :class:`GRUWeights`, a GRU described without its module.

A stream (``grukit.stream``) and the quantizer (``grukit.QuantizedGRU.from_float``) read a
:class:`GRUWeights`, never a module: ``grukit.GRU.describe()``, ``grukit.QuantizedGRU.describe()``
and :func:`describe` (which also reads a ``torch.nn.GRU``) make one. So no module needs to know the
others, and the imports run one way (nn -> quantized -> stream -> functional).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from torch import Tensor, nn

from .validation import KEEPS_STATE

# the layer-norm parameters' names (prefixes of ``..._l{k}[_reverse]``) and the fused op's inputs they feed
LAYER_NORM_NAMES = ("layer_norm_weight_ih", "layer_norm_bias_ih", "layer_norm_weight_hh", "layer_norm_bias_hh")
LAYER_NORM_INPUTS = ("gamma_ih", "beta_ih", "gamma_hh", "beta_hh")


ALWAYS = object()  # extra_repr_of: a field shown whatever its value


def extra_repr_of(module, fields) -> str:
    """A module's ``extra_repr``, torch.nn.GRU's style: ``"I, H"`` then ``name=value`` for each of
    ``fields`` ((name, default) pairs, in order) whose value differs from its default, or always for
    the default :data:`ALWAYS`."""
    text = f"{module.input_size}, {module.hidden_size}"
    for name, default in fields:
        value = getattr(module, name)
        if default is ALWAYS or value != default:
            text += f", {name}={value!r}"
    return text


# extra_repr's fields after "I, H", torch.nn.GRU's first (with their defaults), then grukit's
GRU_FIELDS = (
    ("num_layers", 1),
    ("bias", True),
    ("batch_first", False),
    ("dropout", 0.0),
    ("bidirectional", False),
    ("reset_after", ALWAYS),
    ("update_gate", ALWAYS),
    ("layer_norm", False),
    ("zoneout", 0.0),
    ("recurrent_dropout", 0.0),
)


def layer_suffixes(num_layers: int, bidirectional: bool) -> List[str]:
    """The parameter-name suffix of each layer and direction, in torch.nn.GRU's order:
    ``_l0``, ``_l0_reverse``, ``_l1``, ..."""
    return [f"_l{layer}" + ("_reverse" if d else "") for layer in range(num_layers) for d in range(1 + bidirectional)]


def refuse_torchscript(module: nn.Module):
    """``__prepare_scriptable__`` of grukit's modules: ``torch.jit.script`` calls it on every module it
    is asked to compile, so a model holding one gets this message instead of a TorchScript parse error.
    grukit's forward picks a backend and validates in Python, which TorchScript cannot compile."""
    raise RuntimeError(
        f"torch.jit.script cannot compile grukit.{type(module).__name__} (its forward is Python that "
        "TorchScript does not parse); use torch.jit.trace(model, example_input) for a TorchScript "
        "module, torch.compile or torch.export, or torch.onnx.export / grukit.export for ONNX"
    )


@dataclass(frozen=True)
class GRUWeights:
    """A GRU's configuration and weights, with no module around them.

    Attributes:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as ``torch.nn.GRU``.
        reset_after, update_gate, layer_norm, zoneout: as ``grukit.GRU``.
        precision: "float" (the tensors' own dtype), "int8" or "bfloat16" (``grukit.QuantizedGRU``).
        backend: the backend the module was told to use (None: chosen per call).
        layers: per layer and direction (torch.nn.GRU's order), the fused op's weight inputs by name:
            w_ih [3H, I_k], w_hh [3H, H]; b_ih, b_hh [3H] (None without bias); w_ih_scale,
            w_hh_scale [3H] (int8 only, else None); gamma_ih, beta_ih, gamma_hh, beta_hh [3H]
            (layer norm only, else None). The module's own tensors, not copies.
    """

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    reset_after: bool
    update_gate: str
    layer_norm: bool
    zoneout: float
    precision: str
    backend: Optional[str]
    layers: Tuple[Dict[str, Optional[Tensor]], ...]

    def float_weights(self) -> List[Tuple[Tensor, ...]]:
        """Per layer and direction, (w_ih, w_hh[, b_ih, b_hh]) as ``grukit.functional.gru`` takes them."""
        return [(k["w_ih"], k["w_hh"]) + ((k["b_ih"], k["b_hh"]) if self.bias else ()) for k in self.layers]

    def layer_norm_weights(self) -> Optional[List[Tuple[Tensor, ...]]]:
        """Per layer and direction, (gamma_ih, beta_ih, gamma_hh, beta_hh), or None without layer norm."""
        if not self.layer_norm:
            return None
        return [tuple(k[name] for name in LAYER_NORM_INPUTS) for k in self.layers]


def describe_modules_layers(module: nn.Module, suffixes: List[str], layer_norm: bool, scales: bool) -> tuple:
    """The ``layers`` of a :class:`GRUWeights` read from a module's attributes named as torch.nn.GRU's
    (``weight_ih_l0``, ...), with layer-norm gains and int8 scales where ``layer_norm`` / ``scales``."""
    layers = []
    for suffix in suffixes:
        get = lambda base: getattr(module, base + suffix, None)  # noqa: E731
        inputs = {"w_ih": get("weight_ih"), "w_hh": get("weight_hh"), "b_ih": get("bias_ih"), "b_hh": get("bias_hh")}
        inputs["w_ih_scale"] = get("weight_ih_scale") if scales else None
        inputs["w_hh_scale"] = get("weight_hh_scale") if scales else None
        for name, base in zip(LAYER_NORM_INPUTS, LAYER_NORM_NAMES):
            inputs[name] = get(base) if layer_norm else None
        layers.append(inputs)
    return tuple(layers)


def describe_grukit_module(module, precision: str, backend: Optional[str], suffixes: List[str]) -> GRUWeights:
    """The :class:`GRUWeights` of a grukit GRU module (``grukit.GRU``: ``precision`` "float";
    ``grukit.QuantizedGRU``: its precision, int8 with its scales), read from its attributes."""
    variant = (module.reset_after, module.update_gate, module.layer_norm, module.zoneout)
    return _described(module, variant, precision, backend, suffixes)


def _described(module, variant: tuple, precision: str, backend: Optional[str], suffixes: List[str]) -> GRUWeights:
    """A :class:`GRUWeights` from a module with torch.nn.GRU's attributes and parameter names, and
    ``variant`` = (reset_after, update_gate, layer_norm, zoneout)."""
    reset_after, update_gate, layer_norm, zoneout = variant
    return GRUWeights(
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bias,
        module.batch_first,
        module.bidirectional,
        reset_after=reset_after,
        update_gate=update_gate,
        layer_norm=layer_norm,
        zoneout=zoneout,
        precision=precision,
        backend=backend,
        layers=describe_modules_layers(module, suffixes, layer_norm, precision == "int8"),
    )


def describe(module) -> GRUWeights:
    """The :class:`GRUWeights` of a ``torch.nn.GRU`` or of a grukit module (its ``describe()``).

    Raises:
        TypeError: ``module`` is neither.
    """
    if isinstance(module, nn.GRU):
        if getattr(module, "proj_size", 0):
            raise ValueError("a torch.nn.GRU with proj_size has no GRU description (GRUs have no projection)")
        plain = (True, KEEPS_STATE, False, 0.0)  # torch.nn.GRU's form
        return _described(module, plain, "float", None, layer_suffixes(module.num_layers, module.bidirectional))
    own = getattr(module, "describe", None)
    description = own() if callable(own) else None
    if not isinstance(description, GRUWeights):
        raise TypeError(
            f"module must be a grukit.GRU or torch.nn.GRU (or a grukit.QuantizedGRU), got {type(module).__name__}"
        )
    return description
