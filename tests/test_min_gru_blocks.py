"""grukit.MinGRUBlocks (Feng et al. 2024's model body): the block equations against the float64
oracle of the minGRU, padding and packing, streaming, gradients on every scan path, and errors."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import grukit
from backend_params import backend_params
from grukit import min_gru_reference as reference
from grukit.min_gru_blocks import min_gru_blocks_parameters


def _model(I=3, d=6, L=2, seed=0, **options):
    torch.manual_seed(seed)
    return grukit.MinGRUBlocks(I, d, num_blocks=L, mlp_ratio=2, dtype=torch.float64, **options)


def _layer_norm(v, norm):
    """LayerNorm written out: (v - mean) / sqrt(var + eps) * gain + shift, over the last axis."""
    mean = v.mean(-1, keepdims=True)
    var = ((v - mean) ** 2).mean(-1, keepdims=True)
    return (v - mean) / np.sqrt(var + norm.eps) * norm.weight.detach().numpy() + norm.bias.detach().numpy()


def _oracle(model, x, hx):
    """The module docstring's equations in NumPy float64, the scan by min_gru_reference."""
    gelu = lambda v: 0.5 * v * (1 + np.vectorize(__import__("math").erf)(v / np.sqrt(2)))  # noqa: E731
    numpy = lambda t: t.detach().numpy()  # noqa: E731
    x = x @ numpy(model.input_projection.weight).T + numpy(model.input_projection.bias)
    finals = []
    for index, block in enumerate(model.blocks):
        weight, bias = (numpy(p) for p in block.min_gru.layer_weights()[0])
        states, _ = reference.layer_forward(_layer_norm(x, block.recurrence_norm), weight, bias, hx[index])
        finals.append(states[-1])
        u = x + states
        first, second = block.mlp[0], block.mlp[2]
        inner = gelu(_layer_norm(u, block.mlp_norm) @ numpy(first.weight).T + numpy(first.bias))
        x = u + inner @ numpy(second.weight).T + numpy(second.bias)
    return _layer_norm(x, model.output_norm), np.stack(finals)


@pytest.mark.parametrize("backend", backend_params("torch", "cpu_fused", "triton"))
def test_blocks_compute_the_documented_equations(backend):
    model = _model(backend=backend)
    x, hx = torch.randn(7, 4, 3, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64)
    output, h_n = model(x, hx)
    expected, finals = _oracle(model, x.numpy(), hx.numpy())
    np.testing.assert_allclose(output.detach().numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(h_n.detach().numpy(), finals, atol=1e-10)


def test_parameter_count_is_the_documented_one():
    model = grukit.MinGRUBlocks(5, 12, num_blocks=3, mlp_ratio=4)
    assert sum(p.numel() for p in model.parameters()) == min_gru_blocks_parameters(5, 12, 3, 4)


@pytest.mark.parametrize("backend", backend_params("cpu_fused", "triton"))
def test_gradients_equal_the_portable_paths(backend):
    x = torch.randn(9, 3, 3, dtype=torch.float64)
    grads = {}
    for name in ("torch", backend):
        model = _model(backend=name)
        x_ = x.clone().requires_grad_()
        output, h_n = model(x_)
        (output.square().sum() + h_n.sum()).backward()
        grads[name] = [x_.grad] + [p.grad for p in model.parameters()]
    for portable, fast in zip(grads["torch"], grads[backend]):
        torch.testing.assert_close(fast, portable, atol=1e-10, rtol=1e-10)


def test_padding_and_packing_give_each_sequence_what_it_gets_alone():
    model = _model()
    lengths = [7, 3, 5]
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    packed_output, packed_h_n = model(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_output)
    for b, n in enumerate(lengths):
        alone, alone_h_n = model(x[:n, b : b + 1])
        torch.testing.assert_close(padded[:n, b], alone[:, 0])
        torch.testing.assert_close(packed_h_n[:, b], alone_h_n[:, 0])
    assert padded[3:, 1].abs().max().item() == 0 and padded[5:, 2].abs().max().item() == 0  # zero past a length


def test_batch_first_and_unbatched_input():
    model = _model()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    expected, h_n = model(x.transpose(0, 1))
    model.batch_first = True
    output, h_n_first = model(x)
    torch.testing.assert_close(output, expected.transpose(0, 1))
    torch.testing.assert_close(h_n_first, h_n)
    model.batch_first = False
    single, single_h_n = model(x[0])  # [T, I] unbatched
    torch.testing.assert_close(single, expected[:, 0])
    torch.testing.assert_close(single_h_n, h_n[:, 0])


def test_stream_steps_equal_the_whole_sequence():
    model = _model()
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    expected, h_n = model(x)
    stream = model.stream(batch_size=2)
    steps = [stream.step(x[t]) for t in range(5)]
    steps.append(stream(x[5:])[-1])
    torch.testing.assert_close(torch.stack(steps[:5]), expected[:5])
    torch.testing.assert_close(steps[-1], expected[-1])
    torch.testing.assert_close(stream.state, h_n)
    stream.reset()
    torch.testing.assert_close(stream.step(x[0]), expected[0])


def test_stream_keeps_the_weights_it_was_made_with_and_drops_no_units():
    model = _model(dropout=0.5)  # in training mode: the stream must still run without dropout
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    expected, _ = model.eval()(x)
    stream = model.train().stream(batch_size=2)
    with torch.no_grad():
        model.input_projection.weight.zero_()
    torch.testing.assert_close(stream(x), expected)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_blocks"):
        grukit.MinGRUBlocks(3, 4, num_blocks=0)
    with pytest.raises(ValueError, match="input_size"):
        grukit.MinGRUBlocks(3, 4)(torch.randn(5, 2, 2))
    with pytest.raises(ValueError, match="hx"):
        grukit.MinGRUBlocks(3, 4, num_blocks=2)(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="batch_size"):
        grukit.MinGRUBlocks(3, 4).stream(batch_size=0)
