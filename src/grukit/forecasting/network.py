"""The global forecaster's network: a grukit GRU encoder over the input window, then a head that
reads its last state with the horizon's known-future covariates and the static covariates and emits
every horizon step's quantiles at once (direct multi-horizon output, as neuralforecast's GRU and
darts' BlockRNNModel do):

    h_L          = GRU(steps_1..L)                              steps [B, L, Fs]
    [B, H, Q]    = W2 relu(W1 [h_L, head] + b1) + b2            head  [B, Fh]
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import GRU


class GlobalGRU(nn.Module):
    def __init__(
        self, step_features: int, head_features: int, horizon: int, levels: int, hidden: int = 64, layers: int = 1
    ):
        super().__init__()
        self.horizon, self.levels = horizon, levels
        self.encoder = GRU(step_features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden + head_features, hidden), nn.ReLU(), nn.Linear(hidden, horizon * levels)
        )

    def forward(self, steps: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """steps [B, L, Fs], head [B, Fh] -> quantiles [B, H, Q] (transformed units)."""
        _, h_n = self.encoder(steps)
        out = self.head(torch.cat([h_n[-1], head], 1))
        return out.view(-1, self.horizon, self.levels)


def pinball_loss(
    quantiles: torch.Tensor, target: torch.Tensor, levels: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean pinball loss of quantiles [B, H, Q] at ``levels`` [Q] against target [B, H] (Koenker and
    Bassett 1978): max(q (y - Q_q), (q - 1)(y - Q_q)), each sample's error times ``weight`` [B]
    when given (1 / its series' MASE scale: the loss is then MASE's pinball counterpart)."""
    error = target.unsqueeze(-1) - quantiles
    if weight is not None:
        error = error * weight[:, None, None]
    return torch.maximum(levels * error, (levels - 1) * error).mean()
