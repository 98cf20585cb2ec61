"""The minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201): a GRU whose gates
do not read the previous state, so that training runs over all steps at once.

Per layer and direction, with H hidden units:

    z_t  = sigmoid(x_t W_z^T + b_z)                  [B, H]
    h~_t = g(x_t W_h^T + b_h)                        [B, H]   g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t          [B, H]

Against the GRU (Cho et al. 2014) it has no reset gate and no recurrent weights: 2H (I + 1)
parameters per layer where the GRU has 3H (I + H + 2). Both projections are one matrix product over
all T steps (``k = x W^T + b``, [T, B, 2H]); what is left is a linear recurrence in h, which a scan
computes (``backends.select_min_gru_scan``: fused CPU kernels, Triton's on CUDA, or torch ops).
The oracle is :mod:`grukit.min_gru_reference`.

* :func:`min_gru`: the functional form (padded input with optional lengths).
* :class:`MinGRU`: the module, with ``torch.nn.GRU``'s call (tensor or PackedSequence, hx).
* :class:`MinGRUStream`: step-by-step inference (``MinGRU.stream()``).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import backends
from .module_parts import extra_repr_of
from .stream import StreamDriver
from .torch_call import call_as_torch_gru
from .validation import (
    ShapeError,
    check_bool,
    check_dropout,
    check_lengths,
    check_size,
    check_stream_chunk,
    check_streamable,
    check_tensor,
)

LayerWeights = Tuple[Tensor, Optional[Tensor]]  # (weight [2H, I_l], bias [2H] or None)


def _reverse_within_lengths(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """x [T, B, *] with each sequence's first lengths[b] steps reversed (the padding stays put)."""
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # [T, 1]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # [T, B]
    return x.gather(0, index.view(index.shape + (1,) * (x.dim() - 2)).expand_as(x))


def valid_steps(T: int, lengths: Tensor) -> Tensor:
    """[T, B, 1] bool: True at step t of sequence b when t < lengths[b]."""
    return (torch.arange(T, device=lengths.device).unsqueeze(1) < lengths).unsqueeze(-1)


def _layer(x: Tensor, h0: Tensor, weights: LayerWeights, lengths: Optional[Tensor], reverse: bool, backend):
    """One layer, one direction: x [T, B, I] -> (h [T, B, H] in x's time order, h_n [B, H])."""
    if reverse:
        x = _reverse_within_lengths(x, lengths)
    k = F.linear(x, weights[0], weights[1])  # [T, B, 2H]: all steps' gate pre-activations in one product
    h = backend.min_gru_scan(k, h0)
    if lengths is None:
        h_n = h[-1]
    else:  # the state after each sequence's last valid step (h0 for an empty one)
        last = (lengths - 1).clamp(min=0).view(1, -1, 1).expand(1, -1, h.shape[-1])
        h_n = torch.where((lengths > 0).unsqueeze(1), h.gather(0, last)[0], h0)
    if reverse:
        h = _reverse_within_lengths(h, lengths)
    return h, h_n


def _check_weights(weights, input_size: int, directions: int, like: Tensor) -> Tuple[int, int]:
    """weights: L*D tuples (weight [2H, I_l], bias [2H] or None); returns (L, H)."""
    if not isinstance(weights, (list, tuple)) or not weights or len(weights) % directions:
        raise ValueError(
            f"weights must be a non-empty list of (weight, bias) tuples, {directions} per layer, "
            f"got {type(weights).__name__} of length {len(weights) if isinstance(weights, (list, tuple)) else '-'}"
        )
    first = weights[0][0] if isinstance(weights[0], (list, tuple)) and weights[0] else None
    if not isinstance(first, Tensor) or first.dim() != 2 or first.shape[0] % 2:
        raise ShapeError("weights[0][0] must be a [2H, I] tensor (update-gate rows, then candidate rows)")
    H = first.shape[0] // 2
    for index, pair in enumerate(weights):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"weights[{index}] must be a (weight, bias) tuple (bias may be None)")
        features = input_size if index < directions else directions * H
        check_tensor(f"weights[{index}][0]", pair[0], (2 * H, features), like)
        if pair[1] is not None:
            check_tensor(f"weights[{index}][1]", pair[1], (2 * H,), like)
    return len(weights) // directions, H


