"""``grukit train classify-series``: classify your own labelled multichannel recordings.

Two inputs:

* a long-format CSV (``--csv FILE --id COL --label COL [--time COL] [--features A,B]``): one
  row per time step of a recording; ``--id`` names the recording, ``--label`` its class (the
  same in all its rows), ``--time`` orders its rows (file order without it), and the channels
  are ``--features`` or else every other numeric column;
* a UEA/aeon/sktime ``.ts`` file (``--csv FILE.ts``): one recording per line, the label last.

Recordings may differ in length; each is read as a packed sequence. The recordings are split
by class (seed 0): 70 % train, 15 % validation, 15 % test; the channels are scaled with the
training frames' mean and std. Model, metric and baselines as the speech and activity tasks:
GRU then Dense(classes); test accuracy; the majority class and 1-nearest-neighbour on
per-channel means.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...forecasting.table import (
    TableError,
    class_labels,
    fill_missing,
    numeric_column,
    open_source,
    optional,
    read_table,
    time_column,
)
from ..datasets.uea import SeriesClasses, read_ts
from .catalog import CATALOG
from .classify import train_on
from .evaluation import classification_report
from .model_files import finite_outputs
from .options import Options, saved_reading_options
from .task import Task

DEFAULTS = CATALOG["classify-series"]


def _is_ts(path) -> bool:
    return isinstance(path, str) and path.lower().endswith(".ts")


def read_recordings(source, options: Options, channels: Optional[List[str]] = None, need_labels: bool = True):
    """(ids, series [T_i, D] float64, labels or None, channel names) of a long CSV, a data
    frame or a ``.ts`` file. ``channels`` fixes the channel columns (a saved model's)."""
    if _is_ts(source):
        readable = open_source(source, options.encoding)
        try:
            series, labels = read_ts(readable(), options.encoding)
        except UnicodeDecodeError:
            raise TableError(
                f"--csv {source!r} is not {options.encoding} text; give its encoding with --encoding"
            ) from None
        except (ValueError, IndexError) as exc:
            raise TableError(f"--csv {source!r} is not a readable .ts file: {exc}") from None
        if not series:
            raise TableError(f"--csv {source!r} holds no recordings (no lines after @data)")
        if need_labels and labels is None:
            raise TableError(
                f"--csv {source!r} says @classLabel false: its recordings carry no class labels, which "
                "training and evaluation need"
            )
        widths = {s.shape[1] for s in series}
        if channels and widths != {len(channels)}:
            raise TableError(f"--csv {source!r} has {sorted(widths)} channels; the model reads {len(channels)}")
        names = channels or [f"dim_{d}" for d in range(series[0].shape[1])]
        return [str(i) for i in range(len(series))], series, labels, names
    if not options.id:
        raise TableError("the classify-series task needs --id COL (the column naming each recording) and --label COL")
    if need_labels and not options.label:
        raise TableError("the classify-series task needs --label COL: each recording's class")
    import pandas as pd

    named = {"--id": options.id}
    if options.label and (need_labels or not channels):
        named["--label"] = options.label
    if options.time:
        named["--time"] = options.time
    chosen = channels or optional(options.features)
    named.update({f"--features {c}": c for c in chosen})
    frame = read_table(source, named, options.encoding, every_numeric=not chosen)
    if not chosen:  # every other numeric column is a channel
        chosen = [str(c) for c in frame.columns if c not in named.values()]
        if not chosen:
            raise TableError("no numeric column besides --id, --label and --time to use as a channel")
    flags = {column: flag.split()[0] for flag, column in named.items()}
    keys = [c for c in (options.id, options.label if "--label" in named else None, options.time) if c]
    frame = fill_missing(frame, chosen, keys, options.fill, source, flags)
    values = np.stack([numeric_column(frame, c, flags.get(c, "--features"), source) for c in chosen], 1)
    every_id = frame[options.id].astype(str).to_numpy()
    order = np.argsort(every_id, kind="stable")  # by recording, file order within
    if options.time:
        numeric_time = pd.api.types.is_numeric_dtype(frame[options.time])
        times = frame[options.time].to_numpy() if numeric_time else time_column(frame, options.time, source)
        order = np.lexsort((times, every_id))
    ids_column = every_id[order]
    values = values[order]
    labels_column = frame[options.label].astype(str).to_numpy()[order] if "--label" in named else None
    starts = np.flatnonzero(np.r_[True, ids_column[1:] != ids_column[:-1]])
    ends = np.r_[starts[1:], len(ids_column)]
    ids, series, labels = [], [], []
    for a, b in zip(starts, ends):
        ids.append(ids_column[a])
        series.append(values[a:b])
        if labels_column is not None:
            distinct = set(labels_column[a:b])
            if len(distinct) > 1:
                raise TableError(
                    f"--label column {options.label!r} changes within recording {ids_column[a]!r} "
                    f"({', '.join(sorted(distinct)[:5])}): one class per recording"
                )
            labels.append(labels_column[a])
    return ids, series, (labels if labels_column is not None else None), list(chosen)


def _split(labels: np.ndarray, classes: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, validation and test: 15 % + 15 % of each class held out (seed 0)."""
    rng = np.random.default_rng(0)
    parts: Tuple[List[int], List[int], List[int]] = ([], [], [])
    for c in range(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        held = int(round(0.15 * len(members)))
        parts[1].extend(members[:held])
        parts[2].extend(members[held : 2 * held])
        parts[0].extend(members[2 * held :])
    return tuple(np.sort(np.array(p, np.int64)) for p in parts)


def pad(series: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(x [N, T_max, D] float32, scaled, zeros after each length; lengths [N])."""
    x = np.zeros((len(series), max(len(s) for s in series), len(mean)), np.float32)
    largest = float(np.finfo(np.float32).max)
    for i, s in enumerate(series):
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (s - mean) / std
        if not (np.isfinite(scaled).all() and np.abs(scaled).max(initial=0.0) <= largest):
            raise TableError(
                f"recording {i + 1} holds values too large for the model (scaled by the training channels' mean "
                "and deviation they pass float32's range, 3.4e38): rescale the channels"
            )
        x[i, : len(s)] = scaled
    return x, np.array([len(s) for s in series], np.int64)


def train_frame(source, options: Options) -> Dict:
    """Train on ``source`` (a long CSV, a .ts file or a pandas DataFrame); the report."""
    ids, series, labels, channels = read_recordings(source, options)
    classes = class_labels(labels, "--label", options.label or "(the .ts labels)", source, options.max_classes)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], np.int64)
    train_rows, val_rows, test_rows = _split(y, len(classes))
    if options.limit:
        train_rows = train_rows[: options.limit]
    if min(len(train_rows), len(val_rows), len(test_rows)) < 1:
        raise TableError(
            f"{len(series)} recordings are too few to hold out 15 % + 15 % of each class for validation and test"
        )
    frames = np.concatenate([series[i] for i in train_rows])
    mean, std = frames.mean(0), frames.std(0) + 1e-8
    parts = {}
    for name, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows)):
        x, lengths = pad([series[i] for i in rows], mean, std)
        parts.update({f"x_{name}": x, f"lengths_{name}": lengths, f"y_{name}": y[rows]})
    data = SeriesClasses(classes=classes, mean=mean, std=std, **parts)
    torch.manual_seed(options.seed)
    report = train_on(data, options, DEFAULTS, columns={"channels": channels})
    report["task"] = "classify-series"
    return report


