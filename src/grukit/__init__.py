"""grukit: Gated Recurrent Units, exactly as the notes write them, and fast.

    >>> import grukit, torch
    >>> gru = grukit.GRU(8, 16, reset_after=False, update_gate="takes_candidate")
    >>> out, h_n = gru(torch.randn(20, 4, 8))

* ``grukit.GRU`` / ``grukit.GRUCell``: drop-ins for ``torch.nn.GRU`` / ``GRUCell``
  with the two GRU variants as options (``reset_after``, ``update_gate``).
* ``grukit.functional.gru``: the single functional entry point.
* ``grukit.reference``: the equations in NumPy float64, forward and backward.
* ``grukit.convert``: weights to and from Keras and ONNX layouts.
* ``grukit.QuantizedGRU``: inference with int8 or bfloat16 weights (``GRU.quantized``).
* ``grukit.MinGRU``: the minGRU of Feng et al. 2024, trained by a scan over all steps
  (``grukit.min_gru.min_gru``, its functional form; ``grukit.min_gru_reference``, its oracle).
* ``grukit.MinGRUBlocks``: the paper's model body, minGRU layers in residual blocks with
  LayerNorm and an MLP.
* ``grukit.onnx_translations()``: ``torch.onnx.export``'s table for a model holding ``grukit.GRU``.
"""

import importlib

from . import settings
from ._version import __version__

try:  # every GRUKIT_* value, checked now rather than where (or whether) it is read
    settings.check_all()
except settings.SettingError as error:
    if settings.started_as_a_command():  # `grukit ...`, `python -m grukit....`: one line, no traceback
        raise SystemExit(f"grukit: error: {error}") from None
    raise

# Names are imported on first use (PEP 562), so that ``import grukit.apps.cli`` (the ``grukit``
# command) starts without importing torch and can answer Ctrl-C pressed during its imports.
_WHERE = {
    "GRU": "nn",
    "GRUCell": "nn",
    "QuantizedGRU": "quantized",
    "MinGRU": "min_gru",
    "MinGRUBlocks": "min_gru_blocks",
    "gru": "functional",
    "onnx_translations": "export",
    "KEEPS_STATE": "reference",
    "TAKES_CANDIDATE": "reference",
}
_SUBMODULES = ("functional", "reference", "convert", "min_gru", "min_gru_reference")


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'grukit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    "GRU",
    "GRUCell",
    "QuantizedGRU",
    "MinGRU",
    "MinGRUBlocks",
    "onnx_translations",
    "gru",
    "functional",
    "reference",
    "convert",
    "KEEPS_STATE",
    "TAKES_CANDIDATE",
]
