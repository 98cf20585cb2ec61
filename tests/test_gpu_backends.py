"""The GPU backends: which one "auto" picks, native equals torch.nn.GRU, triton's own behaviours.

Their numbers against the float64 oracle, for every variant and option, are in test_functional
and test_regularisers (triton under Triton's interpreter on CPU). The tests here that take a
``device`` run on CPU and, where a GPU is present, again on CUDA.
"""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit
from backend_params import call_layer
from grukit import backends
from grukit.backends import Variant, cpu_fused, triton_backend
from oracle import oracle_layer, random_weights

TRITON = pytest.mark.skipif(not triton_backend.is_available(), reason="triton is not installed")
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
# the triton kernels run on CUDA, and on CPU under Triton's interpreter (tests/conftest.py turns it
# on where no GPU is present)
TRITON_DEVICES = [
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            not triton_backend.runs_on("cpu", torch.float32), reason="Triton's interpreter is off (TRITON_INTERPRET)"
        ),
    ),
    DEVICES[1],
]
ANY_TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

NON_CUDNN_VARIANTS = [
    Variant(reset_after=False),
    Variant(keeps_state=False),
    Variant(layer_norm=True),
    Variant(zoneout=True),
    Variant(recurrent_dropout=True),
]


def test_auto_picks_native_on_cuda_for_the_cudnn_form_in_every_dtype():
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert backends.choose("cuda", dtype, Variant()) == "native"


@pytest.mark.parametrize("variant", NON_CUDNN_VARIANTS, ids=lambda v: str(v._asdict()))
def test_auto_picks_triton_on_cuda_for_every_other_form(variant, monkeypatch):
    monkeypatch.setattr(triton_backend, "is_available", lambda: True)
    assert backends.choose("cuda", torch.float32, variant) == "triton"
    assert backends.choose("cuda", torch.bfloat16, variant) == "triton"
    # without triton: the portable path, never the native op (it would compute another function)
    monkeypatch.setattr(triton_backend, "is_available", lambda: False)
    assert backends.choose("cuda", torch.float32, variant) == "torch"


def test_auto_on_cuda_picks_triton_at_every_hidden_size_and_honours_a_backends_size_limit(monkeypatch):
    """The per-step design measured faster than the portable path at every size (BENCHMARKS.md),
    so triton has no size limit; a backend that sets ``AUTO_MAX_HIDDEN`` is passed over above it."""
    monkeypatch.setattr(triton_backend, "is_available", lambda: True)
    variant = Variant(reset_after=False)
    for hidden_size in (16, 512, 1024, 4096, None):
        assert backends.choose("cuda", torch.float32, variant, hidden_size=hidden_size) == "triton"
    monkeypatch.setattr(triton_backend, "AUTO_MAX_HIDDEN", 512, raising=False)
    assert backends.choose("cuda", torch.float32, variant, hidden_size=512) == "triton"
    assert backends.choose("cuda", torch.float32, variant, hidden_size=513) == "torch"
    assert backends.choose("cuda", torch.float32, Variant(), hidden_size=4096) == "native"  # no size limit


def test_auto_on_cpu_never_picks_a_gpu_backend(monkeypatch):
    monkeypatch.setattr(triton_backend, "is_available", lambda: True)
    expected = "cpu_fused" if cpu_fused.is_available() else "torch"
    for variant in [Variant()] + NON_CUDNN_VARIANTS:
        assert backends.choose("cpu", torch.float32, variant) == expected
    assert backends.choose("cpu", torch.bfloat16, Variant()) == "torch"


def test_choosing_for_cuda_does_not_build_the_cpu_kernels(monkeypatch):
    def refuse():
        raise AssertionError("cpu_fused.is_available was asked for a CUDA input")

    monkeypatch.setattr(cpu_fused, "is_available", refuse)
    assert backends.choose("cuda", torch.float32, Variant(reset_after=False)) in ("triton", "torch")


