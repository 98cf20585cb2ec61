"""``grukit.keras.GRU``: a Keras 3 GRU layer that runs on grukit's fused kernels.

Keras GRU code written for TensorFlow runs with one changed import::

    from grukit.keras import GRU, Dense, Sequential      # was: from tensorflow.keras... import ...

``GRU`` is ``keras.layers.GRU`` (a subclass: same arguments, defaults, weights
``kernel`` [I, 3H], ``recurrent_kernel`` [H, 3H], ``bias`` [3H] or [2, 3H], same
serialization, masking, ``stateful``, ``go_backwards``, ``Bidirectional``) with
its sequence loop replaced: on Keras' torch backend Keras runs a Python loop of
per-step ops on the CPU, and this layer calls ``grukit.functional.gru`` (the fused
C++ kernels on CPU) for both ``reset_after`` values instead.

The fused path covers activation tanh, recurrent_activation sigmoid, any
``dropout`` (Keras' input mask), masks whose valid steps are one contiguous run
per sequence (right- or left-padded, as ``Embedding(mask_zero=True)`` gives), and
and ``go_backwards``. Keras' ``recurrent_dropout`` draws one mask per gate (and then
switches the cell to ``implementation=1``, whose input ``dropout`` also has one mask per
gate); the fused kernels' recurrent dropout has one mask for all gates, a different
regulariser, so a layer with ``recurrent_dropout`` runs Keras' own loop while training (in
evaluation no mask applies and the fused path runs). Anything else (another activation, a
mask with holes) runs Keras' own loop too, with one warning saying why: never different numbers.

Importing this module selects Keras' torch backend when none is chosen yet
(``KERAS_BACKEND`` unset and Keras not imported); with another backend already
active it raises ``ImportError`` saying what to do.
"""

from __future__ import annotations

import os
import sys
import warnings

_BACKEND_HELP = (
    "grukit.keras needs Keras' torch backend, but Keras is running on {active!r}. "
    "Set the environment variable KERAS_BACKEND=torch before Python imports keras "
    "(or import grukit.keras before keras), then restart."
)

if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
    os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402

if keras.backend.backend() != "torch":
    raise ImportError(_BACKEND_HELP.format(active=keras.backend.backend()))

import torch  # noqa: E402
from keras import activations, ops  # noqa: E402

# the other names Keras GRU programs import, so that one import line serves them
from keras.layers import Bidirectional, Dense, Dropout, Embedding, Input, Masking  # noqa: E402,F401
from keras.models import Model, Sequential  # noqa: E402,F401

from . import convert  # noqa: E402
from .functional import gru as gru_function  # noqa: E402

__all__ = ["GRU", "Bidirectional", "Dense", "Dropout", "Embedding", "Input", "Masking", "Model", "Sequential"]

_warned = set()


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"grukit.keras.GRU: {reason}; using Keras' own (slower) loop", stacklevel=4)


def _mask_runs(mask: torch.Tensor):
    """For a [B, T] bool mask whose True steps form one run per row: (start, length) [B] each.

    Returns None if some row has a hole (True, False, True).
    """
    m = mask.to(torch.bool)
    T = m.shape[1]
    length = m.sum(1)
    steps = torch.arange(T, device=m.device)
    first = torch.where(m, steps, torch.full_like(steps, T)).amin(1)  # T for an all-False row
    start = torch.where(length > 0, first, torch.zeros_like(first))
    run = (steps >= start[:, None]) & (steps < (start + length)[:, None])
    if not torch.equal(run, m):
        return None
    return start, length


