"""ONNX export: ``grukit.GRU`` to the ONNX ``GRU`` operator.

Written node by node with ``onnx.helper`` rather than traced, so the GRU is one ONNX
``GRU`` node per layer with the right conventions (gate order and bias layout as the ONNX operator documents them):

* ``linear_before_reset = 1`` for ``reset_after=True`` (PyTorch's form), ``0`` for the
  textbook ``reset_after=False`` (Cho et al. 2014 v3): the attribute PyTorch's dynamo exporter has written
  wrongly for ``nn.GRU`` (pytorch issue 189225).
* gate order z, r, h and ``B = [Wb, Rb]`` (``grukit.convert.torch_to_onnx``); a
  ``update_gate="takes_candidate"`` GRU is exported with its z rows negated, which is
  exactly the same function in ONNX's "keeps_state" convention.
* batch size and sequence length stay dynamic; ``sequence_lens`` (per-sequence lengths)
  and ``initial_h`` are optional graph inputs.

Layers are chained by turning each node's ``Y`` [T, D, B, H] into [T, B, D*H]. The graph
outputs are ``output`` ([T, B, D*H], or [B, T, D*H] with batch_first) and ``h_n`` [L*D, B, H],
like the module's.

Needs the ``onnx`` package (``pip install onnx``); checking needs ``onnxruntime``.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from .convert import flip_update_gate, torch_to_onnx
from .reference import KEEPS_STATE

OPSET = 14
IR_VERSION = 8  # readable by onnxruntime >= 1.14


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install onnx (and onnxruntime to run it)") from None
    return onnx, TensorProto, helper, numpy_helper


class OnnxGraph:
    """A small ONNX graph builder: nodes, initializers, unique names.

    Applications build whole models with it (an embedding or input, :func:`append_gru`, a
    dense head) and write them with :func:`save`.
    """

    def __init__(self):
        self.onnx, self.TensorProto, self.helper, self.numpy_helper = _onnx()
        self.nodes, self.initializers, self.count = [], [], 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base: str, array) -> str:
        name = self.name(base)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: List[str], outputs: Optional[List[str]] = None, **attrs):
        outputs = outputs or [self.name(op.lower())]
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs if len(outputs) > 1 else outputs[0]

    def last_state(self, module, h_n: str) -> str:
        """The last layer's (last direction's) final state [B, H] out of ``h_n`` [L*D, B, H]."""
        last = module.num_layers * (2 if module.bidirectional else 1) - 1
        return self.node("Gather", [h_n, self.const("last", np.array(last, np.int64))], axis=0)

    def linear(self, layer: torch.nn.Linear, x: str, output: Optional[str] = None) -> str:
        """``layer(x)`` for x [B, in]: one Gemm node, [B, out] (named ``output`` if given)."""
        weight = self.const("dense_w", layer.weight.detach().cpu().numpy().T.astype(np.float32))
        bias = self.const("dense_b", layer.bias.detach().cpu().numpy().astype(np.float32))
        return self.node("Gemm", [x, weight, bias], [output] if output else None)


def append_gru(g: OnnxGraph, module, x: str, initial_h: Optional[str], sequence_lens: Optional[str]):
    """Append the GRU's layers to ``g``: x [T, B, I] -> (output [T, B, D*H], h_n [L*D, B, H])."""
    D = 2 if module.bidirectional else 1
    H = module.hidden_size
    state = module.state_dict()
    if module.update_gate != KEEPS_STATE:
        state = flip_update_gate(state)  # ONNX's z keeps the state: negate z, same function
    finals = []
    for layer in range(module.num_layers):
        directions = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            get = lambda n: state.get(n + sfx)  # noqa: E731
            directions.append(
                tuple(
                    t.detach().float().cpu()
                    for t in [get("weight_ih"), get("weight_hh")]
                    + ([get("bias_ih"), get("bias_hh")] if module.bias else [])
                )
            )
        W, R, B = torch_to_onnx(directions)
        inputs = [x, g.const("W", W.astype(np.float32)), g.const("R", R.astype(np.float32))]
        inputs.append(g.const("B", B.astype(np.float32)) if B is not None else "")
        inputs.append(sequence_lens or "")
        if initial_h is not None:
            starts, ends = (
                g.const("start", np.array([layer * D], np.int64)),
                g.const("end", np.array([(layer + 1) * D], np.int64)),
            )
            inputs.append(g.node("Slice", [initial_h, starts, ends, g.const("axis", np.array([0], np.int64))]))
        while inputs and inputs[-1] == "":
            inputs.pop()
        y, y_h = g.node(
            "GRU",
            inputs,
            [g.name("Y"), g.name("Y_h")],
            hidden_size=H,
            direction="bidirectional" if D == 2 else "forward",
            linear_before_reset=1 if module.reset_after else 0,
        )
        finals.append(y_h)
        # Y [T, D, B, H] -> [T, B, D, H] -> [T, B, D*H]
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [y, g.const("shape", np.array([0, 0, -1], np.int64))])
    h_n = finals[0] if len(finals) == 1 else g.node("Concat", finals, axis=0)
    return x, h_n


