"""Edges where a drop-in must behave like what it replaces (each test failed before its fix)."""

import numpy as np
import pytest
import torch

import grukit
from grukit import convert
from grukit.functional import gru


def test_onnx_weights_without_bias_run_in_gru():
    rng = np.random.default_rng(0)
    W, R = rng.normal(size=(1, 9, 2)), rng.normal(size=(1, 9, 3))
    weights = convert.onnx_to_torch(W, R)
    assert [len(w) for w in weights] == [2]
    x = rng.normal(size=(4, 2, 2))
    out, h_n = gru(torch.tensor(x), weights)
    # the ONNX GRU operator's equations (gates z, r, h; linear_before_reset=1, torch's form), no bias
    Wz, Wr, Wh = np.split(W[0], 3)
    Rz, Rr, Rh = np.split(R[0], 3)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.zeros((2, 3))
    for t in range(4):
        z = sigmoid(x[t] @ Wz.T + h @ Rz.T)
        r = sigmoid(x[t] @ Wr.T + h @ Rr.T)
        candidate = np.tanh(x[t] @ Wh.T + r * (h @ Rh.T))
        h = (1 - z) * candidate + z * h
        np.testing.assert_allclose(out[t].numpy(), h, atol=1e-12)
    np.testing.assert_allclose(h_n[0].numpy(), h, atol=1e-12)


def test_onnx_weights_with_rows_not_a_multiple_of_three_are_refused():
    with pytest.raises(
        ValueError, match=r"W must have shape \(D, 3H, I\) with 3H rows, a multiple of 3; got \(1, 10, 2\)"
    ):
        convert.onnx_to_torch(np.zeros((1, 10, 2)), np.zeros((1, 9, 3)))


@pytest.mark.parametrize("T,B", [(0, 2), (3, 0)])
def test_empty_input_returns_a_new_state_tensor(T, B):
    hx = torch.randn(1, B, 3)
    weights = [(torch.randn(9, 2), torch.randn(9, 3))]
    _, h_n = gru(torch.randn(T, B, 2), weights, hx)
    torch.testing.assert_close(h_n, hx)
    assert h_n.data_ptr() != hx.data_ptr() or hx.numel() == 0  # editing one leaves the other
    h_n.add_(1.0)
    assert not torch.equal(h_n, hx) or hx.numel() == 0


def test_an_empty_batch_backpropagates_zero_gradients_as_torch_does():
    """B = 0: torch.nn.GRU's outputs are part of the graph (zero gradients); so are grukit's."""
    torch.manual_seed(0)
    reference = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    ours = grukit.GRU.from_torch(reference)
    grads = []
    for module in (reference, ours):
        x = torch.randn(5, 0, 3, requires_grad=True)
        out, h_n = module(x)
        assert out.shape == (5, 0, 8) and h_n.shape == (4, 0, 4)
        (out.sum() + h_n.sum()).backward()
        grads.append((x.grad, [p.grad for p in module.parameters()]))
    assert grads[1][0].shape == (5, 0, 3)
    for want, got in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(got, want)  # zeros, where torch has them
    with torch.no_grad():
        out, _ = ours(torch.randn(5, 0, 3))
    assert out.grad_fn is None


def test_zero_steps_with_nan_weights_return_the_initial_state_untouched():
    """T = 0 in training: the result joins the graph without arithmetic on the weights (NaN stays out)."""
    ours = grukit.GRU(3, 4)
    with torch.no_grad():
        ours.weight_hh_l0.fill_(float("nan"))
    h0 = torch.randn(1, 2, 4, requires_grad=True)
    out, h_n = ours(torch.randn(0, 2, 3), h0)
    assert out.shape == (0, 2, 4)
    torch.testing.assert_close(h_n, h0, rtol=0, atol=0)
    h_n.sum().backward()
    torch.testing.assert_close(h0.grad, torch.ones_like(h0))
    assert torch.equal(ours.weight_hh_l0.grad, torch.zeros_like(ours.weight_hh_l0))


def test_gru_cell_accepts_hidden_size_zero_as_torch_does():
    want = torch.nn.GRUCell(3, 0)(torch.randn(2, 3))
    got = grukit.GRUCell(3, 0)(torch.randn(2, 3))
    assert got.shape == want.shape == (2, 0)
    with pytest.raises(ValueError, match="hidden_size"):  # torch.nn.GRU refuses 0; so does grukit.GRU
        grukit.GRU(3, 0)


@pytest.mark.parametrize("bias_length", [6, 16])
def test_conversions_refuse_biases_of_the_wrong_length(bias_length):
    H, I = 5, 3
    w_ih, w_hh = torch.randn(3 * H, I), torch.randn(3 * H, H)
    b = torch.randn(bias_length)
    with pytest.raises(ValueError, match=r"b_ih\) must have shape \(3H,\) = \(15,\)"):
        convert.torch_to_keras(w_ih, w_hh, b, b, reset_after=True)
    with pytest.raises(ValueError, match=r"directions\[0\]\[2\] \(b_ih\) must have shape"):
        convert.torch_to_onnx([(w_ih, w_hh, b, b)])


def test_conversions_check_their_other_arguments():
    H, I = 5, 3
    w_ih, w_hh = torch.randn(3 * H, I), torch.randn(3 * H, H)
    with pytest.raises(TypeError, match="reset_after"):
        convert.torch_to_keras(w_ih, w_hh, reset_after="no")
    with pytest.raises(ValueError, match="directions must be a list of 1 or 2"):
        convert.torch_to_onnx([])
    with pytest.raises(ValueError, match="multiple of 3"):
        convert.flip_update_gate((torch.randn(16, 3), torch.randn(16, 5)))


def test_torch_to_keras_takes_trainable_and_bfloat16_parameters():
    gru = torch.nn.GRU(3, 4)
    got = convert.torch_to_keras(*[p for p in gru.parameters()], reset_after=True)  # requires_grad
    want = convert.torch_to_keras(*[p.detach() for p in gru.parameters()], reset_after=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    half = convert.torch_to_keras(*[p.detach().bfloat16() for p in gru.parameters()], reset_after=True)
    assert all(a.dtype == np.float32 for a in half)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_with_low_precision_input_returns_what_torch_returns(dtype):
    """torch.nn.GRU under CPU autocast takes a bfloat16/float16 input with float32 weights and
    returns the input's dtype; grukit computes it in float32 and returns the same dtype."""
    torch.manual_seed(0)
    reference = torch.nn.GRU(4, 6, num_layers=2)
    ours = grukit.GRU.from_torch(reference)
    x = torch.randn(5, 3, 4).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        want, want_h = reference(x)
        got, got_h = ours(x)
    assert got.dtype == want.dtype == dtype and got_h.dtype == want_h.dtype == dtype
    exact, _ = ours(x.float())  # float32 compute on the rounded input
    torch.testing.assert_close(got.float(), exact, rtol=0, atol=1e-2)  # only the output's rounding
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=5e-2)
    with pytest.raises(TypeError, match="does not match the weights' dtype"):
        ours(x)  # without autocast, mixed dtypes are an error naming both, as torch's
