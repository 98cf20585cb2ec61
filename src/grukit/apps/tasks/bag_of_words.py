"""The bag-of-words baseline of the text classifiers: logistic regression on word presence.

Each text is the set of its word ids; a linear model over that set (an ``EmbeddingBag`` sum)
gives one logit (two classes, binary cross-entropy) or one per class (softmax cross-entropy),
trained full batch with Adam; the L2 strength is the one with the best validation accuracy.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn


def _bags(ids: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
    """(flat word ids, offsets) of each row's distinct non-padding ids, for ``nn.EmbeddingBag``."""
    rows = [np.unique(r[r > 0]) for r in ids]
    flat = torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros(0, dtype=torch.long)
    offsets = torch.tensor(np.cumsum([0] + [len(r) for r in rows[:-1]]), dtype=torch.long)
    return flat, offsets


def bag_of_words_accuracy(
    splits: Dict[str, Tuple[np.ndarray, np.ndarray]], vocab_size: int, classes: int, seed: int = 0
) -> Dict[str, float]:
    """{"val", "test", "l2"}: the accuracies of the model whose L2 strength did best on "val".

    ``splits`` maps "train", "val", "test" to (ids [N, T] with 0 = padding, labels [N]):
    0/1 labels for two classes, class indices 0..classes-1 otherwise.
    """
    binary = classes == 2
    bags = {part: _bags(ids) for part, (ids, _) in splits.items()}
    labels = {part: torch.from_numpy(np.asarray(y)) for part, (_, y) in splits.items()}
    target = labels["train"].float() if binary else labels["train"].long()

    def correct(logits, y):
        predicted = (logits > 0).numpy() == (y.numpy() > 0.5) if binary else logits.argmax(1).numpy() == y.numpy()
        return float(predicted.mean())

    best = None
    for decay in (0.0, 1e-5, 1e-4, 1e-3):
        torch.manual_seed(seed)
        weights = nn.EmbeddingBag(vocab_size, 1 if binary else classes, mode="sum")
        nn.init.zeros_(weights.weight)
        bias = nn.Parameter(torch.zeros(1 if binary else classes))
        optimiser = torch.optim.Adam(list(weights.parameters()) + [bias], lr=0.05)
        for _ in range(60):  # full batch
            logits = weights(*bags["train"]) + bias
            loss = (
                nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), target)
                if binary
                else nn.functional.cross_entropy(logits, target)
            ) + decay * weights.weight.square().sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            scores = {}
            for part in ("val", "test"):
                logits = weights(*bags[part]) + bias
                scores[part] = correct(logits.squeeze(1) if binary else logits, labels[part])
        if best is None or scores["val"] > best["val"]:
            best = {"val": scores["val"], "test": scores["test"], "l2": decay}
    return best
