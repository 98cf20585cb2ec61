"""Backends as pytest parameters: one that cannot run here is skipped, with the reason."""

import pytest

from grukit import backends
from grukit.backends import triton_backend


def param_ids(name):
    """The test ids of backend ``name``: the triton backend's two designs (persistent kernels,
    per-step kernels) are tested apart, as "triton-persistent" and "triton-stepwise"; conftest.py
    sets $GRUKIT_TRITON_DESIGN from the id."""
    return [f"triton-{design}" for design in triton_backend.DESIGNS] if name == "triton" else [name]


def backend_params(*names):
    """``pytest.param(name)`` for each backend name (all of them if none is given; triton once per
    design, :func:`param_ids`), marked skip (saying why) where unavailable or unable to run on CPU
    tensors here."""
    params = []
    for name in names or backends.names()[1:]:
        module = backends.get(name)
        reason = None
        if not module.is_available():
            reason = f"backend {name} unavailable: {module.why_unavailable()}"
        elif not module.runs_on("cpu", __import__("torch").float32):
            reason = f"backend {name} does not run on CPU tensors here"
        for test_id in param_ids(name):
            params.append(pytest.param(name, marks=pytest.mark.skip(reason=reason) if reason else (), id=test_id))
    return params


def skip_unless_computes(name, **variant):
    """Skip the test if backend ``name`` does not compute this GRU variant (``backends.Variant``'s fields)."""
    reason = backends.why_not_variant(backends.get(name), backends.Variant(**variant))
    if reason:
        pytest.skip(f"backend {name}: {reason}")


def call_layer(gru_layer, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after, keeps_state, **regularisers):
    """A backend's ``gru_layer(x, h0, weights, lengths, options)`` called from the arguments spelled out,
    as these tests build them: the tensors, then the options of a ``LayerOptions``."""
    from grukit.backends.layer_options import LayerOptions

    options = LayerOptions(reverse, reset_after, keeps_state, **regularisers)
    return gru_layer(x, h0, (w_ih, w_hh, b_ih, b_hh), lengths, options)


def call_layer_packed(gru_layer_packed, x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, reset_after, keeps_state,
                      **regularisers):  # fmt: skip
    """``gru_layer_packed(x, batch_sizes, h0, weights, options)`` from the arguments spelled out."""
    from grukit.backends.layer_options import LayerOptions

    options = LayerOptions(reverse, reset_after, keeps_state, **regularisers)
    return gru_layer_packed(x, batch_sizes, h0, (w_ih, w_hh, b_ih, b_hh), options)
