"""Multivariate time-series classification sets in the UEA ``.ts`` format, from aeon's copies.

Read from ``aeon/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts`` without importing aeon
(``pip install --no-deps aeon==1.6.0``). The official TRAIN/TEST split is kept; a fixed 15%
of TRAIN (seed 0, stratified by class) is held out for validation. Channels are standardised
with the training series' mean and std.

* ``japanese_vowels``: 640 utterances of /ae/ by 9 speakers, 12 LPC cepstra per frame,
  7-29 frames (variable length): 270 train, 370 test. Task: who is speaking.
* ``basic_motions``: 80 recordings of a smartwatch's accelerometer and gyroscope (6
  channels, 100 steps) while standing, walking, running or playing badminton: 40 + 40.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ._packages import package_file


def read_ts(source, encoding: str = "utf-8") -> Tuple[List[np.ndarray], Optional[List[str]]]:
    """Series [T_i, D] and labels from a ``.ts`` file (dimensions separated by ':', the label last
    when the header says ``@classLabel true``); ``source`` is a path or a binary stream. Labels are
    None for a file whose header says ``@classLabel false`` (every ':'-field is a channel). A value
    that is missing ("?", "NaN") or infinite is refused with its line (ValueError): the models
    cannot read one."""
    series, labels = [], []
    has_labels = True  # files without the @classLabel line (older UEA copies) end each line with the label
    in_data = False
    if isinstance(source, (str, os.PathLike)):
        stream = open(source, encoding=encoding)
    else:
        stream = io.TextIOWrapper(source, encoding)
    with stream:
        for number, line in enumerate(stream, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("@data"):
                in_data = True
                continue
            if line.lower().startswith("@classlabel"):
                words = line.split()
                if len(words) < 2 or words[1].lower() not in ("true", "false"):
                    raise ValueError(f"line {number}: @classLabel must be followed by true or false, got {line!r}")
                has_labels = words[1].lower() == "true"
                continue
            if line.startswith("@") or not in_data:
                continue
            fields = line.split(":")
            dims, label = (fields[:-1], fields[-1]) if has_labels else (fields, None)
            if not dims:
                raise ValueError(f"line {number}: no channel values before the label")
            try:
                channels = [np.array([float(v) for v in d.split(",")]) for d in dims]
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            if len({len(c) for c in channels}) != 1:
                raise ValueError(f"line {number}: its channels have different lengths {[len(c) for c in channels]}")
            recording = np.stack(channels, 1)
            if not np.isfinite(recording).all():
                raise ValueError(
                    f"line {number} holds a missing or infinite value (NaN, inf); every value must be a number"
                )
            series.append(recording)
            if has_labels:
                labels.append(label.strip())
    return series, (labels if has_labels else None)


@dataclass
class SeriesClasses:
    """Padded series ``x_*`` [N, T_max, D] float32 (zeros after each length), ``lengths_*`` [N],
    class indices ``y_*`` [N] int64, for the train / val / test splits; ``classes`` their names."""

    x_train: np.ndarray
    lengths_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    lengths_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    lengths_test: np.ndarray
    y_test: np.ndarray
    classes: List[str]
    mean: np.ndarray
    std: np.ndarray


def _load(name: str, limit: int = 0) -> SeriesClasses:
    files = [
        package_file("aeon", f"datasets/data/{name}/{name}_{part}.ts", "pip install --no-deps aeon==1.6.0")
        for part in ("TRAIN", "TEST")
    ]
    (train_s, train_l), (test_s, test_l) = read_ts(files[0]), read_ts(files[1])
    classes = sorted(set(train_l), key=lambda c: (len(c), c))
    index = {c: i for i, c in enumerate(classes)}
    y_train_all = np.array([index[c] for c in train_l])
    rng = np.random.default_rng(0)
    val = np.zeros(len(train_s), bool)
    for c in range(len(classes)):  # 15% of each class for validation
        members = np.flatnonzero(y_train_all == c)
        val[rng.choice(members, max(1, round(0.15 * len(members))), replace=False)] = True
    frames = np.concatenate([s for s, v in zip(train_s, val) if not v])
    mean, std = frames.mean(0), frames.std(0) + 1e-8
    t_max = max(len(s) for s in train_s + test_s)

    def pack(series, labels):
        x = np.zeros((len(series), t_max, series[0].shape[1]), np.float32)
        for i, s in enumerate(series):
            x[i, : len(s)] = (s - mean) / std
        return x, np.array([len(s) for s in series]), np.array([index[c] for c in labels], np.int64)

    tr = [i for i in range(len(train_s)) if not val[i]]
    va = [i for i in range(len(train_s)) if val[i]]
    if limit:
        tr = tr[:limit]
    xt, lt, yt = pack([train_s[i] for i in tr], [train_l[i] for i in tr])
    xv, lv, yv = pack([train_s[i] for i in va], [train_l[i] for i in va])
    xs, ls, ys = pack(test_s, test_l)
    return SeriesClasses(xt, lt, yt, xv, lv, yv, xs, ls, ys, classes, mean, std)


def japanese_vowels(limit: int = 0) -> SeriesClasses:
    return _load("JapaneseVowels", limit)


def basic_motions(limit: int = 0) -> SeriesClasses:
    return _load("BasicMotions", limit)
