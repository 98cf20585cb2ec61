"""Backends as pytest parameters: one that cannot run here is skipped, with the reason."""

import pytest

from grukit import backends


def backend_params(*names):
    """``pytest.param(name)`` for each backend name, marked skip (saying why) where unavailable."""
    params = []
    for name in names:
        module = backends.get(name)
        reason = None if module.is_available() else f"backend {name} unavailable: {module.why_unavailable()}"
        params.append(pytest.param(name, marks=pytest.mark.skip(reason=reason) if reason else (), id=name))
    return params
