"""Every argument check of grukit's core, and every error type a user can meet, in one place.

``grukit.functional`` checks what every entry point shares (the input, the weights, hx, lengths,
the options); the modules (``nn``, ``stream``, ``convert``, ``reference``, ``keras``) check what is
their own with these functions, once, when they are made, and the shape of their own calls. One
argument gets one rule and one message everywhere. Messages name the argument, the expected value
and the value received. The error types: ``TypeError`` (not a tensor, not a bool ...),
``ValueError`` (a value out of range), ``ShapeError`` and ``DtypeError`` (tensors), and the
settings' ``SettingError`` (``grukit.settings``). The command line's argparse types live with the
applications (``grukit.apps.arguments``).
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple

import torch
from torch import Tensor

KEEPS_STATE = "keeps_state"
TAKES_CANDIDATE = "takes_candidate"
UPDATE_GATE_MEANINGS = (KEEPS_STATE, TAKES_CANDIDATE)


# ---------------------------------------------------------------- plain values


def autocast_on(device_type: str) -> bool:
    """``torch.autocast`` is enabled for ``device_type``; False for a device type autocast does not
    know ("meta": a model moved there to read shapes), where torch's question raises."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_size(name: str, value, allow_zero: bool = False) -> int:
    """An int >= 1 (>= 0 with ``allow_zero``); bools are not sizes."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} int, got {value}")
    return int(value)


def check_update_gate(update_gate) -> str:
    if update_gate not in UPDATE_GATE_MEANINGS:
        raise ValueError(f"update_gate must be one of {UPDATE_GATE_MEANINGS}, got {update_gate!r}")
    return update_gate


def check_probability(name: str, value, one_allowed: bool = False) -> float:
    """A number in [0, 1) ([0, 1] with ``one_allowed``, torch.nn.GRU's range for ``dropout``)."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not (0 <= value < 1 or (one_allowed and value == 1)):
        raise ValueError(f"{name} must be a number in [0, {'1]' if one_allowed else '1)'}, got {value!r}")
    return float(value)


def check_dropout(value) -> float:
    """Dropout between layers: [0, 1], as ``torch.nn.GRU`` accepts (1 zeroes every output but the last layer's)."""
    return check_probability("dropout", value, one_allowed=True)


def check_regularisers(zoneout, recurrent_dropout) -> Tuple[float, float]:
    """zoneout and recurrent_dropout: probabilities in [0, 1) (at 1 nothing would ever change or pass)."""
    return check_probability("zoneout", zoneout), check_probability("recurrent_dropout", recurrent_dropout)


# ---------------------------------------------------------------- tensors


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong size or shape. A ValueError, and a RuntimeError because that is what
    torch.nn.GRU / GRUCell raise for the same input: code that catches torch's exception catches ours."""


class DtypeError(TypeError, ValueError, RuntimeError):
    """A tensor of the wrong dtype. A TypeError, a ValueError as torch.nn.GRU raises for an input
    whose dtype does not match its weights', and a RuntimeError as torch.nn.GRUCell raises there."""


def shape_text(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_tensor(name: str, t, expected_shape: Tuple[int, ...], like: Tensor) -> Tensor:
    """``t`` is a tensor of ``expected_shape`` with ``like``'s dtype and device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(expected_shape):
        raise ShapeError(f"{name} must have shape {tuple(expected_shape)}, got {shape_text(t)}")
    if t.dtype != like.dtype:
        raise DtypeError(f"{name} must have dtype {like.dtype} (the input's), got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"{name} must be on device {like.device} (the input's), got {t.device}")
    return t


def check_lengths(lengths, batch: int, steps: int, device) -> Tensor:
    """Per-sequence lengths: B integers in 0..T, as a tensor or a sequence; returns int64 on ``device``."""
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        t = lengths
    else:
        try:
            values = list(lengths)
        except TypeError:
            raise TypeError(
                f"lengths must be a 1-D integer tensor or a sequence of ints, got {type(lengths).__name__}"
            ) from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            raise TypeError(f"lengths must hold integers, got {values!r}")
        t = torch.tensor(values, dtype=torch.int64)
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"lengths must have shape ({batch},) (one per sequence), got {shape_text(t)}")
    if batch:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi > steps:
            raise ValueError(f"lengths must lie in 0..{steps} (the input has {steps} steps), got min {lo}, max {hi}")
    return t.to(device=device, dtype=torch.int64)


def check_input_dtype(input: Tensor, weight: Tensor) -> None:
    """A module's input has its weights' dtype (under ``torch.autocast`` mixed dtypes are allowed:
    ``grukit.functional`` computes in the weights' dtype)."""
    if input.dtype != weight.dtype and not autocast_on(input.device.type):
        raise DtypeError(
            f"input dtype ({input.dtype}) does not match the weights' dtype ({weight.dtype}): convert the "
            f"input, input.to({weight.dtype}), or the model, model.to({input.dtype})"
        )


# ---------------------------------------------------------------- a module's call


def check_sequence_input(input, hx, batch_first: bool) -> Tuple[Tensor, Optional[Tensor], bool, bool]:
    """``grukit.GRU``'s tensor input and hx: input [T, B, I] ([B, T, I] with ``batch_first``) with hx
    [L*D, B, H] or None, or unbatched [T, I] with hx [L*D, H] or None.

    Returns (input, hx, batch_first, unbatched): unbatched input and hx get a batch dimension of 1
    (and batch_first False), so the rest of the call sees batched tensors.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor or PackedSequence, got {type(input).__name__}")
    if input.dim() not in (2, 3):
        layout = "[B, T, I]" if batch_first else "[T, B, I]"
        raise ValueError(f"input must be 3-D {layout} or 2-D [T, I] (unbatched), got shape {shape_text(input)}")
    if hx is not None and not isinstance(hx, Tensor):
        raise TypeError(f"hx must be a torch.Tensor or None, got {type(hx).__name__}")
    if input.dim() == 2:
        if hx is not None and hx.dim() != 2:
            raise ValueError(f"for unbatched 2-D input, hx must be 2-D [L*D, H], got shape {shape_text(hx)}")
        return input.unsqueeze(1), (hx.unsqueeze(1) if hx is not None else None), False, True
    if hx is not None and hx.dim() != 3:
        raise ValueError(f"for batched 3-D input, hx must be 3-D [L*D, B, H], got shape {shape_text(hx)}")
    return input, hx, batch_first, False


def check_packed_hx(hx) -> None:
    """hx beside a PackedSequence: None or [L*D, B, H]."""
    if hx is not None and (not isinstance(hx, Tensor) or hx.dim() != 3):
        shape = shape_text(hx) if isinstance(hx, Tensor) else type(hx).__name__
        raise ValueError(f"with a PackedSequence, hx must be 3-D [L*D, B, H], got {shape}")


def check_input_features(x: Tensor, input_size: int, weight: Tensor, packed: bool = False) -> None:
    """A module's input has its weights' dtype and ``input_size`` features in its last dimension."""
    check_input_dtype(x, weight)
    if x.shape[-1] != input_size:
        where = f"PackedSequence.data of shape {shape_text(x)}" if packed else f"shape {shape_text(x)}"
        raise ShapeError(f"input must have {input_size} features (input_size) in its last dimension, got {where}")


def check_cell_input(input, hx, input_size: int, hidden_size: int, weight: Tensor):
    """``grukit.GRUCell``'s input [B, I] or unbatched [I], and hx of the matching [B, H] / [H] or None.

    Returns (x [1, B, I], h [1, B, H] or None, unbatched): one step of a one-layer sequence.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() not in (1, 2):
        raise ValueError(f"input must be 2-D [B, I] or 1-D [I] (unbatched), got shape {shape_text(input)}")
    unbatched = input.dim() == 1
    if input.shape[-1] != input_size:
        raise ShapeError(f"input must have {input_size} features (input_size), got shape {shape_text(input)}")
    layout = "[H]" if unbatched else "[B, H]"
    if hx is not None:
        if not isinstance(hx, Tensor):
            raise TypeError(f"hx must be a torch.Tensor or None, got {type(hx).__name__}")
        if hx.dim() != input.dim():
            raise ValueError(f"hx must be {input.dim()}-D like input ({layout}), got shape {shape_text(hx)}")
        expected = input.shape[:-1] + (hidden_size,)
        if hx.shape != expected:
            raise ShapeError(
                f"hx must have shape {tuple(expected)} ({layout}: the input's batch, hidden_size), got {shape_text(hx)}"
            )
    check_input_dtype(input, weight)  # after the sizes, in torch.nn.GRUCell's order
    x = input.view(1, 1, -1) if unbatched else input.unsqueeze(0)
    h = None if hx is None else (hx.view(1, 1, -1) if unbatched else hx.unsqueeze(0))
    return x, h, unbatched


def check_streamable(module) -> None:
    """A stream runs a unidirectional GRU (a bidirectional one must see the whole sequence)."""
    if module.bidirectional:
        raise ValueError("a stream needs a unidirectional GRU: a bidirectional one must see the whole sequence")


def check_stream_chunk(chunk, batch_size: int, input_size: int) -> None:
    """Steps fed to a stream: [T, batch_size, input_size]."""
    if not isinstance(chunk, Tensor) or chunk.dim() != 3 or tuple(chunk.shape[1:]) != (batch_size, input_size):
        shape = shape_text(chunk) if isinstance(chunk, Tensor) else type(chunk).__name__
        raise ShapeError(f"x must have shape [T, {batch_size}, {input_size}], got {shape}")
