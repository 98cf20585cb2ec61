"""``grukit compare``: the usual RNN / LSTM / GRU claims, measured.

GRU tutorials tabulate GRU against LSTM (gates, memory cell, complexity, training speed,
accuracy, best use), say that basic RNNs have a short-term memory problem, and that GRUs
have fewer parameters, train faster and match LSTM accuracy. This module
trains a plain RNN, an LSTM and GRUs (grukit, both reset placements; torch.nn.GRU as
the reference implementation) on

* the sentiment task (Rotten Tomatoes) and the weather task (Seattle), with matched
  hidden sizes and, separately, matched parameter counts (the GRU's count);
* (with ``--memory``, in :mod:`grukit.apps.memory`) the adding problem and the copy task at
  growing lengths, each model trained until it solves them;

and measures the gradient norm ||dLoss/dh_t|| against the distance from the end.
Writes COMPARISON.md-ready Markdown and PNG plots.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ...min_gru import MinGRU
from ...min_gru_blocks import MinGRUBlocks
from ...nn import GRU, GRUCell
from ..plotting import pyplot
from .memory_tasks import adding_problem
from .model_sizes import MIN_GRU_BLOCKS, matched_hidden, recurrent_parameters

KINDS = ("rnn", "lstm", "gru-after", "gru-before", "torch-gru")
LABELS = {
    "rnn": "RNN (torch)",
    "lstm": "LSTM (torch)",
    "gru-after": "GRU grukit, reset after",
    "gru-before": "GRU grukit, reset before",
    "torch-gru": "GRU torch.nn.GRU",
}
GATES = {"rnn": 0, "lstm": 3, "gru-after": 2, "gru-before": 2, "torch-gru": 2}


class SequenceModel(nn.Module):
    """[optional embedding] -> recurrent layer of ``kind`` -> linear head on the last state."""

    def __init__(self, kind: str, inputs: int, hidden: int, outputs: int, vocab: Optional[int] = None):
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(vocab, inputs, padding_idx=0) if vocab else None
        self.rnn = {
            "rnn": lambda: nn.RNN(inputs, hidden, batch_first=True),
            "lstm": lambda: nn.LSTM(inputs, hidden, batch_first=True),
            "torch-gru": lambda: nn.GRU(inputs, hidden, batch_first=True),
            "gru-after": lambda: GRU(inputs, hidden, batch_first=True, reset_after=True),
            "gru-before": lambda: GRU(inputs, hidden, batch_first=True, reset_after=False),
            "min-gru": lambda: MinGRU(inputs, hidden, batch_first=True),
            "min-gru-blocks": lambda: MinGRUBlocks(inputs, hidden, batch_first=True, **MIN_GRU_BLOCKS),
        }[kind]()
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x, lengths=None):
        if self.embedding is not None:
            x = self.embedding(x)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, h = self.rnn(x)
        if self.kind == "min-gru-blocks":  # its output (after the MLP and norm) at each last valid step
            return self.head(_last_steps(output))
        h = h[0] if self.kind == "lstm" else h
        return self.head(h[-1])


def _last_steps(output) -> torch.Tensor:
    """[B, D] each sequence's last valid step of a batch-first output [B, T, D] or a PackedSequence."""
    if not isinstance(output, PackedSequence):
        return output[:, -1]
    padded, lengths = pad_packed_sequence(output, batch_first=True)
    return padded[torch.arange(padded.shape[0]), lengths.to(padded.device) - 1]


# ---------------------------------------------------------------- gradient flow


def gradient_flow(kind: str, length: int = 200, hidden: int = 64, seed: int = 0) -> np.ndarray:
    """||dLoss/dh_t|| for t = T-1 .. 0 (index = distance from the end), averaged over a batch of
    adding-problem sequences, for a freshly initialised cell; loss on the last state only."""
    torch.manual_seed(seed)
    x, y = adding_problem(32, length, np.random.default_rng(seed))
    cell = {
        "rnn": lambda: nn.RNNCell(2, hidden),
        "lstm": lambda: nn.LSTMCell(2, hidden),
        "gru": lambda: GRUCell(2, hidden),
    }[kind]()
    head = nn.Linear(hidden, 1)
    h = torch.zeros(32, hidden)
    c = torch.zeros(32, hidden)
    states = []
    for t in range(length):
        if kind == "lstm":
            h, c = cell(x[:, t], (h, c))
        else:
            h = cell(x[:, t], h)
        h.retain_grad()
        states.append(h)
    nn.functional.mse_loss(head(h), y).backward()
    norms = np.array([s.grad.norm(dim=1).mean().item() for s in states])
    return norms[::-1]  # distance from the end: 0, 1, ...


# ---------------------------------------------------------------- the real tasks


