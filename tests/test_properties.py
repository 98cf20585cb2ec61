"""Properties over many random sizes and options (hypothesis): weight conversions round-trip
exactly, and random option combinations of grukit.functional.gru match the float64 oracle."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grukit import convert, reference
from grukit.functional import gru
from oracle import oracle_layer, random_weights

sizes = st.integers(min_value=1, max_value=6)
update_gates = st.sampled_from(reference.UPDATE_GATE_MEANINGS)


@settings(max_examples=40, deadline=None)
@given(
    I=sizes,
    H=sizes,
    directions=st.integers(1, 2),
    reset_after=st.booleans(),
    update_gate=update_gates,
    seed=st.integers(0, 2**31 - 1),
)
def test_conversions_round_trip_exactly(I, H, directions, reset_after, update_gate, seed):
    rng = np.random.default_rng(seed)
    layers = [tuple(torch.tensor(w) for w in random_weights(rng, I, H)) for _ in range(directions)]
    # ONNX: W, R, B hold every direction
    for a, b in zip(layers, convert.onnx_to_torch(*convert.torch_to_onnx(layers))):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    # Keras (reset after keeps both biases, so the round trip is exact)
    if reset_after:
        keras_weights = convert.torch_to_keras(*layers[0], reset_after=True, update_gate=update_gate)
        back = convert.keras_to_torch(*keras_weights, reset_after=True, update_gate=update_gate)
        assert all(torch.equal(x, y) for x, y in zip(layers[0], back))
    # the update-gate flip is its own inverse
    state = {
        "weight_ih_l0": layers[0][0],
        "weight_hh_l0": layers[0][1],
        "bias_ih_l0": layers[0][2],
        "bias_hh_l0": layers[0][3],
    }
    twice = convert.flip_update_gate(convert.flip_update_gate(state))
    assert all(torch.equal(state[k], twice[k]) for k in state)


@settings(max_examples=30, deadline=None)
@given(
    T=sizes,
    B=sizes,
    I=sizes,
    H=sizes,
    reverse=st.booleans(),
    reset_after=st.booleans(),
    update_gate=update_gates,
    with_lengths=st.booleans(),
    backend=st.sampled_from(["auto", "torch"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_options_match_the_oracle(T, B, I, H, reverse, reset_after, update_gate, with_lengths, backend, seed):
    rng = np.random.default_rng(seed)
    x, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(B, H))
    weights = random_weights(rng, I, H)
    lengths = rng.integers(0, T + 1, size=B) if with_lengths else None
    want_out, want_h, _ = oracle_layer(x, h0, weights, lengths, reverse, reset_after, update_gate)
    tw = tuple(torch.tensor(w) for w in weights)
    # a bidirectional call with the same weights both ways: direction `reverse` is the one checked
    out, h_n = gru(
        torch.tensor(x),
        [tw, tw],
        torch.tensor(np.stack([h0, h0])),
        bidirectional=True,
        lengths=None if lengths is None else torch.tensor(lengths),
        reset_after=reset_after,
        update_gate=update_gate,
        backend=backend,
    )
    d = int(reverse)
    np.testing.assert_allclose(out[..., d * H : (d + 1) * H].numpy(), want_out, atol=1e-12)
    np.testing.assert_allclose(h_n[d].numpy(), want_h, atol=1e-12)
