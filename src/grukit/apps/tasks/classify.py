"""Sequence classification: speaker recognition (speech) and activity recognition.

speech: Japanese Vowels (aeon), which of 9 speakers said /ae/, from 12 cepstral
    coefficients per frame; utterances are 7-29 frames, read as packed sequences so
    padding never enters the GRU. activity: BasicMotions (aeon), standing / walking /
    running / badminton from 6 smartwatch channels over 100 steps.
Model: GRU then Dense(classes), adam, cross-entropy, best validation epoch kept.
Metric: accuracy on the official test split. Baselines on the same split: the majority
class of the training split, and 1-nearest-neighbour on each series' per-channel means.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...nn import GRU
from .catalog import CATALOG, TaskDefaults
from .model_files import load_weights, metric_by_precision, model_file
from .options import Options
from .task import NotOffered, Task
from .training import fit


class Classifier(nn.Module):
    """x [B, T, D] (zero after each length), lengths [B] -> class logits [B, classes]."""

    def __init__(self, channels: int, classes: int, hidden: int, layers: int = 1, reset_after: bool = True):
        super().__init__()
        self.gru = GRU(channels, hidden, num_layers=layers, batch_first=True, reset_after=reset_after)
        self.dense = nn.Linear(hidden, classes)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)
        return self.dense(h_n[-1])


def load_data(task: str, limit: int = 0):
    from ..datasets.uea import basic_motions, japanese_vowels

    return (japanese_vowels if task == "speech" else basic_motions)(limit)


def _mean_features(x, lengths):
    return np.stack([s[:n].mean(0) for s, n in zip(x, lengths)])


def baselines(data) -> Dict[str, float]:
    """Test accuracy of the majority class of the training split, and of 1-nearest-neighbour
    (Euclidean) on each series' per-channel means; ``data`` as :class:`~..datasets.uea.SeriesClasses`."""
    majority = np.bincount(data.y_train).argmax()
    train_means, test_means = (
        _mean_features(data.x_train, data.lengths_train),
        _mean_features(data.x_test, data.lengths_test),
    )
    nearest = ((test_means[:, None] - train_means[None]) ** 2).sum(2).argmin(1)
    return {
        "majority class": float((data.y_test == majority).mean()),
        "nearest neighbour on mean features": float((data.y_train[nearest] == data.y_test).mean()),
    }


def train(options: Options) -> Dict:
    torch.manual_seed(options.seed)
    return train_on(load_data(options.task, options.limit), options, CATALOG[options.task])


def train_on(data, options: Options, defaults: TaskDefaults, **extra) -> Dict:
    """Train a :class:`Classifier` on ``data`` (a :class:`~..datasets.uea.SeriesClasses`); the
    report, with a ``model_file`` that also holds ``extra``."""
    task = options.task
    hidden = options.hidden or defaults.hidden
    model = Classifier(data.x_train.shape[2], len(data.classes), hidden, options.layers, options.reset_after)

    def accuracy(x, lengths, y, m=model):
        with torch.no_grad():
            return float((m(torch.from_numpy(x), torch.from_numpy(lengths)).argmax(1).numpy() == y).mean())

    tensors = tuple(torch.from_numpy(a) for a in (data.x_train, data.lengths_train, data.y_train))
    result = fit(
        model,
        tensors,
        lambda m, x, n, y: nn.functional.cross_entropy(m(x, n), y),
        lambda: accuracy(data.x_val, data.lengths_val, data.y_val),
        options.epochs or defaults.epochs,
        options.lr or defaults.lr,
        options.batch_size or defaults.batch_size,
        options,
        higher_is_better=True,
    )
    report = {
        "task": task,
        "metric": f"test accuracy ({len(data.classes)} classes)",
        "model": accuracy(data.x_test, data.lengths_test, data.y_test),
        "precisions": metric_by_precision(
            model, lambda m: accuracy(data.x_test, data.lengths_test, data.y_test, m), options
        ),
        "baselines": baselines(data),
        "split": {"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test)},
        **result,
    }
    report["model_file"] = model_file(
        task,
        options,
        model,
        classes=data.classes,
        scaling={"mean": data.mean.tolist(), "std": data.std.tolist()},
        config={
            "channels": data.x_train.shape[2],
            "classes": len(data.classes),
            "hidden": hidden,
            "layers": options.layers,
            "reset_after": options.reset_after,
        },
        **extra,
    )
    return report


def load_model(saved: Dict) -> Classifier:
    c = saved["config"]
    model = Classifier(c["channels"], c["classes"], c["hidden"], c["layers"], c["reset_after"])
    return load_weights(model, saved)


class ClassifyTask(Task):
    """speech or activity: a class for each whole recording."""

    def __init__(self, name: str):
        super().__init__(train, load_model)
        self.name = name
        self.how_to_use = (
            "load the model in Python with "
            "grukit.apps.tasks.classify.load_model(grukit.apps.tasks.model_files.load(PATH))"
        )

    def predict(self, saved: Dict, texts, days):
        """Classifying new recordings from the command line is not offered: they need the
        dataset's preprocessing (cepstra, sensor scaling)."""
        raise NotOffered(f"grukit predict does not take new {self.name} recordings; {self.how_to_use}")


TASKS = [ClassifyTask("speech"), ClassifyTask("activity")]
