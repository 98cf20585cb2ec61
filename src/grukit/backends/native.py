"""Native backend: PyTorch's own fused GRU op, the one ``torch.nn.GRU`` calls (cuDNN on a GPU).

It computes only the form that op computes: reset gate after the recurrent product
(``reset_after=True``), update gate that keeps the state (``update_gate="keeps_state"``),
no layer norm, zoneout or recurrent dropout. For that form, on CUDA, it is what ``auto``
picks: the numbers and the speed are ``torch.nn.GRU``'s, because it is the same call
(``torch._VF.gru`` with the flat weight list, padded or packed), including inter-layer
dropout (drawn by that op, with torch's generator), bidirectional layers and ``h0``.

Unlike the other backends it runs the whole stack of layers and directions in one call
(capability ``gru_network``), since that is the op's unit of work: cuDNN overlaps the layers.
On CPU it is selectable by name (``backend="native"``), which is how its wiring is tested
against the float64 oracle without a GPU.

Per-sequence lengths on padded input become a PackedSequence (as ``torch.nn.GRU`` users
write by hand); sequences of length 0, which a PackedSequence cannot hold, are left out of
the op and keep their initial state, as ``grukit.functional.gru`` defines.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

NAME = "native"
AUTO_DEVICE_TYPES = ("cuda",)  # on CPU the fused kernels are faster; native is chosen by name there

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def is_available() -> bool:
    return True


def why_unavailable() -> str:
    return ""


def runs_on(device_type: str, dtype: torch.dtype) -> bool:
    """PyTorch's fused RNN op runs on every device torch has, in the floating dtypes."""
    return dtype in FLOAT_DTYPES


def supports(x: Tensor) -> bool:
    return runs_on(x.device.type, x.dtype)


def why_not_variant(variant) -> str:
    """Empty if the op computes ``variant`` (a ``grukit.backends.Variant``), else the reason."""
    missing = []
    if not variant.reset_after:
        missing.append("reset_after=False")
    if not variant.keeps_state:
        missing.append('update_gate="takes_candidate"')
    if variant.layer_norm:
        missing.append("layer_norm")
    if variant.zoneout:
        missing.append("zoneout")
    if variant.recurrent_dropout:
        missing.append("recurrent_dropout")
    if not missing:
        return ""
    return "PyTorch's fused GRU op computes only the torch.nn.GRU form, not " + ", ".join(missing)


def flat_weights(weights: Sequence[Tuple[Tensor, ...]]) -> Tuple[List[Tensor], bool]:
    """The op's flat weight list (w_ih, w_hh[, b_ih, b_hh] per layer and direction) and has_biases."""
    has_biases = weights[0][2] is not None
    flat = []
    for w in weights:
        flat.extend(w if has_biases else w[:2])
    return flat, has_biases


def gru_network(
    x: Tensor,
    hx: Optional[Tensor],
    weights: Sequence[Tuple[Tensor, ...]],
    num_layers: int,
    bidirectional: bool,
    lengths: Optional[Tensor],
    dropout: float,
    training: bool,
) -> Tuple[Tensor, Tensor]:
    """Every layer and direction in one call of ``torch._VF.gru``.

    Args:
        x: [T, B, I], T >= 1, B >= 1 (validated by ``grukit.functional.gru``).
        hx: [L*D, B, H] or None (zeros).
        weights: one (w_ih, w_hh, b_ih, b_hh) tuple per layer and direction, biases None if absent.
        lengths: [B] int64, 0..T, any order, or None (all T).
        dropout, training: inter-layer dropout, as ``torch.nn.GRU``.

    Returns:
        out: [T, B, D*H] (zero past each sequence's length); h_n: [L*D, B, H].
    """
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = weights[0][1].shape[1]
    if hx is None:
        hx = x.new_zeros(num_layers * D, B, H)
    flat, has_biases = flat_weights(weights)
    if lengths is None:
        out, h_n = torch._VF.gru(x, hx, flat, has_biases, num_layers, float(dropout), training, bidirectional, False)
        return out, h_n

    running = torch.nonzero(lengths > 0).flatten()
    if running.numel() == 0:  # every sequence has 0 steps: nothing runs, the state is hx
        return x.new_zeros(T, B, D * H), hx.clone()
    whole_batch = running.numel() == B
    x_run = x if whole_batch else x.index_select(1, running)
    hx_run = hx if whole_batch else hx.index_select(1, running)
    packed = pack_padded_sequence(x_run, lengths.index_select(0, running).cpu(), enforce_sorted=False)
    hx_sorted = hx_run.index_select(1, packed.sorted_indices)
    data, h_sorted = torch._VF.gru(
        packed.data,
        packed.batch_sizes,
        hx_sorted,
        flat,
        has_biases,
        num_layers,
        float(dropout),
        training,
        bidirectional,
    )
    h_run = h_sorted.index_select(1, packed.unsorted_indices)
    out_run, _ = pad_packed_sequence(packed._replace(data=data), total_length=T)
    if whole_batch:
        return out_run, h_run
    out = x.new_zeros(T, B, D * H).index_copy(1, running, out_run)
    return out, hx.index_copy(1, running, h_run)


def gru_network_packed(
    data: Tensor,
    batch_sizes: Tensor,
    hx: Optional[Tensor],
    weights: Sequence[Tuple[Tensor, ...]],
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> Tuple[Tensor, Tensor]:
    """:func:`gru_network` on a PackedSequence's data [N, I] and batch_sizes [T] (sorted order);
    returns the packed output [N, D*H] and h_n [L*D, B, H] (sorted order)."""
    B = int(batch_sizes[0])
    D = 2 if bidirectional else 1
    H = weights[0][1].shape[1]
    if hx is None:
        hx = data.new_zeros(num_layers * D, B, H)
    flat, has_biases = flat_weights(weights)
    out, h_n = torch._VF.gru(
        data, batch_sizes, hx, flat, has_biases, num_layers, float(dropout), training, bidirectional
    )
    return out, h_n