@pytest.mark.parametrize(
    "options,named",
    [
        ({"reset_after": False}, "reset_after=False"),
        ({"update_gate": "takes_candidate"}, "takes_candidate"),
        ({"zoneout": 0.1}, "zoneout"),
        ({"recurrent_dropout": 0.1}, "recurrent_dropout"),
        ({"layer_norm": True}, "layer_norm"),
    ],
)
def test_native_by_name_refuses_a_form_it_cannot_compute(options, named):
    with pytest.raises(RuntimeError, match=named):
        grukit.GRU(3, 4, backend="native", **options)


def _twins(seed, **options):
    """A torch.nn.GRU and a grukit.GRU(backend="native") with the same weights."""
    torch.manual_seed(seed)
    reference = torch.nn.GRU(3, 5, **options).double()
    ours = grukit.GRU.from_torch(reference, backend="native")
    return reference, ours


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_native_equals_torch_gru_exactly_with_dropout_bidirectional_h0_and_lengths(device, batch_first):
    reference, ours = _twins(0, num_layers=2, dropout=0.3, bidirectional=True, batch_first=batch_first)
    reference, ours = reference.to(device), ours.to(device)
    x = torch.randn(4, 6, 3, dtype=torch.float64, device=device)  # [B, T, I] or [T, B, I]
    h0 = torch.randn(4, x.shape[0] if batch_first else x.shape[1], 5, dtype=torch.float64, device=device)
    for training in (False, True):
        reference.train(training)
        ours.train(training)
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        torch.manual_seed(5)
        want, want_h = reference(xs[0], h0)
        torch.manual_seed(5)
        got, got_h = ours(xs[1], h0)
        assert torch.equal(got, want) and torch.equal(got_h, want_h)  # the same op: bit for bit
        if not training:
            continue  # cuDNN keeps no state for a backward pass in evaluation mode (torch.nn.GRU neither)
        (want.sum() + want_h.sum()).backward()
        (got.sum() + got_h.sum()).backward()
        assert torch.equal(xs[0].grad, xs[1].grad)
        for (name, p), q in zip(reference.named_parameters(), ours.parameters()):
            assert torch.equal(p.grad, q.grad), name
        reference.zero_grad()
        ours.zero_grad()


@pytest.mark.parametrize("device", DEVICES)
def test_native_padded_lengths_equal_torch_on_the_packed_sequence(device):
    """Lengths in any order, one of them 0: the sequences of length 0 keep h0 and output zeros."""
    reference, ours = _twins(1, num_layers=2, bidirectional=True)
    reference, ours = reference.to(device), ours.to(device)
    T, B = 7, 5
    x = torch.randn(T, B, 3, dtype=torch.float64, device=device)
    h0 = torch.randn(4, B, 5, dtype=torch.float64, device=device)
    lengths = torch.tensor([3, 7, 0, 1, 7])
    got, got_h = grukit.gru(x, ours.layer_weights(), h0, lengths=lengths, bidirectional=True, backend="native")
    running = lengths > 0
    packed = pack_padded_sequence(x[:, running], lengths[running], enforce_sorted=False)
    want_packed, want_h = reference(packed, h0[:, running])
    want, _ = pad_packed_sequence(want_packed, total_length=T)
    torch.testing.assert_close(got[:, running], want, rtol=0, atol=0)
    torch.testing.assert_close(got_h[:, running], want_h, rtol=0, atol=0)
    assert (got[:, ~running] == 0).all()
    torch.testing.assert_close(got_h[:, ~running], h0[:, ~running], rtol=0, atol=0)
    # a PackedSequence through the module is torch's call itself
    got_packed, got_ph = ours(packed, h0[:, running])
    torch.testing.assert_close(got_packed.data, want_packed.data, rtol=0, atol=0)
    torch.testing.assert_close(got_ph, want_h, rtol=0, atol=0)