def min_gru(
    input: Tensor,
    weights: Sequence[LayerWeights],
    hx: Optional[Tensor] = None,
    *,
    lengths: Union[Tensor, Sequence[int], None] = None,
    batch_first: bool = False,
    bidirectional: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    backend: Optional[str] = None,
) -> Tuple[Tensor, Tensor]:
    """Run a (multi-layer, optionally bidirectional) minGRU over a batch of sequences.

    Args:
        input: [T, B, I], or [B, T, I] if ``batch_first``; float32 or float64 (any float on torch ops).
        weights: one ``(weight, bias)`` per layer and direction (layer 0, layer 0 reverse, layer 1, ...):
            weight [2H, I_l] (I_0 = I, later layers D*H), rows W_z then W_h; bias [2H] or None.
        hx: [L*D, B, H] initial states, or None for zeros.
        lengths: [B] valid steps per sequence (0..T), any order; outputs past a sequence's length are
            zero, its h_n is the state after its last valid step, and its reverse direction starts there.
        batch_first: input and output are [B, T, *].
        bidirectional: ``weights`` holds a forward and a reverse direction per layer.
        dropout: probability of zeroing outputs of each layer but the last, when ``training``.
        backend: the scan's backend ("auto", "torch", "cpu_fused", "triton"); None reads $GRUKIT_BACKEND.

    Returns:
        output: [T, B, D*H] (or [B, T, D*H]) the last layer's states.  h_n: [L*D, B, H].
    """
    if not isinstance(input, Tensor) or input.dim() != 3:
        got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"input must be a 3-D tensor ({'[B, T, I]' if batch_first else '[T, B, I]'}), got {got}")
    check_bool("batch_first", batch_first)
    directions = 2 if check_bool("bidirectional", bidirectional) else 1
    dropout = check_dropout(dropout)
    x = input.transpose(0, 1) if batch_first else input
    T, B, _ = x.shape
    L, H = _check_weights(weights, x.shape[-1], directions, x)
    if hx is None:
        hx = x.new_zeros(L * directions, B, H)
    else:
        check_tensor("hx", hx, (L * directions, B, H), x)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T, x.device)
        if bool((lengths == T).all()):
            lengths = None
    if T == 0 or B == 0:  # nothing to scan: empty outputs and the initial states, as torch.nn.GRU
        output = x.new_zeros(T, B, directions * H)
        return (output.transpose(0, 1) if batch_first else output), hx.clone()
    scan = backends.select_min_gru_scan(x, backend, others=[hx, *(w for pair in weights for w in pair)])
    mask = None if lengths is None else valid_steps(T, lengths)
    if mask is not None:  # padding never reaches the scan: NaN there would flow back into valid steps' gradients
        x = torch.where(mask, x, 0.0)
    finals: List[Tensor] = []
    for layer in range(L):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            h, h_n = _layer(x, hx[index], weights[index], lengths, direction == 1, scan)
            outputs.append(h)
            finals.append(h_n)
        x = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if mask is not None:
            x = torch.where(mask, x, 0.0)  # zero past each length, as torch.nn.GRU's padded output
        if training and dropout > 0 and layer < L - 1:
            x = F.dropout(x, dropout, training=True)
    output = x.transpose(0, 1) if batch_first else x
    return output, torch.stack(finals)


