"""The float64 oracle: its equations against the seed notes, its backward against finite differences."""

import numpy as np
import pytest

from grukit import reference
from grukit.convert import flip_update_gate
from oracle import VARIANT_IDS, VARIANTS, random_weights


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


@pytest.mark.parametrize("update_gate", reference.UPDATE_GATE_MEANINGS)
def test_matches_seed_equations_written_with_concatenation(update_gate):
    """Seeds 000/001/002 write W . [h_{t-1}, x_t] + b with r applied before the matmul."""
    rng = np.random.default_rng(1)
    I, H, B = 3, 4, 2
    Wz, Wr, Wh = (rng.normal(size=(H, H + I)) for _ in range(3))  # acts on [h, x]
    bz, br, bh = (rng.normal(size=H) for _ in range(3))
    x = rng.normal(size=(5, B, I))
    h = rng.normal(size=(B, H))
    # the same weights, split into the stored layout [W_r; W_z; W_n] and [U_r; U_z; U_n]
    w_ih = np.concatenate([Wr[:, H:], Wz[:, H:], Wh[:, H:]])
    w_hh = np.concatenate([Wr[:, :H], Wz[:, :H], Wh[:, :H]])
    b_ih = np.concatenate([br, bz, bh])
    hs, _ = reference.gru_forward(
        x, h, w_ih, w_hh, b_ih, np.zeros(3 * H), reset_after=False, update_gate=update_gate
    )
    for t in range(5):
        hx = np.concatenate([h, x[t]], axis=1)
        z = sigmoid(hx @ Wz.T + bz)
        r = sigmoid(hx @ Wr.T + br)
        h_tilde = np.tanh(np.concatenate([r * h, x[t]], axis=1) @ Wh.T + bh)
        if update_gate == "takes_candidate":
            h = (1 - z) * h + z * h_tilde  # seeds 000 and 001
        else:
            h = (1 - z) * h_tilde + z * h  # seed 002
        np.testing.assert_allclose(hs[t], h, rtol=0, atol=1e-14)


@pytest.mark.parametrize("reset_after", [True, False])
def test_update_meanings_are_the_same_family(reset_after):
    rng = np.random.default_rng(2)
    w = random_weights(rng, 3, 4)
    x, h0 = rng.normal(size=(6, 2, 3)), rng.normal(size=(2, 4))
    keep, _ = reference.gru_forward(x, h0, *w, reset_after=reset_after, update_gate="keeps_state")
    flipped = [a.numpy() for a in flip_update_gate(tuple(w))]
    take, _ = reference.gru_forward(x, h0, *flipped, reset_after=reset_after, update_gate="takes_candidate")
    np.testing.assert_allclose(keep, take, rtol=0, atol=1e-14)
    different, _ = reference.gru_forward(x, h0, *w, reset_after=reset_after, update_gate="takes_candidate")
    assert np.abs(different - keep).max() > 1e-2


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reset_after,update_gate", VARIANTS, ids=VARIANT_IDS)
def test_backward_matches_central_differences(reset_after, update_gate, bias):
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 2, 3, 5
    params = {
        "x": rng.normal(size=(T, B, I)),
        "h0": rng.normal(size=(B, H)),
    }
    names = ["w_ih", "w_hh", "b_ih", "b_hh"][: 4 if bias else 2]
    params.update(zip(names, random_weights(rng, I, H, bias)))
    G = rng.normal(size=(T, B, H))  # loss = sum(G * hs) + sum(g * h_T)
    g = rng.normal(size=(B, H))

    def loss(p):
        hs, _ = reference.gru_forward(
            p["x"], p["h0"], *[p[n] for n in names], reset_after=reset_after, update_gate=update_gate
        )
        return float((G * hs).sum() + (g * hs[-1]).sum())

    _, cache = reference.gru_forward(
        params["x"], params["h0"], *[params[n] for n in names],
        reset_after=reset_after, update_gate=update_gate,
    )
    grads = reference.gru_backward(G, g, cache)
    eps = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            saved = value[i]
            value[i] = saved + eps
            up = loss(params)
            value[i] = saved - eps
            down = loss(params)
            value[i] = saved
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    if not bias:
        assert grads["b_ih"] is None and grads["b_hh"] is None


def test_rejects_unknown_update_gate():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="update_gate must be one of"):
        reference.gru_forward(rng.normal(size=(2, 1, 3)), np.zeros((1, 4)), *random_weights(rng, 3, 4), update_gate="z")
