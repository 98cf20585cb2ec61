"""How a backend is asked to draw zoneout's training mask.

``grukit.functional`` does not draw the [T, B, H] mask itself: the fused CPU kernel draws it
inside its step loop from a seed (a hash of seed and element, recomputed in the backward pass,
so the mask is never stored), which costs far less than ``torch.rand`` over every element. The
portable backend draws it with torch from the same seed. The seed comes from torch's global
generator, so ``torch.manual_seed`` makes a training run repeatable on either backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ZoneoutDraw:
    """Zoneout in training: each unit keeps h_{t-1} with probability ``p``, a fresh draw per step."""

    p: float
    seed: int

    @classmethod
    def new(cls, p: float) -> "ZoneoutDraw":
        return cls(float(p), int(torch.randint(0, 2**62, (1,))))

    def mask(self, shape, like: Tensor) -> Tensor:
        """The 0/1 mask (1 = keep h_{t-1}) of ``shape``, drawn with torch from the seed."""
        generator = torch.Generator(device=like.device).manual_seed(self.seed)
        return (torch.rand(tuple(shape), generator=generator, device=like.device) < self.p).to(like.dtype)