def test_native_flatten_parameters_is_torchs_on_cuda_and_a_no_op_elsewhere():
    ours = grukit.GRU(3, 4, num_layers=2, backend="native")
    before = [p.data_ptr() for p in ours.parameters()]
    ours.flatten_parameters()  # on CPU: nothing moves
    assert [p.data_ptr() for p in ours.parameters()] == before
    grukit.GRU(3, 4, reset_after=False).flatten_parameters()  # not cuDNN's form: a no-op, no error
    if torch.cuda.is_available():
        on_gpu = ours.cuda()
        pointers = sorted(p.data_ptr() for p in on_gpu.parameters())
        sizes = [p.numel() * p.element_size() for p in sorted(on_gpu.parameters(), key=lambda p: p.data_ptr())]
        # one buffer: each parameter starts where the previous ends (cuDNN's layout, no gaps here)
        assert all(b - a == s for a, b, s in zip(pointers, pointers[1:], sizes))


@TRITON
@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("reset_after", [True, False])
def test_triton_draws_the_cpu_kernels_zoneout_mask_from_the_same_seed(device, reset_after):
    """Same seed, no lengths: triton and cpu_fused zone out the same units (the CPU kernel's hash)."""
    if not cpu_fused.is_available():
        pytest.skip(f"fused CPU kernels unavailable: {cpu_fused.why_unavailable()}")
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 3, 2, 5
    w = [torch.tensor(a) for a in random_weights(rng, I, H)]
    x, h0 = torch.tensor(rng.normal(size=(T, B, I))), torch.tensor(rng.normal(size=(B, H)))
    draw = backends.masks.ZoneoutDraw(0.4, 123456789)
    want, _ = call_layer(cpu_fused.gru_layer, x, h0, *w, None, False, reset_after, True, zoneout=draw)
    moved = [t.to(device) for t in (x, h0, *w)]
    got, _ = call_layer(
        triton_backend.gru_layer, moved[0], moved[1], *moved[2:], None, False, reset_after, True, zoneout=draw
    )
    torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


@TRITON
def test_triton_refuses_second_derivatives_with_a_message():
    if not triton_backend.runs_on(ANY_TRITON_DEVICE, torch.float64):
        pytest.skip("no CUDA device and Triton's interpreter is off")
    gru = grukit.GRU(2, 3, reset_after=False, backend="triton").double().to(ANY_TRITON_DEVICE)
    x = torch.randn(3, 2, 2, dtype=torch.float64, device=ANY_TRITON_DEVICE, requires_grad=True)
    out, _ = gru(x)
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad(out.sum(), x, create_graph=True)
    (grad,) = torch.autograd.grad(gru(x)[0].sum(), x)  # first derivatives as usual
    assert grad.shape == x.shape


@TRITON
@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_under_autocast_computes_in_float32_and_returns_the_input_dtype(device, dtype):
    torch.manual_seed(0)
    gru = grukit.GRU(4, 6, reset_after=False, backend="triton").to(device)
    x = torch.randn(5, 3, 4, device=device)
    want, want_h = gru(x)
    with torch.autocast(device, dtype=dtype):
        got, got_h = gru(x.to(dtype))
    assert got.dtype == dtype and got_h.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=0, atol=2e-2)  # the input's rounding, not the compute's
    got.float().sum().backward()
    assert gru.weight_hh_l0.grad is not None and gru.weight_hh_l0.grad.dtype == torch.float32


@TRITON
@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("reset_after,update_gate", [(True, "keeps_state"), (False, "takes_candidate")])
def test_triton_module_trains_like_the_portable_path(device, reset_after, update_gate):
    """Several rows-blocks of 16 (B = 37), hidden size not a power of two, float32."""
    torch.manual_seed(1)
    options = dict(num_layers=2, bidirectional=True, reset_after=reset_after, update_gate=update_gate)
    portable = grukit.GRU(5, 40, backend="torch", **options).to(device)
    fast = grukit.GRU(5, 40, backend="triton", **options).to(device)
    fast.load_state_dict(portable.state_dict())
    T = 11 if device == "cuda" else 4  # the interpreter runs each program's steps in Python
    x = torch.randn(T, 37, 5, device=device)
    lengths = torch.randint(0, T + 1, (37,), device=device)
    outs = []
    for gru in (portable, fast):
        out, h_n = grukit.gru(x, gru.layer_weights(), lengths=lengths, **gru._options())
        (out.square().sum() + h_n.sum()).backward()
        outs.append((out, h_n, [p.grad for p in gru.parameters()]))
    (want, want_h, want_g), (got, got_h, got_g) = outs
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_h, want_h, rtol=1e-4, atol=1e-5)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


