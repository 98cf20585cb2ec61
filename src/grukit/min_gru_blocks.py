"""The minGRU as Feng et al. 2024 train it: residual blocks of a minGRU layer and an MLP.

A single minGRU layer's gates read only the input, so one layer cannot compute anything that
depends on a comparison between past and present (a GRU's reset gate can). The paper's models
stack minGRU layers inside residual blocks with normalisation and a position-wise MLP, as a
Transformer or Mamba block does (Feng et al. 2024, "Were RNNs All We Needed?", their experiments'
set-up; the block is the pre-norm residual block of Xiong et al. 2020):

    x_0 = x W_in^T + b_in                                    [T, B, d]   (input projection)
    u_l = x_{l-1} + minGRU_l(LayerNorm(x_{l-1}))             [T, B, d]
    x_l = u_l + W_2 GELU(W_1 LayerNorm(u_l) + c_1) + c_2     [T, B, d]   W_1 [m d, d], W_2 [d, m d]
    y   = LayerNorm(x_L)                                     [T, B, d]

Every operation but the minGRU's scan acts on each step alone, and the scan runs forward in time,
so padding after a sequence's end never reaches its valid steps: padded input with lengths and
PackedSequence input give each sequence what it would get alone.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import backends
from .min_gru import MinGRU, min_gru, valid_steps
from .stream import StreamDriver
from .torch_call import call_as_torch_gru
from .validation import (
    check_bool,
    check_dropout,
    check_lengths,
    check_size,
    check_tensor,
)


def min_gru_blocks_parameters(input_size: int, hidden_size: int, num_blocks: int, mlp_ratio: int) -> int:
    """Parameters of :class:`MinGRUBlocks`: I d + d (projection), per block 2 (d d + d) (minGRU) +
    2 m d d + m d + d (MLP) + 4 d (two LayerNorms), and 2 d (the final LayerNorm)."""
    d, m = hidden_size, mlp_ratio
    block = 2 * (d * d + d) + 2 * m * d * d + m * d + d + 4 * d
    return input_size * d + d + num_blocks * block + 2 * d


class MinGRUBlock(nn.Module):
    """One residual block: ``u = x + minGRU(LayerNorm(x))``, ``x' = u + MLP(LayerNorm(u))``.

    Call: ``block(x [T, B, d], h0 [1, B, d], lengths [B] or None) -> (x' [T, B, d], h_n [1, B, d])``.
    """

    def __init__(self, hidden_size: int, mlp_ratio: int, dropout: float, backend, factory):
        super().__init__()
        self.recurrence_norm = nn.LayerNorm(hidden_size, **factory)
        self.min_gru = MinGRU(hidden_size, hidden_size, backend=backend, **factory)
        self.mlp_norm = nn.LayerNorm(hidden_size, **factory)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_ratio * hidden_size, **factory),
            nn.GELU(),
            nn.Linear(mlp_ratio * hidden_size, hidden_size, **factory),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, h0: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        states, h_n = min_gru(
            self.recurrence_norm(x), self.min_gru.layer_weights(), h0, lengths=lengths, backend=self.min_gru.backend
        )
        u = x + states
        return u + self.mlp(self.mlp_norm(u)), h_n


class MinGRUBlocks(nn.Module):
    """Stacked minGRU residual blocks (Feng et al. 2024's model body), with ``torch.nn.GRU``'s call.

    Args:
        input_size: I, features per step.
        hidden_size: d, the width of every block (the minGRU's hidden size and the residual stream).
        num_blocks: L blocks (the paper's selective-copying model has 3).
        mlp_ratio: m, the MLP's inner width is m d (4, as a Transformer's).
        dropout: on each block's MLP output, when training.
        batch_first: input and output are [B, T, *].
        backend: the minGRU scan's backend (see :func:`grukit.min_gru.min_gru`).

    Call: ``output, h_n = module(input, hx)`` with input [T, B, I] ([B, T, I] if ``batch_first``),
    [T, I] unbatched, or a PackedSequence; hx [L, B, d] (each block's minGRU state) or None.
    ``output`` [T, B, d] is the final LayerNorm of the residual stream (zero past a sequence's
    length, as torch.nn.GRU's padded output); h_n [L, B, d] each block's state after the last
    valid step. Unidirectional: the blocks are causal, which is what makes :meth:`stream` exact.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_blocks: int = 3,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        batch_first: bool = False,
        backend: Optional[str] = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_blocks = check_size("num_blocks", num_blocks)
        self.mlp_ratio = check_size("mlp_ratio", mlp_ratio)
        self.dropout = check_dropout(dropout)
        self.batch_first = check_bool("batch_first", batch_first)
        self.backend = backend
        backends.check_named(backend)
        factory = {"device": device, "dtype": dtype}
        self.input_projection = nn.Linear(input_size, hidden_size, **factory)
        self.blocks = nn.ModuleList(
            MinGRUBlock(hidden_size, mlp_ratio, dropout, backend, factory) for _ in range(num_blocks)
        )
        self.output_norm = nn.LayerNorm(hidden_size, **factory)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_blocks={self.num_blocks}, mlp_ratio={self.mlp_ratio}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + (", batch_first=True" if self.batch_first else "")

    def _run(self, x: Tensor, hx: Optional[Tensor], lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """x [T, B, I] -> (output [T, B, d], h_n [L, B, d])."""
        T, B, _ = x.shape
        shape = (self.num_blocks, B, self.hidden_size)
        hx = x.new_zeros(shape) if hx is None else check_tensor("hx", hx, shape, x)
        mask = None
        if lengths is not None:
            lengths = check_lengths(lengths, B, T, x.device)
            mask = valid_steps(T, lengths)
            x = torch.where(mask, x, 0.0)  # padding (NaN included) never reaches a product or a gradient
        x = self.input_projection(x)
        finals: List[Tensor] = []
        for index, block in enumerate(self.blocks):
            x, h_n = block(x, hx[index : index + 1], lengths)
            finals.append(h_n[0])
        output = self.output_norm(x)
        if mask is not None:
            output = torch.where(mask, output, 0.0)
        return output, torch.stack(finals)

    def forward(
        self, input: Union[Tensor, PackedSequence], hx: Optional[Tensor] = None
    ) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        return call_as_torch_gru(self._run, input, hx, self.input_size, self.batch_first, self.input_projection.weight)

    def stream(self, batch_size: int = 1, h0: Optional[Tensor] = None) -> "MinGRUBlocksStream":
        """Step-by-step inference: see :class:`MinGRUBlocksStream`."""
        return MinGRUBlocksStream(self, batch_size, h0)


class MinGRUBlocksStream(StreamDriver):
    """Inference a step (or a chunk of steps) at a time over :class:`MinGRUBlocks`, keeping every
    block's minGRU state between calls. ``step(x [B, I]) -> [B, d]``; ``stream(chunk [T, B, I]) ->
    [T, B, d]``; ``state`` [L, B, d] and ``reset(h0)`` as :class:`grukit.stream.GRUStream`'s. The
    blocks are causal, so the outputs equal the whole sequence's (in evaluation mode) at the same
    steps. As the other streams, it keeps a copy of the module made when the stream is made, in
    evaluation mode (no dropout): make a new stream after changing the weights."""

    def __init__(self, module: MinGRUBlocks, batch_size: int = 1, h0: Optional[Tensor] = None):
        self.module = copy.deepcopy(module).eval()
        shape = (module.num_blocks, batch_size, module.hidden_size)
        self._start(shape, module.input_projection.weight, h0, module.input_size)

    def _run(self, chunk: Tensor) -> Tensor:
        """chunk [T, B, I] -> the blocks' output after each step, [T, B, d]."""
        output, self._h = self.module._run(chunk, self._h, None)
        return output
