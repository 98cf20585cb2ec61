"""Recurrent parameter counts, and the hidden size that matches a given count.

One recurrent layer of a plain RNN has 1 block, a GRU 3 (reset, update, candidate), an LSTM 4
(input, forget, cell, output); each block holds I*H input weights, H*H recurrent weights and two
bias vectors of H (torch's layout), so the count is blocks * (I*H + H*H + 2H). The minGRU (Feng
et al. 2024) has 2 blocks (update gate, candidate) of input weights and one bias each, and no
recurrent weights: 2 * (I*H + H). ``min-gru-blocks`` is the paper's model body
(grukit.MinGRUBlocks, BLOCKS_SHAPE below): its whole parameter count, as it has no single layer.
"""

from __future__ import annotations

import math

BLOCKS = {"rnn": 1, "lstm": 4}  # every GRU form has 3
MIN_GRU_BLOCKS = {"num_blocks": 3, "mlp_ratio": 4}  # the comparisons' MinGRUBlocks (the paper's 3 layers)


def recurrent_parameters(kind: str, inputs: int, hidden: int) -> int:
    """Weights and biases of one recurrent layer of ``kind``: blocks * (I*H + H*H + 2H) (minGRU: 2 (I*H + H))."""
    if kind == "min-gru":
        return 2 * (inputs * hidden + hidden)
    if kind == "min-gru-blocks":
        from ...min_gru_blocks import min_gru_blocks_parameters

        return min_gru_blocks_parameters(inputs, hidden, **MIN_GRU_BLOCKS)
    return BLOCKS.get(kind, 3) * (inputs * hidden + hidden * hidden + 2 * hidden)


def matched_hidden(kind: str, inputs: int, target: int) -> int:
    """The hidden size whose recurrent parameter count is closest to ``target``."""
    if kind == "min-gru-blocks":  # a quadratic with other coefficients: search the sizes in order
        above = next(h for h in range(1, 1 << 14) if recurrent_parameters(kind, inputs, h) >= target)
        return min((max(1, above - 1), above), key=lambda c: abs(recurrent_parameters(kind, inputs, c) - target))
    blocks = BLOCKS.get(kind, 3)
    # blocks * (H^2 + (I + 2) H) = target, solved for H
    h = (-(inputs + 2) + math.sqrt((inputs + 2) ** 2 + 4 * target / blocks)) / 2
    return max(1, min((math.floor(h), math.ceil(h)), key=lambda c: abs(recurrent_parameters(kind, inputs, c) - target)))
