"""Shared training loop, options and model files for the tasks."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, Optional

import torch
from tqdm import tqdm


@dataclass
class Options:
    """What ``grukit train`` passes to a task (None means the task's default)."""

    task: str
    epochs: Optional[int] = None
    hidden: Optional[int] = None
    layers: int = 1
    reset_after: bool = True
    seed: int = 0
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    output: Optional[str] = None
    limit: int = 0  # > 0: only that many samples (quick runs and tests)
    quiet: bool = False


def fit(model: torch.nn.Module, batches: Callable[[], Iterable], loss_fn, evaluate: Callable[[], float],
        epochs: int, lr: float, quiet: bool, higher_is_better: bool) -> Dict:  # noqa: D417
    """Adam over ``epochs``, one progress bar per epoch; keeps the weights of the best validation score.

    ``batches()`` yields the inputs of ``loss_fn(model, *batch) -> loss`` for one epoch;
    ``evaluate()`` scores the model on the validation split.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, history = None, None, []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        items = list(batches())
        bar = tqdm(items, desc=f"epoch {epoch}/{epochs}", unit="batch", file=sys.stdout, disable=quiet, leave=True)
        for batch in bar:
            loss = loss_fn(model, *batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        model.eval()
        with torch.no_grad():
            score = evaluate()
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val": score})
        if not quiet:
            print(f"  validation: {score:.4f}", flush=True)
        if best is None or (score > best if higher_is_better else score < best):
            best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_val": best, "train_seconds": time.perf_counter() - started}


def model_file(task: str, options: Options, model: torch.nn.Module, **extra) -> Dict:
    """What a model file holds: the task, its options, the weights and what it needs to predict.

    Saved with ``torch.save`` when ``options.output`` is set; returned in every report
    (``report["model_file"]``) so the caller can predict without a file.
    """
    saved = {"task": task, "options": asdict(options), "state_dict": model.state_dict(), **extra}
    if options.output:
        torch.save(saved, options.output)
    return saved


def load(path: str) -> Dict:
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {path!r} (make one with `grukit train TASK --output {path}`)") from None
    if not isinstance(saved, dict) or "task" not in saved:
        raise ValueError(f"{path!r} is not a grukit model file (train one with `grukit train TASK --output ...`)")
    return saved


def batches_of(n: int, size: int, shuffle: bool, generator: torch.Generator):
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return [order[i : i + size] for i in range(0, n, size)]
