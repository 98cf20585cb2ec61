"""Edges where a drop-in must behave like what it replaces (each test failed before its fix)."""

import numpy as np
import pytest
import torch

from grukit import convert
from grukit.functional import gru


def test_onnx_weights_without_bias_run_in_gru():
    rng = np.random.default_rng(0)
    W, R = rng.normal(size=(1, 9, 2)), rng.normal(size=(1, 9, 3))
    weights = convert.onnx_to_torch(W, R)
    assert [len(w) for w in weights] == [2]
    out, h_n = gru(torch.randn(4, 2, 2, dtype=torch.float64), weights)
    assert out.shape == (4, 2, 3) and h_n.shape == (1, 2, 3)


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
