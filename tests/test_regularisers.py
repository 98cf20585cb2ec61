"""Layer norm, zoneout and recurrent dropout: every backend against the float64 oracle, with explicit masks."""

import itertools

import numpy as np
import pytest
import torch

from backend_params import call_layer, call_layer_packed, param_ids
from grukit import reference
from grukit.backends import cpu_fused, torch_ops, triton_backend
from oracle import oracle_layer, random_weights

# every backend with the regularisers that runs on CPU tensors here (triton: under its interpreter)
RUNNABLE = [torch_ops] + [
    m for m in (cpu_fused, triton_backend) if m.is_available() and m.runs_on("cpu", torch.float64)
]
BACKENDS = [pytest.param(m, id=test_id) for m in RUNNABLE for test_id in param_ids(m.NAME)]
OPTIONS = [
    (ln, zo, rd)
    for ln, zo, rd in itertools.product((False, True), (None, "mask", "eval"), (False, True))
    if ln or zo or rd
]
OPTION_IDS = [f"{'ln' if ln else ''}-{zo or ''}-{'rd' if rd else ''}" for ln, zo, rd in OPTIONS]


def make_case(seed, T=5, B=4, I=3, H=6, ln=True, zo="mask", rd=True, lengths=None):
    rng = np.random.default_rng(seed)
    x, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(B, H))
    w = random_weights(rng, I, H)
    ln_w = tuple(rng.normal(1.0 if i % 2 == 0 else 0.0, 0.4, 3 * H) for i in range(4)) if ln else None
    zo_v = {None: None, "mask": (rng.random((T, B, H)) < 0.3).astype(float), "eval": 0.3}[zo]
    rd_v = (rng.random((B, H)) < 0.75) / 0.75 if rd else None
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    return x, h0, w, ln_w, zo_v, rd_v, lengths, rng


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ln,zo,rd", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("reset_after,keeps", [(True, True), (False, True), (True, False), (False, False)])
def test_backend_matches_the_oracle_forward_and_backward(backend, ln, zo, rd, reset_after, keeps):
    for reverse, lengths in ((False, None), (True, [5, 2, 0, 4])):
        x, h0, w, ln_w, zo_v, rd_v, L, rng = make_case(1, ln=ln, zo=zo, rd=rd, lengths=lengths)
        update = reference.KEEPS_STATE if keeps else reference.TAKES_CANDIDATE
        out, h_n, backward = oracle_layer(x, h0, w, L, reverse, reset_after, update, ln_w, zo_v, rd_v)
        d_out, d_hn = rng.normal(size=out.shape), rng.normal(size=h_n.shape)
        mask = (np.arange(5)[:, None] < L[None, :])[..., None]
        d_out = d_out * mask  # gradients at padded steps do not exist
        expected = backward(d_out, d_hn)
        t = lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True)  # noqa: E731
        tx, th0, tw = t(x), t(h0), [t(a) for a in w]
        tln = [t(a) for a in ln_w] if ln else None
        zo_arg = torch.tensor(zo_v) if isinstance(zo_v, np.ndarray) else zo_v
        rd_arg = torch.tensor(rd_v) if rd else None
        got, got_hn = call_layer(
            backend.gru_layer,
            tx,
            th0,
            *tw,
            None if lengths is None else torch.tensor(L),
            reverse,
            reset_after,
            keeps,
            layer_norm=tln,
            zoneout=zo_arg,
            recurrent_mask=rd_arg,
        )
        np.testing.assert_allclose(got.detach().numpy(), out, atol=1e-12)
        np.testing.assert_allclose(got_hn.detach().numpy(), h_n, atol=1e-12)
        torch.autograd.backward([got, got_hn], [torch.tensor(d_out), torch.tensor(d_hn)])
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"] + (
            ["gamma_ih", "beta_ih", "gamma_hh", "beta_hh"] if ln else []
        )
        for name, tensor in zip(names, [tx, th0, *tw, *(tln or [])]):
            np.testing.assert_allclose(
                tensor.grad.numpy(), expected[name], atol=1e-10, err_msg=f"{name} reverse={reverse}"
            )


