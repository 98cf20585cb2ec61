"""The long-memory problems and the models trained on them (``grukit compare --memory``; the runs
are :mod:`.memory`, the report :mod:`.memory_report`).

* the adding problem (Hochreiter and Schmidhuber 1997, in the setup of Le, Jaitly and Hinton
  2015, arXiv 1504.00941): a sequence of T pairs (value in [0, 1], marker); exactly two markers
  are 1, one in each half of the sequence; the target is the sum of the two marked values.
  Predicting the mean (1) scores the variance of a sum of two uniforms, 2/12 = 0.167, so
  *solved* means a validation MSE below 0.01 (under 6 % of that);
* the copy task with blank distractors (Arjovsky, Shah and Bengio 2016, arXiv 1511.06464): ten
  symbols from an alphabet of 8, then T - 1 blanks, a delimiter and ten more blanks; the model
  must output blanks until the delimiter and then the ten symbols. A memoryless model outputs
  blanks and then guesses, scoring a cross-entropy of 10 log 8 / (T + 20) per step, so *solved*
  means a validation cross-entropy below 5 % of that;
* selective copying (the minGRU comparison): the symbols scattered among blanks.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
from torch import nn

from ...min_gru import MinGRU
from ...min_gru_blocks import MinGRUBlocks
from ...nn import GRU
from .model_sizes import MIN_GRU_BLOCKS

KINDS = ("rnn", "lstm", "gru-after", "gru-before")
LABELS = {
    "rnn": "RNN (torch)",
    "lstm": "LSTM (torch)",
    "gru-after": "GRU grukit, reset after",
    "gru-before": "GRU grukit, reset before",
    "min-gru": "minGRU grukit",  # Feng et al. 2024; trained in grukit compare --min-gru
    "min-gru-blocks": "minGRU blocks grukit",  # the paper's model body: 3 residual blocks with an MLP
}
COLOURS = {
    "rnn": "tab:blue",
    "lstm": "tab:orange",
    "gru-after": "tab:green",
    "gru-before": "tab:red",
    "min-gru": "tab:purple",
    "min-gru-blocks": "tab:brown",
}  # every plot
FAMILY = {
    "rnn": "rnn",
    "lstm": "lstm",
    "gru-after": "gru",
    "gru-before": "gru",
    "min-gru": "min-gru",
    "min-gru-blocks": "min-gru-blocks",
}
TASKS = ("adding", "copy")  # grukit compare --memory; the minGRU comparison adds "selective"
EVERY_STEP_TASKS = ("copy", "selective")  # a target at every step (cross-entropy), not one at the end
COPY_SYMBOLS = 8  # the alphabet; 0 is the blank, 9 the delimiter
COPY_LENGTH = 10  # symbols to remember


# ---------------------------------------------------------------- the two tasks


def adding_problem(n: int, length: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """x [n, T, 2]: a value in [0, 1] and a marker (one 1 in each half); y [n, 1]: the sum of the
    two marked values."""
    values = rng.random((n, length))
    marks = np.zeros((n, length))
    first = rng.integers(0, max(1, length // 2), n)
    second = rng.integers(length // 2, length, n)
    marks[np.arange(n), first] = 1
    marks[np.arange(n), second] = 1
    x = np.stack([values, marks], 2).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy((values * marks).sum(1, keepdims=True).astype(np.float32))


def copy_task(n: int, delay: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """x [n, T + 20, 10]: one-hot symbols; y [n, T + 20]: the symbol to output at each step.

    Input:  s_1 .. s_10, T - 1 blanks, the delimiter, 10 blanks (s_i in 1..8, blank 0, delimiter 9).
    Target: T + 10 blanks, then s_1 .. s_10.
    """
    total = delay + 2 * COPY_LENGTH
    symbols = rng.integers(1, COPY_SYMBOLS + 1, (n, COPY_LENGTH))
    inputs = np.zeros((n, total), np.int64)
    inputs[:, :COPY_LENGTH] = symbols
    inputs[:, delay + COPY_LENGTH - 1] = COPY_SYMBOLS + 1
    targets = np.zeros((n, total), np.int64)
    targets[:, -COPY_LENGTH:] = symbols
    x = nn.functional.one_hot(torch.from_numpy(inputs), COPY_SYMBOLS + 2).float()
    return x, torch.from_numpy(targets)


def selective_copy(n: int, length: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Selective copying (Gu and Dao 2023, the Mamba paper; Feng et al. 2024 test the minGRU on it):
    the copy task with the 10 symbols at random positions among T steps, so that a model must
    choose what to store by content, not by position. x [n, T + 20, 10] one-hot; y [n, T + 20].

    Input:  T steps holding s_1 .. s_10 in order at random distinct positions and blanks elsewhere,
            the delimiter, 19 blanks (s_i in 1..8, blank 0, delimiter 9).
    Target: T + 10 blanks, then s_1 .. s_10.
    """
    if length < COPY_LENGTH:
        raise ValueError(f"selective copying needs T >= {COPY_LENGTH} steps for the symbols, got {length}")
    total = length + 2 * COPY_LENGTH
    symbols = rng.integers(1, COPY_SYMBOLS + 1, (n, COPY_LENGTH))
    positions = np.sort(np.argsort(rng.random((n, length)), axis=1)[:, :COPY_LENGTH], axis=1)
    inputs = np.zeros((n, total), np.int64)
    np.put_along_axis(inputs, positions, symbols, axis=1)
    inputs[:, length] = COPY_SYMBOLS + 1
    targets = np.zeros((n, total), np.int64)
    targets[:, -COPY_LENGTH:] = symbols
    x = nn.functional.one_hot(torch.from_numpy(inputs), COPY_SYMBOLS + 2).float()
    return x, torch.from_numpy(targets)


