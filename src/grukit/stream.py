"""Streaming inference: a GRU that carries its state from one call to the next.

For real-time use (a microphone, a sensor, a market feed): feed one time step,
or a chunk of steps, per call, and the state of every layer carries over::

    gru = grukit.GRU(12, 64, num_layers=2)
    stream = gru.stream(batch_size=1)
    for frame in frames:                  # frame: [1, 12]
        h = stream.step(frame)            # [1, 64], the last layer's new state
    stream.reset()                        # back to zeros (or reset(h0))

Feeding a sequence step by step gives exactly what ``gru(sequence)`` gives
(``grukit.QuantizedGRU.stream`` too, in its precision). Inference only (no autograd).
The weights are copied and packed when the stream is made: make a new stream after
changing them. A backend with the
streaming capability (``open_stream``; the fused CPU one, for float32/float64)
runs each step as a single native call (a few microseconds at batch 1);
otherwise, and for GRUs with layer norm or zoneout (evaluation semantics:
zoneout's expected value), each call goes through ``grukit.functional.gru``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import backends
from .functional import gru_with_checked_options, run_quantized_layers
from .module_parts import GRUWeights
from .validation import KEEPS_STATE, ShapeError, check_size, check_stream_chunk, check_streamable, check_tensor


class StreamDriver:
    """What every grukit stream does, written once (:class:`GRUStream`, ``grukit.min_gru.MinGRUStream``,
    ``grukit.min_gru_blocks.MinGRUBlocksStream``): keep every layer's state [L, B, H] between calls,
    check each call's steps, and hand the work to a native stream (a backend's ``open_stream``: one
    native call per step) or, without one, to the subclass's :meth:`_run`.

    A subclass calls :meth:`_start` in its ``__init__``, may then set ``self._native``, and defines
    ``_run(chunk [T, B, I]) -> output [T, B, *]``, which advances ``self._h``.
    """

    _native = None  # a native stream: step(x), run(chunk), state(), set_state(h)

    def _start(self, shape, like: Tensor, h0: Optional[Tensor], input_size: int) -> None:
        """The state's ``shape`` [L, B, H] (B, the batch size, checked), dtype and device (``like``),
        and its initial value ``h0`` (checked; None: zeros)."""
        self.batch_size = check_size("batch_size", shape[1])
        self.input_size = input_size
        self._shape, self._like = tuple(shape), like
        self._initial = like.new_zeros(self._shape) if h0 is None else self._checked(h0)
        self._h = self._initial.clone()

    def _checked(self, h0: Tensor) -> Tensor:
        """A copy of a given state h0 [L, B, H], checked against the shape, dtype and device."""
        return check_tensor("h0", h0, self._shape, self._like).detach().clone()

    @property
    def state(self) -> Tensor:
        """[L, B, H] every layer's current state (a copy)."""
        return self._native.state() if self._native is not None else self._h.clone()

    def reset(self, h0: Optional[Tensor] = None) -> None:
        """Start over from ``h0`` ([L, B, H]) or from the initial state given at creation."""
        h = self._initial if h0 is None else self._checked(h0)
        if self._native is not None:
            self._native.set_state(h)
        else:
            self._h = h.clone()

    def step(self, x: Tensor) -> Tensor:
        """One time step: x [B, I] -> the new output [B, H] (the last layer's state)."""
        if self._native is not None:  # a few microseconds: nothing else on this path (no grad context either)
            return self._native.step(x)
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ShapeError(f"x must have shape [{self.batch_size}, {self.input_size}], got {x!r:.60}")
        with torch.no_grad():
            return self._step(x)

    def _step(self, x: Tensor) -> Tensor:
        return self._run_checked(x.unsqueeze(0))[0]

    def __call__(self, chunk: Tensor) -> Tensor:
        """Several steps: chunk [T, B, I] -> the output after each, [T, B, H]."""
        if self._native is not None:
            return self._native.run(chunk)
        with torch.no_grad():
            return self._run_checked(chunk)

    def _run_checked(self, chunk: Tensor) -> Tensor:
        check_stream_chunk(chunk, self.batch_size, self.input_size)
        return self._run(chunk)

    def _run(self, chunk: Tensor) -> Tensor:
        raise NotImplementedError


class GRUStream(StreamDriver):
    """Step-by-step inference over a unidirectional GRU, float or quantized.

    Made by ``grukit.GRU.stream()`` and ``grukit.QuantizedGRU.stream()``, from the module's
    :class:`grukit.module_parts.GRUWeights` (so this module knows no module class).

    Args:
        weights: the GRU's description (its tensors are copied now).
        batch_size: B, the number of independent streams run side by side.
        h0: [L, B, H] initial state, or None for zeros.
    """

    def __init__(self, weights: GRUWeights, batch_size: int = 1, h0: Optional[Tensor] = None):
        check_streamable(weights)
        self.hidden_size = weights.hidden_size
        self.num_layers = weights.num_layers
        self.reset_after = weights.reset_after
        self.update_gate = weights.update_gate
        self._backend = weights.backend
        quantized = weights.precision != "float"
        with torch.no_grad():
            copy = lambda t: None if t is None else t.detach().clone()  # noqa: E731
            # every layer's op inputs (the layer-norm gains among them), copied
            self._layers = [{name: copy(t) for name, t in layer.items()} for layer in weights.layers]
        copied = GRUWeights(**{**weights.__dict__, "layers": tuple(self._layers)})
        self._quantized = self._layers if quantized else None  # bfloat16 / int8 weights, float32 state
        self._weights = copied.float_weights()
        self._layer_norm = None if quantized else copied.layer_norm_weights()
        # evaluation semantics: zoneout is its expected value; recurrent dropout does nothing
        self._zoneout = float(weights.zoneout)
        p = torch.empty(0) if quantized else self._weights[0][0]  # the state's dtype and device
        self._start((self.num_layers, batch_size, self.hidden_size), p, h0, weights.input_size)
        chosen = backends.get("cpu_fused") if quantized else backends.select(p, self._backend)
        plain = not weights.layer_norm and not self._zoneout  # native streams compute the plain GRU
        if plain and hasattr(chosen, "open_stream"):  # the backend's streaming capability
            scales = None
            if weights.precision == "int8":
                scales = [(q["w_ih_scale"], q["w_hh_scale"]) for q in self._layers]
            self._native = chosen.open_stream(
                self._weights, self._initial, self.reset_after, self.update_gate == KEEPS_STATE, scales
            )

    def _run(self, chunk: Tensor) -> Tensor:
        """chunk [T, B, I] -> [T, B, H] through grukit.functional (or the quantized layers)."""
        if self._quantized is not None:
            out, self._h = run_quantized_layers(
                self._quantized,
                chunk.contiguous(),
                self._h,
                hidden_size=self.hidden_size,
                bidirectional=False,
                reset_after=self.reset_after,
                keeps_state=self.update_gate == KEEPS_STATE,
                zoneout=self._zoneout,
            )
            return out
        out, self._h = gru_with_checked_options(
            chunk,
            self._weights,
            self._h,
            reset_after=self.reset_after,
            update_gate=self.update_gate,
            backend=self._backend,
            layer_norm=self._layer_norm,
            zoneout=self._zoneout,
        )
        return out
