"""Second derivatives (create_graph=True) are right on every backend, or refused with a reason.

Gradient penalties, Hessian-vector products and meta-learning differentiate a gradient. The fused
kernels' backward is not itself differentiable, so with create_graph=True the fused backend
recomputes the layer on the portable path and differentiates that; it must never return 0.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import grukit
from backend_params import backend_params
from grukit.backends import cpu_fused
from grukit.functional import gru, gru_packed

BACKENDS = backend_params("torch", "cpu_fused")
FUSED = cpu_fused.is_available()

T, B, I, H = 3, 2, 2, 3


def _weights(layers=1, directions=1, bias=True):
    torch.manual_seed(0)
    weights = []
    for layer in range(layers):
        for _ in range(directions):
            size = I if layer == 0 else directions * H
            w = [torch.randn(3 * H, size), torch.randn(3 * H, H)] + (
                [torch.randn(3 * H), torch.randn(3 * H)] if bias else []
            )
            weights.append(tuple(t.double().mul(0.5).requires_grad_(True) for t in w))
    return weights


def _layer_norm_parameter(gain: bool):
    """[3H]: near 1 for a gain, near 0 for a bias."""
    return torch.randn(3 * H, dtype=torch.double).mul(0.3).add(1.0 if gain else 0.0).requires_grad_(True)


OPTIONS = {
    "plain": {},
    "lengths": {"lengths": [3, 1]},
    "bidirectional-lengths": {"lengths": [2, 3], "bidirectional": True},
    "no-bias": {"bias": False},
    "layer-norm": {"layer_norm": True},
    "zoneout-eval": {"zoneout": 0.3},
    "recurrent-dropout": {"recurrent_dropout": 0.4, "training": True},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False], ids=["after", "before"])
@pytest.mark.parametrize("update_gate", ["keeps_state", "takes_candidate"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_gradgradcheck(backend, reset_after, update_gate, option):
    opts = dict(OPTIONS[option])
    bidirectional = opts.pop("bidirectional", False)
    weights = _weights(directions=2 if bidirectional else 1, bias=opts.pop("bias", True))
    flat = [t for w in weights for t in w]
    norm = []
    if opts.pop("layer_norm", False):
        norm = [
            tuple(
                torch.randn(3 * H, dtype=torch.double).mul(0.3).add(1 if k % 2 == 0 else 0).requires_grad_(True)
                for k in range(4)
            )
            for _ in weights
        ]
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2 if bidirectional else 1, B, H, dtype=torch.double, requires_grad=True)
    count = [len(w) for w in weights]

    def run(x, h0, *params):
        torch.manual_seed(1)  # the same recurrent-dropout mask on every call
        it = iter(params)
        ws = [tuple(next(it) for _ in range(n)) for n in count]
        ln = [tuple(next(it) for _ in range(4)) for _ in norm] or None
        out, h_n = gru(
            x, ws, h0, bidirectional=bidirectional, reset_after=reset_after, update_gate=update_gate,
            backend=backend, layer_norm=ln, **opts,
        )  # fmt: skip
        return out, h_n

    inputs = (x, h0, *flat, *[t for n in norm for t in n])
    assert torch.autograd.gradgradcheck(run, inputs, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradgradcheck_packed(backend):
    weights = _weights()
    x = torch.randn(T, B, I, dtype=torch.double)
    lengths = torch.tensor([3, 2])
    data = pack_padded_sequence(x, lengths).data.clone().requires_grad_(True)
    h0 = torch.randn(1, B, H, dtype=torch.double, requires_grad=True)

    def run(data, h0, *w):
        return gru_packed(data, torch.tensor([2, 2, 1]), [tuple(w)], h0, backend=backend)

    assert torch.autograd.gradgradcheck(run, (data, h0, *weights[0]), atol=1e-6, rtol=1e-4)


def test_second_derivative_equals_torch_nn_gru():
    """The issue's example: d/dx of |d out / d w|^2 on a 3x2x4 double GRU, fused vs torch.nn.GRU."""
    torch.manual_seed(0)
    reference = torch.nn.GRU(4, 4).double()
    ours = grukit.GRU.from_torch(reference, backend="cpu_fused" if FUSED else "torch")
    x = torch.randn(3, 2, 4, dtype=torch.double, requires_grad=True)
    results = []
    for module in (reference, ours):
        out, _ = module(x)
        (g,) = torch.autograd.grad(out.square().sum(), module.weight_hh_l0, create_graph=True)
        (gx,) = torch.autograd.grad(g.square().sum(), x)
        results.append(gx)
    assert results[0].abs().max() > 1e-3  # a real second derivative, not 0
    torch.testing.assert_close(results[1], results[0], rtol=1e-9, atol=1e-10)


@pytest.mark.skipif(not FUSED, reason=f"fused backend unavailable: {cpu_fused.why_unavailable()}")
def test_zoneout_drawn_in_the_kernel_refuses_double_backward():
    weights = _weights()
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    out, _ = gru(x, weights, zoneout=0.3, training=True, backend="cpu_fused")
    with pytest.raises(RuntimeError, match="double backward .* zoneout drawn inside the fused CPU kernel"):
        torch.autograd.grad(out.square().sum(), weights[0][1], create_graph=True)
