"""Weight conversion: exact round trips, and Keras / ONNX layouts against their own formulas by hand."""

import numpy as np
import pytest
import torch

import grukit
from grukit import convert


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def keras_gru_by_hand(x, kernel, recurrent_kernel, bias, reset_after):
    """Keras 3 GRUCell.call, transcribed (keras/src/layers/rnn/gru.py), for x [B, T, I]."""
    units = recurrent_kernel.shape[0]
    if bias is None:
        input_bias = recurrent_bias = 0.0
    elif reset_after:
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias, recurrent_bias = bias, None
    h = np.zeros((x.shape[0], units))
    outs = []
    for t in range(x.shape[1]):
        matrix_x = x[:, t] @ kernel + input_bias
        x_z, x_r, x_h = np.split(matrix_x, 3, axis=-1)
        if reset_after:
            matrix_inner = h @ recurrent_kernel
            if recurrent_bias is not None:
                matrix_inner = matrix_inner + recurrent_bias
        else:
            matrix_inner = h @ recurrent_kernel[:, : 2 * units]
        recurrent_z = matrix_inner[:, :units]
        recurrent_r = matrix_inner[:, units : 2 * units]
        z = sigmoid(x_z + recurrent_z)
        r = sigmoid(x_r + recurrent_r)
        if reset_after:
            recurrent_h = r * matrix_inner[:, 2 * units :]
        else:
            recurrent_h = (r * h) @ recurrent_kernel[:, 2 * units :]
        hh = np.tanh(x_h + recurrent_h)
        h = z * h + (1 - z) * hh
        outs.append(h)
    return np.stack(outs, 1)


def onnx_gru_by_hand(x, W, R, B, linear_before_reset):
    """The ONNX GRU operator's equations (operators.md, one forward direction), x [T, B, I]."""
    H = R.shape[-1]
    Wz, Wr, Wh = np.split(W[0], 3)
    Rz, Rr, Rh = np.split(R[0], 3)
    Wbz, Wbr, Wbh, Rbz, Rbr, Rbh = np.split(B[0], 6)
    Ht = np.zeros((x.shape[1], H))
    outs = []
    for Xt in x:
        zt = sigmoid(Xt @ Wz.T + Ht @ Rz.T + Wbz + Rbz)
        rt = sigmoid(Xt @ Wr.T + Ht @ Rr.T + Wbr + Rbr)
        if linear_before_reset:
            ht = np.tanh(Xt @ Wh.T + rt * (Ht @ Rh.T + Rbh) + Wbh)
        else:
            ht = np.tanh(Xt @ Wh.T + (rt * Ht) @ Rh.T + Rbh + Wbh)
        Ht = (1 - zt) * ht + zt * Ht
        outs.append(Ht)
    return np.stack(outs)


