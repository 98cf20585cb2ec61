"""grukit.functional.gru against the float64 oracle, on every available backend; its input checks."""

import numpy as np
import pytest
import torch

from backend_params import backend_params, skip_unless_computes
from grukit import backends
from grukit.backends import triton_backend
from grukit.functional import gru
from oracle import VARIANT_IDS, VARIANTS, oracle_layer, random_weights, torch_weights

BACKENDS = backend_params()

# (T, B, I, H) shapes for the seeded sweep: H not a multiple of any vector width, B=1, T=1
SHAPES = [(1, 1, 1, 1), (5, 3, 4, 7), (9, 1, 6, 3), (3, 6, 2, 17), (12, 4, 5, 10)]


def _case(seed, T, B, I, H, bidirectional, bias, with_lengths):
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    weights = [random_weights(rng, I, H, bias) for _ in range(D)]
    x = rng.normal(size=(T, B, I))
    h0 = rng.normal(size=(D, B, H))
    lengths = rng.integers(0, T + 1, size=B) if with_lengths else None
    if with_lengths:
        lengths[rng.integers(B)] = T  # a full-length sequence among them
    d_out = rng.normal(size=(T, B, D * H))
    d_hn = rng.normal(size=(D, B, H))
    return weights, x, h0, lengths, d_out, d_hn


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("reset_after,update_gate", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_layer_matches_oracle_forward_and_gradients(
    backend, dtype, tol, reset_after, update_gate, bidirectional, with_lengths
):
    skip_unless_computes(backend, reset_after=reset_after, keeps_state=update_gate == "keeps_state")
    for k, (T, B, I, H) in enumerate(SHAPES):
        bias = k % 2 == 0
        weights, x, h0, lengths, d_out, d_hn = _case(
            k + 10 * bidirectional, T, B, I, H, bidirectional, bias, with_lengths
        )
        D = len(weights)
        # oracle
        outs, hns, grads = [], [], []
        for d in range(D):
            out, hn, backward = oracle_layer(x, h0[d], weights[d], lengths, d == 1, reset_after, update_gate)
            outs.append(out)
            hns.append(hn)
            grads.append(backward(d_out[:, :, d * H : (d + 1) * H], d_hn[d]))
        want_out = np.concatenate(outs, axis=2)
        # grukit
        tw = [torch_weights(w, dtype) for w in weights]
        tx = torch.tensor(x, dtype=dtype, requires_grad=True)
        th0 = torch.tensor(h0, dtype=dtype, requires_grad=True)
        out, hn = gru(
            tx,
            tw,
            th0,
            lengths=None if lengths is None else torch.tensor(lengths),
            bidirectional=bidirectional,
            reset_after=reset_after,
            update_gate=update_gate,
            backend=backend,
        )
        msg = f"shape {(T, B, I, H)} lengths {lengths}"
        np.testing.assert_allclose(out.detach().numpy(), want_out, rtol=tol, atol=tol, err_msg=msg)
        np.testing.assert_allclose(hn.detach().numpy(), np.stack(hns), rtol=tol, atol=tol, err_msg=msg)
        torch.autograd.backward([out, hn], [torch.tensor(d_out, dtype=dtype), torch.tensor(d_hn, dtype=dtype)])
        np.testing.assert_allclose(tx.grad.numpy(), sum(g["x"] for g in grads), rtol=tol, atol=tol, err_msg="x " + msg)
        np.testing.assert_allclose(
            th0.grad.numpy(), np.stack([g["h0"] for g in grads]), rtol=tol, atol=tol, err_msg="h0 " + msg
        )
        for d in range(D):
            for j, name in enumerate(["w_ih", "w_hh", "b_ih", "b_hh"][: len(tw[d])]):
                np.testing.assert_allclose(
                    tw[d][j].grad.numpy(), grads[d][name], rtol=tol, atol=tol, err_msg=f"{name}[{d}] {msg}"
                )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset_after,update_gate", VARIANTS, ids=VARIANT_IDS)
def test_stacked_layers_match_oracle_and_gradcheck(backend, reset_after, update_gate):
    skip_unless_computes(backend, reset_after=reset_after, keeps_state=update_gate == "keeps_state")
    rng = np.random.default_rng(7)
    T, B, I, H, L = 6, 3, 4, 5, 3
    weights = [random_weights(rng, I if layer == 0 else 2 * H, H) for layer in range(L) for _ in range(2)]
    x = rng.normal(size=(T, B, I))
    h0 = rng.normal(size=(2 * L, B, H))
    lengths = np.array([6, 2, 4])
    layer_in, finals = x, []
    for layer in range(L):
        outs = []
        for d in range(2):
            out, hn, _ = oracle_layer(
                layer_in, h0[2 * layer + d], weights[2 * layer + d], lengths, d == 1, reset_after, update_gate
            )
            outs.append(out)
            finals.append(hn)
        layer_in = np.concatenate(outs, axis=2)
    tw = [torch_weights(w) for w in weights]
    out, hn = gru(
        torch.tensor(x),
        tw,
        torch.tensor(h0),
        lengths=lengths.tolist(),
        bidirectional=True,
        reset_after=reset_after,
        update_gate=update_gate,
        backend=backend,
    )
    np.testing.assert_allclose(out.detach().numpy(), layer_in, atol=1e-10, rtol=1e-10)
    np.testing.assert_allclose(hn.detach().numpy(), np.stack(finals), atol=1e-10, rtol=1e-10)

    if backend == "triton" and triton_backend.interpreted():
        return  # gradcheck's hundreds of calls take minutes in the interpreter; gradients: the test above
    small = [torch_weights(random_weights(rng, 2 if k < 2 else 6, 3)) for k in range(4)]
    xs = torch.tensor(rng.normal(size=(4, 2, 2)), requires_grad=True)
    hs = torch.tensor(rng.normal(size=(4, 2, 3)), requires_grad=True)
    flat = [xs, hs] + [w for ws in small for w in ws]

    def fn(xs, hs, *ws):
        grouped = [tuple(ws[i : i + 4]) for i in range(0, len(ws), 4)]
        return gru(
            xs,
            grouped,
            hs,
            lengths=[4, 3],
            bidirectional=True,
            reset_after=reset_after,
            update_gate=update_gate,
            backend=backend,
        )

    assert torch.autograd.gradcheck(fn, flat)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_first_and_dropout(backend):
    rng = np.random.default_rng(4)
    w = [
        torch_weights(random_weights(rng, 3, 4), requires_grad=False),
        torch_weights(random_weights(rng, 4, 4), requires_grad=False),
    ]
    x = torch.tensor(rng.normal(size=(5, 2, 3)))
    out, hn = gru(x, w, backend=backend)
    out_bf, hn_bf = gru(x.transpose(0, 1).contiguous(), w, batch_first=True, backend=backend)
    torch.testing.assert_close(out_bf.transpose(0, 1), out)
    torch.testing.assert_close(hn_bf, hn)
    # dropout applies between layers in training only
    same, _ = gru(x, w, dropout=0.5, training=False, backend=backend)
    torch.testing.assert_close(same, out)
    torch.manual_seed(0)
    dropped, _ = gru(x, w, dropout=0.5, training=True, backend=backend)
    assert not torch.allclose(dropped, out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_padding_never_reaches_outputs_or_gradients(backend):
    rng = np.random.default_rng(5)
    w = [torch_weights(random_weights(rng, 3, 4))]
    x = torch.tensor(rng.normal(size=(6, 3, 3)))
    lengths = torch.tensor([6, 2, 0])
    x[2:, 1] = float("nan")
    x[:, 2] = float("inf")
    x.requires_grad_(True)
    out, hn = gru(x, w, lengths=lengths, backend=backend)
    (out.sum() + hn.sum()).backward()
    assert torch.isfinite(out).all() and torch.isfinite(hn).all()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[2:, 1] == 0).all() and (out[2:, 1] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in w[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_inside_a_sequence_stays_in_that_sequence(backend):
    rng = np.random.default_rng(6)
    w = [torch_weights(random_weights(rng, 3, 4), requires_grad=False)]
    x = torch.tensor(rng.normal(size=(4, 2, 3)))
    x[1, 0, 0] = float("nan")
    out, hn = gru(x, w, backend=backend)
    assert torch.isnan(out[1:, 0]).all() and torch.isfinite(out[:, 1]).all() and torch.isfinite(out[0, 0]).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_input_returns_empty_output_and_initial_state(backend, T, B):
    w = [torch_weights(random_weights(np.random.default_rng(0), 3, 4))]
    x = torch.zeros(T, B, 3, dtype=torch.float64)
    h0 = torch.randn(2, B, 4, dtype=torch.float64)
    out, hn = gru(x, w * 2, h0, bidirectional=True, backend=backend)
    assert out.shape == (T, B, 8)
    torch.testing.assert_close(hn, h0)
    out, hn = gru(x.transpose(0, 1), w, batch_first=True, backend=backend)
    assert out.shape == (B, T, 4) and hn.shape == (1, B, 4) and (hn == 0).all()


def test_backend_choice_by_argument_and_environment(monkeypatch):
    x = torch.randn(2, 1, 3)
    w = [tuple(torch.randn(s) for s in [(12, 3), (12, 4)])]
    with pytest.raises(ValueError, match=r"backend must be one of .*'auto'.*got 'nope'"):
        gru(x, w, backend="nope")
    monkeypatch.setenv("GRUKIT_BACKEND", "nope")
    with pytest.raises(ValueError, match=r"\$GRUKIT_BACKEND must be one of"):
        gru(x, w)
    monkeypatch.setenv("GRUKIT_BACKEND", "torch")
    assert backends.select(x, None).NAME == "torch"


# ---- every bad input raises an error that names the argument --------------------

H = 4


def _good():
    return {
        "input": torch.randn(5, 2, 3),
        "weights": [(torch.randn(3 * H, 3), torch.randn(3 * H, H), torch.randn(3 * H), torch.randn(3 * H))],
        "hx": None,
    }


def _with(**changes):
    args = _good()
    args.update(changes)
    return args


BAD_INPUTS = [
    ("input not a tensor", _with(input=[[1.0]]), TypeError, r"input must be a torch.Tensor, got list"),
    (
        "integer input",
        _with(input=torch.ones(5, 2, 3, dtype=torch.int64)),
        TypeError,
        r"input must have a floating dtype.*got torch.int64",
    ),
    ("input rank 2", _with(input=torch.randn(5, 3)), ValueError, r"input must be 3-D \[T, B, I\].*got shape \(5, 3\)"),
    ("input rank 4", _with(input=torch.randn(5, 2, 3, 1)), ValueError, r"input must be 3-D .*got shape \(5, 2, 3, 1\)"),
    (
        "wrong input size",
        _with(input=torch.randn(5, 2, 7)),
        ValueError,
        r"w_ih of layer 0\) must have shape \(12, 7\), got \(12, 3\)",
    ),
    ("weights empty", _with(weights=[]), TypeError, r"weights must be a non-empty list"),
    ("weights a tensor", _with(weights=torch.randn(12, 3)), TypeError, r"weights must be a non-empty list"),
    (
        "weights tuple of 3",
        _with(weights=[(torch.randn(12, 3), torch.randn(12, 4), torch.randn(12))]),
        TypeError,
        r"weights\[0\] must be a tuple",
    ),
    (
        "w_hh not square",
        _with(weights=[(torch.randn(12, 3), torch.randn(12, 5), torch.randn(12), torch.randn(12))]),
        ValueError,
        r"w_hh of layer 0\) must have shape \(15, 5\), got \(12, 5\)",
    ),
    (
        "bias wrong size",
        _with(weights=[(torch.randn(12, 3), torch.randn(12, 4), torch.randn(11), torch.randn(12))]),
        ValueError,
        r"b_ih of layer 0\) must have shape \(12,\), got \(11,\)",
    ),
    (
        "weight dtype differs",
        _with(
            weights=[(torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 4), torch.randn(12), torch.randn(12))]
        ),
        TypeError,
        r"w_ih of layer 0\) must have dtype torch.float32 \(the input's\), got torch.float64",
    ),
    ("hx wrong shape", _with(hx=torch.randn(1, 3, 4)), ValueError, r"hx must have shape \(1, 2, 4\), got \(1, 3, 4\)"),
    (
        "hx wrong dtype",
        _with(hx=torch.randn(1, 2, 4, dtype=torch.float64)),
        TypeError,
        r"hx must have dtype torch.float32",
    ),
]


@pytest.mark.parametrize("case,args,error,message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_clear_error(case, args, error, message):
    with pytest.raises(error, match=message):
        gru(args["input"], args["weights"], args["hx"])


BAD_OPTIONS = [
    ({"lengths": [5, 6]}, ValueError, r"lengths must lie in 0\.\.5 \(the input has 5 steps\), got min 5, max 6"),
    ({"lengths": [-1, 2]}, ValueError, r"lengths must lie in 0\.\.5.*got min -1"),
    ({"lengths": [5]}, ValueError, r"lengths must have shape \(2,\) \(one per sequence\), got \(1,\)"),
    ({"lengths": torch.tensor([[5, 5]])}, ValueError, r"lengths must have shape \(2,\)"),
    ({"lengths": torch.tensor([5.0, 4.0])}, TypeError, r"lengths must hold integers, got dtype torch.float32"),
    ({"lengths": [5.0, 4.0]}, TypeError, r"lengths must hold integers"),
    ({"lengths": 5}, TypeError, r"lengths must be a 1-D integer tensor or a sequence of ints, got int"),
    (
        {"update_gate": "update"},
        ValueError,
        r"update_gate must be one of \('keeps_state', 'takes_candidate'\), got 'update'",
    ),
    ({"reset_after": 1}, TypeError, r"reset_after must be a bool, got 1"),
    ({"batch_first": "yes"}, TypeError, r"batch_first must be a bool"),
    ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\], got 1.5"),
    ({"dropout": -0.1}, ValueError, r"dropout must be a number in \[0, 1\]"),
    ({"bidirectional": True}, ValueError, r"weights must hold 2 tuples per layer \(bidirectional=True\), got 1"),
]


@pytest.mark.parametrize("options,error,message", BAD_OPTIONS, ids=[str(o[0])[:40] for o in BAD_OPTIONS])
def test_bad_option_raises_clear_error(options, error, message):
    args = _good()
    with pytest.raises(error, match=message):
        gru(args["input"], args["weights"], **options)


def test_second_layer_size_is_checked():
    w0 = (torch.randn(12, 3), torch.randn(12, 4))
    with pytest.raises(
        ValueError, match=r"weights\[1\]\[0\] \(w_ih of layer 1\) must have shape \(12, 4\), got \(12, 3\)"
    ):
        gru(torch.randn(5, 2, 3), [w0, w0])
    with pytest.raises(ValueError, match=r"weights\[1\] must be a tuple of 2 tensors like weights\[0\]"):
        gru(torch.randn(5, 2, 3), [w0, w0 + (torch.randn(12), torch.randn(12))])


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_mode_then_training_then_inference(backend):
    """Buffers a backend keeps between calls must survive switching modes."""
    gru = __import__("grukit").GRU(4, 8, backend=backend)
    x = torch.randn(5, 3, 4)
    with torch.inference_mode():
        expected, _ = gru(x)
    out, _ = gru(x.requires_grad_(True))
    out.sum().backward()
    torch.testing.assert_close(out.detach(), expected)
    with torch.inference_mode():
        again, _ = gru(x)
    torch.testing.assert_close(again, expected)


def test_dropout_one_is_accepted_as_torch_accepts_it():
    """dropout = 1 zeroes every layer's output but the last one's, in training, as torch.nn.GRU does."""
    torch.manual_seed(0)
    ref = torch.nn.GRU(3, 4, num_layers=2, dropout=1.0)
    x = torch.randn(5, 2, 3)
    weights = [tuple(w) for w in ref.all_weights]
    for training in (True, False):
        ref.train(training)
        want_out, want_h = ref(x)
        out, h_n = gru(x, weights, dropout=1.0, training=training)
        torch.testing.assert_close(out, want_out)
        torch.testing.assert_close(h_n, want_h)