@keras.saving.register_keras_serializable(package="grukit")
class GRU(keras.layers.GRU):
    """``keras.layers.GRU`` computed by grukit's fused kernels (see the module doc).

    Arguments, weights and behaviour are exactly those of ``keras.layers.GRU``;
    ``set_weights(keras_gru.get_weights())`` gives the same outputs. Equations
    (Keras' gate order z, r, h; ``reset_after=False`` is Cho et al. 2014 v3's form)::

        z = sigmoid(x W_z + h U_z + b_z)         r = sigmoid(x W_r + h U_r + b_r)
        h~ = tanh(x W_h + r * (h U_h + b_h'))    reset_after=True  (Keras' default)
        h~ = tanh(x W_h + (r * h) U_h + b_h)     reset_after=False
        h' = z * h + (1 - z) * h~

    Example::

        >>> model = Sequential([Input((10, 50)), GRU(128), Dense(1, activation="sigmoid")])
    """

    def _fused_reason(self):
        """Why this call cannot take the fused path (None if it can)."""
        cell = self.cell
        if cell.activation is not activations.tanh:
            return f"activation={activations.serialize(cell.activation)!r} (the fused kernels compute tanh)"
        if cell.recurrent_activation is not activations.sigmoid:
            return (
                f"recurrent_activation={activations.serialize(cell.recurrent_activation)!r} "
                "(the fused kernels compute sigmoid)"
            )
        return None

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(initial_state, (list, tuple)):
            initial_state = initial_state[0]
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        reason = self._fused_reason()
        cell = self.cell
        per_gate_masks = cell.recurrent_dropout > 0 or (cell.dropout > 0 and getattr(cell, "implementation", 2) == 1)
        if reason is None and training and per_gate_masks:
            reason = (
                "dropout with one mask per gate in training (Keras' recurrent_dropout, or implementation=1); "
                "the fused kernels take one mask for all gates"
            )
        runs = None
        if mask is not None:
            steps = tuple(ops.shape(sequences)[:2])
            if tuple(ops.shape(mask)) != steps:
                raise ValueError(f"mask must have shape [batch, timesteps] = {steps}, got {tuple(ops.shape(mask))}")
        if reason is None and mask is not None:
            runs = _mask_runs(ops.convert_to_tensor(mask))
            if runs is None:
                reason = "a mask with gaps inside a sequence (only left- or right-padding is fused)"
        if reason is not None:
            _warn_once(reason)
            return super().inner_loop(sequences, [initial_state], mask, training=training)
        return self._fused_loop(sequences, initial_state, mask, runs, training)

    def _fused_loop(self, sequences, h0, mask, runs, training):
        """Keras' RNN loop semantics, computed by ``grukit.functional.gru``.

        x [B, T, I] -> (last_output [B, H], outputs [B, T, H], [h_T [B, H]]).
        """
        cell = self.cell
        x = ops.convert_to_tensor(sequences)
        if not x.dtype.is_floating_point:  # integer features, as keras.layers.GRU accepts them
            x = ops.cast(x, self.compute_dtype)
        if training and cell.dropout:  # Keras' input dropout: one mask per sequence, all steps
            x = x * ops.expand_dims(cell.get_dropout_mask(x[:, 0, :]), 1)
        if self.stateful:
            h0 = ops.copy(h0)  # Keras assigns the new state in place afterwards
        if self.go_backwards:  # Keras walks the steps in reverse and returns them in that order
            x = torch.flip(x, [1])
            if mask is not None:
                runs = _mask_runs(torch.flip(ops.convert_to_tensor(mask), [1]))
        kernel = ops.convert_to_tensor(cell.kernel)
        recurrent_kernel = ops.convert_to_tensor(cell.recurrent_kernel)
        bias = ops.convert_to_tensor(cell.bias) if cell.use_bias else None
        # the same weights in grukit's (torch) layout, differentiably: gates z,r,h -> r,z,n
        weights = convert.keras_to_torch(kernel, recurrent_kernel, bias, reset_after=cell.reset_after)
        weights = weights if bias is not None else weights[:2]
        B, T, _ = x.shape
        if runs is None:
            out, h_n = gru_function(
                x,
                [weights],
                h0.unsqueeze(0),
                batch_first=True,
                reset_after=cell.reset_after,
            )
            h_n = h_n[0]
            return out[:, -1], out, [h_n]

        # masked: each sequence's valid steps are t in [start, start + length). Shift them to
        # the front, run with lengths, and put the outputs back where Keras has them: before the
        # run 0, inside it the states, after it the last state (0 with zero_output_for_mask).
        start, length = runs
        steps = torch.arange(T, device=x.device)
        gather_in = torch.clamp(steps[None, :] + start[:, None], max=T - 1)  # [B, T]
        x_shifted = torch.gather(x, 1, gather_in[:, :, None].expand(-1, -1, x.shape[2]))
        out, h_n = gru_function(
            x_shifted,
            [weights],
            h0.unsqueeze(0),
            lengths=length,
            batch_first=True,
            reset_after=cell.reset_after,
        )
        h_n = h_n[0]
        H = h_n.shape[1]
        gather_out = torch.clamp(steps[None, :] - start[:, None], min=0, max=T - 1)
        in_run = torch.gather(out, 1, gather_out[:, :, None].expand(-1, -1, H))
        before = steps[None, :] < start[:, None]
        after = steps[None, :] >= (start + length)[:, None]
        carried = (
            torch.zeros_like(h_n)
            if self.zero_output_for_mask
            else torch.where((length > 0)[:, None], h_n, torch.zeros_like(h_n))
        )
        outputs = torch.where(before[:, :, None], torch.zeros_like(in_run), in_run)
        outputs = torch.where(after[:, :, None], carried[:, None, :].expand(-1, T, -1), outputs)
        return outputs[:, -1], outputs, [h_n]
