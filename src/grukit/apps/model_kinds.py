"""What a model file holds, and the one table through which every command that reads one dispatches
(``predict``, ``evaluate``, ``quantize``, ``export``, ``generate``, ``translate``, ``gates``).

Every grukit model file is a dict whose ``"task"`` says what it holds: a task's name (``grukit train
TASK --output``; ``grukit quantize`` keeps it and adds ``"precision"``) or
``grukit.forecasting.forecaster.TASK`` (``grukit forecast --output``). :func:`kind_of` maps it to the
object that knows what such a model can do (a :class:`~grukit.apps.tasks.task.Task`); a use it lacks
is refused in one line naming what it offers instead.
"""

from __future__ import annotations

from typing import Dict, Tuple


def kinds() -> Dict[str, object]:
    """``"task"`` value -> the object serving that kind of model file."""
    from ..forecasting.forecaster import TASK as GLOBAL_FORECAST
    from .global_forecast_files import GlobalForecastFiles
    from .tasks import TASKS

    return {**TASKS, GLOBAL_FORECAST: GlobalForecastFiles()}


def kind_of(path: str, float_only: str = "", saved=None) -> Tuple[Dict, object]:
    """(the model file's contents, the object serving its kind) for the model file at ``path`` (or its
    contents ``saved``, already read); refused when ``float_only`` names a use that needs the float32
    file and this one is quantized."""
    from .tasks.model_files import load

    saved = load(path) if saved is None else saved
    table = kinds()
    if saved["task"] not in table:
        raise ValueError(f"{path!r} is a model file of an unknown kind {saved['task']!r} (known: {', '.join(table)})")
    if float_only and saved.get("precision"):
        raise ValueError(
            f"{path!r} holds {saved['precision']} weights (from grukit quantize); {float_only} takes the "
            "float32 model file it was made from"
        )
    return saved, table[saved["task"]]