def _keras_weights(rng, I, H, reset_after, use_bias=True):
    w = [rng.normal(0, 0.5, (I, 3 * H)), rng.normal(0, 0.5, (H, 3 * H))]
    if use_bias:
        w.append(rng.normal(0, 0.5, (2, 3 * H) if reset_after else (3 * H,)))
    return w


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("update_gate", ["keeps_state", "takes_candidate"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_weights_reproduce_keras_formulas(reset_after, update_gate, use_bias):
    rng = np.random.default_rng(0)
    I, H = 3, 5
    kw = _keras_weights(rng, I, H, reset_after, use_bias)
    x = rng.normal(size=(2, 6, I))
    want = keras_gru_by_hand(x, kw[0], kw[1], kw[2] if use_bias else None, reset_after)
    w_ih, w_hh, b_ih, b_hh = convert.keras_to_torch(*kw, reset_after=reset_after, update_gate=update_gate)
    gru = grukit.GRU(
        I, H, bias=use_bias, batch_first=True, reset_after=reset_after, update_gate=update_gate, dtype=torch.float64
    )
    state = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh}
    if use_bias:
        state.update(bias_ih_l0=b_ih, bias_hh_l0=b_hh)
    gru.load_state_dict(state)
    got, _ = gru(torch.tensor(x))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("update_gate", ["keeps_state", "takes_candidate"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_round_trip_is_exact(reset_after, update_gate):
    rng = np.random.default_rng(1)
    kw = _keras_weights(rng, 4, 3, reset_after)
    back = convert.torch_to_keras(
        *convert.keras_to_torch(*kw, reset_after=reset_after, update_gate=update_gate),
        reset_after=reset_after,
        update_gate=update_gate,
    )
    for a, b in zip(kw, back):
        assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("update_gate", ["keeps_state", "takes_candidate"])
def test_torch_to_keras_reset_after_round_trip_is_exact(update_gate):
    g = grukit.GRU(4, 3, update_gate=update_gate)
    s = convert.layer_state(g)
    kw = convert.torch_to_keras(*s.values(), reset_after=True, update_gate=update_gate)
    assert [a.shape for a in kw] == [(4, 9), (3, 9), (2, 9)]
    back = convert.keras_to_torch(*kw, reset_after=True, update_gate=update_gate)
    for a, b in zip(s.values(), back):
        assert torch.equal(a, b)


def test_torch_to_keras_reset_before_folds_biases_and_keeps_the_function():
    torch.manual_seed(2)
    g = grukit.GRU(4, 3, reset_after=False, batch_first=True, dtype=torch.float64)
    kw = convert.torch_to_keras(*convert.layer_state(g).values(), reset_after=False)
    assert kw[2].shape == (9,)
    x = np.random.default_rng(2).normal(size=(2, 5, 4))
    np.testing.assert_allclose(
        keras_gru_by_hand(x, *kw, reset_after=False), g(torch.tensor(x))[0].detach().numpy(), atol=1e-13
    )


@pytest.mark.parametrize("reset_after", [True, False])
def test_onnx_layout_matches_onnx_formulas_and_round_trips(reset_after):
    torch.manual_seed(3)
    g = grukit.GRU(3, 4, reset_after=reset_after, dtype=torch.float64)
    W, R, B = convert.torch_to_onnx([tuple(convert.layer_state(g).values())])
    assert W.shape == (1, 12, 3) and R.shape == (1, 12, 4) and B.shape == (1, 24)
    x = np.random.default_rng(3).normal(size=(5, 2, 3))
    np.testing.assert_allclose(
        onnx_gru_by_hand(x, W, R, B, linear_before_reset=reset_after),
        g(torch.tensor(x))[0].detach().numpy(),
        atol=1e-13,
    )
    (back,) = convert.onnx_to_torch(W, R, B)
    for a, b in zip(convert.layer_state(g).values(), back):
        assert torch.equal(a, b)


def test_flip_update_gate_is_its_own_inverse_on_state_dicts():
    g = grukit.GRU(3, 4, num_layers=2, bidirectional=True)
    state = g.state_dict()
    flipped = convert.flip_update_gate(state)
    assert list(flipped) == list(state)
    assert not torch.equal(flipped["weight_ih_l1_reverse"], state["weight_ih_l1_reverse"])
    twice = convert.flip_update_gate(flipped)
    for k in state:
        assert torch.equal(twice[k], state[k])


def test_conversion_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"recurrent_kernel must have shape \(3, 9\), got \(4, 9\)"):
        convert.keras_to_torch(np.zeros((2, 9)), np.zeros((4, 9)), reset_after=True)
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 9\) for reset_after=True, got \(9,\)"):
        convert.keras_to_torch(np.zeros((2, 9)), np.zeros((3, 9)), np.zeros(9), reset_after=True)
    with pytest.raises(ValueError, match=r"bias must have shape \(9,\) for reset_after=False, got \(2, 9\)"):
        convert.keras_to_torch(np.zeros((2, 9)), np.zeros((3, 9)), np.zeros((2, 9)), reset_after=False)
    with pytest.raises(TypeError, match="kernel must be a NumPy array or torch.Tensor, got list"):
        convert.keras_to_torch([[0.0]], np.zeros((3, 9)), reset_after=True)
    with pytest.raises(ValueError, match="update_gate must be one of"):
        convert.keras_to_torch(np.zeros((2, 9)), np.zeros((3, 9)), reset_after=True, update_gate="z")
