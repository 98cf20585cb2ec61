"""The minGRU (grukit.MinGRU, grukit.min_gru): the float64 oracle against finite differences, every
scan path against the oracle (forward and gradients), the sequential and parallel computations
against each other at T = 100,000, and the module's interface (layers, directions, lengths,
PackedSequence, h0, streaming, errors)."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit
from backend_params import backend_params
from grukit import backends
from grukit import min_gru_reference as reference
from grukit.backends import BackendError, torch_ops
from grukit.min_gru import min_gru

SCAN_BACKENDS = backend_params("torch", "cpu_fused", "triton")


def _scan(name):
    return backends.get(name).min_gru_scan


def _gates(T, B, H, seed=0, dtype=torch.float64):
    """k [T, B, 2H] with candidate pre-activations on both sides of 0 (g's two branches)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, 2 * H, generator=g, dtype=dtype) * 2, torch.randn(B, H, generator=g, dtype=dtype)


# ---------------------------------------------------------------- the oracle


def test_oracle_backward_matches_central_differences():
    rng = np.random.default_rng(0)
    T, B, I, H = 6, 2, 3, 4
    x, weight, bias, h0 = (
        rng.normal(size=(T, B, I)),
        rng.normal(size=(2 * H, I)),
        rng.normal(size=2 * H),
        rng.normal(size=(B, H)),
    )
    d_h = rng.normal(size=(T, B, H))
    _, cache = reference.layer_forward(x, weight, bias, h0)
    grads = reference.layer_backward(d_h, cache)
    assert (cache["k"][..., H:] < 0).any() and (cache["k"][..., H:] > 0).any()
    arrays = {"x": x, "weight": weight, "bias": bias, "h0": h0}
    for name, array in arrays.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + 1e-6
            plus = (reference.layer_forward(**arrays)[0] * d_h).sum()
            array[index] = saved - 1e-6
            minus = (reference.layer_forward(**arrays)[0] * d_h).sum()
            array[index] = saved
            numeric[index] = (plus - minus) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_oracle_is_the_recurrence_of_the_paper():
    """h_t = (1 - z_t) h_{t-1} + z_t g(k_h), g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0), written out."""
    k, h0 = (t.numpy() for t in _gates(3, 1, 2))
    h, expected = h0[0], []
    for t in range(3):
        z = 1 / (1 + np.exp(-k[t, 0, :2]))
        v = k[t, 0, 2:]
        candidate = np.array([u + 0.5 if u >= 0 else 1 / (1 + np.exp(-u)) for u in v])
        h = (1 - z) * h + z * candidate
        expected.append(h)
    np.testing.assert_allclose(reference.scan_forward(k, h0)[:, 0], np.array(expected), rtol=1e-14)


# ---------------------------------------------------------------- every scan path against the oracle


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("T, B, H", [(1, 1, 1), (37, 3, 20), (130, 2, 70)])
def test_scan_forward_and_gradients_match_the_oracle(backend, dtype, tolerance, T, B, H):
    k, h0 = _gates(T, B, H, seed=T)
    d_h = torch.randn(T, B, H, dtype=torch.float64)
    h_ref = reference.scan_forward(k.numpy(), h0.numpy())
    d_k_ref, d_h0_ref = reference.scan_backward(d_h.numpy(), h_ref, k.numpy(), h0.numpy())
    k_, h0_ = k.to(dtype).requires_grad_(), h0.to(dtype).requires_grad_()
    h = _scan(backend)(k_, h0_)
    h.backward(d_h.to(dtype))
    scale = 1 + np.abs(h_ref).max()
    np.testing.assert_allclose(h.detach().double().numpy(), h_ref, atol=tolerance * scale, rtol=0)
    np.testing.assert_allclose(k_.grad.double().numpy(), d_k_ref, atol=tolerance * scale * 10, rtol=0)
    np.testing.assert_allclose(h0_.grad.double().numpy(), d_h0_ref, atol=tolerance * scale * 10, rtol=0)


@pytest.mark.parametrize("backend", backend_params("cpu_fused", "triton"))
def test_fused_scans_have_second_derivatives(backend):
    k, h0 = _gates(5, 2, 3)  # gradgradcheck's cost grows with every element: the smallest T, B, H > 1
    assert torch.autograd.gradgradcheck(_scan(backend), (k.requires_grad_(), h0.requires_grad_()))


@pytest.mark.parametrize("chunk", [1, 3, 16])
@pytest.mark.parametrize("backend", backend_params("triton"))
def test_triton_chunks_give_the_same_scan(backend, chunk):
    """Chunk sizes that do and do not divide T: the carries between chunks are exact."""
    k, h0 = _gates(23, 2, 130)
    k_, h0_ = k.clone().requires_grad_(), h0.clone().requires_grad_()
    h = backends.get(backend).min_gru_scan(k_, h0_, chunk)
    d_h = torch.randn_like(h)
    h.backward(d_h)
    h_ref = reference.scan_forward(k.numpy(), h0.numpy())
    d_k_ref, d_h0_ref = reference.scan_backward(d_h.numpy(), h_ref, k.numpy(), h0.numpy())
    np.testing.assert_allclose(h.detach().numpy(), h_ref, atol=1e-12)
    np.testing.assert_allclose(k_.grad.numpy(), d_k_ref, atol=1e-12)
    np.testing.assert_allclose(h0_.grad.numpy(), d_h0_ref, atol=1e-12)


@pytest.mark.slow
def test_sequential_and_parallel_scans_agree_at_100000_steps_in_float32():
    """The fused kernel walks the steps in order; the portable path combines them by recursive
    doubling (log2 T rounds). In float32 at T = 100,000 both stay within 1e-5 of float64."""
    T, B, H = 100_000, 2, 16
    k, h0 = _gates(T, B, H, seed=1, dtype=torch.float32)
    exact = torch.from_numpy(reference.scan_forward(k.double().numpy(), h0.double().numpy()))
    parallel = torch_ops.min_gru_scan(k, h0).double()
    assert (parallel - exact).abs().max() < 1e-5
    if backends.get("cpu_fused").is_available():
        sequential = backends.get("cpu_fused").min_gru_scan(k, h0).double()
        assert (sequential - exact).abs().max() < 1e-5
        assert (sequential - parallel).abs().max() < 1e-5


# ---------------------------------------------------------------- the module against the oracle


def _oracle_network(x, weights, h0, lengths, bidirectional):
    """The minGRU network from the oracle, one sequence at a time (each run on its own valid steps)."""
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = weights[0][0].shape[0] // 2
    L = len(weights) // D
    output = np.zeros((T, B, D * H))
    h_n = np.zeros((L * D, B, H))
    for b in range(B):
        n = int(lengths[b])
        layer_input = x[:n, b : b + 1]
        for layer in range(L):
            outs = []
            for d in range(D):
                w, bias = (t.detach().double().numpy() for t in weights[layer * D + d])
                seq = layer_input[::-1] if d else layer_input
                h, _ = reference.layer_forward(seq, w, bias, h0[layer * D + d, b : b + 1])
                h_n[layer * D + d, b] = h[-1, 0] if n else h0[layer * D + d, b]
                outs.append(h[::-1] if d else h)
            layer_input = np.concatenate(outs, axis=-1)
        output[:n, b] = layer_input[:, 0]
    return output, h_n


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_module_matches_the_oracle_with_lengths(backend, bidirectional):
    torch.manual_seed(0)
    model = grukit.MinGRU(3, 5, num_layers=2, bidirectional=bidirectional, backend=backend).double()
    T, B = 7, 4
    x = torch.randn(T, B, 3, dtype=torch.float64)
    hx = torch.randn(2 * (2 if bidirectional else 1), B, 5, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 0, 5])
    output, h_n = min_gru(x, model.layer_weights(), hx, lengths=lengths, bidirectional=bidirectional, backend=backend)
    expected_out, expected_hn = _oracle_network(x.numpy(), model.layer_weights(), hx.numpy(), lengths, bidirectional)
    np.testing.assert_allclose(output.detach().numpy(), expected_out, atol=1e-12)
    np.testing.assert_allclose(h_n.detach().numpy(), expected_hn, atol=1e-12)