def train(options: Options) -> Dict:
    """``grukit train classify-series``: :func:`train_frame` on the file ``--csv``."""
    if not options.csv:
        raise TableError("the classify-series task reads your data: give --csv FILE (long CSV or .ts), --id, --label")
    return train_frame(options.csv, options)


def probabilities(saved: Dict, series: Sequence[np.ndarray]) -> np.ndarray:
    """[len(series), classes]: each class's probability for each recording [T_i, D]."""
    from .classify import load_model

    x, lengths = pad(series, np.array(saved["scaling"]["mean"]), np.array(saved["scaling"]["std"]))
    with torch.no_grad():
        return finite_outputs(
            torch.softmax(load_model(saved)(torch.from_numpy(x), torch.from_numpy(lengths)), 1)
        ).numpy()


def predict(saved: Dict, source, options: Options) -> List[Tuple[str, str, float]]:
    """(recording id, predicted class, its probability) for every recording in ``source``."""
    ids, series, _, _ = read_recordings(source, options, saved["columns"]["channels"], need_labels=False)
    p = probabilities(saved, series)
    return [(i, saved["classes"][row.argmax()], float(row.max())) for i, row in zip(ids, p)]


READING = ("id", "time", "encoding", "fill", "label")  # the options a saved model reads new files with


class SeriesClassifierTask(Task):
    """classify-series: a class for each recording of a long CSV or a .ts file."""

    name = "classify-series"
    how_to_use = "it classifies recordings: `grukit predict MODEL --csv NEW.csv` (the same columns, or a .ts file)"
    takes_csv = True

    def __init__(self):
        from .classify import load_model

        super().__init__(train, load_model)

    def predict(self, saved: Dict, texts: Sequence[str], days: int, csv=None) -> List[str]:
        if texts or not csv:
            raise SystemExit("grukit predict: a classify-series model reads recordings: give --csv FILE")
        options = saved_reading_options(saved, READING)  # the label column is not read: the channels are the model's
        return [f"{i}: {label} ({p:.2f})" for i, label, p in predict(saved, csv, options)]

    def evaluate(self, saved: Dict, csv: str, columns: Dict[str, Optional[str]]) -> Dict:
        options = saved_reading_options(saved, READING, **columns)
        _, series, labels, _ = read_recordings(csv, options, saved["columns"]["channels"], need_labels=True)
        if labels is None or any(label is None for label in labels):
            raise TableError(f"--csv {csv!r} holds recordings without class labels: nothing to evaluate against")
        predicted = [saved["classes"][row.argmax()] for row in probabilities(saved, series)]
        return classification_report([str(label) for label in labels], predicted, saved["classes"], csv)


TASK = SeriesClassifierTask()
