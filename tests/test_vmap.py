"""torch.func transforms and batched gradients through grukit (torch's own GRU tests use both).

``torch.func.vmap`` over the fused kernels runs their batching rule (the op once per slice);
under torch.func's gradient transforms "auto" picks the portable path, whose torch ops compose
with every transform; batched gradients (``gradcheck(check_batched_grad=True)``) of a fused
forward are taken through its differentiable recomputation.
"""

import pytest
import torch
from torch.func import jacrev, vmap

import grukit
from backend_params import backend_params

FUSED = backend_params("cpu_fused")


def _weights(I=3, H=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        tuple(torch.randn(s, generator=g, dtype=torch.float64) for s in [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)])
    ]


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("reset_after", [True, False])
def test_vmap_over_the_fused_op_equals_the_portable_path(backend, reset_after):
    w = _weights()
    xs = torch.randn(6, 4, 2, 3, dtype=torch.float64)  # 6 batches of [T, B, I]
    lengths = torch.tensor([4, 2])

    def run(name):
        return vmap(lambda x: grukit.gru(x, w, lengths=lengths, reset_after=reset_after, backend=name))(xs)

    (got, got_h), (want, want_h) = run(backend), run("torch")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_h, want_h, rtol=1e-12, atol=1e-12)


def test_jacrev_with_auto_equals_the_portable_path():
    w = _weights()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 5, dtype=torch.float64)
    got = jacrev(lambda h: grukit.gru(x, w, h)[1])(h0)
    want = jacrev(lambda h: grukit.gru(x, w, h, backend="torch")[1])(h0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("reset_after,update_gate", [(True, "keeps_state"), (False, "takes_candidate")])
def test_gradcheck_with_batched_gradients_on_the_fused_path(backend, reset_after, update_gate):
    w = _weights(I=2, H=3)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, h0):
        return grukit.gru(x, w, h0, lengths=[3, 2], reset_after=reset_after, update_gate=update_gate, backend=backend)

    assert torch.autograd.gradcheck(f, (x, h0), check_batched_grad=True)
