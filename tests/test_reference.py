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
    hs, _ = reference.gru_forward(x, h, w_ih, w_hh, b_ih, np.zeros(3 * H), reset_after=False, update_gate=update_gate)
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
        params["x"],
        params["h0"],
        *[params[n] for n in names],
        reset_after=reset_after,
        update_gate=update_gate,
    )
    grads = reference.gru_backward(G, g, cache)
    for name, numeric in _numeric_gradient(loss, params).items():
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    if not bias:
        assert grads["b_ih"] is None and grads["b_hh"] is None


def test_rejects_unknown_update_gate():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="update_gate must be one of"):
        reference.gru_forward(rng.normal(size=(2, 1, 3)), np.zeros((1, 4)), *random_weights(rng, 3, 4), update_gate="z")


def _numeric_gradient(loss, params, eps=1e-6):
    out = {}
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
        out[name] = numeric
    return out


REGULARISERS = [
    (ln, zo, rd) for ln in (False, True) for zo in (None, "mask", "eval") for rd in (False, True) if ln or zo or rd
]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("layer_norm,zoneout,recurrent_dropout", REGULARISERS)
def test_regularised_backward_matches_finite_differences(reset_after, layer_norm, zoneout, recurrent_dropout):
    rng = np.random.default_rng(7)
    T, B, I, H = 3, 2, 3, 4
    params = {"x": rng.normal(size=(T, B, I)), "h0": rng.normal(size=(B, H))}
    params.update(zip(["w_ih", "w_hh", "b_ih", "b_hh"], random_weights(rng, I, H)))
    if layer_norm:
        for k in ("gamma_ih", "beta_ih", "gamma_hh", "beta_hh"):
            params[k] = rng.normal(1.0 if k.startswith("gamma") else 0.0, 0.5, 3 * H)
    zo = {None: None, "mask": (rng.random((T, B, H)) < 0.3).astype(float), "eval": 0.3}[zoneout]
    mask = (rng.random((B, H)) < 0.7) / 0.7 if recurrent_dropout else None
    G, g = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))

    def run(p):
        ln = (p["gamma_ih"], p["beta_ih"], p["gamma_hh"], p["beta_hh"]) if layer_norm else None
        return reference.gru_forward(
            p["x"],
            p["h0"],
            p["w_ih"],
            p["w_hh"],
            p["b_ih"],
            p["b_hh"],
            reset_after=reset_after,
            layer_norm=ln,
            zoneout=zo,
            recurrent_mask=mask,
        )

    def loss(p):
        hs, _ = run(p)
        return float((G * hs).sum() + (g * hs[-1]).sum())

    grads = reference.gru_backward(G, g, run(params)[1])
    for name, numeric in _numeric_gradient(loss, params).items():
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-7, err_msg=name)


def test_zoneout_keeps_exactly_the_masked_units_and_evaluation_takes_the_expectation():
    rng = np.random.default_rng(3)
    T, B, I, H = 5, 3, 2, 4
    x, h0, w = rng.normal(size=(T, B, I)), rng.normal(size=(B, H)), random_weights(rng, I, H)
    keep = (rng.random((T, B, H)) < 0.5).astype(float)
    hs, _ = reference.gru_forward(x, h0, *w, zoneout=keep)
    previous = np.concatenate([h0[None], hs[:-1]])
    assert np.array_equal(hs[keep == 1], previous[keep == 1])  # kept units hold their old value
    assert (hs[keep == 0] != previous[keep == 0]).all()
    plain, _ = reference.gru_forward(x[:1], h0, *w)
    expected, _ = reference.gru_forward(x[:1], h0, *w, zoneout=0.25)
    np.testing.assert_allclose(expected[0], 0.25 * h0 + 0.75 * plain[0])


def test_layer_norm_with_unit_gain_normalises_the_projections():
    rng = np.random.default_rng(4)
    v = rng.normal(3.0, 2.0, size=(5, 12))
    y, _ = reference.layer_normalize(v, np.ones(12), np.zeros(12))
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(1), 1, rtol=1e-4)
    # the GRU with layer norm and scale-invariant projections: scaling w_ih does not change it
    x, h0, w = rng.normal(size=(3, 2, 3)), rng.normal(size=(2, 4)), random_weights(rng, 3, 4)
    ln = (np.ones(12), np.zeros(12), np.ones(12), np.zeros(12))
    a, _ = reference.gru_forward(x, h0, *w, layer_norm=ln)
    b, _ = reference.gru_forward(x, h0, 10 * w[0], *w[1:], layer_norm=ln)
    np.testing.assert_allclose(a, b, atol=2e-4)  # not exact: eps = 1e-5 inside the square root
    c, _ = reference.gru_forward(x, h0, *w)
    d, _ = reference.gru_forward(x, h0, 10 * w[0], *w[1:])
    assert np.abs(c - d).max() > 0.1  # without layer norm the scale matters
