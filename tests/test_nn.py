"""grukit.GRU / GRUCell as drop-ins for torch.nn.GRU / GRUCell."""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit
from backend_params import backend_params

CONFIGS = list(itertools.product([1, 2, 3], [False, True], [False, True], [False, True]))


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,with_h0", CONFIGS)
def test_matches_torch_gru_padded(num_layers, bidirectional, batch_first, with_h0):
    torch.manual_seed(num_layers * 8 + bidirectional * 4 + batch_first * 2 + with_h0)
    I, H, T, B = 5, 6, 7, 4
    ref = torch.nn.GRU(I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    ours = grukit.GRU(I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    ours.load_state_dict(ref.state_dict())
    D = 2 if bidirectional else 1
    x = torch.randn((B, T, I) if batch_first else (T, B, I))
    h0 = torch.randn(num_layers * D, B, H) if with_h0 else None
    outs = []
    for module in (ref, ours):
        xi = x.clone().requires_grad_(True)
        hi = None if h0 is None else h0.clone().requires_grad_(True)
        out, hn = module(xi, hi)
        (out.pow(2).sum() + (hn * 0.5).sum()).backward()
        outs.append((out, hn, xi.grad, None if hi is None else hi.grad, _grads(module)))
    (o1, h1, gx1, gh1, gw1), (o2, h2, gx2, gh2, gw2) = outs
    torch.testing.assert_close(o2, o1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h2, h1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx2, gx1, atol=1e-5, rtol=1e-5)
    if with_h0:
        torch.testing.assert_close(gh2, gh1, atol=1e-5, rtol=1e-5)
    for name in gw1:
        torch.testing.assert_close(gw2[name], gw1[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True), (3, False)])
def test_matches_torch_gru_packed(enforce_sorted, num_layers, bidirectional):
    torch.manual_seed(3)
    I, H, T = 3, 5, 8
    lengths = torch.tensor([8, 6, 6, 3, 1]) if enforce_sorted else torch.tensor([3, 8, 1, 6, 6])
    B = len(lengths)
    D = 2 if bidirectional else 1
    ref = torch.nn.GRU(I, H, num_layers, bidirectional=bidirectional)
    ours = grukit.GRU(I, H, num_layers, bidirectional=bidirectional)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    h0 = torch.randn(num_layers * D, B, H)
    results = []
    for module in (ref, ours):
        xi = x.clone().requires_grad_(True)
        hi = h0.clone().requires_grad_(True)
        packed = pack_padded_sequence(xi, lengths, enforce_sorted=enforce_sorted)
        out, hn = module(packed, hi)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        padded, out_lengths = pad_packed_sequence(out)
        (padded.pow(2).sum() + hn.sum()).backward()
        results.append((out, padded, out_lengths, hn, xi.grad, hi.grad, _grads(module)))
    (p1, o1, l1, h1, gx1, gh1, gw1), (p2, o2, l2, h2, gx2, gh2, gw2) = results
    torch.testing.assert_close(p2.batch_sizes, p1.batch_sizes)
    assert (p1.sorted_indices is None) == (p2.sorted_indices is None)
    torch.testing.assert_close(p2.data, p1.data, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l2, l1)
    for a, b in [(o2, o1), (h2, h1), (gx2, gx1), (gh2, gh1)]:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for name in gw1:
        torch.testing.assert_close(gw2[name], gw1[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("backend", backend_params("cpu_fused", "torch"))
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("update_gate", ["keeps_state", "takes_candidate"])
def test_packed_equals_each_sequence_alone(reset_after, update_gate, backend):
    """Packed data runs natively in the fused kernel; the portable path pads it with lengths."""
    torch.manual_seed(4)
    gru = grukit.GRU(
        3,
        4,
        num_layers=2,
        bidirectional=True,
        reset_after=reset_after,
        update_gate=update_gate,
        dtype=torch.float64,
        backend=backend,
    )
    lengths = [2, 7, 4]
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(seqs)
    out, hn = gru(pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=False))
    out, _ = pad_packed_sequence(out)
    for b, seq in enumerate(seqs):
        alone_out, alone_hn = gru(seq.unsqueeze(1))
        torch.testing.assert_close(out[: lengths[b], b], alone_out[:, 0], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(hn[:, b], alone_hn[:, 0], atol=1e-12, rtol=1e-12)
        assert (out[lengths[b] :, b] == 0).all()


def test_same_parameters_and_initialisation_as_torch():
    torch.manual_seed(0)
    ref = torch.nn.GRU(3, 4, num_layers=2, bias=False, bidirectional=True)
    torch.manual_seed(0)
    ours = grukit.GRU(3, 4, num_layers=2, bias=False, bidirectional=True)
    assert [n for n, _ in ref.named_parameters()] == [n for n, _ in ours.named_parameters()]
    for (n, a), (_, b) in zip(ref.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(a, b, msg=n)  # same draws in the same order
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert len(ours.all_weights) == 4 and len(ours.all_weights[0]) == 2


def test_unbatched_input_and_dtype_device_arguments():
    torch.manual_seed(1)
    ref = torch.nn.GRU(3, 4, num_layers=2, dtype=torch.float64)
    ours = grukit.GRU(3, 4, num_layers=2, dtype=torch.float64, device="cpu")
    ours.load_state_dict(ref.state_dict())
    x, h0 = torch.randn(6, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    for a, b in zip(ours(x, h0), ref(x, h0)):
        torch.testing.assert_close(a, b)
    assert ours(x)[0].shape == (6, 4)


def test_cell_matches_torch_cell():
    torch.manual_seed(2)
    ref = torch.nn.GRUCell(3, 5)
    ours = grukit.GRUCell(3, 5)
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    torch.testing.assert_close(ours(x, h), ref(x, h))
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours(x[0], h[0]), ref(x[0], h[0]))


@pytest.mark.parametrize("reset_after", [True, False])
def test_cell_step_by_step_equals_layer(reset_after):
    torch.manual_seed(3)
    layer = grukit.GRU(3, 4, reset_after=reset_after, update_gate="takes_candidate", dtype=torch.float64)
    cell = grukit.GRUCell(3, 4, reset_after=reset_after, update_gate="takes_candidate", dtype=torch.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, _ = layer(x)
    h = None
    for t in range(5):
        h = cell(x[t], h)
        torch.testing.assert_close(h, out[t])


def test_variants_differ_and_round_trip_through_torch():
    torch.manual_seed(5)
    x = torch.randn(4, 2, 3)
    base = grukit.GRU(3, 4, num_layers=2)
    outs = {}
    for ra in (True, False):
        for ug in ("keeps_state", "takes_candidate"):
            g = grukit.GRU(3, 4, num_layers=2, reset_after=ra, update_gate=ug)
            g.load_state_dict(base.state_dict())
            outs[ra, ug] = g(x)[0]
    keys = list(outs)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            assert not torch.allclose(outs[keys[i]], outs[keys[j]]), (keys[i], keys[j])
    # a takes_candidate GRU becomes a torch.nn.GRU computing the same function
    g = grukit.GRU(3, 4, num_layers=2, update_gate="takes_candidate")
    torch.testing.assert_close(g.to_torch()(x)[0], g(x)[0])
    with pytest.raises(ValueError, match="reset_after=False .* cannot be expressed as a torch.nn.GRU"):
        grukit.GRU(3, 4, reset_after=False).to_torch()
    t = torch.nn.GRU(3, 4, bidirectional=True)
    torch.testing.assert_close(grukit.GRU.from_torch(t)(x)[0], t(x)[0])


BAD_CONSTRUCTOR = [
    ((0, 4), {}, ValueError, "input_size must be a positive int, got 0"),
    ((3, 4.5), {}, TypeError, r"hidden_size must be an int, got float \(4.5\)"),
    ((3, 4, 0), {}, ValueError, "num_layers must be a positive int, got 0"),
    ((3, 4), {"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\], got 1.5"),
    ((3, 4), {"reset_after": "no"}, TypeError, "reset_after must be a bool"),
    ((3, 4), {"update_gate": "keep"}, ValueError, "update_gate must be one of"),
    ((3, 4), {"batch_first": 1}, TypeError, "batch_first must be a bool"),
]


@pytest.mark.parametrize("args,kwargs,error,message", BAD_CONSTRUCTOR)
def test_constructor_rejects_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        grukit.GRU(*args, **kwargs)


def test_forward_rejects_bad_inputs():
    gru = grukit.GRU(3, 4, batch_first=True)
    with pytest.raises(
        ValueError, match=r"input must be 3-D \[B, T, I\] or 2-D \[T, I\] \(unbatched\), got shape \(3,\)"
    ):
        gru(torch.randn(3))
    with pytest.raises(
        ValueError, match=r"input must have 3 features \(input_size\) in its last dimension, got shape \(2, 5, 7\)"
    ):
        gru(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"hx must be 3-D \[L\*D, B, H\], got shape \(2, 4\)"):
        gru(torch.randn(2, 5, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"hx must be 2-D \[L\*D, H\], got shape \(1, 1, 4\)"):
        gru(torch.randn(5, 3), torch.randn(1, 1, 4))
    with pytest.raises(TypeError, match="input must be a torch.Tensor or PackedSequence, got ndarray"):
        gru(torch.randn(2, 5, 3).numpy())
    cell = grukit.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"input must have 3 features \(input_size\), got shape \(2, 5\)"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"hx must be 2-D like input \(\[B, H\]\), got shape \(4,\)"):
        cell(torch.randn(2, 3), torch.randn(4))


def test_dropout_warning_matches_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        grukit.GRU(3, 4, dropout=0.2)


def test_gru_packed_rejects_bad_batch_sizes():
    from grukit.functional import gru_packed

    w = [(torch.randn(12, 3), torch.randn(12, 4))]
    with pytest.raises(ValueError, match="batch_sizes must be non-empty, positive and non-increasing"):
        gru_packed(torch.randn(5, 3), torch.tensor([2, 3]), w)
    with pytest.raises(ValueError, match="batch_sizes sum to 5 but data has 6 rows"):
        gru_packed(torch.randn(6, 3), torch.tensor([3, 2]), w)
    with pytest.raises(TypeError, match="batch_sizes must be a 1-D int64 tensor"):
        gru_packed(torch.randn(5, 3), torch.tensor([3.0, 2.0]), w)
    with pytest.raises(ValueError, match=r"data must be 2-D \[N, I\]"):
        gru_packed(torch.randn(5, 1, 3), torch.tensor([3, 2]), w)
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 3, 4\), got \(1, 2, 4\)"):
        gru_packed(torch.randn(5, 3), torch.tensor([3, 2]), w, torch.zeros(1, 2, 4))
