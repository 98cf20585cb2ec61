"""What one layer-direction call computes beyond its tensors: the one carrier of those options from
``grukit.functional`` to a backend's ``gru_layer`` / ``gru_layer_packed``, so no backend restates them.

A backend's layer call is ``gru_layer(x, h0, weights, lengths, options)`` (padded, time first) or
``gru_layer_packed(x, batch_sizes, h0, weights, options)`` (a PackedSequence's data), with
``weights = (w_ih [3H, I], w_hh [3H, H], b_ih [3H] or None, b_hh [3H] or None)`` in torch's gate order
(r, z, n) and ``options`` a :class:`LayerOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from torch import Tensor

from .masks import ZoneoutDraw

LayerWeightsTuple = Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]


@dataclass(frozen=True)
class LayerOptions:
    """The options of one layer, one direction (equations: ``grukit.reference.gru_forward``).

    Attributes:
        reverse: run from the last valid step of each sequence back to its first.
        reset_after: n = tanh(.. + r * (h U_n^T + b_hn)) if True (PyTorch, cuDNN, Keras);
            tanh(.. + (r * h) U_n^T + b_hn) if False (Cho et al. 2014 v3).
        keeps_state: h' = z h + (1 - z) n if True (PyTorch, Keras, ONNX);
            h' = (1 - z) h + z n if False (Chung et al. 2014).
        layer_norm: None or (gamma_ih, beta_ih, gamma_hh, beta_hh), each [3H] (Ba et al. 2016).
        zoneout: None; a [T, B, H] 0/1 mask (1 = the unit keeps h_{t-1}; [N, H] for packed data); a
            ``ZoneoutDraw`` (training: the backend draws such a mask); or the probability p (a float:
            the expected value, h = p h_{t-1} + (1 - p) h') (Krueger et al. 2016).
        recurrent_mask: None or [B, H], multiplies h_{t-1} where it enters the recurrent products
            (Gal and Ghahramani 2016).
    """

    reverse: bool = False
    reset_after: bool = True
    keeps_state: bool = True
    layer_norm: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None
    zoneout: Union[None, float, Tensor, ZoneoutDraw] = None
    recurrent_mask: Optional[Tensor] = None


def padded_weights(weights) -> LayerWeightsTuple:
    """(w_ih, w_hh) or (w_ih, w_hh, b_ih, b_hh) -> the four, biases None where absent."""
    return tuple(weights) + (None,) * (4 - len(weights))
