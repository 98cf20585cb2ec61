"""The public operators torch.ops.grukit.gru_layer_fwd / gru_layer_bwd check every tensor they are
given: a wrong shape, dtype, device or layout is a clear error naming the argument, never an
out-of-bounds read inside a kernel."""

import pytest
import torch

from grukit.backends import cpu_fused

pytestmark = pytest.mark.skipif(not cpu_fused.is_available(), reason="fused kernels unavailable")

T, B, I, H = 4, 3, 5, 6


def forward_inputs(**changes):
    """The inputs of a valid gru_layer_fwd call (padded, reset after, no regularisers: the schema's
    defaults), with ``changes``, as keyword arguments."""
    inputs = dict(
        x=torch.randn(T, B, I),
        h0=torch.zeros(B, H),
        w_ih=torch.randn(3 * H, I),
        w_hh=torch.randn(3 * H, H),
        b_ih=torch.randn(3 * H),
        b_hh=torch.randn(3 * H),
    )
    inputs.update(changes)
    return inputs


def test_a_valid_call_runs():
    out, h_n, saved = torch.ops.grukit.gru_layer_fwd(**forward_inputs(), save_for_backward=True)
    assert out.shape == (T, B, H) and h_n.shape == (B, H) and saved.shape == (T * B, 4 * H)
    assert cpu_fused._state["module"].saved_width(H, True, True) == 4 * H + 6 * H + 3


LN = [torch.ones(3 * H), torch.zeros(3 * H), torch.ones(3 * H), torch.zeros(3 * H)]
BAD_FORWARD = [
    ({"w_hh": torch.randn(3 * H, H + 1)}, "w_hh must have shape \\[3H, H\\]"),
    ({"w_ih": torch.randn(3 * H, I + 1)}, "w_ih must have shape \\[18, 5\\], got \\[18, 6\\]"),
    ({"w_ih": torch.randn(3 * H, I, dtype=torch.float64)}, "w_ih must have dtype Float"),
    ({"h0": torch.zeros(B + 1, H)}, "h0 must have shape \\[3, 6\\], got \\[4, 6\\]"),
    ({"b_ih": torch.randn(3 * H - 1)}, "b_ih must have shape \\[18\\], got \\[17\\]"),
    ({"b_hh": None}, "give both b_ih and b_hh, or neither"),
    ({"x": torch.randn(B, T, I).transpose(0, 1)}, "x must be contiguous"),
    ({"x": torch.randn(T, B, I).half()}, "x must be float32 or float64"),
    ({"x": torch.randn(T * B, I)}, "x must be \\[T, B, I\\]"),
    ({"lengths": torch.tensor([4, 5, 1])}, "lengths must lie in 0..4, got 1..5"),
    ({"lengths": torch.tensor([4, 1])}, "lengths must have shape \\[3\\]"),
    ({"lengths": torch.tensor([4.0, 1.0, 2.0])}, "lengths must be int64"),
    ({"recurrent_mask": torch.ones(B, H + 2)}, "recurrent_mask must have shape \\[3, 6\\]"),
    ({"zoneout_mask": torch.ones(T, B, H - 1)}, "zoneout_mask must have shape \\[4, 3, 6\\]"),
    ({"zoneout_p": 1.5}, "zoneout_p must be in \\[0, 1\\]"),
    ({"gamma_ih": LN[0]}, "layer norm needs all of gamma_ih, beta_ih, gamma_hh, beta_hh, or none"),
    (
        {"gamma_ih": LN[0], "beta_ih": LN[1], "gamma_hh": torch.ones(3 * H + 1), "beta_hh": LN[3]},
        "gamma_hh must have shape \\[18\\], got \\[19\\]",
    ),
    (
        {"x": torch.randn(T * B, I), "batch_sizes": torch.tensor([3, 3, 3, 3]), "lengths": torch.tensor([4, 4, 4])},
        "give lengths \\(padded input\\) or batch_sizes \\(packed input\\), not both",
    ),
    (
        {"x": torch.randn(T * B, I), "batch_sizes": torch.tensor([3, 3, 3, 2])},
        "packed input has 12 rows, batch_sizes sum to 11",
    ),
    (
        {"x": torch.randn(T * B, I), "batch_sizes": torch.tensor([3, 3, 3, 3]), "h0": torch.zeros(2, H)},
        "h0 must have shape \\[3, 6\\]",
    ),
]


@pytest.mark.parametrize("changes,message", BAD_FORWARD, ids=[m[:40] for _, m in BAD_FORWARD])
def test_forward_rejects_bad_tensors_naming_them(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        torch.ops.grukit.gru_layer_fwd(**forward_inputs(**changes))


def test_backward_checks_its_tensors_too():
    inputs = forward_inputs()
    out, h_n, saved = torch.ops.grukit.gru_layer_fwd(**inputs, save_for_backward=True)

    def backward(d_out=torch.ones(T, B, H), d_hn=torch.ones(B, H), saved=saved, **changes):
        return torch.ops.grukit.gru_layer_bwd(out, saved, d_out, d_hn, **{**inputs, **changes})

    grads = backward()
    assert [tuple(g.shape) for g in grads[:6]] == [(T, B, I), (B, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]
    with pytest.raises(ValueError, match="d_out must have shape \\[4, 3, 6\\], got \\[4, 3, 5\\]"):
        backward(d_out=torch.ones(T, B, H - 1))
    with pytest.raises(ValueError, match="d_hn must have shape"):
        backward(d_hn=torch.ones(B, 1))
    with pytest.raises(ValueError, match="saved must have shape \\[12, 24\\], got \\[12, 23\\]"):
        backward(saved=saved[:, :-1].contiguous())
    with pytest.raises(ValueError, match="forward pass saved no activations"):
        backward(saved=torch.empty(0))
    with pytest.raises(ValueError, match="saved must have shape \\[12, 63\\]"):  # layer norm saves more
        backward(gamma_ih=LN[0], beta_ih=LN[1], gamma_hh=LN[2], beta_hh=LN[3])


def test_the_shared_constants_agree_across_languages():
    """Layer norm's epsilon is defined once per language: Python (reference), C++ (layer_norm.h),
    and the Triton passes take Python's."""
    from grukit import reference

    assert cpu_fused.extension().layer_norm_eps == reference.LN_EPS
    triton_passes = pytest.importorskip("grukit.backends.triton_passes")
    assert triton_passes.LN_EPS.value == reference.LN_EPS


def test_the_gradients_are_those_of_the_declared_differentiable_inputs():
    """gru_layer_bwd returns one gradient per differentiable input of the declaration, each of that
    input's shape; with layer norm and biases every one is given."""
    declared = cpu_fused.op_inputs()
    assert set(declared.gradients) <= set(declared.tensors) and declared.names[:4] == ("x", "h0", "w_ih", "w_hh")
    ln = dict(gamma_ih=LN[0], beta_ih=LN[1], gamma_hh=LN[2], beta_hh=LN[3])
    inputs = forward_inputs(**ln)
    out, h_n, saved = torch.ops.grukit.gru_layer_fwd(**inputs, save_for_backward=True)
    grads = torch.ops.grukit.gru_layer_bwd(out, saved, torch.ones_like(out), torch.ones_like(h_n), **inputs)
    assert [tuple(g.shape) for g in grads] == [tuple(inputs[name].shape) for name in declared.gradients]