class MinGRU(nn.Module):
    """A multi-layer minGRU with ``torch.nn.GRU``'s interface (Feng et al. 2024).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as ``torch.nn.GRU``.
        backend: the scan's backend (see :func:`min_gru`).

    Parameters per layer ``k`` (``_reverse`` for the second direction): ``weight_ih_l{k}`` [2H, I_k]
    (rows: W_z, then W_h) and ``bias_ih_l{k}`` [2H], initialised U(-1/sqrt(H), 1/sqrt(H)) as torch's GRU.

    Call: ``output, h_n = module(input, hx)`` with input [T, B, I] ([B, T, I] if ``batch_first``),
    [T, I] unbatched, or a PackedSequence; hx [L*D, B, H] or None. Training computes all steps at
    once (the scan); :meth:`stream` runs step by step.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        backend: Optional[str] = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.dropout = check_dropout(dropout)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.backend = backend
        backends.check_named(backend)
        directions = 2 if bidirectional else 1
        factory = {"device": device, "dtype": dtype}
        self._names: List[Tuple[str, Optional[str]]] = []
        for layer in range(num_layers):
            features = input_size if layer == 0 else directions * hidden_size
            for suffix in ("", "_reverse")[:directions]:
                weight = f"weight_ih_l{layer}{suffix}"
                self.register_parameter(weight, nn.Parameter(torch.empty(2 * hidden_size, features, **factory)))
                bias_name = f"bias_ih_l{layer}{suffix}" if bias else None
                if bias_name:
                    self.register_parameter(bias_name, nn.Parameter(torch.empty(2 * hidden_size, **factory)))
                self._names.append((weight, bias_name))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def layer_weights(self) -> List[LayerWeights]:
        """One (weight [2H, I_k], bias [2H] or None) per layer and direction."""
        return [(getattr(self, w), getattr(self, b) if b else None) for w, b in self._names]

    def extra_repr(self) -> str:
        fields = (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False))
        return extra_repr_of(self, fields)

    def forward(
        self, input: Union[Tensor, PackedSequence], hx: Optional[Tensor] = None
    ) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        options = dict(bidirectional=self.bidirectional, dropout=self.dropout, training=self.training)

        def run(x: Tensor, h0: Optional[Tensor], lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
            return min_gru(x, self.layer_weights(), h0, lengths=lengths, backend=self.backend, **options)

        return call_as_torch_gru(run, input, hx, self.input_size, self.batch_first, self.weight_ih_l0)

    def stream(self, batch_size: int = 1, h0: Optional[Tensor] = None) -> "MinGRUStream":
        """Step-by-step inference (a unidirectional module): see :class:`MinGRUStream`."""
        return MinGRUStream(self, batch_size, h0)


class MinGRUStream(StreamDriver):
    """Step-by-step inference over a unidirectional :class:`MinGRU`, keeping the state between calls.

    ``step(x [B, I]) -> [B, H]`` runs one step of every layer, the sequential form: per layer
    ``k = x [W_z; W_h]^T + b``, then ``h = h + z (h~ - h)``; ``stream(chunk [T, B, I]) -> [T, B, H]``
    runs several steps. Both return the last layer's states and run without autograd; ``state`` and
    ``reset(h0)`` as :class:`grukit.stream.GRUStream`'s. As there, the weights are copied when the
    stream is made (make a new stream after changing them), and where the fused CPU kernels run the
    scan, each call is one native call (csrc/min_gru_stream.h); elsewhere a step is the layer's
    product and the backend's scan over one step.
    """

    def __init__(self, module: MinGRU, batch_size: int = 1, h0: Optional[Tensor] = None):
        check_streamable(module)
        self.module = module
        like = module.weight_ih_l0
        self._start((module.num_layers, batch_size, module.hidden_size), like, h0, module.input_size)
        self._weights = [
            (w.detach().clone(), None if b is None else b.detach().clone()) for w, b in module.layer_weights()
        ]
        # chosen once: a step is a few microseconds of work, and choosing costs as much
        self._scan = backends.select_min_gru_scan(like, module.backend, others=[self._initial])
        native = self._scan is backends.get("cpu_fused") and like.device.type == "cpu"
        self._native = backends.get("cpu_fused").open_min_gru_stream(self._weights, self._initial) if native else None

    def _step(self, x: Tensor) -> Tensor:
        """One step, the sequential form: per layer k = x [W_z; W_h]^T + b, then the scan over one step."""
        check_stream_chunk(x.unsqueeze(0), self.batch_size, self.input_size)
        new = []
        for layer, (weight, bias) in enumerate(self._weights):
            k = F.linear(x, weight, bias).unsqueeze(0)  # [1, B, 2H]
            x = self._scan.min_gru_scan(k, self._h[layer])[0]  # (1 - z) h + z h~, the gates fused in
            new.append(x)
        self._h = torch.stack(new)
        return x

    def _run(self, chunk: Tensor) -> Tensor:
        """chunk [T, B, I] -> [T, B, H]: the layers' scans over the chunk."""
        output, self._h = min_gru(chunk, self._weights, self._h, backend=self.module.backend)
        return output