def train_task(kind: str, task: str, hidden: int, epochs: int, seed: int, limit: int = 0) -> Dict:
    """Sentiment (accuracy) or weather (RMSE) with a recurrent layer of ``kind``."""
    from ..tasks.options import Options
    from ..tasks.training import fit

    torch.manual_seed(seed)
    options = Options(task=task, seed=seed, quiet=True)
    if task == "sentiment":
        from ..datasets import rotten_tomatoes

        data = rotten_tomatoes(limit=limit)
        model = SequenceModel(kind, 64, hidden, 1, vocab=len(data.vocab) + 2)
        tensors = tuple(torch.from_numpy(a) for a in (data.train_ids, data.train_lengths, data.train_labels))

        def accuracy(ids, lengths, labels):
            with torch.no_grad():
                logits = model(torch.from_numpy(ids), torch.from_numpy(lengths)).squeeze(1)
            return float(((logits > 0).numpy() == (labels > 0.5)).mean())

        result = fit(
            model,
            tensors,
            lambda m, x, n, y: nn.functional.binary_cross_entropy_with_logits(m(x, n).squeeze(1), y),
            lambda: accuracy(data.val_ids, data.val_lengths, data.val_labels),
            epochs,
            3e-3,
            64,
            options,
            True,
        )
        metric = accuracy(data.test_ids, data.test_lengths, data.test_labels)
        probe = (torch.from_numpy(data.test_ids), torch.from_numpy(data.test_lengths))
    else:
        from ..tasks.forecast import load_data

        data, _ = load_data("weather", limit)
        model = SequenceModel(kind, len(data.features), hidden, 1)
        scale = lambda y: ((y - data.target_mean) / data.target_std).astype(np.float32)  # noqa: E731

        def rmse(x, y):
            with torch.no_grad():
                pred = model(torch.from_numpy(x)).squeeze(1).numpy() * data.target_std + data.target_mean
            return float(np.sqrt(np.mean((pred - y) ** 2)))

        tensors = (torch.from_numpy(data.x_train), torch.from_numpy(scale(data.y_train)))
        result = fit(
            model,
            tensors,
            lambda m, x, y: nn.functional.mse_loss(m(x).squeeze(1), y),
            lambda: rmse(data.x_val, data.y_val),
            epochs,
            1e-3,
            32,
            options,
            False,
        )
        metric = rmse(data.x_test, data.y_test)
        probe = (torch.from_numpy(data.x_test),)
    with torch.inference_mode():
        model(*probe)
        started = time.perf_counter()
        for _ in range(3):
            model(*probe)
        inference = (time.perf_counter() - started) / 3
    return {
        "kind": kind,
        "task": task,
        "hidden": hidden,
        "metric": metric,
        "parameters": sum(p.numel() for p in model.rnn.parameters()),
        "seconds_per_epoch": result["train_seconds"] / max(1, len(result["history"])),
        "inference_seconds": inference,
        "loss_curve": [h["train_loss"] for h in result["history"]],
    }


# ---------------------------------------------------------------- the whole comparison


def _sizes(inputs: int, hidden: int):
    """(setting, kind, hidden size) for every model: "hidden" = the same size for all, "params" =
    the size matching the GRU's recurrent parameter count at ``hidden``."""
    target = recurrent_parameters("gru-after", inputs, hidden)
    for setting in ("hidden", "params"):
        for kind in KINDS:
            yield setting, kind, hidden if setting == "hidden" else matched_hidden(kind, inputs, target)


def run(seeds: int, epochs: Dict[str, int], limit: int, flow_length: int, out_dir: str, log=print) -> Dict:
    """The task comparison and the gradient flow; returns the raw results and writes the plots
    into ``out_dir``. (The long-memory experiment is :mod:`grukit.apps.memory`.)"""
    import os

    os.makedirs(out_dir, exist_ok=True)
    H = 64
    results = {"tasks": [], "flow": {}}
    for task in ("sentiment", "weather"):
        for setting, kind, hidden in _sizes(64 if task == "sentiment" else 3, H):
            for seed in range(seeds):
                r = train_task(kind, task, hidden, epochs[task], seed, limit)
                r.update(setting=setting, seed=seed)
                results["tasks"].append(r)
                log(
                    f"{task:9s} {setting:6s} {LABELS[kind]:26s} H={hidden:3d} seed {seed}: {r['metric']:.4f} "
                    f"({r['seconds_per_epoch']:.1f} s/epoch)"
                )
    for kind in ("rnn", "lstm", "gru"):
        results["flow"][kind] = gradient_flow(kind, length=flow_length).tolist()
    plot(results, out_dir)
    return results


