"""PyTorch's own tools on a model holding ``grukit.GRU``: forward-mode AD, ``torch.jit.trace`` /
``script``, and ``torch.onnx.export`` with both of PyTorch's exporters (each works for
``torch.nn.GRU``). ``torch.compile(fullgraph=True)`` is in test_fused.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.nn.utils.rnn import pack_padded_sequence

import grukit
from grukit.backends import BackendError, cpu_fused

pytestmark = pytest.mark.skipif(not cpu_fused.is_available(), reason="the fused CPU kernels are not built here")


class Model(torch.nn.Module):
    """What a user ships: an input layer, a grukit.GRU, a head."""

    def __init__(self, **gru_options):
        super().__init__()
        self.inp = torch.nn.Linear(3, 6)
        self.gru = grukit.GRU(6, 4, **gru_options)
        self.head = torch.nn.Linear(4 * (2 if gru_options.get("bidirectional") else 1), 1)

    def forward(self, x):
        return self.head(self.gru(torch.tanh(self.inp(x)))[0])


VARIANTS = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"reset_after": False, "update_gate": "takes_candidate"},
    {"bias": False},
]


# ---------------------------------------------------------------- forward-mode AD


def _central_difference(f, x, v, eps=1e-6):
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


@pytest.mark.parametrize("options", VARIANTS + [{"layer_norm": True}], ids=str)
def test_forward_mode_tangent_matches_finite_differences(options):
    """make_dual on the input (outside torch.func): the fused op has only a backward formula, so
    "auto" runs the portable path, whose tangent must equal (f(x + e v) - f(x - e v)) / 2e."""
    torch.manual_seed(0)
    gru = grukit.GRU(3, 4, **options).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    v = torch.randn_like(x)
    with fwAD.dual_level():
        out, h_n = gru(fwAD.make_dual(x, v))
        tangent_out, tangent_h = fwAD.unpack_dual(out).tangent, fwAD.unpack_dual(h_n).tangent
    want_out = _central_difference(lambda a: gru(a)[0], x, v)
    want_h = _central_difference(lambda a: gru(a)[1], x, v)
    torch.testing.assert_close(tangent_out, want_out, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(tangent_h, want_h, atol=1e-7, rtol=1e-6)


def test_forward_mode_tangent_of_a_weight_and_of_packed_input():
    torch.manual_seed(1)
    gru = grukit.GRU(3, 4, num_layers=2).double()
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 2])
    dw = torch.randn_like(gru.weight_hh_l1)

    def with_weight(w):
        params = {**dict(gru.named_parameters()), "weight_hh_l1": w}
        packed = pack_padded_sequence(x, lengths)
        return torch.func.functional_call(gru, params, (packed,))[0].data

    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(with_weight(fwAD.make_dual(gru.weight_hh_l1.detach(), dw))).tangent
    want = _central_difference(with_weight, gru.weight_hh_l1.detach(), dw)
    torch.testing.assert_close(tangent, want, atol=1e-7, rtol=1e-6)


def test_forward_mode_through_a_named_fused_backend_is_refused():
    gru = grukit.GRU(3, 4, backend="cpu_fused")
    with fwAD.dual_level():
        with pytest.raises(BackendError, match="no forward-mode derivative.*backend='auto' or 'torch'"):
            gru(fwAD.make_dual(torch.randn(2, 1, 3), torch.randn(2, 1, 3)))


# ---------------------------------------------------------------- TorchScript


@pytest.mark.parametrize("options", VARIANTS, ids=str)
def test_jit_trace_passes_its_check_and_is_shape_generic(options):
    model = Model(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # grukit's shape checks stay quiet
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(model, torch.randn(5, 2, 3))  # check_trace=True: traced twice, compared
    for shape in [(5, 2, 3), (9, 4, 3), (1, 1, 3)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(traced(x), model(x))


def test_jit_trace_under_no_grad_still_runs_backward(tmp_path):
    model = Model()
    x = torch.randn(5, 2, 3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(model, x)
    traced(x).sum().backward()
    got = model.gru.weight_hh_l0.grad.clone()
    model.zero_grad()
    model(x).sum().backward()
    torch.testing.assert_close(got, model.gru.weight_hh_l0.grad)
    torch.jit.save(traced, tmp_path / "traced.pt")  # and it loads back (grukit imported: its op is known)
    torch.testing.assert_close(torch.jit.load(tmp_path / "traced.pt")(x), model(x))


@pytest.mark.parametrize("module", [grukit.GRU(3, 4), grukit.GRUCell(3, 4)], ids=["GRU", "GRUCell"])
def test_jit_script_refuses_with_what_to_use_instead(module):
    holder = torch.nn.Sequential(module)
    with pytest.raises(RuntimeError, match=r"torch.jit.script cannot compile grukit\.\w+.*torch.jit.trace"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.jit.script(holder)


# ---------------------------------------------------------------- torch.onnx.export


def _run_onnx(path, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _export(model, path, dynamo):
    """dynamo: False (the TorchScript-based exporter), True (the dynamo exporter given grukit's table) or
    "plain" (the dynamo exporter as torch.nn.GRU's users call it: no table)."""
    x = torch.randn(5, 2, 3)
    if dynamo:
        pytest.importorskip("onnxscript")
        time, batch = torch.export.Dim("time"), torch.export.Dim("batch")
        table = {} if dynamo == "plain" else dict(custom_translation_table=grukit.onnx_translations())
        torch.onnx.export(model, (x,), path, dynamic_shapes=({0: time, 1: batch},), verbose=False, **table)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model, (x,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "time", 1: "batch"}}
            )


@pytest.mark.parametrize(
    "dynamo", [False, True, "plain"], ids=["torchscript_exporter", "dynamo_exporter", "plain_torch_onnx_export"]
)
@pytest.mark.parametrize("options", VARIANTS, ids=str)
def test_onnx_export_of_a_whole_model_runs_in_onnxruntime(tmp_path, options, dynamo):
    pytest.importorskip("onnx")
    model = Model(**options).eval()
    path = tmp_path / "model.onnx"
    _export(model, path, dynamo)
    import onnx

    assert sum(node.op_type == "GRU" for node in onnx.load(str(path)).graph.node) == (
        2 * model.gru.num_layers if options.get("bidirectional") else model.gru.num_layers
    )
    x = torch.randn(9, 3, 3)  # another length and batch: both stay dynamic
    np.testing.assert_allclose(_run_onnx(path, x), model(x).detach().numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "dynamo", [False, True, "plain"], ids=["torchscript_exporter", "dynamo_exporter", "plain_torch_onnx_export"]
)
def test_onnx_export_refuses_layer_norm_with_the_reason(tmp_path, dynamo):
    pytest.importorskip("onnx")
    with pytest.raises(Exception, match="cannot be exported as an ONNX GRU: layer_norm=True"):
        _export(Model(layer_norm=True).eval(), tmp_path / "m.onnx", dynamo)
