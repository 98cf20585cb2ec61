"""``torch.onnx.export`` of a model holding ``grukit.GRU``: the fused layer op as an ONNX ``GRU`` node.

``grukit.export.to_onnx`` writes a GRU alone; a user's whole model (embedding, GRU, head) goes
through PyTorch's own exporter, which meets ``torch.ops.grukit.gru_layer_fwd`` (one layer, one
direction) and needs to be told what ONNX computes it. Both of PyTorch's exporters are served:

* the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): a symbolic function,
  registered when the fused kernels load (``register_torchscript_symbolic``), so nothing is
  passed;
* the dynamo-based one (the default): an onnxscript function. PyTorch has no public registry for
  it, so the plain ``torch.onnx.export(model, (x,))`` works through the exporter's own table of
  translations (``register_with_dynamo_exporter``, called while the exporter traces the op); where a
  PyTorch version lacks that table, ``torch.onnx.export(..., custom_translation_table=
  grukit.onnx_translations())`` passes the same function.

This module is a leaf: it is given the op's input names (``grukit.backends.cpu_fused.op_inputs()``)
by the backend that declares the op, and imports only ``grukit.convert``'s gate rule.

Each call becomes one ONNX ``GRU`` node (opset >= 14) with the conventions of ``grukit.export``:

* gate rows reordered from torch's (r, z, n) to ONNX's (z, r, h) and ``B = [Wb, Rb]`` [1, 6H];
* ``linear_before_reset = 1`` for ``reset_after=True`` (torch's form), 0 for Cho et al. (2014)'s;
* ``keeps_state=False`` (Chung et al. 2014's meaning of z: h_t = z h'_t + (1 - z) h_{t-1}) is
  ONNX's convention with the z rows negated, since sigmoid(-a) = 1 - sigmoid(a);
* ``reverse=True`` is ``direction="reverse"``; per-sequence ``lengths`` become ``sequence_lens``.

Outputs: Y [T, 1, B, H] squeezed to out [T, B, H]; Y_h [1, B, H] to h_n [B, H]. The op's third
output (saved activations for backward) is an empty tensor in the graph.

Refused with a message: layer norm, zoneout, recurrent dropout masks (no ONNX GRU attribute
computes them; export the module with ``grukit.export`` after ``check_plain``), PackedSequence input
(pad it: ``lengths`` export as ``sequence_lens``) and int8 weights (``QuantizedGRU``).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Optional, Sequence

import torch

from .convert import onnx_gate_rows

OPSET_MIN = 14  # Split/Squeeze/Unsqueeze take their axes as inputs (opset 13), GRU since 7


def untranslatable(inputs: dict) -> Optional[str]:
    """Why the op call with ``inputs`` (name -> value, or None for an absent optional) has no ONNX
    GRU node; None if it has one."""
    present = lambda name: inputs.get(name) is not None  # noqa: E731
    if present("batch_sizes"):
        return "PackedSequence input: pad it (torch.nn.utils.rnn.pad_packed_sequence) and pass lengths"
    if present("gamma_ih"):
        return "layer_norm=True: the ONNX GRU operator has no layer normalisation"
    if present("zoneout_mask") or inputs.get("zoneout_p", 0.0) or inputs.get("zoneout_seed", -1) >= 0:
        return "zoneout: the ONNX GRU operator has none (export in eval mode without zoneout)"
    if present("recurrent_mask"):
        return "recurrent dropout in training mode: export the model in eval mode (model.eval())"
    if present("w_ih_scale"):
        return "int8 weights (grukit.QuantizedGRU): the ONNX GRU operator is float only"
    return None


def _refuse(inputs: dict) -> None:
    reason = untranslatable(inputs)
    if reason is not None:
        raise RuntimeError(f"grukit.gru_layer_fwd cannot be exported as an ONNX GRU: {reason}")


# ---------------------------------------------------------------- the TorchScript-based exporter


def _torchscript_symbolic(input_names: Sequence[str]):
    """``torch.onnx.export(dynamo=False)``'s translation of one ``gru_layer_fwd`` call, for the op
    whose inputs are named ``input_names`` (schema order): the returned function gets them as graph
    values (constants for the flags)."""

    def symbolic(g, *args):
        from torch.onnx import symbolic_helper as sh

        values = dict(zip(input_names, args))
        inputs = {name: (None if sh._is_none(v) else v) for name, v in values.items()}
        flags = {name: sh._maybe_get_const(inputs[name], "b") for name in ("reverse", "reset_after", "keeps_state")}
        inputs["zoneout_p"] = sh._maybe_get_const(values["zoneout_p"], "f")
        inputs["zoneout_seed"] = sh._maybe_get_const(values["zoneout_seed"], "i")
        _refuse(inputs)
        H = sh._get_tensor_sizes(inputs["w_hh"])[1]

        def const(values, dtype=torch.int64):
            return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

        def onnx_rows(w):
            return onnx_gate_rows(
                lambda rows: g.op("Split", rows, const([H, H, H]), axis_i=0, outputs=3),
                lambda *blocks: g.op("Concat", *blocks, axis_i=0),
                lambda block: g.op("Neg", block),
                w,
                flags["keeps_state"],
            )

        def unsqueeze(v):
            return g.op("Unsqueeze", v, const([0]))

        def absent():
            none = g.op("prim::Constant")
            none.setType(torch._C.OptionalType.ofTensor())
            return none

        W, R = unsqueeze(onnx_rows(inputs["w_ih"])), unsqueeze(onnx_rows(inputs["w_hh"]))
        if inputs["b_ih"] is not None:
            B = unsqueeze(g.op("Concat", onnx_rows(inputs["b_ih"]), onnx_rows(inputs["b_hh"]), axis_i=0))
        else:
            B = absent()
        lengths = inputs["lengths"]
        sequence_lens = g.op("Cast", lengths, to_i=6) if lengths is not None else absent()  # 6: INT32
        y, y_h = g.op(
            "GRU",
            inputs["x"],
            W,
            R,
            B,
            sequence_lens,
            unsqueeze(inputs["h0"]),
            hidden_size_i=H,
            direction_s="reverse" if flags["reverse"] else "forward",
            linear_before_reset_i=1 if flags["reset_after"] else 0,
            outputs=2,
        )
        out = g.op("Squeeze", y, const([1]))
        h_n = g.op("Squeeze", y_h, const([0]))
        return out, h_n, g.op("Constant", value_t=torch.zeros(0))

    return symbolic


_registered = {"torchscript": False, "dynamo": False}


def register_torchscript_symbolic(input_names: Sequence[str]) -> None:
    """Register the TorchScript-based exporter's translation of ``grukit::gru_layer_fwd``, whose inputs
    are ``input_names`` (once; the fused kernels call this when they load)."""
    if _registered["torchscript"]:
        return
    torch.onnx.register_custom_op_symbolic("grukit::gru_layer_fwd", _torchscript_symbolic(input_names), OPSET_MIN)
    _registered["torchscript"] = True


# ---------------------------------------------------------------- the dynamo-based exporter

_EXPORTER_REGISTRATION = "torch.onnx._internal.exporter._registration"


def register_with_dynamo_exporter(input_names: Sequence[str]) -> None:
    """Add the dynamo exporter's translation of ``grukit::gru_layer_fwd`` to the exporter's own table of
    translations, so a plain ``torch.onnx.export(model, (x,))`` finds it, as it finds torch.nn.GRU's.

    PyTorch has no public registry for the dynamo exporter (only ``custom_translation_table``); its
    table (``_torchlib_registry._registry``) is private and read each time an export starts. Importing
    the exporter takes over a second, so the fused kernels do not import it when they load: the
    translation is added the moment the exporter's registration module has been imported, by whom
    ever imports it (a one-shot import hook), or now if it is already imported. Where a PyTorch
    version lays the table out otherwise, nothing is added and ``custom_translation_table=
    grukit.onnx_translations()`` passes the same function."""
    if _registered["dynamo"]:
        return
    _registered["dynamo"] = True
    names = list(input_names)

    def add(registration) -> None:
        try:
            table = sys.modules[registration.__name__.rsplit(".", 1)[0] + "._torchlib._torchlib_registry"]
            table._registry.append(
                registration.OnnxDecompMeta(
                    onnx_function=_dynamo_function(names),
                    fx_target=torch.ops.grukit.gru_layer_fwd.default,
                    signature=None,
                    is_custom=True,
                )
            )
        except (KeyError, AttributeError, TypeError):  # another PyTorch's private layout
            pass

    if _EXPORTER_REGISTRATION in sys.modules:
        add(sys.modules[_EXPORTER_REGISTRATION])
    else:
        sys.meta_path.insert(0, _AfterImport(_EXPORTER_REGISTRATION, add))


class _AfterImport(importlib.abc.MetaPathFinder):
    """An import hook that runs ``then(module)`` once the module called ``name`` has been imported, then
    removes itself."""

    def __init__(self, name: str, then) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def execute_then(module) -> None:
            execute(module)
            self.then(module)

        spec.loader.exec_module = execute_then
        return spec


def translation_table(input_names: Sequence[str]) -> dict:
    """``custom_translation_table`` for ``torch.onnx.export`` (the dynamo exporter):
    ``{torch.ops.grukit.gru_layer_fwd.default: onnxscript function}`` for the op whose inputs are
    ``input_names``. Needs the ``onnxscript`` package (which that exporter needs anyway)."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError("torch.onnx.export (dynamo=True) needs onnxscript: pip install onnxscript") from None
    return {torch.ops.grukit.gru_layer_fwd.default: _dynamo_function(input_names)}