def plot(results: Dict, out_dir: str) -> List[str]:
    plt = pyplot()

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in KINDS:
        rows = [
            r
            for r in results["tasks"]
            if r["task"] == "sentiment" and r["kind"] == kind and r["setting"] == "hidden" and r["seed"] == 0
        ]
        if rows:
            ax.plot(range(1, len(rows[0]["loss_curve"]) + 1), rows[0]["loss_curve"], marker="o", label=LABELS[kind])
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (binary cross-entropy)")
    ax.set_title("sentiment, hidden 64, seed 0")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(f"{out_dir}/sentiment_loss.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, norms in results["flow"].items():
        ax.plot(range(len(norms)), norms, label={"rnn": "RNN", "lstm": "LSTM", "gru": "GRU (grukit)"}[kind])
    ax.set_yscale("log")
    ax.set_xlabel("distance from the end of the sequence (steps)")
    ax.set_ylabel("mean ||dLoss / dh_t||")
    ax.set_title("gradient flow at initialisation, adding problem")
    ax.legend()
    fig.tight_layout()
    paths.append(f"{out_dir}/gradient_flow.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def markdown(results: Dict, command: str) -> str:
    """The tutorials' GRU-vs-LSTM table with measured numbers, and the per-task details."""

    def task_rows(task, setting):
        return [r for r in results["tasks"] if r["task"] == task and r["setting"] == setting]

    def summary(rows, key, fmt):
        values = [r[key] for r in rows]
        if len(values) == 1:
            return fmt.format(values[0])
        return f"{fmt.format(np.mean(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    lines = [
        f"Made by `{command}`.",
        "",
        "## The GRU-vs-LSTM table, measured (hidden size 64 for every model)",
        "",
        "| | " + " | ".join(LABELS[k] for k in KINDS) + " |",
        "|---" * (len(KINDS) + 1) + "|",
    ]
    rows_h = {
        t: {k: [r for r in task_rows(t, "hidden") if r["kind"] == k] for k in KINDS} for t in ("sentiment", "weather")
    }
    lines.append("| gates | " + " | ".join(str(GATES[k]) for k in KINDS) + " |")
    lines.append("| memory cell | " + " | ".join("yes" if k == "lstm" else "no" for k in KINDS) + " |")
    lines.append(
        "| parameters (recurrent layer, sentiment) | "
        + " | ".join(str(rows_h["sentiment"][k][0]["parameters"]) for k in KINDS)
        + " |"
    )
    lines.append(
        "| training, s per epoch (sentiment) | "
        + " | ".join(summary(rows_h["sentiment"][k], "seconds_per_epoch", "{:.1f}") for k in KINDS)
        + " |"
    )
    lines.append(
        "| inference, s for the 1,276 test reviews | "
        + " | ".join(summary(rows_h["sentiment"][k], "inference_seconds", "{:.3f}") for k in KINDS)
        + " |"
    )
    lines.append(
        "| sentiment test accuracy | "
        + " | ".join(summary(rows_h["sentiment"][k], "metric", "{:.3f}") for k in KINDS)
        + " |"
    )
    lines.append(
        "| weather test RMSE, deg C | "
        + " | ".join(summary(rows_h["weather"][k], "metric", "{:.3f}") for k in KINDS)
        + " |"
    )
    lines += [
        "",
        "## Matched parameter counts (each model's hidden size chosen to match the GRU's recurrent parameters at H=64)",
        "",
        "| | " + " | ".join(LABELS[k] for k in KINDS) + " |",
        "|---" * (len(KINDS) + 1) + "|",
    ]
    rows_p = {
        t: {k: [r for r in task_rows(t, "params") if r["kind"] == k] for k in KINDS} for t in ("sentiment", "weather")
    }
    lines.append(
        "| hidden size (sentiment) | " + " | ".join(str(rows_p["sentiment"][k][0]["hidden"]) for k in KINDS) + " |"
    )
    lines.append(
        "| parameters (sentiment) | " + " | ".join(str(rows_p["sentiment"][k][0]["parameters"]) for k in KINDS) + " |"
    )
    lines.append(
        "| sentiment test accuracy | "
        + " | ".join(summary(rows_p["sentiment"][k], "metric", "{:.3f}") for k in KINDS)
        + " |"
    )
    lines.append(
        "| training, s per epoch (sentiment) | "
        + " | ".join(summary(rows_p["sentiment"][k], "seconds_per_epoch", "{:.1f}") for k in KINDS)
        + " |"
    )
    lines.append(
        "| weather test RMSE, deg C | "
        + " | ".join(summary(rows_p["weather"][k], "metric", "{:.3f}") for k in KINDS)
        + " |"
    )
    flow = results["flow"]
    n = len(flow["gru"])
    distances = sorted({d for d in (0, 10, 50, 100, n - 1) if d < n})
    lines += [
        "",
        f"## Gradient flow at initialisation (adding problem, T = {n})",
        "",
        "| distance from the end | " + " | ".join(str(d) for d in distances) + " |",
        "|---|" + "---|" * len(distances),
    ]
    for kind, norms in flow.items():
        lines.append(f"| {kind.upper()} | " + " | ".join(f"{norms[d]:.2e}" for d in distances) + " |")
    return "\n".join(lines) + "\n"
