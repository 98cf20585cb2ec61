"""The applications of a GRU that the study notes list, each a small module: data, model,
training, baselines, and what a saved model can do.

``TASKS`` maps a task name (``grukit train NAME``) to its :class:`~grukit.apps.tasks.task.Task`
object; the command line looks tasks up here and never names one.
"""

from typing import Dict

from . import classify, csv_forecast, csv_series, csv_text, forecast, music, sentiment, textgen, translate
from .task import NotOffered, Task

TASKS: Dict[str, Task] = {
    task.name: task
    for task in [
        sentiment.TASK,
        *forecast.TASKS,
        *classify.TASKS,
        textgen.TASK,
        music.TASK,
        translate.TASK,
        csv_forecast.TASK,
        csv_text.TASK,
        csv_series.TASK,
    ]
}

__all__ = ["TASKS", "Task", "NotOffered"]