@pytest.mark.skipif(cpu_fused not in RUNNABLE, reason="fused kernels unavailable")
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("reset_after", [True, False])
def test_fused_matches_portable_on_two_threads_padded_and_packed(dtype, tol, reset_after):
    """A batch large enough for the threads to split rows, with lengths and in the packed layout."""
    torch.manual_seed(0)
    T, B, I, H = 9, 40, 16, 48
    lengths = torch.randint(0, T + 1, (B,))
    lengths[0] = T
    x = torch.randn(T, B, I, dtype=dtype)
    h0 = torch.randn(B, H, dtype=dtype)
    w = [
        torch.randn(3 * H, I, dtype=dtype) * 0.3,
        torch.randn(3 * H, H, dtype=dtype) * 0.3,
        torch.randn(3 * H, dtype=dtype) * 0.3,
        torch.randn(3 * H, dtype=dtype) * 0.3,
    ]
    ln = [
        1 + 0.3 * torch.randn(3 * H, dtype=dtype),
        0.3 * torch.randn(3 * H, dtype=dtype),
        1 + 0.3 * torch.randn(3 * H, dtype=dtype),
        0.3 * torch.randn(3 * H, dtype=dtype),
    ]
    zo = (torch.rand(T, B, H) < 0.2).to(dtype)
    rd = (torch.rand(B, H) < 0.8).to(dtype) / 0.8
    d_out = torch.randn(T, B, H, dtype=dtype) * (torch.arange(T)[:, None] < lengths[None, :])[..., None]
    d_hn = torch.randn(B, H, dtype=dtype)
    results = []
    for backend in (torch_ops, cpu_fused):
        leaves = [t.clone().requires_grad_(True) for t in [x, h0, *w, *ln]]
        out, h_n = call_layer(
            backend.gru_layer,
            leaves[0],
            leaves[1],
            *leaves[2:6],
            lengths,
            False,
            reset_after,
            True,
            layer_norm=leaves[6:],
            zoneout=zo,
            recurrent_mask=rd,
        )
        torch.autograd.backward([out, h_n], [d_out, d_hn])
        results.append([out.detach(), h_n.detach()] + [t.grad for t in leaves])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)

    # packed layout: the same sequences, sorted longest first, zoneout mask in the packed rows
    from torch.nn.utils.rnn import pack_padded_sequence

    keep = lengths > 0
    packed = pack_padded_sequence(x[:, keep], lengths[keep], enforce_sorted=False)
    zo_packed = pack_padded_sequence(zo[:, keep], lengths[keep], enforce_sorted=False).data
    order = packed.sorted_indices
    out, h_n = call_layer_packed(
        cpu_fused.gru_layer_packed,
        packed.data,
        packed.batch_sizes,
        h0[keep][order],
        *w,
        False,
        reset_after,
        True,
        layer_norm=ln,
        zoneout=zo_packed,
        recurrent_mask=rd[keep][order],
    )
    expected = pack_padded_sequence(results[0][0][:, keep], lengths[keep], enforce_sorted=False).data
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    torch.testing.assert_close(h_n, results[0][1][keep][order], atol=tol, rtol=tol)


def test_masks_are_fresh_per_step_for_zoneout_and_fixed_per_sequence_for_recurrent_dropout():
    from grukit.backends.masks import ZoneoutDraw
    from grukit.functional import _regularisers

    torch.manual_seed(0)
    like = torch.zeros(1)
    masks = _regularisers(None, 0.3, 0.25, True, 8, 64, like)
    draw, rd = masks["zoneout"], masks["recurrent_mask"]
    assert isinstance(draw, ZoneoutDraw) and draw.p == 0.3 and rd.shape == (8, 64)  # dropout: per sequence
    zo = draw.mask((200, 8, 64), like)  # the portable backend's draw: per step and unit
    assert set(zo.unique().tolist()) == {0.0, 1.0} and abs(zo.mean().item() - 0.3) < 0.01
    assert not torch.equal(zo[0], zo[1]) and torch.equal(zo, draw.mask((200, 8, 64), like))  # seeded
    assert (
        torch.equal(rd.unique(), torch.tensor([0.0, 1 / 0.75])) and abs((rd == 0).float().mean().item() - 0.25) < 0.05
    )
    assert _regularisers(None, 0.3, 0.25, False, 8, 64, like) == {"zoneout": 0.3}  # evaluation


