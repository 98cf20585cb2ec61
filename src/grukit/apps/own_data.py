"""Your own data from Python: train the classifier tasks on a CSV path or a pandas DataFrame, with the
command line's checks, baselines and report, and no command line. To forecast your own series, use
``grukit.forecasting.train`` (a single series is a panel of one).

Each function returns ``(model, report)``: the trained ``torch.nn.Module`` (evaluation mode)
and the report that ``grukit train`` prints (``report["model"]`` the test metric,
``report["baselines"]`` the baselines' metrics, ``report["model_file"]`` what a model file
holds; save it with ``torch.save(report["model_file"], path)`` to use it with ``grukit
predict``). Keyword arguments are ``grukit train``'s options (``epochs``, ``hidden``,
``layers``, ``reset_after``, ``seed``, ``batch_size``, ``lr``, ``fill``, ``encoding`` ...).

>>> import pandas as pd, grukit.apps
>>> reviews = pd.DataFrame({"text": ["good film", "bad film"] * 50, "label": ["pos", "neg"] * 50})
>>> model, report = grukit.apps.classify_text(reviews, text="text", label="label", epochs=2, quiet=True)
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch


def _options(task: str, **options):
    from .tasks.options import Options

    if isinstance(options.get("features"), (list, tuple)):  # the command line's "A,B" form
        options["features"] = ",".join(options["features"])
    options.setdefault("quiet", True)
    try:
        return Options(task=task, **options)
    except TypeError as exc:
        known = ", ".join(name for name in Options.__dataclass_fields__ if name != "task")
        raise TypeError(f"{exc}; the options are: {known}") from None


def _trained(task_name: str, report: Dict) -> Tuple[torch.nn.Module, Dict]:
    from .tasks import TASKS

    return TASKS[task_name].load(report["model_file"]), report


def classify_text(data, text: str, label: str, **options) -> Tuple[torch.nn.Module, Dict]:
    """``grukit train classify-text``: the class in column ``label`` from the text in ``text``."""
    from .tasks import csv_text

    settings = _options("classify-text", text=text, label=label, **options)
    return _trained("classify-text", csv_text.train_frame(data, settings))


def classify_series(data, id: str = None, label: str = None, time: str = None, **options):
    """``grukit train classify-series``: one class per recording; ``data`` a long-format CSV
    path or DataFrame (one row per step; ``id`` names the recording, ``label`` its class) or the
    path of a ``.ts`` file. Channels: ``features`` or every other numeric column."""
    from .tasks import csv_series

    settings = _options("classify-series", id=id, label=label, time=time, **options)
    return _trained("classify-series", csv_series.train_frame(data, settings))
