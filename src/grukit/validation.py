"""Every argument check of grukit, in one place.

The modules (``nn``, ``functional``, ``convert``, ``reference``, ``stream``, ``keras``) and
the command line (as argparse ``type=`` functions) call these, so one argument gets one
rule and one message everywhere. Messages name the argument, the expected value and the
value received.
"""

from __future__ import annotations

import argparse
import numbers
from typing import Tuple

import torch
from torch import Tensor

KEEPS_STATE = "keeps_state"
TAKES_CANDIDATE = "takes_candidate"
UPDATE_GATE_MEANINGS = (KEEPS_STATE, TAKES_CANDIDATE)


# ---------------------------------------------------------------- plain values


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


class DtypeError(TypeError, ValueError):
    """A tensor of the wrong dtype. A TypeError, and a ValueError as torch.nn.GRU raises for an input
    whose dtype does not match its weights'."""


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


# ---------------------------------------------------------------- command-line types


def _argument(parse, text: str, expected: str):
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an int >= 1."""
    value = _argument(int, text, "an int")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an int >= 0."""
    value = _argument(int, text, "an int")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def check_writable_file(name: str, path: str) -> None:
    """``path`` can be written as a file: its folder exists and is writable, and it is not a folder
    or a read-only file. Checked before hours of training, so the result is not lost at the end."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{name} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path!r}: the folder {folder!r} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {path!r}: the file exists and is not writable")


def positive_float(text: str) -> float:
    """argparse ``type=``: a number > 0."""
    value = _argument(float, text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def probability_below_one(text: str) -> float:
    """argparse ``type=``: a number in [0, 1), as :func:`check_probability` wants it."""
    value = _argument(float, text, "a number")
    try:
        return check_probability("the value", value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}") from None


def check_input_dtype(input: Tensor, weight: Tensor) -> None:
    """A module's input has its weights' dtype (under ``torch.autocast`` mixed dtypes are allowed:
    ``grukit.functional`` computes in the weights' dtype)."""
    if input.dtype != weight.dtype and not torch.is_autocast_enabled(input.device.type):
        raise DtypeError(
            f"input dtype ({input.dtype}) does not match the weights' dtype ({weight.dtype}): convert the "
            f"input, input.to({weight.dtype}), or the model, model.to({input.dtype})"
        )
