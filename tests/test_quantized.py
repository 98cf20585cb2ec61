"""grukit.QuantizedGRU: int8 and bfloat16 inference against the float64 oracle, with error bounds
derived from the quantization scales, and the module's contract (forms, stream, saving, refusals).

The oracle check runs step by step: from the kernel's own state h_{t-1}, the float64 GRU step on the
dequantized weights (the numbers the stored weights stand for) gives h_t; the kernel's h_t may differ
only by what rounding x and h to the precision can cause, propagated through the gates:

    int8:      each element of a row a (x_t or h_{t-1}) moves by at most s_a / 2, s_a = max|a| / 127
    bfloat16:  each element moves by at most |a_k| 2^-8 (rounding to 8 significant bits)
    a product's error:   e_n <= sum_k |W[n, k]| da_k   (+ float32 summation, K 2^-23 sum_k |W[n, k] a_k|)
    r, z = sigmoid(.):   |dr| <= (e_ir + e_hr) / 4            (sigmoid' <= 1/4)
    n = tanh(.):         |dn| <= e_in + |dr| |gh_n + b_hn| + (r + |dr|) e_hn     reset after
                         |dn| <= e_in + sum_k |W_n[., k]| (|dr_k| |h_k| + d(r h)_k)  reset before
    h' = z h + (1 - z) n:  |dh'| <= |dz| |h - n| + (1 - z + |dz|) |dn|     (takes_candidate: z <-> 1 - z)
    zoneout (evaluation):  |dh_t| <= (1 - p) |dh'|
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit
from grukit import quantized, reference
from grukit.backends import cpu_fused
from grukit.quantized import QuantizedGRU, dequantize_weight, quantize_weight
from oracle import VARIANT_IDS, VARIANTS

pytestmark = pytest.mark.skipif(not cpu_fused.is_available(), reason="the fused CPU kernels are unavailable")

PRECISIONS = ["int8", "bfloat16"]
F32_SUM = 2.0**-23  # float32 rounding, per term of a sum (and a little for the epilogue)
ACTIVATION_SLACK = 2e-6  # the kernels' float32 sigmoid/tanh and gate arithmetic


def _rounding(a: np.ndarray, precision: str) -> np.ndarray:
    """[B, K] the largest change rounding each element of each row can make."""
    if precision == "bfloat16":
        return np.abs(a) * 2.0**-8
    return np.repeat(np.abs(a).max(axis=1, keepdims=True) / 127 / 2, a.shape[1], axis=1)


def _product_error(W: np.ndarray, a: np.ndarray, precision: str) -> np.ndarray:
    """[B, R] bound on the error of a W^T when a [B, K] is rounded to the precision."""
    K = a.shape[1]
    return _rounding(a, precision) @ np.abs(W).T + K * F32_SUM * (np.abs(a) @ np.abs(W).T)


def _step_and_bound(x, h, weights, precision, reset_after, keeps_state, zoneout=0.0):
    """The float64 GRU step from (x [B, I], h [B, H]) on float64 weights, and the bound on the kernel's
    error at that step ([B, H] each)."""
    w_ih, w_hh, b_ih, b_hh = weights
    H = h.shape[1]
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    e_i, e_h = _product_error(w_ih, x, precision), _product_error(w_hh, h, precision)
    r = reference.sigmoid(gi[:, :H] + gh[:, :H])
    z = reference.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    dr = (e_i[:, :H] + e_h[:, :H]) / 4
    dz = (e_i[:, H : 2 * H] + e_h[:, H : 2 * H]) / 4
    if reset_after:
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        dn = e_i[:, 2 * H :] + dr * np.abs(gh[:, 2 * H :]) + (r + dr) * e_h[:, 2 * H :]
    else:
        w_n = w_hh[2 * H :]
        rh = r * h
        n = np.tanh(gi[:, 2 * H :] + rh @ w_n.T + b_hh[2 * H :])
        # r h is rounded from the kernel's r: bound its rounding by that of a row with |r h| + |dr h|
        drh = dr * np.abs(h) + _rounding(np.abs(rh) + dr * np.abs(h), precision)
        dn = e_i[:, 2 * H :] + drh @ np.abs(w_n).T + H * F32_SUM * (np.abs(rh) @ np.abs(w_n).T)
    keep = z if keeps_state else 1 - z
    h_new = keep * h + (1 - keep) * n
    d_new = dz * np.abs(h - n) + (1 - keep + dz) * dn
    h_new = zoneout * h + (1 - zoneout) * h_new
    return h_new, (1 - zoneout) * d_new + ACTIVATION_SLACK


def _float_gru(I, H, seed, **options):
    torch.manual_seed(seed)
    gru = grukit.GRU(I, H, **options)
    with torch.no_grad():  # larger than the default init, so the gates are not all near 1/2
        for p in gru.parameters():
            p.mul_(2.0)
    return gru


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("reset_after,update_gate", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("B,zoneout", [(1, 0.0), (7, 0.0), (40, 0.25)], ids=["b1", "b7", "b40-zoneout"])
def test_each_step_within_the_bound_from_the_scales(precision, reset_after, update_gate, B, zoneout):
    I, H, T = 24, 80, 12  # H = 80: a team splits units at batch 1 and rows at 40 (two threads)
    gru = _float_gru(I, H, seed=B, reset_after=reset_after, update_gate=update_gate, zoneout=zoneout)
    q = gru.quantized(precision)
    x = torch.randn(T, B, I) * 1.5
    h0 = torch.randn(1, B, H) * 0.5
    out, h_n = q(x, h0)
    weights = [t.double().numpy() for t in q.dequantized_weights()[0]]
    h_prev = h0[0].double().numpy()
    worst = 0.0
    for t in range(T):
        expected, bound = _step_and_bound(
            x[t].double().numpy(), h_prev, weights, precision, reset_after, update_gate == "keeps_state", zoneout
        )
        got = out[t].double().numpy()
        excess = np.abs(got - expected) - bound
        assert (excess <= 0).all(), f"step {t}: error exceeds the bound by {excess.max():.3g}"
        worst = max(worst, float((np.abs(got - expected) / bound).max()))
        h_prev = got  # the next step starts from the kernel's own state
    np.testing.assert_array_equal(h_n[0].numpy(), out[-1].numpy())
    print(f"worst error / bound: {worst:.3f}")
    assert worst > 1e-3, "the bound is so loose that the check would not notice a wrong product"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_wrong_scale_breaks_the_bound(precision):
    """The bound is tight enough to catch a wrong scale: the same check fails on a module whose
    recurrent scales (or bfloat16 weights) are off by 10%."""
    gru = _float_gru(16, 48, seed=3)
    q = gru.quantized(precision)
    weights = [t.double().numpy() for t in q.dequantized_weights()[0]]  # what the check expects
    with torch.no_grad():
        if precision == "int8":
            q.weight_hh_scale_l0.mul_(1.1)
        else:
            q.weight_hh_l0.copy_((q.weight_hh_l0.float() * 1.1).bfloat16())
    x = torch.randn(6, 5, 16)
    out, _ = q(x)
    h_prev = np.zeros((5, 48))
    broken = False
    for t in range(6):
        expected, bound = _step_and_bound(x[t].double().numpy(), h_prev, weights, precision, True, True)
        broken |= bool((np.abs(out[t].double().numpy() - expected) > bound).any())
        h_prev = out[t].double().numpy()
    assert broken


def test_quantized_weights_and_scales():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, -0.01]])
    q, s = quantize_weight(w, "int8")
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    np.testing.assert_allclose(s.numpy(), [1 / 127, 1.0, 2 / 127], rtol=1e-6)
    assert q.tolist() == [[64, -127, 32], [0, 0, 0], [127, 64, -1]]  # round(W / s): 63.5 -> 64 (half to even: 64)
    assert (dequantize_weight(q, s) - w).abs().max() <= s.max() / 2
    b, none = quantize_weight(w, "bfloat16")
    assert b.dtype == torch.bfloat16 and none is None


@pytest.mark.parametrize("precision", PRECISIONS)
def test_lengths_packed_and_directions_equal_each_sequence_alone(precision):
    gru = _float_gru(10, 32, seed=5, num_layers=2, bidirectional=True, reset_after=False)
    q = gru.quantized(precision)
    lengths = torch.tensor([9, 3, 7, 1, 9])
    x = torch.randn(9, 5, 10)
    padded_x = x.masked_fill((torch.arange(9).unsqueeze(1) >= lengths).unsqueeze(2), float("nan"))
    out, h_n = q(padded_x, lengths=lengths)  # NaN padding: steps past a length are never read
    for b, length in enumerate(lengths.tolist()):
        alone, h_alone = q(x[:length, b : b + 1])
        torch.testing.assert_close(out[:length, b : b + 1], alone, rtol=0, atol=1e-6)
        assert (out[length:, b] == 0).all()
        torch.testing.assert_close(h_n[:, b : b + 1], h_alone, rtol=0, atol=1e-6)
    packed_out, packed_h = q(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = pad_packed_sequence(packed_out, total_length=9)
    torch.testing.assert_close(padded, out, rtol=0, atol=1e-6)
    torch.testing.assert_close(packed_h, h_n, rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_batch_first_unbatched_and_h0(precision):
    gru = _float_gru(6, 20, seed=6, batch_first=True)
    q = gru.quantized(precision)
    x = torch.randn(3, 8, 6)
    h0 = torch.randn(1, 3, 20)
    out, h_n = q(x, h0)
    assert out.shape == (3, 8, 20) and h_n.shape == (1, 3, 20)
    one, h_one = q(x[1], h0[:, 1])
    torch.testing.assert_close(one, out[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(h_one, h_n[:, 1], rtol=0, atol=1e-6)
    empty, h_empty = q(torch.randn(3, 0, 6), h0)
    assert empty.shape == (3, 0, 20) and torch.equal(h_empty, h0)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_stream_equals_whole_sequence(precision, reset_after):
    gru = _float_gru(12, 40, seed=7, num_layers=2, reset_after=reset_after, update_gate="takes_candidate")
    q = gru.quantized(precision)
    x = torch.randn(15, 3, 12)
    h0 = torch.randn(2, 3, 40) * 0.3
    whole, h_n = q(x, h0)
    stream = q.stream(batch_size=3, h0=h0)
    steps = torch.stack([stream.step(x[t]) for t in range(15)])
    torch.testing.assert_close(steps, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(stream.state, h_n, rtol=0, atol=1e-6)
    stream.reset(h0)
    torch.testing.assert_close(stream(x), whole, rtol=0, atol=1e-6)


def test_stream_with_layer_norm_equals_whole_sequence():
    gru = _float_gru(8, 24, seed=8, layer_norm=True, zoneout=0.2)
    q = gru.quantized("int8")
    x = torch.randn(10, 2, 8)
    whole, _ = q(x)
    stream = q.stream(batch_size=2)
    torch.testing.assert_close(torch.stack([stream.step(x[t]) for t in range(10)]), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_layer_norm_stays_near_the_dequantized_float_module(precision):
    """Layer norm divides the rounding error by each row's spread, so no per-step bound is derived
    here: the quantized module must stay within 10% of the output range of the float module run on
    the same (dequantized) weights over 20 steps (int8 measured 6%, bfloat16 3%, with the gains
    doubled); a layer-norm gain 20% off moves it by more than the whole range."""
    gru = _float_gru(16, 64, seed=9, layer_norm=True).eval()
    q = gru.quantized(precision)
    with torch.no_grad():
        for name, weight in zip(("weight_ih_l0", "weight_hh_l0"), q.dequantized_weights()[0]):
            getattr(gru, name).copy_(weight)
        x = torch.randn(20, 4, 16)
        expected, _ = gru(x)
    assert (q(x)[0] - expected).abs().max() < 0.1 * float(expected.abs().max())
    with torch.no_grad():
        q.layer_norm_weight_hh_l0.mul_(1.2)
    assert (q(x)[0] - expected).abs().max() > 0.1 * float(expected.abs().max())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_state_dict_saves_and_loads(tmp_path, precision):
    gru = _float_gru(6, 16, seed=10, num_layers=2, bidirectional=True)
    q = gru.quantized(precision)
    state = q.state_dict()
    storage = torch.int8 if precision == "int8" else torch.bfloat16
    assert state["weight_ih_l0"].dtype == storage and state["weight_hh_l1_reverse"].dtype == storage
    assert ("weight_hh_scale_l0" in state) == (precision == "int8")
    torch.save(state, tmp_path / "q.pt")
    fresh = QuantizedGRU(6, 16, num_layers=2, bidirectional=True, precision=precision)
    fresh.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    x = torch.randn(5, 2, 6)
    torch.testing.assert_close(fresh(x)[0], q(x)[0], rtol=0, atol=0)


def test_from_float_takes_torch_gru():
    torch.manual_seed(11)
    torch_gru = torch.nn.GRU(5, 12, num_layers=2)
    q_torch = QuantizedGRU.from_float(torch_gru, "int8")
    q_grukit = grukit.GRU.from_torch(torch_gru).quantized("int8")
    x = torch.randn(7, 3, 5)
    torch.testing.assert_close(q_torch(x)[0], q_grukit(x)[0], rtol=0, atol=0)
    with pytest.raises(TypeError, match="module must be a grukit.GRU or torch.nn.GRU"):
        QuantizedGRU.from_float(torch.nn.LSTM(5, 12), "int8")
    with pytest.raises(ValueError, match=r"precision must be one of \('int8', 'bfloat16'\), got 'int4'"):
        QuantizedGRU.from_float(torch_gru, "int4")


def test_backward_is_refused_with_a_message():
    q = _float_gru(4, 8, seed=12).quantized("int8")
    x = torch.randn(3, 2, 4, requires_grad=True)
    out, _ = q(x)
    with pytest.raises(RuntimeError, match="inference only.*train the float32 grukit.GRU"):
        out.sum().backward()


def test_bad_input_is_named():
    q = _float_gru(4, 8, seed=13).quantized("bfloat16")
    with pytest.raises(
        TypeError, match=r"input must be float32 \(a QuantizedGRU computes in float32\), got torch.float64"
    ):
        q(torch.randn(3, 2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="input must have 4 features"):
        q(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 2, 8\)"):
        q(torch.randn(3, 2, 4), torch.zeros(1, 3, 8))


def test_nan_stays_in_its_sequence():
    q = _float_gru(4, 8, seed=14).quantized("int8")
    x = torch.randn(5, 3, 4)
    x[2, 1, 0] = float("nan")
    out, _ = q(x)
    assert out[2:, 1].isnan().all() and not out[:, [0, 2]].isnan().any() and not out[:2].isnan().any()


def test_op_boundary_refuses_mismatched_low_precision_inputs():
    H, I = 8, 4
    x, h0 = torch.randn(3, 2, I), torch.zeros(2, H)
    w_ih, w_hh = torch.zeros(3 * H, I, dtype=torch.int8), torch.zeros(3 * H, H, dtype=torch.int8)
    s = torch.ones(3 * H)
    op = torch.ops.grukit.gru_layer_fwd
    with pytest.raises(ValueError, match="w_ih_scale and w_hh_scale go with int8 weights"):
        op(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh)
    with pytest.raises(TypeError, match="weights take float32 x, got Double"):
        op(x=x.double(), h0=h0.double(), w_ih=w_ih, w_hh=w_hh, w_ih_scale=s, w_hh_scale=s)
    with pytest.raises(TypeError, match=r"w_ih must have dtype Char \(w_hh's\), got BFloat16"):
        op(x=x, h0=h0, w_ih=w_ih.bfloat16(), w_hh=w_hh, w_ih_scale=s, w_hh_scale=s)
    with pytest.raises(ValueError, match="weights are for inference: save_for_backward must be False"):
        op(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, w_ih_scale=s, w_hh_scale=s, save_for_backward=True)
    with pytest.raises(ValueError, match=r"w_hh_scale must have shape \[24\], got \[23\]"):
        op(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, w_ih_scale=s, w_hh_scale=s[:-1])
    out = torch.zeros(3, 2, H)
    with pytest.raises(ValueError, match="there is no backward pass"):
        torch.ops.grukit.gru_layer_bwd(
            out, torch.zeros(0), out, h0, x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, w_ih_scale=s, w_hh_scale=s
        )


PATHS = {
    "avx512": ("avx512_vnni (vpdpbusd)", "avx512_bf16 (vdpbf16ps)"),
    "avx2": ("avx2 (vpmaddubsw)", "avx2 (bfloat16 widened to float32, vfmadd)"),
    "float32_gemm": ("float32 GEMM on the int8 values", "float32 GEMM on the bfloat16 values"),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("reset_after", [True, False])
def test_every_path_computes_the_same_numbers(path, reset_after):
    """The three ways to the same sums (low_precision.h) on this machine: int8 must agree to the last
    bit or so (the same integer sums and epilogue), bfloat16 up to the order of float32 additions;
    layers (batch 6 and 1) and streams alike."""
    gru = _float_gru(12, 40, seed=15, reset_after=reset_after, num_layers=2)
    x = torch.randn(9, 6, 12)
    expected = {}
    for precision in PRECISIONS:
        q = gru.quantized(precision)
        stream = q.stream(batch_size=1)
        expected[precision] = (q(x)[0], q(x[:, :1])[0], torch.stack([stream.step(x[t, :1]) for t in range(9)]))
    try:
        with quantized.use_instructions(path):
            pass
    except ValueError as exc:  # this build or CPU lacks the path
        pytest.skip(str(exc))
    with quantized.use_instructions(path):
        assert (quantized.instructions("int8"), quantized.instructions("bfloat16")) == PATHS[path]
        for precision, atol in (("int8", 1e-6), ("bfloat16", 2e-5)):
            q = gru.quantized(precision)
            stream = q.stream(batch_size=1)
            got = (q(x)[0], q(x[:, :1])[0], torch.stack([stream.step(x[t, :1]) for t in range(9)]))
            for g, e in zip(got, expected[precision]):
                torch.testing.assert_close(g, e, rtol=0, atol=atol)
    assert quantized.instructions("int8") == expected_best("int8")  # the best path again after the block


def expected_best(precision: str) -> str:
    """What instructions() says with no path chosen: the best of the paths this machine has."""
    for path, names in PATHS.items():
        try:
            with quantized.use_instructions(path):
                pass
        except ValueError:
            continue
        return names[PRECISIONS.index(precision)]
    raise AssertionError("no path available")


def test_an_unknown_path_is_refused():
    expected = "instructions must be '' \\(the best here\\), 'float32_gemm', 'avx2' or 'avx512', got 'sse2'"
    with pytest.raises(ValueError, match=expected):
        with quantized.use_instructions("sse2"):
            pass