def _dynamo_function(input_names: Sequence[str]):
    """The onnxscript function that computes one ``gru_layer_fwd`` call as an ONNX GRU node."""
    names = list(input_names)

    def gru_layer_fwd(x, h0, w_ih, w_hh, *args, **kwargs):
        from onnxscript import opset18 as op

        # the exporter passes the op's inputs after the four required ones positionally or by name
        inputs = dict(zip(names[4:], args))
        inputs.update(kwargs)
        inputs.update(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh)
        _refuse(inputs)
        H = w_hh.shape[1]
        keeps_state = inputs.get("keeps_state", True)

        def onnx_rows(w):
            return onnx_gate_rows(
                lambda rows: op.Split(rows, axis=0, num_outputs=3),
                lambda *blocks: op.Concat(*blocks, axis=0),
                op.Neg,
                w,
                keeps_state,
            )

        axis0 = op.Constant(value_ints=[0])
        W, R = op.Unsqueeze(onnx_rows(w_ih), axis0), op.Unsqueeze(onnx_rows(w_hh), axis0)
        b_ih, b_hh, lengths = inputs.get("b_ih"), inputs.get("b_hh"), inputs.get("lengths")
        B = op.Unsqueeze(op.Concat(onnx_rows(b_ih), onnx_rows(b_hh), axis=0), axis0) if b_ih is not None else None
        sequence_lens = op.Cast(lengths, to=6) if lengths is not None else None  # 6: INT32
        y, y_h = op.GRU(
            x,
            W,
            R,
            B,
            sequence_lens,
            op.Unsqueeze(h0, axis0),
            hidden_size=H,
            direction="reverse" if inputs.get("reverse", False) else "forward",
            linear_before_reset=1 if inputs.get("reset_after", True) else 0,
        )
        empty = op.ConstantOfShape(op.Constant(value_ints=[0]))
        return op.Squeeze(y, op.Constant(value_ints=[1])), op.Squeeze(y_h, axis0), empty

    return gru_layer_fwd