def drawn_mask(backend, draw, shape, like):
    """The 0/1 zoneout mask (1 = keep h_{t-1}) a backend draws for a call without lengths: the
    portable backend from torch's generator seeded with the draw's seed (``ZoneoutDraw.mask``); the
    fused CPU and Triton kernels from splitmix64's mixer of (seed, element index) below p * 2^32."""
    if backend is torch_ops:
        generator = torch.Generator().manual_seed(draw.seed)
        return (torch.rand(shape, generator=generator) < draw.p).to(like.dtype)
    with np.errstate(over="ignore"):
        z = np.uint64(draw.seed) + (np.arange(int(np.prod(shape)), dtype=np.uint64) + np.uint64(1)) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    keep = (z >> np.uint64(32)) < np.uint64(int(min(draw.p, 1.0) * 4294967296.0))
    return torch.tensor(keep.reshape(shape), dtype=like.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_a_drawn_zoneout_mask_is_the_same_in_the_backward_pass(backend, reset_after):
    """The fused kernel recomputes its mask in the backward pass: gradients must match an explicit mask."""
    from grukit.backends.masks import ZoneoutDraw

    torch.manual_seed(3)
    T, B, I, H = 6, 20, 4, 24
    x, h0 = torch.randn(T, B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    w = [
        torch.randn(3 * H, I, dtype=torch.float64) * 0.4,
        torch.randn(3 * H, H, dtype=torch.float64) * 0.4,
        torch.zeros(3 * H, dtype=torch.float64),
        torch.zeros(3 * H, dtype=torch.float64),
    ]
    draw = ZoneoutDraw.new(0.4)
    leaves = [t.clone().requires_grad_(True) for t in (x, h0, *w)]
    out, h_n = call_layer(backend.gru_layer, *leaves, None, False, reset_after, True, zoneout=draw)
    previous = torch.cat([h0[None], out[:-1]]).detach()
    kept = (out.detach() == previous).to(torch.float64)  # the mask the backend drew, read off its output
    # the rule each backend documents, computed here independently of it
    expected = drawn_mask(backend, draw, (T, B, H), x)
    torch.testing.assert_close(kept, expected, rtol=0, atol=0)
    assert 0.3 < kept.mean().item() < 0.5 and not torch.equal(kept[0], kept[1])
    (out.sum() + h_n.sum()).backward()
    again = [t.clone().requires_grad_(True) for t in (x, h0, *w)]
    out2, h_n2 = call_layer(torch_ops.gru_layer, *again, None, False, reset_after, True, zoneout=kept)
    (out2.sum() + h_n2.sum()).backward()
    torch.testing.assert_close(out2, out)
    for a, b in zip(leaves, again):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_module_options_train_evaluate_and_reload(reset_after, tmp_path):
    torch.manual_seed(1)
    gru = grukit_module(reset_after)
    x = torch.randn(3, 12, 5)
    # training: zoneout keeps about p of the units exactly, a different set every step
    gru.train()
    out, _ = gru(x)
    out.sum().backward()
    _gradients_match_a_finite_difference(reset_after, x)
    kept = (out[:, 1:] == out[:, :-1]).float()  # batch_first: step t+1 equals step t where zoned out
    assert 0.15 < kept.mean().item() < 0.45 and not torch.equal(kept[:, 0], kept[:, 1])
    # evaluation is deterministic and uses zoneout's expectation, not a mask
    gru.eval()
    with torch.no_grad():
        a, b = gru(x)[0], gru(x)[0]
    assert torch.equal(a, b) and not (a[:, 1:] == a[:, :-1]).any()
    # a saved model reloads and reproduces its outputs
    torch.save(gru.state_dict(), tmp_path / "gru.pt")
    again = grukit_module(reset_after)
    again.load_state_dict(torch.load(tmp_path / "gru.pt"))
    with torch.no_grad():
        assert torch.equal(again.eval()(x)[0], a)
    assert sorted(k for k in gru.state_dict() if k.startswith("layer_norm")) == sorted(
        f"layer_norm_{kind}_{side}_l{layer}{suffix}"
        for kind in ("weight", "bias")
        for side in ("ih", "hh")
        for layer in (0, 1)
        for suffix in ("", "_reverse")
    )


def _gradients_match_a_finite_difference(reset_after, x):
    """In training, with the masks fixed by the seed: every parameter's gradient, along a random
    direction, equals the loss's central difference (float64)."""
    gru = grukit_module(reset_after).double().train()
    x = x.double()

    def loss():
        torch.manual_seed(7)  # the same zoneout seed and recurrent-dropout mask every time
        out, _ = gru(x)
        return out.square().sum()

    loss().backward()
    params = list(gru.parameters())
    direction = [torch.randn_like(p) for p in params]
    slope = sum((p.grad * v).sum() for p, v in zip(params, direction)).item()
    eps = 1e-6
    with torch.no_grad():
        for p, v in zip(params, direction):
            p += eps * v
        up = loss().item()
        for p, v in zip(params, direction):
            p -= 2 * eps * v
        down = loss().item()
    assert abs((up - down) / (2 * eps) - slope) <= 1e-6 * max(1.0, abs(slope)), (up, down, slope)


def grukit_module(reset_after):
    import grukit

    return grukit.GRU(
        5,
        8,
        num_layers=2,
        batch_first=True,
        bidirectional=True,
        reset_after=reset_after,
        layer_norm=True,
        zoneout=0.3,
        recurrent_dropout=0.2,
    )


def test_defaults_leave_the_drop_in_unchanged_and_bad_options_say_so():
    import grukit

    plain = grukit.GRU(4, 6, num_layers=2)
    assert plain.state_dict().keys() == torch.nn.GRU(4, 6, num_layers=2).state_dict().keys()
    for kwargs, message in (
        ({"zoneout": 1.0}, "zoneout must be a number in \\[0, 1\\)"),
        ({"recurrent_dropout": -0.1}, "recurrent_dropout must be a number in \\[0, 1\\)"),
    ):
        with pytest.raises(ValueError, match=message):
            grukit.GRU(4, 6, **kwargs)
    with pytest.raises(TypeError, match="layer_norm must be a bool"):
        grukit.GRU(4, 6, layer_norm="yes")
    with pytest.raises(ValueError, match="layer_norm\\[0\\] \\(gamma_ih\\) must have shape \\(18,\\)"):
        grukit.gru(torch.randn(2, 1, 4), plain.layer_weights()[:1], layer_norm=[(torch.ones(6),) * 4])
    regularised = grukit.GRU(4, 6, layer_norm=True, zoneout=0.1)
    with pytest.raises(ValueError, match="supports the plain GRU only; this one has layer_norm=True, zoneout=0.1"):
        regularised.to_torch()
    from grukit.export import to_onnx

    with pytest.raises(ValueError, match="ONNX export"):
        to_onnx(regularised, "unused.onnx")


def test_a_stream_reproduces_a_regularised_gru_in_evaluation():
    import grukit

    gru = grukit.GRU(3, 8, num_layers=2, layer_norm=True, zoneout=0.3, recurrent_dropout=0.2).eval()
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        full = gru(x)[0]
    stream = gru.stream(batch_size=2)
    torch.testing.assert_close(torch.stack([stream.step(x[t]) for t in range(6)]), full, atol=1e-6, rtol=1e-6)
