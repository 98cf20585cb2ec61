"""What a task's model file holds, how it is saved (never lost to a failed save), read back, and
quantized."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from typing import Callable, Dict

import torch

from ...files import check_finite_weights, first_line, load_tensors, save_atomically
from ...quantized import quantize_grus
from .options import Options
from .training import distributed


def model_file(task: str, options: Options, model: torch.nn.Module, **extra) -> Dict:
    """What a model file holds: the task, its options, the weights and what it needs to predict.

    Saved with ``torch.save`` when ``options.output`` is set; returned in every report
    (``report["model_file"]``) so the caller can predict without a file.
    """
    saved = {"task": task, "options": asdict(options), "state_dict": model.state_dict(), **extra}
    if options.output and distributed()[0] == 0:
        try:
            save_atomically(saved, options.output)
        except Exception as exc:  # disk full, a name too long, folder removed...: keep the model and the report
            saved[SAVE_ERROR] = save_failure(options.output, exc, saved, task)
    return saved


def save_failure(path: str, error: BaseException, saved: Dict, task: str) -> str:
    """The one line saying that ``saved`` could not be written to ``path`` (``error``) and where it
    was kept instead (:func:`keep_elsewhere`): a run's result is never lost to a failed save."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)
    return f"could not save the model to {path!r} ({reason}); " + keep_elsewhere(saved, task)


def keep_elsewhere(saved: Dict, task: str) -> str:
    """Save a trained model that could not be written where asked into the temporary folder; the
    sentence saying where it is (or that it could not be kept)."""
    fallback = os.path.join(tempfile.gettempdir(), f"grukit-{task}-{os.getpid()}.pt")
    try:
        save_atomically(saved, fallback)
    except Exception as exc:
        return f"it could not be kept in {fallback!r} either ({first_line(exc)})"
    return f"the trained model is kept in {fallback} (move it where you want it)"


LOW_PRECISIONS = ("bfloat16", "int8")


def metric_by_precision(model: torch.nn.Module, metric: Callable[[torch.nn.Module], float], options: Options):
    """With ``--precisions``: {"float32": metric(model), "bfloat16": ..., "int8": ...}, the same trained
    model with its GRU quantized (grukit.QuantizedGRU, as ``grukit quantize`` writes it); else None."""
    if not options.precisions:
        return None
    import copy

    values = {"float32": metric(model.eval())}
    for precision in LOW_PRECISIONS:
        values[precision] = metric(quantize_grus(copy.deepcopy(model), precision).eval())
    return values


def load_weights(model: torch.nn.Module, saved: Dict) -> torch.nn.Module:
    """``model`` (just built from the file's config) with the file's weights, in evaluation mode. A
    file from ``grukit quantize`` (``saved["precision"]``) holds its GRUs' weights in that precision:
    the GRUs become QuantizedGRUs before the weights load."""
    if saved.get("precision"):
        quantize_grus(model, saved["precision"])
    if not isinstance(saved["state_dict"], dict):
        raise ValueError(
            f"the model file's state_dict is a {type(saved['state_dict']).__name__}, not a mapping of weights"
        )
    check_finite_weights(saved["state_dict"], "the model file's weights")
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def finite_outputs(values: torch.Tensor) -> torch.Tensor:
    """``values`` (a model's outputs) if every one is finite; else ValueError. The readers refuse
    non-finite input and :func:`load_weights` non-finite weights, so NaN here means weights whose
    huge values overflow (a damaged file): said in one line, never printed as a prediction."""
    if not bool(torch.isfinite(values).all()):
        raise ValueError(
            "the model computes NaN or infinite outputs on this input: its weights overflow (is the model file "
            "damaged?); train the model again"
        )
    return values


def quantized_model_file(saved: Dict, model: torch.nn.Module, precision: str) -> Dict:
    """A model file's contents with ``model``'s GRUs (``model``: the file's float model) in ``precision``:
    what ``grukit quantize`` writes and ``grukit predict --precision`` uses."""
    if saved.get("precision"):
        raise ValueError(f"the model file is already quantized ({saved['precision']}); quantize the float32 file")
    with torch.no_grad():
        state = quantize_grus(model, precision).state_dict()
    return {**saved, "precision": precision, "state_dict": state}


SAVE_ERROR = "save_error"  # a model_file() key set only when writing --output failed


def load(path: str) -> Dict:
    try:
        saved = load_tensors(path, "model file")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no model file at {path!r} (make one with `grukit train TASK --output {path}`)"
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("task"), str):
        raise ValueError(f"{path!r} is not a grukit model file (train one with `grukit train TASK --output ...`)")
    return saved