def trivial_loss(task: str, length: int) -> float:
    """The loss of the best model without memory: predict the mean sum (adding, variance 2/12),
    or blanks and then a uniform guess (copy and selective copying, 10 log 8 / (T + 20) per step)."""
    if task == "adding":
        return 2.0 / 12.0
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (length + 2 * COPY_LENGTH)


def solved_below(task: str, length: int) -> float:
    """The loss under which a run counts as solved: MSE 0.01 (adding), 5 % of trivial (copy, selective)."""
    return 0.01 if task == "adding" else 0.05 * trivial_loss(task, length)


def task_inputs(task: str) -> int:
    return 2 if task == "adding" else COPY_SYMBOLS + 2


def make_batch(task: str, n: int, length: int, rng: np.random.Generator):
    return {"adding": adding_problem, "copy": copy_task, "selective": selective_copy}[task](n, length, rng)


# ---------------------------------------------------------------- models


class MemoryModel(nn.Module):
    """Recurrent layer of ``kind`` -> linear head, on the last step (adding) or every step (copy).

    x [B, T, I] -> [B, outputs] (adding) or [B, T, outputs] (copy).
    """

    def __init__(self, kind: str, task: str, hidden: int):
        super().__init__()
        inputs = task_inputs(task)
        self.every_step = task in EVERY_STEP_TASKS
        self.rnn = {
            "rnn": lambda: nn.RNN(inputs, hidden, batch_first=True),
            "lstm": lambda: nn.LSTM(inputs, hidden, batch_first=True),
            "gru-after": lambda: GRU(inputs, hidden, batch_first=True, reset_after=True),
            "gru-before": lambda: GRU(inputs, hidden, batch_first=True, reset_after=False),
            "min-gru": lambda: MinGRU(inputs, hidden, batch_first=True),
            "min-gru-blocks": lambda: MinGRUBlocks(inputs, hidden, batch_first=True, **MIN_GRU_BLOCKS),
        }[kind]()
        if kind == "lstm":  # forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015; Keras' default)
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden : 2 * hidden] = 1.0
                self.rnn.bias_hh_l0[hidden : 2 * hidden] = 0.0
        self.head = nn.Linear(hidden, COPY_SYMBOLS + 1 if self.every_step else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(x)
        return self.head(outputs if self.every_step else outputs[:, -1])


def loss_of(task: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Adding: mean squared error. Copy, selective copying: cross-entropy per step, averaged over every step."""
    if task == "adding":
        return nn.functional.mse_loss(prediction, target)
    return nn.functional.cross_entropy(prediction.reshape(-1, prediction.shape[-1]), target.reshape(-1))