CUDA_ONLY = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device (on CPU: test_functional, test_regularisers)"
)


@CUDA_ONLY
@TRITON
@pytest.mark.parametrize("reset_after,keeps", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize(
    "ln,zoneout,rdrop", [(False, False, False), (True, False, False), (False, True, True), (True, True, True)]
)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("design", triton_backend.DESIGNS)
def test_triton_on_cuda_matches_the_oracle_forward_and_gradients(
    reset_after, keeps, ln, zoneout, rdrop, dtype, tol, design, monkeypatch
):
    """The compiled kernels (not the interpreter), in both designs (the per-step one from its
    recorded CUDA graph): every variant, with lengths and reversed, H = 70 (two column blocks and
    a ragged one), B = 37 (three programs of 16 rows)."""
    from grukit import reference

    monkeypatch.setenv(triton_backend.DESIGN_ENV_VAR, design)
    rng = np.random.default_rng(11)
    T, B, I, H = 9, 37, 5, 70
    for reverse in (False, True):
        x, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(B, H))
        w = random_weights(rng, I, H, scale=0.3)
        ln_w = tuple(rng.normal(1.0 if i % 2 == 0 else 0.0, 0.3, 3 * H) for i in range(4)) if ln else None
        zo = (rng.random((T, B, H)) < 0.3).astype(float) if zoneout else None
        rd = (rng.random((B, H)) < 0.75) / 0.75 if rdrop else None
        lengths = rng.integers(0, T + 1, size=B)
        lengths[0] = T
        update = reference.KEEPS_STATE if keeps else reference.TAKES_CANDIDATE
        out, h_n, backward = oracle_layer(x, h0, w, lengths, reverse, reset_after, update, ln_w, zo, rd)
        d_out = rng.normal(size=out.shape) * (np.arange(T)[:, None] < lengths[None, :])[..., None]
        d_hn = rng.normal(size=h_n.shape)
        expected = backward(d_out, d_hn)
        t = lambda a: torch.tensor(a, dtype=dtype, device="cuda", requires_grad=True)  # noqa: E731
        tx, th0, tw = t(x), t(h0), [t(a) for a in w]
        tln = [t(a) for a in ln_w] if ln else None
        got, got_hn = call_layer(triton_backend.gru_layer,
            tx, th0, *tw, torch.tensor(lengths, device="cuda"), reverse, reset_after, keeps,
            layer_norm=tln,
            zoneout=None if zo is None else torch.tensor(zo, dtype=dtype, device="cuda"),
            recurrent_mask=None if rd is None else torch.tensor(rd, dtype=dtype, device="cuda"),
        )  # fmt: skip
        scale = max(1.0, float(np.abs(out).max()))
        np.testing.assert_allclose(got.detach().cpu().numpy(), out, atol=tol * scale, rtol=tol)
        np.testing.assert_allclose(got_hn.detach().cpu().numpy(), h_n, atol=tol * scale, rtol=tol)
        torch.autograd.backward([got, got_hn], [t(d_out).detach(), t(d_hn).detach()])
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"] + (
            ["gamma_ih", "beta_ih", "gamma_hh", "beta_hh"] if ln else []
        )
        for name, tensor in zip(names, [tx, th0, *tw, *(tln or [])]):
            want = expected[name]
            bound = tol * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(tensor.grad.cpu().numpy(), want, atol=bound * 10, rtol=tol * 10, err_msg=name)


def _stepwise_layer(x, h0, weights, **options):
    return call_layer(triton_backend.gru_layer, x, h0, *weights, None, False, False, True, **options)