def save(g: OnnxGraph, inputs, outputs, path: str) -> str:
    """Check the graph and write it to ``path`` (opset 14); returns ``path``."""
    helper = g.helper
    graph = helper.make_graph(g.nodes, "grukit", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="grukit"
    )
    g.onnx.checker.check_model(model)
    g.onnx.save(model, path)
    return path


def to_onnx(module, path: str, *, initial_state: bool = False, sequence_lens: bool = False) -> str:
    """Export a ``grukit.GRU`` (or ``torch.nn.GRU``) to ``path``.

    Graph inputs: ``input`` [T, B, I] ([B, T, I] if the module is batch_first), float32;
    with ``initial_state``: ``h0`` [L*D, B, H]; with ``sequence_lens``: ``lengths`` [B] int32
    (each in 1..T). Outputs: ``output`` and ``h_n`` as the module returns them. T and B are
    dynamic. Returns ``path``.
    """
    from .nn import GRU

    if isinstance(module, torch.nn.GRU):
        module = GRU.from_torch(module)
    if not isinstance(module, GRU):
        raise TypeError(f"module must be a grukit.GRU or torch.nn.GRU, got {type(module).__name__}")
    module.check_plain("ONNX export (the ONNX GRU operator)")  # recurrent dropout: training only, fine
    g = OnnxGraph()
    T = g.TensorProto
    I, H = module.input_size, module.hidden_size
    D = 2 if module.bidirectional else 1
    inputs = [
        g.helper.make_tensor_value_info(
            "input", T.FLOAT, ["batch", "time", I] if module.batch_first else ["time", "batch", I]
        )
    ]
    x = g.node("Transpose", ["input"], perm=[1, 0, 2]) if module.batch_first else "input"
    if initial_state:
        inputs.append(g.helper.make_tensor_value_info("h0", T.FLOAT, [module.num_layers * D, "batch", H]))
    if sequence_lens:
        inputs.append(g.helper.make_tensor_value_info("lengths", T.INT32, ["batch"]))
    out, h_n = append_gru(g, module, x, "h0" if initial_state else None, "lengths" if sequence_lens else None)
    out = (
        g.node("Transpose", [out], ["output"], perm=[1, 0, 2])
        if module.batch_first
        else g.node("Identity", [out], ["output"])
    )
    g.node("Identity", [h_n], ["h_n"])
    out_shape = ["batch", "time", D * H] if module.batch_first else ["time", "batch", D * H]
    outputs = [
        g.helper.make_tensor_value_info("output", T.FLOAT, out_shape),
        g.helper.make_tensor_value_info("h_n", T.FLOAT, [module.num_layers * D, "batch", H]),
    ]
    return save(g, inputs, outputs, path)


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export`` (the dynamo exporter, PyTorch's default):
    ``{torch.ops.grukit.gru_layer_fwd.default: onnxscript function}`` (``grukit.onnx_translation``).

    The plain ``torch.onnx.export(model, (x,))`` finds the same translation by itself; pass this table
    where a PyTorch version lacks the exporter's table of translations. Needs ``onnxscript`` and the
    fused kernels loaded.

    Example::

        torch.onnx.export(model, (x,), "model.onnx", custom_translation_table=grukit.onnx_translations())
    """
    from . import onnx_translation
    from .backends import cpu_fused

    if not cpu_fused.is_available():
        raise RuntimeError(
            f"the fused CPU kernels are unavailable ({cpu_fused.why_unavailable()}), so no model here calls "
            "grukit.gru_layer_fwd: torch.onnx.export needs no translation table"
        )
    return onnx_translation.translation_table(cpu_fused.op_inputs().names)
