"""Backends that compute a GRU.

A backend is a module with a set of capabilities. Every one has ``NAME``,
``AUTO_DEVICE_TYPES`` (the device types on which "auto" may pick it),
``is_available() -> bool``, ``why_unavailable() -> str``,
``runs_on(device_type, dtype) -> bool`` (and ``supports(x)``, the same for a tensor), and one
of two ways to compute:

* ``gru_layer(x, h0, weights, lengths, options)``: one layer in one direction on padded input
  with lengths, its options one :class:`grukit.backends.layer_options.LayerOptions` (the one
  carrier from ``functional`` to every backend); ``grukit.functional.gru`` stacks the layers and
  directions;
* ``gru_network(...)``: every layer and direction in one call (:mod:`grukit.backends.native`).

Optional capabilities, looked up with ``hasattr``:

* ``gru_layer_packed(x, batch_sizes, h0, weights, options)`` / ``gru_network_packed(...)``: the
  same on a PackedSequence's data, with no padding (``grukit.functional.gru_packed`` pads for backends without it);
* ``open_stream(...)``: a native stream that keeps its state between calls
  (``grukit.stream``; otherwise each call goes through ``functional.gru``);
* ``call_scope()``: a context manager around one whole call, layers and stacking (the fused CPU
  kernels: a call that steps aside from a busy machine runs on one thread throughout);
* ``why_not_variant(variant) -> str``: the backend computes only some GRU variants
  (empty string: it computes ``variant``).

=========== ============ ======= ====== ====== ================= =========== ==============
backend     auto picks   padded  packed stream variants          regularisers minGRU scan
=========== ============ ======= ====== ====== ================= =========== ==============
native      cuda         yes     yes    -      torch.nn.GRU's    -           -
triton      cuda         yes     -      -      all               yes         yes
cpu_fused   cpu          yes     yes    yes    all               yes         yes
torch       (fallback)   yes     -      -      all               yes         yes
=========== ============ ======= ====== ====== ================= =========== ==============

``min_gru_scan(k, h0)``: the minGRU's scan (:mod:`grukit.min_gru`), chosen by
:func:`select_min_gru_scan`.

``grukit.functional.gru`` validates the arguments, picks a backend here, and
stacks layers and directions; backends never see invalid input.

Choosing: ``backend=`` on the call, else the ``GRUKIT_BACKEND`` environment
variable, else "auto": the first backend in the order above that "auto" may pick on the
input's device, that runs the input's dtype and computes the variant, and is available;
else the portable "torch" backend. :func:`choose` is that rule as a function of the device
type, dtype and variant, so it can be tested without the device.
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict, Iterable, NamedTuple, Optional

import torch
from torch import Tensor
from torch.autograd import forward_ad

from .. import settings
from . import torch_ops

_BACKENDS: Dict[str, ModuleType] = {torch_ops.NAME: torch_ops}
# tried in this order by "auto"; the portable backend is always last
_AUTO_ORDER = []

ENV_VAR = "GRUKIT_BACKEND"


class Variant(NamedTuple):
    """What a call computes, as far as choosing a backend is concerned."""

    reset_after: bool = True
    keeps_state: bool = True
    layer_norm: bool = False
    zoneout: bool = False
    recurrent_dropout: bool = False


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


def why_not_variant(module: ModuleType, variant: Variant) -> str:
    """Empty if ``module`` computes ``variant``, else the reason it does not."""
    check = getattr(module, "why_not_variant", None)
    return check(variant) if check is not None else ""


def choose(
    device_type: str, dtype: torch.dtype, variant: Variant = Variant(), hidden_size: Optional[int] = None
) -> str:
    """The name of the backend "auto" picks for input on ``device_type`` with ``dtype``
    computing ``variant`` with ``hidden_size`` units (None: not known yet). A backend with
    ``AUTO_MAX_HIDDEN`` is passed over above that size, where it measured slower than the
    portable path. Availability is asked last, so a CPU build is never started for a CUDA input."""
    for name in _AUTO_ORDER:
        module = _BACKENDS[name]
        if device_type not in module.AUTO_DEVICE_TYPES or not module.runs_on(device_type, dtype):
            continue
        if why_not_variant(module, variant):
            continue
        limit = getattr(module, "AUTO_MAX_HIDDEN", None)
        if limit is not None and hidden_size is not None and hidden_size > limit:
            continue
        if module.is_available():
            return name
    return torch_ops.NAME


class BackendError(RuntimeError):
    """A named backend (an argument or $GRUKIT_BACKEND) that is unavailable here, cannot run on the
    input's device and dtype, or does not compute the GRU asked for."""


def check_named(backend: Optional[str], variant: Variant = Variant()) -> None:
    """Raise unless ``backend`` is None, "auto", or a known, available backend that computes
    ``variant`` (the checks of :func:`select` that need no tensor: a module checks its backend
    when it is made, before it is moved to the device it will run on)."""
    if backend is None or backend == "auto":
        return
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {names()}, got {backend!r}")
    module = _BACKENDS[backend]
    if not module.is_available():
        raise BackendError(f"backend={backend!r} is not available: {module.why_unavailable()}")
    reason = why_not_variant(module, variant)
    if reason:
        raise BackendError(f"backend={backend!r} cannot compute this GRU: {reason}")


