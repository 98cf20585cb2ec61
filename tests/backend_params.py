"""Backends as pytest parameters: one that cannot run here is skipped, with the reason."""

import pytest

from grukit import backends


def backend_params(*names):
    """``pytest.param(name)`` for each backend name (all of them if none is given), marked skip
    (saying why) where unavailable or unable to run on CPU tensors here."""
    params = []
    for name in names or backends.names()[1:]:
        module = backends.get(name)
        reason = None
        if not module.is_available():
            reason = f"backend {name} unavailable: {module.why_unavailable()}"
        elif not module.runs_on("cpu", __import__("torch").float32):
            reason = f"backend {name} does not run on CPU tensors here"
        params.append(pytest.param(name, marks=pytest.mark.skip(reason=reason) if reason else (), id=name))
    return params


def skip_unless_computes(name, **variant):
    """Skip the test if backend ``name`` does not compute this GRU variant (``backends.Variant``'s fields)."""
    reason = backends.why_not_variant(backends.get(name), backends.Variant(**variant))
    if reason:
        pytest.skip(f"backend {name}: {reason}")
