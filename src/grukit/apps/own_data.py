"""Your own data from Python: train the forecast and classifier tasks on a CSV path or a pandas
DataFrame, with the command line's checks, baselines and report, and no command line.

Each function returns ``(model, report)``: the trained ``torch.nn.Module`` (evaluation mode)
and the report that ``grukit train`` prints (``report["model"]`` the test metric,
``report["baselines"]`` the baselines' metrics, ``report["model_file"]`` what a model file
holds; save it with ``torch.save(report["model_file"], path)`` to use it with ``grukit
predict``). Keyword arguments are ``grukit train``'s options (``epochs``, ``hidden``,
``layers``, ``reset_after``, ``seed``, ``batch_size``, ``lr``, ``fill``, ``encoding`` ...).

>>> import pandas as pd, grukit.apps
>>> sales = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=400), "units": range(400)})
>>> model, report = grukit.apps.forecast(sales, target="units", time="day", epochs=5, quiet=True)
>>> sorted(report["baselines"])
['persistence (the last value)']
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple, Union

import torch


def _options(task: str, **options):
    from .tasks.common import Options

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


def forecast(
    data, target: str, features: Union[Sequence[str], str, None] = None, time: str = None, **options
) -> Tuple[torch.nn.Module, Dict]:
    """``grukit train forecast``: forecast ``target`` from its last ``window`` rows (and those of
    ``features``); ``data`` a CSV path or DataFrame, rows in time order (or ordered by ``time``).
    Options also: ``window`` (14), ``horizon`` (1), ``season``, ``calendar``."""
    from .tasks import csv_forecast

    settings = _options("forecast", target=target, features=features, time=time, **options)
    return _trained("forecast", csv_forecast.train_frame(data, settings))


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
