"""``torch.onnx.export`` of a model holding ``grukit.GRU``: the fused layer op as an ONNX ``GRU`` node.

``grukit.export.to_onnx`` writes a GRU alone; a user's whole model (embedding, GRU, head) goes
through PyTorch's own exporter, which meets ``torch.ops.grukit.gru_layer_fwd`` (one layer, one
direction) and needs to be told what ONNX computes it. Both of PyTorch's exporters are served:

* the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): a symbolic function,
  registered when the fused kernels load (``register_torchscript_symbolic``), so nothing is
  passed;
* the dynamo-based one (the default): an onnxscript function, passed as
  ``torch.onnx.export(..., custom_translation_table=grukit.onnx_translations())`` (that exporter
  has no global registry for custom operators).

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

from typing import Optional

import torch

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


def _torchscript_symbolic(g, *args):
    """``torch.onnx.export(dynamo=False)``'s translation of one ``gru_layer_fwd`` call: ``args``
    are the op's inputs in schema order, as graph values (constants for the flags)."""
    from torch.onnx import symbolic_helper as sh

    from .backends import cpu_fused

    declared = cpu_fused.op_inputs()
    values = dict(zip(declared.names, args))
    inputs = {name: (None if sh._is_none(v) else v) for name, v in values.items()}
    flags = {name: sh._maybe_get_const(inputs[name], "b") for name in ("reverse", "reset_after", "keeps_state")}
    inputs["zoneout_p"] = sh._maybe_get_const(values["zoneout_p"], "f")
    inputs["zoneout_seed"] = sh._maybe_get_const(values["zoneout_seed"], "i")
    _refuse(inputs)
    H = sh._get_tensor_sizes(inputs["w_hh"])[1]

    def const(values, dtype=torch.int64):
        return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

    def onnx_rows(w):
        """torch's (r, z, n) row blocks -> ONNX's (z, r, h), z negated for keeps_state=False."""
        r, z, n = g.op("Split", w, const([H, H, H]), axis_i=0, outputs=3)
        if not flags["keeps_state"]:
            z = g.op("Neg", z)
        return g.op("Concat", z, r, n, axis_i=0)

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


_registered = {"torchscript": False}


def register_torchscript_symbolic() -> None:
    """Register :func:`_torchscript_symbolic` for ``grukit::gru_layer_fwd`` with the TorchScript-based
    exporter (once; the fused kernels call this when they load)."""
    if _registered["torchscript"]:
        return
    torch.onnx.register_custom_op_symbolic("grukit::gru_layer_fwd", _torchscript_symbolic, OPSET_MIN)
    _registered["torchscript"] = True


# ---------------------------------------------------------------- the dynamo-based exporter


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export`` (the dynamo exporter, PyTorch's
    default): ``{torch.ops.grukit.gru_layer_fwd.default: onnxscript function}``. Needs the
    ``onnxscript`` package (which that exporter needs anyway) and the fused kernels loaded.

    Example::

        torch.onnx.export(model, (x,), "model.onnx", custom_translation_table=grukit.onnx_translations())
    """
    from .backends import cpu_fused

    if not cpu_fused.is_available():
        raise RuntimeError(
            f"the fused CPU kernels are unavailable ({cpu_fused.why_unavailable()}), so no model here calls "
            "grukit.gru_layer_fwd: torch.onnx.export needs no translation table"
        )
    try:
        from onnxscript import opset18 as op
    except ImportError:
        raise ImportError("torch.onnx.export (dynamo=True) needs onnxscript: pip install onnxscript") from None
    names = cpu_fused.op_inputs().names

    def gru_layer_fwd(x, h0, w_ih, w_hh, *args, **kwargs):
        # the exporter passes the op's inputs after the four required ones positionally or by name
        inputs = dict(zip(names[4:], args))
        inputs.update(kwargs)
        inputs.update(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh)
        _refuse(inputs)
        H = w_hh.shape[1]
        keeps_state = inputs.get("keeps_state", True)

        def onnx_rows(w):
            r, z, n = op.Split(w, axis=0, num_outputs=3)
            return op.Concat(z if keeps_state else op.Neg(z), r, n, axis=0)

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

    return {torch.ops.grukit.gru_layer_fwd.default: gru_layer_fwd}