def prepare_for_module(
    parameter: Tensor, backend: Optional[str], variant: Variant, hidden_size: Optional[int] = None
) -> None:
    """What a module does when it is made: check a named backend (:func:`check_named`), then, where
    it can already run on the module's ``parameter``, select it now (building or loading the fused
    kernels outside any torch.compile trace). A backend for another device is selected at the call."""
    check_named(backend, variant)
    if backend in (None, "auto") or _BACKENDS[backend].supports(parameter):
        select(parameter, backend, variant, hidden_size)


def carries_tangent(tensors: Iterable[Optional[Tensor]]) -> bool:
    """Some of ``tensors`` are dual tensors of forward-mode AD (``torch.autograd.forward_ad.make_dual``)."""
    if forward_ad._current_level < 0:  # no dual level entered: nothing can carry a tangent
        return False
    return any(isinstance(t, Tensor) and forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _needs_portable(tensors: Iterable[Optional[Tensor]]) -> bool:
    """ "auto" must take the portable backend: inside torch.func.vmap/grad/jacrev/jvp (plain torch ops
    compose with all of them), or where one of ``tensors`` carries a forward-mode tangent. Not asked
    while torch.compile traces: dynamo cannot trace the questions and would break the graph."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.peek_interpreter_stack() is not None or carries_tangent(tensors)


# backends whose computation forward-mode AD can differentiate (plain torch ops, torch's own GRU);
# the fused kernels' operators have a backward formula only
FORWARD_MODE_BACKENDS = ("torch", "native")


def select(
    x: Tensor,
    backend: Optional[str],
    variant: Variant = Variant(),
    hidden_size: Optional[int] = None,
    others: Iterable[Optional[Tensor]] = (),
) -> ModuleType:
    """The backend module to use for input ``x`` computing ``variant`` (``hidden_size``: see :func:`choose`).
    ``others``: the call's other tensors (h0, weights); where ``x`` or one of them carries a
    forward-mode tangent, "auto" picks the portable backend, which forward-mode AD differentiates.

    Raises:
        ValueError: ``backend`` (or $GRUKIT_BACKEND) is not a known name.
        BackendError (a RuntimeError): the named backend is unavailable, cannot run on ``x`` or
            does not compute ``variant``.
    """
    source = "backend"
    if backend is None:
        backend = settings.get(ENV_VAR)
        source = f"${ENV_VAR}"
    if backend != "auto" and backend not in _BACKENDS:
        raise ValueError(f"{source} must be one of {names()}, got {backend!r}")
    if backend == "auto":
        if _needs_portable([x, *others]):
            return torch_ops
        return _BACKENDS[choose(x.device.type, x.dtype, variant, hidden_size)]
    module = _BACKENDS[backend]
    if not module.is_available():
        raise BackendError(f"{source}={backend!r} is not available: {module.why_unavailable()}")
    if not module.supports(x):
        raise BackendError(f"{source}={backend!r} cannot run on a {x.dtype} tensor on device {x.device}")
    reason = why_not_variant(module, variant)
    if reason:
        raise BackendError(f"{source}={backend!r} cannot compute this GRU: {reason}")
    if backend not in FORWARD_MODE_BACKENDS and carries_tangent([x, *others]):
        raise BackendError(
            f"{source}={backend!r} has no forward-mode derivative (an input is a dual tensor of "
            f"torch.autograd.forward_ad); use backend='auto' or 'torch'"
        )
    return module


def select_min_gru_scan(x: Tensor, backend: Optional[str], others: Iterable[Optional[Tensor]] = ()) -> ModuleType:
    """The backend whose ``min_gru_scan(k, h0)`` computes the minGRU's scan (``grukit.min_gru``) for
    ``x``: by name (``backend`` or $GRUKIT_BACKEND, checked as :func:`select` checks it), or by "auto":
    the first backend in the auto order with the scan that runs on ``x`` and is available (the fused
    CPU kernels on the CPU, Triton's on CUDA), else the portable one; the portable one too inside
    torch.func transforms and for forward-mode tangents.

    Raises:
        ValueError, BackendError: as :func:`select`; BackendError also for a backend without the scan.
    """
    name = settings.get(ENV_VAR) if backend is None else backend
    if name != "auto":
        module = select(x, backend, others=others)
        if not hasattr(module, "min_gru_scan"):
            with_scan = [n for n, m in _BACKENDS.items() if hasattr(m, "min_gru_scan")]
            raise BackendError(f"backend={name!r} has no minGRU scan; use 'auto' or one of {with_scan}")
        return module
    if _needs_portable([x, *others]):
        return torch_ops
    for candidate in _AUTO_ORDER:
        module = _BACKENDS[candidate]
        if not hasattr(module, "min_gru_scan") or x.device.type not in module.AUTO_DEVICE_TYPES:
            continue
        if module.runs_on(x.device.type, x.dtype) and module.is_available():
            return module
    return torch_ops


from . import cpu_fused, native, triton_backend  # noqa: E402  (each builds or imports lazily on first use)

register(native)
register(triton_backend)
register(cpu_fused)
