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
* ``grukit.onnx_translations()``: ``torch.onnx.export``'s table for a model holding ``grukit.GRU``.
"""

from . import convert, functional, reference
from ._version import __version__
from .functional import gru
from .nn import GRU, GRUCell
from .onnx_translation import onnx_translations
from .quantized import QuantizedGRU
from .reference import KEEPS_STATE, TAKES_CANDIDATE

__all__ = [
    "__version__",
    "GRU",
    "GRUCell",
    "QuantizedGRU",
    "onnx_translations",
    "gru",
    "functional",
    "reference",
    "convert",
    "KEEPS_STATE",
    "TAKES_CANDIDATE",
]
