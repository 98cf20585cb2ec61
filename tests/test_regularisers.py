"""Layer norm, zoneout and recurrent dropout: every backend against the float64 oracle, with explicit masks."""

import itertools

import numpy as np
import pytest
import torch

from grukit import reference
from grukit.backends import cpu_fused, torch_ops

from oracle import random_weights

BACKENDS = [torch_ops] + ([cpu_fused] if cpu_fused.is_available() else [])
OPTIONS = [(ln, zo, rd) for ln, zo, rd in itertools.product((False, True), (None, "mask", "eval"), (False, True))
           if ln or zo or rd]
OPTION_IDS = [f"{'ln' if ln else ''}-{zo or ''}-{'rd' if rd else ''}" for ln, zo, rd in OPTIONS]


def oracle(x, h0, w, ln, zo, rd, lengths, reverse, reset_after, keeps):
    """out, h_n and ``backward(d_out, d_hn)`` of the float64 reference, sequence by sequence."""
    T, B, _ = x.shape
    H = h0.shape[1]
    out, h_n, caches = np.zeros((T, B, H)), h0.copy(), {}
    update = reference.KEEPS_STATE if keeps else reference.TAKES_CANDIDATE
    for b in range(B):
        L = int(lengths[b])
        if L == 0:
            continue
        steps = slice(L - 1, None, -1) if reverse else slice(0, L)
        z = zo if not isinstance(zo, np.ndarray) else zo[steps, b : b + 1]
        hs, cache = reference.gru_forward(x[steps, b : b + 1], h0[b : b + 1], *w, reset_after=reset_after,
                                          update_gate=update, layer_norm=ln, zoneout=z,
                                          recurrent_mask=None if rd is None else rd[b : b + 1])
        out[steps, b] = hs[:, 0]
        h_n[b] = hs[-1, 0]
        caches[b] = cache

    def backward(d_out, d_hn):
        total = {"x": np.zeros_like(x), "h0": d_hn.copy()}
        for b, cache in caches.items():
            L = int(lengths[b])
            steps = slice(L - 1, None, -1) if reverse else slice(0, L)
            g = reference.gru_backward(d_out[steps, b : b + 1], d_hn[b : b + 1], cache)
            total["x"][steps, b] = g["x"][:, 0]
            total["h0"][b] = g["h0"][0]
            for k, v in g.items():
                if k not in ("x", "h0") and v is not None:
                    total[k] = total.get(k, 0) + v
        return total

    return out, h_n, backward


def make_case(seed, T=5, B=4, I=3, H=6, ln=True, zo="mask", rd=True, lengths=None):
    rng = np.random.default_rng(seed)
    x, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(B, H))
    w = random_weights(rng, I, H)
    ln_w = tuple(rng.normal(1.0 if i % 2 == 0 else 0.0, 0.4, 3 * H) for i in range(4)) if ln else None
    zo_v = {None: None, "mask": (rng.random((T, B, H)) < 0.3).astype(float), "eval": 0.3}[zo]
    rd_v = (rng.random((B, H)) < 0.75) / 0.75 if rd else None
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    return x, h0, w, ln_w, zo_v, rd_v, lengths, rng


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda m: m.NAME)
@pytest.mark.parametrize("ln,zo,rd", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("reset_after,keeps", [(True, True), (False, True), (True, False), (False, False)])
def test_backend_matches_the_oracle_forward_and_backward(backend, ln, zo, rd, reset_after, keeps):
    for reverse, lengths in ((False, None), (True, [5, 2, 0, 4])):
        x, h0, w, ln_w, zo_v, rd_v, L, rng = make_case(1, ln=ln, zo=zo, rd=rd, lengths=lengths)
        out, h_n, backward = oracle(x, h0, w, ln_w, zo_v, rd_v, L, reverse, reset_after, keeps)
        d_out, d_hn = rng.normal(size=out.shape), rng.normal(size=h_n.shape)
        mask = (np.arange(5)[:, None] < L[None, :])[..., None]
        d_out = d_out * mask  # gradients at padded steps do not exist
        expected = backward(d_out, d_hn)
        t = lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True)  # noqa: E731
        tx, th0, tw = t(x), t(h0), [t(a) for a in w]
        tln = [t(a) for a in ln_w] if ln else None
        zo_arg = torch.tensor(zo_v) if isinstance(zo_v, np.ndarray) else zo_v
        rd_arg = torch.tensor(rd_v) if rd else None
        got, got_hn = backend.gru_layer(tx, th0, *tw, None if lengths is None else torch.tensor(L), reverse,
                                        reset_after, keeps, layer_norm=tln, zoneout=zo_arg, recurrent_mask=rd_arg)
        np.testing.assert_allclose(got.detach().numpy(), out, atol=1e-12)
        np.testing.assert_allclose(got_hn.detach().numpy(), h_n, atol=1e-12)
        torch.autograd.backward([got, got_hn], [torch.tensor(d_out), torch.tensor(d_hn)])
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"] + (["gamma_ih", "beta_ih", "gamma_hh", "beta_hh"] if ln else [])
        for name, tensor in zip(names, [tx, th0, *tw, *(tln or [])]):
            np.testing.assert_allclose(tensor.grad.numpy(), expected[name], atol=1e-10, err_msg=f"{name} reverse={reverse}")
