"""Backends that compute one GRU layer in one direction.

A backend is a module with a set of capabilities. Every one has ``NAME``,
``is_available() -> bool``, ``why_unavailable() -> str``, ``supports(x) -> bool``
(can it run on this tensor's device and dtype) and ``gru_layer(...)``, the padded
layer with lengths and the regularisers (layer norm, zoneout, recurrent dropout),
with the signature of :func:`grukit.backends.torch_ops.gru_layer`. Optional
capabilities, looked up with ``hasattr``:

* ``gru_layer_packed(...)``: the layer on a PackedSequence's data, with no padding
  (``grukit.functional.gru_packed`` pads for backends without it);
* ``open_stream(...)``: a native stream that keeps its state between calls
  (``grukit.stream``; otherwise each call goes through ``functional.gru``).

=========== ======= ====== ====== ============
backend     padded  packed stream regularisers
=========== ======= ====== ====== ============
torch       yes     -      -      yes
cpu_fused   yes     yes    yes    yes
=========== ======= ====== ====== ============

``grukit.functional.gru`` validates the arguments, picks a backend here, and
stacks layers and directions; backends never see invalid input.

Choosing: ``backend=`` on the call, else the ``GRUKIT_BACKEND`` environment
variable, else "auto" (the fastest available backend that supports the input,
falling back to the portable "torch" backend).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Dict, Optional

from torch import Tensor

from . import torch_ops

_BACKENDS: Dict[str, ModuleType] = {torch_ops.NAME: torch_ops}
# tried in this order by "auto"; the portable backend is always last
_AUTO_ORDER = []

ENV_VAR = "GRUKIT_BACKEND"


def register(module: ModuleType, prefer: bool = True) -> None:
    """Make a backend module selectable by name (and by "auto" if ``prefer``)."""
    _BACKENDS[module.NAME] = module
    if prefer and module.NAME not in _AUTO_ORDER:
        _AUTO_ORDER.append(module.NAME)


def get(name: str) -> ModuleType:
    """The backend module called ``name`` (one of :func:`names` but "auto")."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {names()}, got {name!r}")
    return _BACKENDS[name]


def names():
    """All backend names, including "auto"."""
    return ("auto",) + tuple(_BACKENDS)


def select(x: Tensor, backend: Optional[str]) -> ModuleType:
    """The backend module to use for input ``x``.

    Raises:
        ValueError: ``backend`` (or $GRUKIT_BACKEND) is not a known name.
        RuntimeError: the named backend is unavailable or cannot run on ``x``.
    """
    source = "backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        source = f"${ENV_VAR}"
    if backend != "auto" and backend not in _BACKENDS:
        raise ValueError(f"{source} must be one of {names()}, got {backend!r}")
    if backend == "auto":
        for name in _AUTO_ORDER:
            module = _BACKENDS[name]
            if module.is_available() and module.supports(x):
                return module
        return torch_ops
    module = _BACKENDS[backend]
    if not module.is_available():
        raise RuntimeError(f"{source}={backend!r} is not available: {module.why_unavailable()}")
    if not module.supports(x):
        raise RuntimeError(f"{source}={backend!r} cannot run on a {x.dtype} tensor on device {x.device}")
    return module


from . import cpu_fused  # noqa: E402  (registers itself below; builds lazily on first use)

register(cpu_fused)