@CUDA_ONLY
@TRITON
def test_recorded_loops_are_lent_to_one_call_at_a_time(monkeypatch):
    """Two calls of one shape before either backward pass (a stacked GRU does this): each gets its
    own recorded loop, so the second cannot overwrite what the first's backward reads; then the
    graphs replay with new inputs, masks and seeds and still equal the eager loop."""
    monkeypatch.setenv(triton_backend.DESIGN_ENV_VAR, "stepwise")
    torch.manual_seed(0)
    T, B, I, H = 6, 5, 8, 8
    weights = [
        torch.randn(3 * H, I, device="cuda", requires_grad=True),
        torch.randn(3 * H, H, device="cuda", requires_grad=True),
    ]
    weights += [torch.randn(3 * H, device="cuda", requires_grad=True) for _ in range(2)]

    def run(use_graphs, x, h0, rmask, seed):
        monkeypatch.setattr(triton_backend, "USE_CUDA_GRAPHS", use_graphs)
        zoneout = backends.masks.ZoneoutDraw(0.2, seed)
        first, _ = _stepwise_layer(x, h0, weights, zoneout=zoneout, recurrent_mask=rmask)
        second, h_n = _stepwise_layer(first, h0 * 2, weights, zoneout=zoneout, recurrent_mask=rmask)
        grads = torch.autograd.grad((second.square().sum() + h_n.sum()), [x, h0] + weights)
        return [first.detach(), second.detach()] + list(grads)

    for call in range(3):  # the first records, the later ones replay
        x = torch.randn(T, B, I, device="cuda", requires_grad=True)
        h0 = torch.randn(B, H, device="cuda", requires_grad=True)
        rmask = (torch.rand(B, H, device="cuda") < 0.8).float() / 0.8
        want = run(False, x, h0, rmask, 100 + call)
        got = run(True, x, h0, rmask, 100 + call)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert sum(len(entries) for entries in triton_backend.GRAPHS.cache.loops.values()) >= 2
    triton_backend.release_cuda_graphs()
    assert not triton_backend.GRAPHS.cache.loops
    # recording again after the release (a shared memory pool once failed here inside torch)
    for a, b in zip(run(True, x, h0, rmask, 7), run(False, x, h0, rmask, 7)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@CUDA_ONLY
@TRITON
def test_the_stepwise_design_runs_inside_a_users_cuda_graph(monkeypatch):
    """Inside the caller's own graph capture the loop is not recorded again (it runs into the
    caller's recording), and the replayed result equals an eager call."""
    monkeypatch.setenv(triton_backend.DESIGN_ENV_VAR, "stepwise")
    torch.manual_seed(1)
    gru = grukit.GRU(8, 8, reset_after=False, backend="triton").cuda()
    x = torch.randn(5, 3, 8, device="cuda")
    with torch.no_grad():
        want, _ = gru(x)
        gru(x)  # warm up outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured, _ = gru(x)
        graph.replay()
    torch.testing.assert_close(captured, want)


def test_design_is_a_function_of_the_sizes_and_can_be_forced(monkeypatch):
    monkeypatch.delenv(triton_backend.DESIGN_ENV_VAR, raising=False)
    # the measured winners (BENCHMARKS.md, GPU section)
    assert triton_backend.design(1, 32) == triton_backend.design(64, 64) == "persistent"
    assert triton_backend.design(8, 128) == triton_backend.design(16, 128) == "persistent"
    assert triton_backend.design(1, 128) == triton_backend.design(64, 128) == "stepwise"
    for B in (1, 8, 64, 256):
        assert triton_backend.design(B, 512) == triton_backend.design(B, 1024) == "stepwise"
    monkeypatch.setenv(triton_backend.DESIGN_ENV_VAR, "persistent")
    assert triton_backend.design(256, 1024) == "persistent"
    monkeypatch.setenv(triton_backend.DESIGN_ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="GRUKIT_TRITON_DESIGN must be one of"):
        triton_backend.design(1, 16)
