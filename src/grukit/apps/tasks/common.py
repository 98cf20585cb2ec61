"""Shared training loop, options and model files for the tasks."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

from ... import settings
from ...busy_cores import ThreadTuner
from ...files import check_finite_weights, first_line, load_tensors, save_atomically
from ...quantized import quantize_grus

REGULARISERS = ("layer_norm", "zoneout", "recurrent_dropout")  # grukit.GRU's options a task may set


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
    checkpoint: Optional[str] = None  # written after every epoch (rank 0)
    resume: Optional[str] = None  # a checkpoint to continue from
    layer_norm: bool = False  # the GRU's regularisers (grukit.GRU's options of the same names)
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    precisions: bool = False  # also report the test metric with the GRU in bfloat16 and int8
    # your own data (the classify-text and classify-series tasks; see grukit.apps.own_data)
    csv: Optional[str] = None  # a CSV file (or, for classify-series, a .ts file)
    features: Optional[str] = None  # classify-series: the channels, comma separated
    time: Optional[str] = None  # classify-series: the column that orders the rows
    text: Optional[str] = None  # classify-text: the text column
    label: Optional[str] = None  # classify-text, classify-series: the class column
    id: Optional[str] = None  # classify-series: the column naming each sequence
    fill: str = "refuse"  # missing values: refuse, drop, ffill, interpolate
    encoding: str = "utf-8"
    max_classes: int = 1000  # classify-text, classify-series: more classes in --label are refused

    def gru_options(self) -> Dict:
        """The regulariser keyword arguments for ``grukit.GRU`` (saved in model files' config)."""
        return {name: getattr(self, name) for name in REGULARISERS}


def saved_reading_options(saved: Dict, names: Sequence[str], **given: Optional[str]) -> Options:
    """Options for reading a new file the way a saved model's training file was read: its ``names``
    options (columns, encoding, fill) from the model file, replaced by those ``given`` that are set."""
    chosen = {name: saved["options"].get(name) for name in names}
    chosen.update({name: value for name, value in given.items() if name in names and value})
    return Options(task=saved["task"], **{name: value for name, value in chosen.items() if value is not None})


def saved_gru_options(config: Dict) -> Dict:
    """The regulariser keyword arguments stored in a model file's config (none in older files)."""
    return {name: config[name] for name in REGULARISERS if name in config}


def distributed() -> Tuple[int, int]:
    """(rank, world size): (0, 1) unless running under torchrun with an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fit(
    model: torch.nn.Module,
    data: Sequence[torch.Tensor],
    loss_fn,
    evaluate: Callable[[], float],
    epochs: int,
    lr: float,
    batch_size: int,
    options: "Options",
    higher_is_better: bool,
) -> Dict:
    """Adam over ``epochs``: one progress bar per epoch, the best validation epoch's weights kept.

    ``data`` holds aligned training tensors (first dimension = samples); each global batch of
    ``batch_size`` samples comes from a ``DistributedSampler`` (seeded by ``options.seed`` and
    the epoch), so a run on N processes (torchrun, ``DistributedDataParallel``) takes exactly
    the optimiser steps of a 1-process run with the same batch size: each rank computes
    ``batch_size / N`` samples and DDP averages the gradients. Rank 0 alone prints and writes
    ``options.checkpoint`` after every epoch; ``options.resume`` continues from such a file,
    whatever the number of processes that wrote it. ``loss_fn(model, *batch) -> mean loss``.
    """
    rank, world = distributed()
    if batch_size % world:
        raise ValueError(f"--batch-size ({batch_size}) must be divisible by the number of processes ({world})")
    quiet = options.quiet or rank != 0
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    dataset = TensorDataset(*data)
    # the sampler shuffles epoch e with seed + e: space the seeds apart, or --seed 0 and --seed 1
    # would share all but one epoch's order
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=options.seed * 100_003, drop_last=False
    )
    best, best_state, history, start_epoch = None, None, [], 1
    if options.resume:
        state = load_tensors(options.resume, "checkpoint")
        path = options.resume
        needed = {"epoch", "model", "optimizer", "best", "best_state", "history"}
        if not isinstance(state, dict) or not needed <= state.keys():
            raise ValueError(f"--resume {path!r} is not a grukit checkpoint (write one with --checkpoint)")
        if state.get("task", options.task) != options.task:
            raise ValueError(f"--resume {path!r} is a checkpoint of the {state['task']} task, not of {options.task}")
        try:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            reason = first_line(exc, 160)
            raise ValueError(
                f"--resume {path!r} does not fit this model (the same --hidden, --layers and options as when "
                f"it was written?): {reason}"
            ) from None
        best, best_state, history, start_epoch = (
            state["best"],
            state["best_state"],
            state["history"],
            state["epoch"] + 1,
        )
    started = time.perf_counter()
    threads = ThreadTuner.for_training(world)  # fewer threads while another process holds a core
    try:
        for epoch in range(start_epoch, epochs + 1):
            model.train()
            sampler.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=batch_size // world, sampler=sampler)
            total, count = 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", file=sys.stdout, disable=quiet)
            for batch in bar:
                with threads.batch(len(batch[0])):
                    loss = loss_fn(net, *batch)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                if world > 1 and settings.is_on("GRUKIT_CHECK_REPLICAS"):
                    _check_replicas(model)
                total += loss.item()
                count += 1
                bar.set_postfix(loss=f"{total / count:.4f}")
            model.eval()
            with torch.no_grad():
                score = evaluate()  # every rank holds the same weights, so the same score
            history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val": score})
            if not quiet:
                print(f"  validation: {score:.4f}", flush=True)
            if best is None or (score > best if higher_is_better else score < best):
                best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
            if options.checkpoint and rank == 0:
                _checkpoint(
                    options.checkpoint,
                    {
                        "task": options.task,
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(),
                        "best": best,
                        "best_state": best_state,
                        "history": history,
                        "world_size": world,
                    },
                )
    finally:
        threads.restore()
    if best_state is None:
        raise ValueError(f"nothing to train: --epochs {epochs} is not past the resumed epoch {start_epoch - 1}")
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_val": best, "train_seconds": time.perf_counter() - started, "processes": world}


def _checkpoint(path: str, state: Dict) -> None:
    """Write a checkpoint; if it cannot be written (a full disk...), say so once and train on: the
    run is worth more than its checkpoints."""
    try:
        save_atomically(state, path)
    except Exception as exc:
        if path not in _FAILED_CHECKPOINTS:
            _FAILED_CHECKPOINTS.add(path)
            print(
                f"grukit: could not write the checkpoint {path!r} ({first_line(exc)}); training goes on",
                file=sys.stderr,
            )


_FAILED_CHECKPOINTS: set = set()


def _check_replicas(model: torch.nn.Module) -> None:
    """Raise unless every rank holds bit-identical parameters (a test aid: GRUKIT_CHECK_REPLICAS=1)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    copies = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, flat)
    if not all(torch.equal(copies[0], c) for c in copies[1:]):
        raise RuntimeError("DDP replicas diverged: parameters differ between ranks after a step")


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