@pytest.mark.parametrize("backend", backend_params("cpu_fused", "triton"))
def test_module_gradients_equal_the_portable_paths(backend):
    """Weights, input and h0 get the same gradients through a fused scan as through torch ops
    (which autograd differentiates; the oracle checks those above)."""
    torch.manual_seed(1)
    model = grukit.MinGRU(3, 6, num_layers=2, bidirectional=True, backend="torch").double()
    x = torch.randn(8, 3, 3, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    lengths = [8, 5, 2]
    grads = []
    for name in ("torch", backend):
        out, h_n = min_gru(x, model.layer_weights(), hx, lengths=lengths, bidirectional=True, backend=name)
        grads.append(torch.autograd.grad((out.sin().sum() + h_n.square().sum()), [x, hx, *model.parameters()]))
    for portable, fused in zip(*grads):
        torch.testing.assert_close(fused, portable, atol=1e-12, rtol=1e-10)


def test_module_gradcheck_on_the_fused_scan():
    model = grukit.MinGRU(2, 3, backend="auto").double()
    x = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: model(a, b)[0], (x, h0))


def test_packed_input_equals_padded_input_with_lengths():
    torch.manual_seed(2)
    model = grukit.MinGRU(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(6, 3, 3)
    lengths = torch.tensor([2, 6, 4])
    hx = torch.randn(4, 3, 4)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_packed, h_packed = model(packed, hx)
    assert torch.equal(out_packed.sorted_indices, packed.sorted_indices)
    assert torch.equal(out_packed.batch_sizes, packed.batch_sizes)
    out_padded, h_padded = min_gru(x, model.layer_weights(), hx, lengths=lengths, bidirectional=True)
    unpacked, _ = pad_packed_sequence(out_packed)
    torch.testing.assert_close(unpacked, out_padded)
    torch.testing.assert_close(h_packed, h_padded)


def test_batch_first_and_unbatched_input():
    torch.manual_seed(3)
    model = grukit.MinGRU(3, 4)
    x = torch.randn(5, 2, 3)
    out, h_n = model(x)
    first = grukit.MinGRU(3, 4, batch_first=True)
    first.load_state_dict(model.state_dict())
    out_first, h_first = first(x.transpose(0, 1))
    torch.testing.assert_close(out_first, out.transpose(0, 1))
    torch.testing.assert_close(h_first, h_n)
    out_one, h_one = model(x[:, 0])
    torch.testing.assert_close(out_one, out[:, 0])
    torch.testing.assert_close(h_one, h_n[:, 0])


def test_parameter_count_and_names():
    model = grukit.MinGRU(10, 8, num_layers=2, bidirectional=True)
    names = [name for name, _ in model.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "bias_ih_l0", "weight_ih_l0_reverse", "bias_ih_l0_reverse"]
    # 2H (I + 1) per layer and direction: no recurrent weights
    assert sum(p.numel() for p in model.parameters()) == 2 * (16 * 11) + 2 * (16 * 17)
    assert "bidirectional=True" in repr(model)


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", backend_params("torch", "cpu_fused"))
def test_stream_steps_follow_the_oracle_in_float64(backend, bias):
    """Each path of the stream (the native one of the fused kernels; the product and one-step scan
    elsewhere) against the oracle's layers run one after the other, step by step."""
    torch.manual_seed(5)
    model = grukit.MinGRU(3, 5, num_layers=2, bias=bias, backend=backend, dtype=torch.float64)
    x, h0 = torch.randn(6, 2, 3, dtype=torch.float64), torch.randn(2, 2, 5, dtype=torch.float64)
    stream = model.stream(batch_size=2, h0=h0)
    assert (stream._native is not None) == (backend == "cpu_fused")
    expected = x.numpy()
    for layer, (weight, b) in enumerate(model.layer_weights()):
        b = np.zeros(weight.shape[0]) if b is None else b.detach().numpy()
        expected, _ = reference.layer_forward(expected, weight.detach().numpy(), b, h0[layer].numpy())
    got = torch.stack([stream.step(x[t]) for t in range(6)])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    with torch.no_grad():  # the stream copied the weights when it was made
        model.weight_ih_l0.zero_()
    stream.reset()
    np.testing.assert_allclose(stream.step(x[0]).numpy(), expected[0], atol=1e-12)


def test_native_stream_names_a_wrong_step():
    if not backends.get("cpu_fused").is_available():
        pytest.skip("cpu_fused unavailable")
    stream = grukit.MinGRU(3, 5).stream(batch_size=2)
    with pytest.raises(ValueError, match=r"x must have shape \[2, 3\]"):
        stream.step(torch.randn(3, 3))
    with pytest.raises(TypeError, match="x must have dtype Float"):
        stream.step(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="h0"):
        stream.reset(torch.zeros(2, 2, 5))


def test_stream_steps_equal_the_whole_sequence():
    torch.manual_seed(4)
    model = grukit.MinGRU(3, 5, num_layers=2)
    x = torch.randn(9, 2, 3)
    h0 = torch.randn(2, 2, 5)
    out, h_n = model(x, h0)
    stream = model.stream(batch_size=2, h0=h0)
    steps = torch.stack([stream.step(x[t]) for t in range(4)])
    rest = stream(x[4:])
    torch.testing.assert_close(torch.cat([steps, rest]), out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(stream.state, h_n, atol=1e-6, rtol=1e-6)
    stream.reset()
    torch.testing.assert_close(stream.step(x[0]), out[0], atol=1e-6, rtol=1e-6)


def test_stream_refuses_a_bidirectional_module_and_wrong_steps():
    with pytest.raises(ValueError, match="unidirectional"):
        grukit.MinGRU(3, 5, bidirectional=True).stream()
    stream = grukit.MinGRU(3, 5).stream(batch_size=2)
    with pytest.raises(ValueError, match=r"\[T, 2, 3\]"):
        stream(torch.randn(4, 3, 3))


# ---------------------------------------------------------------- the choice of scan, and errors


def test_auto_picks_the_fused_scan_on_cpu_and_the_portable_one_for_tangents():
    x = torch.randn(2, 2, 2)
    fused = backends.get("cpu_fused")
    assert backends.select_min_gru_scan(x, "auto") is (fused if fused.is_available() else torch_ops)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
        assert backends.select_min_gru_scan(dual, "auto") is torch_ops


def test_forward_mode_tangents_match_finite_differences():
    torch.manual_seed(5)
    model = grukit.MinGRU(3, 4, num_layers=2).double()
    x, v = torch.randn(6, 2, 3, dtype=torch.float64), torch.randn(6, 2, 3, dtype=torch.float64)
    with torch.autograd.forward_ad.dual_level():
        out, _ = model(torch.autograd.forward_ad.make_dual(x, v))
        tangent = torch.autograd.forward_ad.unpack_dual(out).tangent
    with torch.no_grad():
        numeric = (model(x + 1e-6 * v)[0] - model(x - 1e-6 * v)[0]) / 2e-6
    torch.testing.assert_close(tangent, numeric, atol=1e-7, rtol=1e-6)


def test_a_backend_without_the_scan_is_refused_by_name():
    with pytest.raises(BackendError, match="no minGRU scan"):
        min_gru(torch.randn(2, 1, 3), [(torch.randn(8, 3), None)], backend="native")


@pytest.mark.parametrize(
    "weights, message",
    [
        ([], "non-empty list"),
        ([(torch.randn(7, 3), None)], r"\[2H, I\]"),
        ([(torch.randn(8, 2), None)], r"weights\[0\]\[0\] must have shape \(8, 3\)"),
        ([(torch.randn(8, 3), torch.randn(4))], r"weights\[0\]\[1\] must have shape \(8,\)"),
    ],
)
def test_bad_weights_are_named(weights, message):
    with pytest.raises((ValueError, TypeError), match=message):
        min_gru(torch.randn(2, 1, 3), weights)


def test_bad_hx_and_lengths_are_named():
    weights = [(torch.randn(8, 3), None)]
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 2, 4\)"):
        min_gru(torch.randn(5, 2, 3), weights, torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="lengths"):
        min_gru(torch.randn(5, 2, 3), weights, lengths=[6, 1])
    with pytest.raises(ValueError, match="input_size"):
        grukit.MinGRU(3, 4)(torch.randn(5, 2, 2))
    with pytest.raises(ValueError, match="hidden_size"):
        grukit.MinGRU(3, 0)


def test_fused_op_checks_its_tensors():
    fused = backends.get("cpu_fused")
    if not fused.is_available():
        pytest.skip(f"cpu_fused unavailable: {fused.why_unavailable()}")
    with pytest.raises(ValueError, match="h0 must be contiguous"):
        torch.ops.grukit.min_gru_scan(torch.randn(3, 2, 8), torch.randn(4, 2).T)
    with pytest.raises(ValueError, match=r"k must have shape \[3, 2, 8\]"):
        torch.ops.grukit.min_gru_scan(torch.randn(3, 2, 6), torch.randn(2, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        torch.ops.grukit.min_gru_scan(torch.randn(3, 2, 8).half(), torch.randn(2, 4).half())


def test_fused_scan_reuses_its_output_buffer_only_once_the_caller_lets_go():
    """The op's outputs come from a pool (csrc/workspace.h) so that a training step does not pay page
    faults for fresh memory each call: a result the caller still holds keeps its values, and one it
    dropped is written over."""
    fused = backends.get("cpu_fused")
    if not fused.is_available():
        pytest.skip(f"cpu_fused unavailable: {fused.why_unavailable()}")
    k1, h0 = _gates(6, 2, 4, seed=1)
    k2, _ = _gates(6, 2, 4, seed=2)
    first = torch.ops.grukit.min_gru_scan(k1, h0)
    kept = first.clone()
    second = torch.ops.grukit.min_gru_scan(k2, h0)
    assert first.data_ptr() != second.data_ptr()
    torch.testing.assert_close(first, kept, rtol=0, atol=0)
    torch.testing.assert_close(second, torch.from_numpy(reference.scan_forward(k2.numpy(), h0.numpy())))
    d_first, _ = torch.ops.grukit.min_gru_scan_backward(torch.ones_like(first), first, k1, h0)
    d_kept = d_first.clone()
    d_second, _ = torch.ops.grukit.min_gru_scan_backward(torch.ones_like(second), second, k2, h0)
    torch.testing.assert_close(d_first, d_kept, rtol=0, atol=0)
    del first, second, d_first, d_second
    # released: a shorter sequence is written into the larger buffer the pool keeps
    shorter = torch.ops.grukit.min_gru_scan(k1[:2].contiguous(), h0)
    assert shorter.untyped_storage().nbytes() == k1.numel() // 2 * k1.element_size()
